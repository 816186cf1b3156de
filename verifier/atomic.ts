/*
 * Writing a file so that no reader ever sees half of it: a temporary name in the same folder (so the
 * rename cannot cross file systems), the bytes fsynced, a rename over the final name, then the folder
 * fsynced so the rename itself survives a power cut. A failure removes the temporary file.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { AirlockError, fromSystemError } from '../manifests/errors.js';

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

/** Replaces `file` with `text` atomically. Throws a typed error (`not-found`, `io`, `medium-full`) on failure. */
export async function writeFileAtomic(file: string, text: string, mode = 0o644): Promise<void> {
  const abs = path.resolve(file);
  const dir = path.dirname(abs);
  const tmp = path.join(dir, `.${path.basename(abs)}.${randomBytes(6).toString('hex')}.partial`);
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, abs);
  } catch (e) {
    await rm(tmp, { force: true });
    throw fromSystemError(e, file, 'io');
  }
  // the rename is durable only once the folder is; some file systems refuse to fsync a folder
  const d = await open(dir, 'r').catch(() => undefined);
  if (d) {
    try {
      await d.sync().catch(() => undefined);
    } finally {
      await d.close();
    }
  }
}
