/*
 * Streaming digests: a file's or a stream's sha256 and size in one pass, never the whole thing in memory.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

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

/** Hashes a file. Throws Node's system error when it cannot be read. */
export function digestFile(path: string): Promise<Digest> {
  return digestStream(createReadStream(path, { highWaterMark: 1024 * 1024 }));
}
