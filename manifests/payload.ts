/*
 * Reading a bundle's payload: the volumes in order, each hashed as it passes and checked against
 * the signed SHA256SUMS at its end, then age decryption, then zstd when the manifest says so, giving
 * the plaintext tar. The same bytes are hashed and decrypted in one read, so a medium that returns
 * different bytes on a second read cannot slip past: whoever consumes the plaintext must read the
 * stream to its end (which is when the last volume's hash is checked) before trusting anything.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { decryptStream } from './age/stream.js';
import { childStage } from './child.js';
import { AirlockError } from './errors.js';
import { readChunks } from './hash.js';
import { Digests, HashFeed } from './hash-worker.js';
import type { Payload, Volume } from './manifest.js';

/** Payloads of at least this size have their volumes hashed on a worker thread, beside decryption. */
const WORKER_HASH_MIN = 8 * 1024 * 1024;

/**
 * Yields the bytes of every volume in order. Before reading a volume it checks its size, and after it
 * its sha256, against `volumes` (the signed values), and throws `size-mismatch` or
 * `checksum-mismatch` naming it, or what readChunks throws when a volume cannot be read. Given
 * `whole` (the manifest's payload.sha256), it also checks that the volumes hash to it as one file,
 * on a second worker, and throws `malformed` if not.
 */
export async function* readVolumes(
  dir: string,
  volumes: readonly Volume[],
  signal?: AbortSignal,
  onBytes?: (n: number) => void,
  whole?: string,
): AsyncGenerator<Buffer> {
  const feed = volumes.reduce((a, v) => a + v.size, 0) >= WORKER_HASH_MIN ? new HashFeed(whole !== undefined ? 2 : 1) : undefined;
  // the whole payload's digest goes on across the volumes: on its worker, or here for a small payload
  const wholeHere = whole !== undefined && !feed ? createHash('sha256') : undefined;
  const wholeId = whole !== undefined && feed ? ['payload'] : [];
  try {
    for (const vol of volumes) {
      const id = `volume:${vol.name}`;
      const digests = new Digests([id, ...wholeId], feed);
      let size = 0;
      for await (const chunk of readChunks(path.join(dir, vol.name), { size: vol.size })) {
        signal?.throwIfAborted();
        size += chunk.byteLength;
        if (size > vol.size) throw new AirlockError('size-mismatch', `${vol.name}: longer than the ${vol.size} bytes listed`);
        await digests.update(chunk);
        wholeHere?.update(chunk);
        onBytes?.(chunk.byteLength);
        yield chunk;
      }
      if (size !== vol.size) throw new AirlockError('size-mismatch', `${vol.name}: ${size} bytes, ${vol.size} listed`);
      const [sha256] = await digests.digest([id]);
      if (sha256 !== vol.sha256) throw new AirlockError('checksum-mismatch', `${vol.name}: sha256 differs from SHA256SUMS`);
    }
    if (whole !== undefined) {
      const got = feed ? (await feed.digest(wholeId))[0] : wholeHere?.digest('hex');
      if (got !== whole) throw new AirlockError('malformed', 'payload.sha256 in the manifest is not the hash of the volumes');
    }
  } finally {
    await feed?.close();
  }
}

/**
 * The plaintext tar of a bundle as a stream: volumes (checked as in readVolumes), age decryption with
 * `identities`, then `zstd -d` when compressed. The stream errors with the first failure of any stage:
 * `decrypt-failed` (no identity matched, or a chunk failed authentication), a volume check, or zstd;
 * destroying it stops every stage. With `checkWhole` it also checks payload.sha256 (readVolumes), so
 * a reader that checked only the volumes' sizes before has checked everything a keyless pass does.
 */
export function openPlaintext(
  dir: string,
  payload: Payload,
  identities: readonly Uint8Array[],
  signal?: AbortSignal,
  onBytes?: (n: number) => void,
  checkWhole = false,
): Readable {
  const out = new PassThrough({ highWaterMark: 1024 * 1024 });
  const stages: NodeJS.ReadWriteStream[] = [decryptStream([...identities])];
  if (payload.compression === 'zstd') stages.push(childStage('zstd', ['-d', '-q', '-c'], signal));
  // pipeline destroys every stream with the first error, `out` included, which is how the reader sees it
  pipeline([Readable.from(readVolumes(dir, payload.volumes, signal, onBytes, checkWhole ? payload.sha256 : undefined)), ...stages, out]).catch(() => {});
  return out;
}
