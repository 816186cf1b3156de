/*
 * The payload's zstd stage: raw frames written here and zstd runs for what compresses, read back by
 * the stock `zstd -d`.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { adaptiveZstd, type CompressStats } from '../../agent/bundle/compress.js';
import { isAirlockError } from '../../manifests/errors.js';
import { MAX_RAW_BLOCK, looksIncompressible, rawFrame } from '../../manifests/zstd.js';

/** What the stock zstd makes of `bytes`. */
function unzstd(bytes: Buffer): Buffer {
  const r = spawnSync('zstd', ['-d', '-q', '-c'], { input: bytes, maxBuffer: 1 << 30 });
  assert.is(r.status, 0, r.stderr.toString());
  return r.stdout;
}

/** Text that compresses like a table dump: lines of words and numbers. */
function text(size: number, seed = 1): Buffer {
  const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel'];
  let s = seed;
  const lines: string[] = [];
  let n = 0;
  while (n < size) {
    s = (s * 48271) % 2147483647;
    const l = `${s % 100000},${words[s % 8]},${words[(s >> 3) % 8]},2026-12-0${s % 9} 12:00:00\n`;
    lines.push(l);
    n += l.length;
  }
  return Buffer.from(lines.join('')).subarray(0, size);
}

async function compress(chunks: Buffer[], stats?: CompressStats): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const b of adaptiveZstd(undefined, stats)(Readable.from(chunks))) out.push(b);
  return Buffer.concat(out);
}

const fresh = (): CompressStats => ({ rawBytes: 0, zstdBytes: 0, zstdRuns: 0 });

test('a raw frame of several chunks, one larger than a block, reads back through the stock zstd', () => {
  const chunks = [randomBytes(10), randomBytes(MAX_RAW_BLOCK * 2 + 7), randomBytes(MAX_RAW_BLOCK)];
  const size = chunks.reduce((a, c) => a + c.byteLength, 0);
  const frame = Buffer.concat(rawFrame(chunks, size));
  // the frame header (9 bytes) and a 3-byte header per block: 1 + 3 + 1 blocks
  assert.is(frame.byteLength, size + 9 + 5 * 3);
  assert.ok(unzstd(frame).equals(Buffer.concat(chunks)));
  // two frames in a row are one stream
  assert.ok(unzstd(Buffer.concat([frame, frame])).equals(Buffer.concat([...chunks, ...chunks])));
});

test('a raw frame refuses a size that is not the chunks', () => {
  assert.throws(() => rawFrame([Buffer.alloc(5)], 6), /hold 5 bytes, not 6/);
  assert.throws(() => rawFrame([], 0), /1 to/);
});

test('random bytes look incompressible; text, zeros, base64 and a few bytes do not', () => {
  const r = randomBytes(1 << 20);
  assert.ok(looksIncompressible([r], r.byteLength));
  // cut anywhere, the samples still come from the right places
  assert.ok(looksIncompressible([r.subarray(0, 3), r.subarray(3, 500_000), r.subarray(500_000)], r.byteLength));
  assert.not.ok(looksIncompressible([text(1 << 20)], 1 << 20));
  assert.not.ok(looksIncompressible([Buffer.alloc(1 << 20)], 1 << 20));
  assert.not.ok(looksIncompressible([randomBytes(100)], 100));
  // base64 of random bytes carries 6 bits a byte: zstd still saves a quarter of it
  const b64 = Buffer.from(randomBytes(786_432).toString('base64'));
  assert.not.ok(looksIncompressible([b64], b64.byteLength));
});

test('mixed input: random stretches stored, text compressed, and the stock zstd gives back every byte', async () => {
  const whole = Buffer.concat([text(3 << 20, 7), randomBytes(6 << 20), text(2 << 20, 9), randomBytes(300_000)]);
  // chunks of odd sizes, as the tar gives them
  const chunks: Buffer[] = [];
  for (let off = 0; off < whole.byteLength; off += 65_537) chunks.push(whole.subarray(off, off + 65_537));
  const stats = fresh();
  const out = await compress(chunks, stats);
  assert.ok(unzstd(out).equals(whole));
  assert.is(stats.rawBytes + stats.zstdBytes, whole.byteLength);
  // most of the random 6 MiB is stored (the stretch that ends a run still goes through it); no text is
  assert.ok(stats.rawBytes >= 4 << 20 && stats.rawBytes <= 6 << 20, `raw ${stats.rawBytes}`);
  assert.is(stats.zstdRuns, 2);
  assert.ok(out.byteLength < whole.byteLength - (2 << 20), `${out.byteLength} of ${whole.byteLength}`);
});

test('input that alternates every MiB does not start a zstd program per MiB', async () => {
  const parts: Buffer[] = [];
  for (let i = 0; i < 8; i++) parts.push(i % 2 === 0 ? text(1 << 20, i + 1) : randomBytes(1 << 20));
  const stats = fresh();
  const out = await compress(parts, stats);
  assert.ok(unzstd(out).equals(Buffer.concat(parts)));
  assert.is(stats.zstdRuns, 1);
  assert.is(stats.rawBytes, 0);
});

test('all random: no zstd program at all; empty input: no output', async () => {
  const r = randomBytes(3 << 20);
  const stats = fresh();
  const out = await compress([r], stats);
  assert.is(stats.zstdRuns, 0);
  assert.ok(unzstd(out).equals(r));
  assert.is((await compress([])).byteLength, 0);
});

test('a zstd program that cannot start fails the stage with not-found', async () => {
  const saved = process.env.PATH;
  process.env.PATH = '/nonexistent';
  try {
    await compress([text(1 << 20)]);
    assert.unreachable('compressed without zstd');
  } catch (e) {
    assert.ok(isAirlockError(e, 'not-found'), String(e));
  } finally {
    process.env.PATH = saved;
  }
});

test.run();
