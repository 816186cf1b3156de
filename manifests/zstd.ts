/*
 * The zstd frames airlock writes itself. A compressed payload is a series of zstd frames, which a
 * decoder reads as one stream (RFC 8878, section 3.1). Where the plaintext does not compress (files
 * already compressed or encrypted, random bytea in a base backup), running it through the zstd program
 * costs two pipe copies and a match search for nothing; those stretches are written here as raw
 * frames (a frame header, then the bytes in raw blocks), and only stretches that compress go through
 * the zstd program. Stock `zstd -d` reads the result like any other zstd stream.
 *
 * It lives in manifests/ because it is part of the payload format: SPEC.md describes it, and the
 * verifier's tests read such frames back.
 */

const MAGIC = 0xfd2fb528;
/** Frame_Header_Descriptor: Single_Segment_flag set, Frame_Content_Size in 4 bytes, no checksum, no dictionary */
const DESCRIPTOR = 0xa0;
/** a raw block holds at most 128 KiB (Block_Maximum_Size) */
export const MAX_RAW_BLOCK = 128 * 1024;
/** a single-segment frame's content size is a 4-byte field here */
export const MAX_RAW_FRAME = 0xffffffff;

/**
 * One zstd frame that holds `chunks` (`size` bytes in all, at least 1) uncompressed: the pieces to
 * write in order. The chunks themselves are part of the result, not copied.
 */
export function rawFrame(chunks: readonly Buffer[], size: number): Buffer[] {
  if (size < 1 || size > MAX_RAW_FRAME) throw new RangeError(`a raw frame holds 1 to ${MAX_RAW_FRAME} bytes, not ${size}`);
  const header = Buffer.alloc(9);
  header.writeUInt32LE(MAGIC, 0);
  header[4] = DESCRIPTOR;
  header.writeUInt32LE(size, 5);
  const out: Buffer[] = [header];
  let left = size;
  for (const chunk of chunks) {
    for (let off = 0; off < chunk.byteLength; off += MAX_RAW_BLOCK) {
      const piece = chunk.subarray(off, off + MAX_RAW_BLOCK);
      left -= piece.byteLength;
      // Block_Header: Last_Block in bit 0, Block_Type 0 (raw) in bits 1-2, Block_Size in bits 3-23
      const h = (piece.byteLength << 3) | (left === 0 ? 1 : 0);
      out.push(Buffer.from([h & 0xff, (h >>> 8) & 0xff, (h >>> 16) & 0xff]), piece);
    }
  }
  if (left !== 0) throw new RangeError(`the chunks hold ${size - left} bytes, not ${size}`);
  return out;
}

/** Bytes looked at per sample, and samples per stretch. */
const SAMPLE = 4096;
const SAMPLES = 4;
/**
 * Bits per byte above which a stretch is taken as incompressible. Random bytes measure about 7.99 on
 * 16 KiB; at 7.8, entropy coding alone could save at most about 2.5%.
 */
const RANDOM_BITS = 7.8;
const LOG2 = Array.from({ length: SAMPLE * SAMPLES + 1 }, (_, n) => (n === 0 ? 0 : Math.log2(n)));

/**
 * Whether `chunks` (`size` bytes) look incompressible: the byte entropy of a few samples spread over
 * them. It reads 16 KiB whatever the size. It cannot see repetition across the samples (the same
 * random block twice), so such data is stored as it is: larger than it could be, never wrong.
 */
export function looksIncompressible(chunks: readonly Buffer[], size: number): boolean {
  const counts = new Uint32Array(256);
  let n = 0;
  let c = 0;
  let base = 0;
  for (let s = 0; s < SAMPLES; s++) {
    const at = Math.floor((size * s) / SAMPLES);
    while (c < chunks.length && base + (chunks[c]?.byteLength ?? 0) <= at) base += chunks[c++]?.byteLength ?? 0;
    const chunk = chunks[c];
    if (!chunk) break;
    const from = at - base;
    const end = Math.min(chunk.byteLength, from + SAMPLE);
    for (let i = from; i < end; i++) {
      const b = chunk[i] ?? 0;
      counts[b] = (counts[b] ?? 0) + 1;
    }
    n += end - from;
  }
  if (n < 256) return false;
  let bits = 0;
  const logN = LOG2[n] ?? Math.log2(n);
  for (const k of counts) if (k > 0) bits -= k * ((LOG2[k] ?? Math.log2(k)) - logN);
  return bits / n > RANDOM_BITS;
}
