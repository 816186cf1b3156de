/*
 * Writing a file so that no reader ever sees half of it, the one way every writer of airlock and the
 * verifier does it: the bytes go to a temporary name beside the target (same folder, so the rename
 * cannot cross file systems; a dot name ending in `.tmp`, which no reader takes for a file of its
 * own), are fsynced, and the temporary file takes the final name in one step; then the folder is
 * fsynced so that step survives a power cut. A failure removes the temporary file. After a crash the
 * final name holds either the old file, nothing, or the whole new one.
 *
 * The final step is a rename (which replaces an older file) or, for an exclusive write, a hard link
 * (which fails when the name is taken, so a WAL file or a key is never replaced). Synchronous and
 * asynchronous forms share the steps: wal-push and wal-fetch run synchronously, as short processes.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { link, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { AirlockError, fromSystemError } from './errors.js';

export interface AtomicOptions {
  /** the new file's mode; 0644 when absent */
  mode?: number;
  /** never replace a file already there: the write returns false and leaves it untouched */
  exclusive?: boolean;
  /**
   * false skips both fsyncs, where a crash only means doing the write again (a WAL file handed to
   * PostgreSQL, which fsyncs what it keeps); the file still never appears half-written
   */
  durable?: boolean;
}

/** A fresh temporary name beside `file`: `.NAME.<12 hex>.tmp` in the same folder. */
export function tempBeside(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
}

/** Errors of a hard link that mean the file system has none (vfat, some network file systems). */
const NO_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EMLINK']);

/**
 * Writes what `fill` writes to the open file descriptor under `file`, atomically. Returns false
 * only for an exclusive write that found `file` there. Throws what `fill` throws, and the system
 * errors of the steps untyped, so the caller can tell a full spool from a full medium.
 */
export function writeFileAtomicSync(file: string, fill: (fd: number) => void, opts: AtomicOptions = {}): boolean {
  const tmp = tempBeside(file);
  const fd = openSync(tmp, 'wx', opts.mode ?? 0o644);
  try {
    try {
      fill(fd);
      if (opts.durable !== false) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (!placeSync(tmp, file, opts.exclusive === true)) return false;
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // renamed away, or the error that brought us here matters more
    }
  }
  if (opts.durable !== false) fsyncDirSync(path.dirname(file));
  return true;
}

function placeSync(tmp: string, file: string, exclusive: boolean): boolean {
  if (!exclusive) {
    renameSync(tmp, file);
    return true;
  }
  try {
    linkSync(tmp, file);
    return true;
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code;
    if (errno === 'EEXIST') return false;
    if (!errno || !NO_LINKS.has(errno)) throw e;
  }
  // no hard links: check, then rename; a second writer of the same name between the two could be
  // replaced, which the callers accept (PostgreSQL runs one archiver, keys are made by hand)
  try {
    statSync(file);
    return false;
  } catch {
    renameSync(tmp, file);
    return true;
  }
}

/** fsyncs a folder so a rename or a new file in it survives a crash. */
export function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Replaces (or, exclusive, creates) `file` with `data` atomically. Returns false only for an
 * exclusive write that found `file` there. Throws a typed error (`not-found`, `io`, `medium-full`).
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array, opts: AtomicOptions = {}): Promise<boolean> {
  const tmp = tempBeside(path.resolve(file));
  let placed: boolean;
  try {
    const fh = await open(tmp, 'wx', opts.mode ?? 0o644);
    try {
      await fh.writeFile(data);
      if (opts.durable !== false) await fh.sync();
    } finally {
      await fh.close();
    }
    placed = await place(tmp, file, opts.exclusive === true);
  } catch (e) {
    throw fromSystemError(e, file, 'io');
  } finally {
    await rm(tmp, { force: true });
  }
  // some file systems refuse to fsync a folder; the file itself is complete either way
  if (placed && opts.durable !== false) {
    const d = await open(path.dirname(path.resolve(file)), 'r').catch(() => undefined);
    if (d) {
      try {
        await d.sync().catch(() => undefined);
      } finally {
        await d.close();
      }
    }
  }
  return placed;
}

async function place(tmp: string, file: string, exclusive: boolean): Promise<boolean> {
  if (!exclusive) {
    await rename(tmp, file);
    return true;
  }
  try {
    await link(tmp, file);
    return true;
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code;
    if (errno === 'EEXIST') return false;
    if (!errno || !NO_LINKS.has(errno)) throw e;
  }
  if (
    await stat(file).then(
      () => true,
      () => false,
    )
  )
    return false;
  await rename(tmp, file);
  return true;
}

/** Checks that `file` could be written: its folder exists and is a folder. Throws `not-found` or `usage`. */
export async function assertWritableTarget(file: string): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  let s;
  try {
    s = await stat(dir);
  } catch (e) {
    throw fromSystemError(e, dir, 'io');
  }
  if (!s.isDirectory()) throw new AirlockError('usage', `${dir}: not a folder`, { hint: `give a file in an existing folder` });
  try {
    if ((await stat(file)).isDirectory()) throw new AirlockError('usage', `${file}: is a folder`, { hint: 'give a file name' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}
