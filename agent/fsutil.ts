/*
 * Durable file operations: nothing half-written may look finished. Files are written under a
 * temporary name, fsynced, renamed, and their folder fsynced, so after a crash a file is either
 * complete under its final name or absent.
 */
import { open, rm } from 'node:fs/promises';
import { fromSystemError } from '../manifests/errors.js';

/** fsyncs a folder so a rename or a new file in it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes `data` to `file` durably and exclusively (fails if it exists). Throws typed system errors. */
export async function writeFileDurable(file: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  try {
    const fh = await open(file, 'wx', mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw fromSystemError(e, file);
  }
}

/** Removes a folder tree; never throws for a missing one. */
export async function removeTree(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}
