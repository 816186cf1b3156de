/*
 * Durable file operations: nothing half-written may look finished. Files are written under a
 * temporary name, fsynced, renamed, and their folder fsynced, so after a crash a file is either
 * complete under its final name or absent.
 */
import { lstat, open, rename, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { AirlockError, fromSystemError } from '../manifests/errors.js';

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

/**
 * Makes a finished staging tree the restore target in one rename (replacing an empty target folder)
 * and makes that durable. Throws `unsafe-target` when the target became a symbolic link since it was
 * checked (rmdir would follow it), system errors otherwise; the target is either untouched or complete.
 */
export async function promoteTree(tree: string, target: string): Promise<void> {
  await fsyncDir(tree);
  const st = await lstat(target).catch(() => undefined);
  if (st?.isSymbolicLink()) throw new AirlockError('unsafe-target', `${target} is a symbolic link`, { hint: 'restore into a new or empty folder, named by its real path' });
  if (st) await rmdir(target);
  await rename(tree, target);
  await fsyncDir(path.dirname(target));
}
