/*
 * Reading the files of a bundle safely, and streaming digests. A medium is untrusted: a name that
 * should be a file may be a FIFO (a read would block forever), a device or a symbolic link, so every
 * file is opened without following links and without blocking, and must be a regular file. Digests
 * are computed in one pass in bounded chunks, never with the whole file in memory.
 */
import { createHash, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { AirlockError, fromSystemError } from './errors.js';

const READ_SIZE = 1024 * 1024;

/** The hex sha256 of `data`. */
export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface Digest {
  sha256: string;
  size: number;
}

/** Hashes an async stream of chunks. Rethrows what the stream throws. */
export async function digestStream(chunks: AsyncIterable<Uint8Array>): Promise<Digest> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of chunks) {
    h.update(c);
    size += c.byteLength;
  }
  return { sha256: h.digest('hex'), size };
}

/**
 * Opens a regular file for reading without following a symbolic link or blocking on a FIFO, with
 * `flags` added (such as O_DIRECT). Throws `malformed` when it is anything but a regular file, typed
 * system errors otherwise (EINVAL raw, so a caller can tell a refused flag).
 */
export async function openRegular(file: string, flags = 0): Promise<FileHandle> {
  let fh: FileHandle;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | flags);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw new AirlockError('malformed', `${path.basename(file)}: a symbolic link, not a file`);
    if (flags !== 0 && (e as NodeJS.ErrnoException).code === 'EINVAL') throw e;
    throw fromSystemError(e, path.basename(file));
  }
  const s = await fh.stat();
  if (!s.isFile()) {
    await fh.close();
    throw new AirlockError('malformed', `${path.basename(file)}: not a regular file`);
  }
  return fh;
}

/**
 * What a file may hold before a byte of it is read: `size`, exactly its signed size, or at most `max`
 * bytes for a file that has no signed size. A sparse file of a terabyte costs nothing on disk, so its
 * size is compared before it is read, not found out after.
 */
export interface SizeBound {
  size?: number;
  max?: number;
}

function sizeProblem(file: string, size: number, bound: SizeBound): AirlockError | undefined {
  if (bound.size !== undefined && size !== bound.size) return new AirlockError('size-mismatch', `${path.basename(file)}: ${size} bytes, ${bound.size} listed`);
  if (bound.max !== undefined && size > bound.max)
    return new AirlockError('size-mismatch', `${path.basename(file)}: ${size} bytes is over the ${bound.max}-byte limit`);
  return undefined;
}

/**
 * Yields a regular file's bytes in order, in chunks of at most 1 MiB, each in fresh memory. The next
 * chunk is read while the consumer works on this one. With a `bound`, the file's size is checked
 * before anything is read and nothing past the bound is read (a file that grows meanwhile ends in
 * the same error). Throws as openRegular, `size-mismatch` for a size out of its bound.
 */
export async function* readChunks(file: string, bound: SizeBound = {}): AsyncGenerator<Buffer> {
  const fh = await openRegular(file);
  const limit = bound.size ?? bound.max ?? Infinity;
  let at = 0;
  const readNext = async (): Promise<Buffer> => {
    // one byte past the bound is read when it exists, so growth is seen, and no more
    const want = Math.min(READ_SIZE, limit + 1 - at);
    const buf = Buffer.allocUnsafe(want);
    let n: number;
    try {
      ({ bytesRead: n } = await fh.read(buf, 0, want, at));
    } catch (e) {
      throw fromSystemError(e, path.basename(file));
    }
    at += n;
    return n === want ? buf : buf.subarray(0, n);
  };
  let next: Promise<Buffer> | undefined;
  try {
    const early = sizeProblem(file, (await fh.stat()).size, bound);
    if (early) throw early;
    next = readNext();
    let total = 0;
    for (;;) {
      const chunk = await next;
      next = undefined;
      if (chunk.byteLength === 0) break;
      total += chunk.byteLength;
      if (total > limit) break;
      next = readNext();
      // a failure is thrown where it is awaited; until then it must not count as unhandled
      next.catch(() => {});
      yield chunk;
    }
    if (total > limit) throw new AirlockError('size-mismatch', `${path.basename(file)}: longer than ${limit} bytes`);
    const late = sizeProblem(file, total, bound);
    if (late) throw late;
  } finally {
    await next?.catch(() => {});
    await fh.close();
  }
}

/** Hashes a regular file, also feeding every hash in `also`. Throws as readChunks. */
export async function digestFile(file: string, also: readonly Hash[] = [], bound: SizeBound = {}): Promise<Digest> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of readChunks(file, bound)) {
    h.update(c);
    for (const a of also) a.update(c);
    size += c.byteLength;
  }
  return { sha256: h.digest('hex'), size };
}

/** Reads a small regular file whole; throws `malformed` when it is larger than `limit`. */
export async function readSmall(file: string, limit: number): Promise<Buffer> {
  const fh = await openRegular(file);
  try {
    const { size } = await fh.stat();
    if (size > limit) throw new AirlockError('malformed', `${path.basename(file)}: ${size} bytes is over the ${limit}-byte limit`);
    const buf = Buffer.alloc(size);
    const { bytesRead } = await fh.read(buf, 0, size, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** The first `n` bytes of a regular file (fewer if it is shorter). */
export async function readPrefix(file: string, n: number): Promise<Buffer> {
  const fh = await openRegular(file);
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}
