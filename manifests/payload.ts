/*
 * Reading a bundle's payload: the volumes in order, each hashed as it passes and checked against
 * the signed SHA256SUMS at its end, then age decryption, then zstd when the manifest says so, giving
 * the plaintext tar. The same bytes are hashed and decrypted in one read, so a medium that returns
 * different bytes on a second read cannot slip past: whoever consumes the plaintext must wait for the
 * end of the stream (which is when the last volume's hash is checked) before trusting anything.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { decryptStream } from './age/stream.js';
import { spawnFilter } from './child.js';
import { AirlockError, fromSystemError } from './errors.js';
import type { Payload, Volume } from './manifest.js';

const READ_SIZE = 1024 * 1024;

export interface VolumeTotals {
  size: number;
  sha256: string;
}

/**
 * Yields the bytes of every volume in order. After each volume it checks size and sha256 against
 * `volumes` (the signed values) and throws `size-mismatch` or `checksum-mismatch` naming it; `not-found`
 * or `io` when a volume cannot be read. `totals`, if given, receives the hash of all volumes together.
 */
export async function* readVolumes(dir: string, volumes: readonly Volume[], totals?: (t: VolumeTotals) => void, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const all = createHash('sha256');
  let allSize = 0;
  for (const vol of volumes) {
    const file = path.join(dir, vol.name);
    const h = createHash('sha256');
    let size = 0;
    let fh;
    try {
      fh = await open(file, 'r');
    } catch (e) {
      throw fromSystemError(e, vol.name);
    }
    try {
      for (;;) {
        signal?.throwIfAborted();
        const buf = Buffer.allocUnsafe(READ_SIZE);
        let n: number;
        try {
          ({ bytesRead: n } = await fh.read(buf, 0, READ_SIZE, null));
        } catch (e) {
          throw fromSystemError(e, vol.name);
        }
        if (n === 0) break;
        const chunk = n === READ_SIZE ? buf : buf.subarray(0, n);
        size += n;
        if (size > vol.size) throw new AirlockError('size-mismatch', `${vol.name}: longer than the ${vol.size} bytes listed`);
        h.update(chunk);
        all.update(chunk);
        yield chunk;
      }
    } finally {
      await fh.close();
    }
    if (size !== vol.size) throw new AirlockError('size-mismatch', `${vol.name}: ${size} bytes, ${vol.size} listed`);
    if (h.digest('hex') !== vol.sha256) throw new AirlockError('checksum-mismatch', `${vol.name}: sha256 differs from SHA256SUMS`);
    allSize += size;
  }
  totals?.({ size: allSize, sha256: all.digest('hex') });
}

/**
 * The plaintext tar of a bundle as a stream: volumes (checked as in readVolumes), age decryption with
 * `identities`, then `zstd -d` when compressed. The stream errors with the first failure of any stage:
 * `decrypt-failed` (no identity matched, or a chunk failed authentication), a volume check, or zstd.
 */
export function openPlaintext(dir: string, payload: Payload, identities: readonly Uint8Array[], signal?: AbortSignal): Readable {
  const volumes = Readable.from(readVolumes(dir, payload.volumes, undefined, signal), { objectMode: false });
  let out: Readable = volumes.pipe(decryptStream([...identities]));
  volumes.on('error', (e) => out.destroy(e));
  if (payload.compression === 'zstd') {
    const plain = out;
    const unzstd = spawnFilter('zstd', ['-d', '-q', '-c'], signal);
    plain.on('error', (e) => unzstd.destroy(e));
    out = plain.pipe(unzstd);
  }
  // a consumer that stops early must not leave volumes open
  out.on('close', () => volumes.destroy());
  return out;
}
