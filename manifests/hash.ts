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
 * Yields a regular file's bytes in order, in chunks of at most 1 MiB, each in fresh memory. The next
 * chunk is read while the consumer works on this one.
 */
export async function* readChunks(file: string): AsyncGenerator<Buffer> {
  const fh = await openRegular(file);
  let at = 0;
  const readNext = async (): Promise<Buffer> => {
    const buf = Buffer.allocUnsafe(READ_SIZE);
    let n: number;
    try {
      ({ bytesRead: n } = await fh.read(buf, 0, READ_SIZE, at));
    } catch (e) {
      throw fromSystemError(e, path.basename(file));
    }
    at += n;
    return n === READ_SIZE ? buf : buf.subarray(0, n);
  };
  let next: Promise<Buffer> | undefined = readNext();
  try {
    for (;;) {
      const chunk = await next;
      next = undefined;
      if (chunk.byteLength === 0) return;
      next = readNext();
      // a failure is thrown where it is awaited; until then it must not count as unhandled
      next.catch(() => {});
      yield chunk;
    }
  } finally {
    await next?.catch(() => {});
    await fh.close();
  }
}

/** Hashes a regular file, also feeding every hash in `also`. Throws as readChunks. */
export async function digestFile(file: string, also: readonly Hash[] = []): Promise<Digest> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of readChunks(file)) {
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
