/*
 * Fuzzing the age v1 reader: the header (stanzas, base64 bodies, the MAC line) and the STREAM
 * framing after it. Files are made by the project's own encryptStream with a known file key, then
 * damaged; when the damaged header still parses, its MAC is recomputed with that key so that the
 * damage reaches the stanzas and the payload instead of stopping at the MAC. The framing is also
 * built chunk by chunk (sizes and last-chunk flags of every kind, correctly sealed), where the
 * spec says exactly which sequences are valid. The reader may only fail with AgeError; it releases
 * only plaintext that authenticated, in whole chunks; it buffers at most the header bound and one
 * chunk; its time is linear in the file however the file is cut into writes.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createCipheriv, hkdfSync } from 'node:crypto';
import type { Transform } from 'node:stream';
import { recipientOf } from '../../manifests/age/keys.js';
import { MAX_HEADER_BYTES, headerMac, parseHeader, type ParsedHeader } from '../../manifests/age/header.js';
import { AgeError, CHUNK_SIZE, decryptStream, encryptStream } from '../../manifests/age/stream.js';
import { ascii, assertLinear, assertTyped, checkAsync, check, embedded, fc, gc, mutate, mutations, pieces, typedOnly, type Target } from './fuzz.js';

const TAG = 16;
const SEALED = CHUNK_SIZE + TAG;
const NONCE = 16;

/** Writes `chunks` into `t` honouring backpressure; resolves with what came out and the error, if any. */
async function pump(t: Transform, chunks: Iterable<Uint8Array>, keep = true): Promise<{ out: Buffer; error: unknown; written: number }> {
  const outs: Buffer[] = [];
  let error: unknown;
  let written = 0;
  const ended = new Promise<void>((resolve) => {
    t.on('data', (d: Buffer) => {
      if (keep) outs.push(d);
    });
    t.on('end', resolve);
    t.on('error', (e) => {
      error = e;
      resolve();
    });
  });
  for (const c of chunks) {
    if (error !== undefined || t.destroyed) break;
    written += c.length;
    if (!t.write(c))
      await new Promise<void>((resolve) => {
        t.once('drain', resolve);
        t.once('error', () => resolve());
      });
  }
  if (error === undefined && !t.destroyed) t.end();
  await ended;
  return { out: Buffer.concat(outs), error, written };
}

async function encrypt(plain: Uint8Array, recipients: Uint8Array[], fileKey: Uint8Array, nonce: Uint8Array): Promise<Buffer> {
  const { out, error } = await pump(encryptStream(recipients, { fileKey, nonce }), pieces(plain, 40_000));
  if (error) throw error;
  return out;
}

/** Deterministic plaintext: its bytes are a function of their position, so any prefix is recognisable. */
function plaintext(size: number, salt: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + salt) & 0xff;
  return b;
}

const key32 = fc.uint8Array({ minLength: 32, maxLength: 32 });
const size = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 300 }) },
  { weight: 1, arbitrary: fc.constantFrom(CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 2 * CHUNK_SIZE + 7) },
);
/** How the reader is fed: whole, in pieces, byte-sized pieces for short files. */
const feed = fc.oneof(fc.constant(1 << 20), fc.integer({ min: 1, max: 70_000 }), fc.constantFrom(1, 7, 64, 65, SEALED, SEALED + 1));

/** Offsets the reader branches on: line starts, the stanza arguments, the MAC, the nonce, chunk edges. */
function ageFields(file: Buffer, header: ParsedHeader): number[] {
  const out: number[] = [0];
  for (let i = file.indexOf(0x0a); i >= 0 && i < header.length; i = file.indexOf(0x0a, i + 1)) out.push(i, i + 1, i + 3, i + 10);
  out.push(header.length - 45, header.length - 1, header.length, header.length + NONCE);
  for (let c = header.length + NONCE; c < file.length; c += SEALED) out.push(c, c + SEALED - TAG, c + SEALED - 1);
  out.push(file.length - TAG, file.length - 1, file.length);
  return out;
}

const AGE_TOKENS = ascii(
  'age-encryption.org/v1\n',
  'age-encryption.org/v2\n',
  '-> ',
  '->  ',
  '-> X25519 ',
  '-> X25519\n',
  '-> unknown arg\n\n',
  '---',
  '--- ',
  '\n',
  '\r\n',
  ' ',
  'A'.repeat(64),
  `${'A'.repeat(64)}\n`,
  'AAAA=',
  '====',
  '\u0000',
  '-> X25519 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n',
);

/** When a damaged header still parses, signs it again with the file key, as only the key holder could. */
function remac(file: Buffer, fileKey: Uint8Array): Buffer {
  let h: ParsedHeader | undefined;
  try {
    h = parseHeader(file);
  } catch {
    return file;
  }
  if (h === undefined) return file;
  const mac = Buffer.from(` ${headerMac(fileKey, h.macInput).toString('base64').replace(/=+$/, '')}\n`, 'latin1');
  return Buffer.concat([h.macInput, mac, file.subarray(h.length)]);
}

function assertAgeError(e: unknown): asserts e is AgeError {
  assertTyped(e, ['decrypt-failed']);
  assert.instance(e, AgeError);
  assert.ok(['header', 'no-match', 'hmac', 'payload'].includes((e as AgeError).reason), (e as AgeError).reason);
}

/** Released plaintext is a prefix of one of `plains`, and whole chunks unless it is all of it. */
function assertReleased(out: Buffer, error: unknown, plains: readonly Buffer[]): void {
  if (error === undefined) {
    assert.ok(
      plains.some((p) => p.equals(out)),
      `decrypted ${out.length} bytes that are not a plaintext`,
    );
    return;
  }
  assertAgeError(error);
  assert.ok(
    plains.some((p) => p.subarray(0, out.length).equals(out)),
    `released ${out.length} bytes that are not a prefix of the plaintext`,
  );
  assert.is(out.length % CHUNK_SIZE, 0, `released ${out.length} bytes, not whole chunks`);
}

const ageFile = fc.record({
  size,
  salt: fc.nat({ max: 255 }),
  ids: fc.array(key32, { minLength: 1, maxLength: 3 }),
  fileKey: fc.uint8Array({ minLength: 16, maxLength: 16 }),
  nonce: fc.uint8Array({ minLength: 16, maxLength: 16 }),
});

test('damaged age files: only AgeError, and only authenticated plaintext in whole chunks is released', async () => {
  const donorFile = ageFile.map((d) => ({ ...d, size: d.size % 300 }));
  await checkAsync(
    fc.record({ f: ageFile, donor: donorFile, ms: mutations(4), fixMac: fc.boolean(), feed, which: fc.nat() }),
    100,
    async ({ f, donor, ms, fixMac, feed: piece, which }) => {
      const plain = plaintext(f.size, f.salt);
      const file = await encrypt(plain, f.ids.map(recipientOf), f.fileKey, f.nonce);
      // The donor is encrypted to the same recipients with another file key: splices across files.
      const donorPlain = plaintext(donor.size, donor.salt);
      const donorFile = await encrypt(donorPlain, f.ids.map(recipientOf), donor.fileKey, donor.nonce);
      const target: Target = { fields: ageFields(file, parseHeader(file) as ParsedHeader), tokens: AGE_TOKENS, donors: [donorFile] };
      let bytes = mutate(file, ms, target);
      if (fixMac) bytes = remac(bytes, f.fileKey);
      const identity = f.ids[which % f.ids.length] as Uint8Array;
      // At most a few hundred writes: byte-sized writes of a 128 KiB file take long and find nothing more.
      const { out, error } = await pump(decryptStream([identity]), pieces(bytes, Math.max(piece, Math.ceil(bytes.length / 300))));
      assertReleased(out, error, [plain, donorPlain]);
    },
  );
});

/** Seals a STREAM payload chunk by chunk, with any sizes and last-chunk flags. */
function sealChunks(
  fileKey: Uint8Array,
  nonce: Uint8Array,
  chunks: readonly { size: number; last: boolean }[],
  salt: number,
): { payload: Buffer; plains: Buffer[] } {
  const key = Buffer.from(hkdfSync('sha256', fileKey, nonce, 'payload', 32));
  const parts: Buffer[] = [Buffer.from(nonce)];
  const plains: Buffer[] = [];
  chunks.forEach((c, i) => {
    const n = Buffer.alloc(12);
    n.writeUIntBE(i, 5, 6);
    n[11] = c.last ? 1 : 0;
    const p = plaintext(c.size, salt + i);
    const cipher = createCipheriv('chacha20-poly1305', key, n, { authTagLength: TAG });
    parts.push(cipher.update(p), cipher.final(), cipher.getAuthTag());
    plains.push(p);
  });
  return { payload: Buffer.concat(parts), plains };
}

test('STREAM framing: exactly the sequences the spec allows decrypt, every other one fails after its last good chunk', async () => {
  const chunk = fc.record({ size: fc.constantFrom(0, 1, 100, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1), last: fc.boolean() });
  await checkAsync(fc.record({ f: ageFile, chunks: fc.array(chunk, { minLength: 0, maxLength: 4 }), feed }), 80, async ({ f, chunks, feed: piece }) => {
    const empty = await encrypt(Buffer.alloc(0), [recipientOf(f.ids[0] as Uint8Array)], f.fileKey, f.nonce);
    const header = empty.subarray(0, (parseHeader(empty) as ParsedHeader).length);
    const { payload, plains } = sealChunks(f.fileKey, f.nonce, chunks, f.salt);
    const file = Buffer.concat([header, payload]);
    const { out, error } = await pump(decryptStream([f.ids[0] as Uint8Array]), pieces(file, Math.max(piece, Math.ceil(file.length / 300))));
    // age: every chunk but the last is full and not flagged; the last is flagged, at most full, and
    // empty only when it is the only one.
    const n = chunks.length;
    const valid = n > 0 && chunks.every((c, i) => (i < n - 1 ? c.size === CHUNK_SIZE && !c.last : c.last && c.size <= CHUNK_SIZE && (c.size > 0 || n === 1)));
    if (valid) {
      assert.is(error, undefined, `refused a valid framing: ${String(error)}`);
      assert.ok(out.equals(Buffer.concat(plains)));
      return;
    }
    assert.ok(error !== undefined, `accepted an invalid framing ${JSON.stringify(chunks)}`);
    assertAgeError(error);
    assert.is(error.reason, 'payload');
    // What came out is the plaintext of leading chunks that were right where they stood.
    assert.ok(Buffer.concat(plains).subarray(0, out.length).equals(out), 'released bytes that are not the leading chunks');
  });
});

test('parseHeader: only AgeError(header), never reads outside its view, prefixes of a header are incomplete', () => {
  check(fc.record({ f: ageFile, ms: mutations(3), cut: fc.nat() }), 200, ({ f, ms, cut }) => {
    // A header alone, written by hand: an unknown stanza with a full body line, then X25519 stanzas.
    const stanzas = f.ids.map((id) => `-> X25519 ${Buffer.from(recipientOf(id)).toString('base64').replace(/=+$/, '')}\n${'Q'.repeat(43)}\n`).join('');
    const text = Buffer.from(`age-encryption.org/v1\n-> other a b\n${'A'.repeat(64)}\n\n${stanzas}--- ${'A'.repeat(43)}\n`, 'latin1');
    const bytes = mutate(text, ms, { fields: [0, 22, 25, text.length - 48], tokens: AGE_TOKENS });
    let whole: ParsedHeader | undefined;
    const e = typedOnly(['decrypt-failed'], () => {
      whole = parseHeader(bytes);
    });
    if (e) assert.is((e as AgeError).reason, 'header');
    // The same bytes inside a larger buffer: the same answer (the filler would change a parse that looked past the view).
    const e2 = typedOnly(['decrypt-failed'], () => assert.equal(parseHeader(embedded(bytes, 0x0a)), whole));
    assert.is(e2?.message, e?.message);
    // A strict prefix of a complete header is either incomplete or already refused, never a different header.
    if (whole !== undefined) {
      const n = cut % whole.length;
      const p = typedOnly(['decrypt-failed'], () => assert.is(parseHeader(bytes.subarray(0, n)), undefined));
      if (p) assert.is((p as AgeError).reason, 'header');
    }
  });
});

// Found by this property: a header line without a line end was held without limit (197,034 bytes
// and counting), because the reader parsed only after a write that held a line end.
test('an endless header is refused within its 64 KiB bound, with or without line ends', async () => {
  await checkAsync(
    fc.record({ line: fc.constantFrom(`${'A'.repeat(64)}\n`, 'A'.repeat(1000), '-> a\n\n'), piece: fc.constantFrom(1, 100, 4096) }),
    12,
    async ({ line, piece }) => {
      const limit = MAX_HEADER_BYTES + 2 * 65536;
      const endless = function* () {
        yield Buffer.from('age-encryption.org/v1\n-> X25519 a\n', 'latin1');
        const l = Buffer.from(line, 'latin1');
        // bounded only so that a broken reader fails the test instead of running forever
        for (let sent = 0; sent < limit; sent += l.length) yield* pieces(l, piece);
      };
      const { error, written } = await pump(decryptStream([new Uint8Array(32).fill(1)]), endless());
      assertAgeError(error);
      assert.is(error.reason, 'header');
      assert.ok(written <= MAX_HEADER_BYTES + 4096 + line.length, `wrote ${written} bytes before the refusal`);
    },
    12,
  );
});

test('decrypting 32 MiB holds memory bounded', async () => {
  const id = new Uint8Array(32).fill(7);
  const plain = Buffer.alloc(32 << 20, 0x61);
  const file = await encrypt(plain, [recipientOf(id)], new Uint8Array(16), new Uint8Array(16));
  gc();
  const before = process.memoryUsage();
  let peak = 0;
  const t = decryptStream([id]);
  let got = 0;
  let n = 0;
  t.on('data', (d: Buffer) => {
    got += d.length;
    // What the reader holds, not the garbage it has not yet been asked to give back.
    if (n++ % 64 !== 0) return;
    gc();
    const m = process.memoryUsage();
    peak = Math.max(peak, m.heapUsed + m.arrayBuffers - before.heapUsed - before.arrayBuffers);
  });
  const { error } = await pump(t, pieces(file, 1 << 20), false);
  assert.is(error, undefined);
  assert.is(got, plain.length);
  assert.ok(peak < 8 << 20, `memory grew by ${peak} bytes while decrypting 32 MiB`);
});

test('time is linear: header size however it is cut into writes, payload size in small writes', async () => {
  const id = new Uint8Array(32).fill(9);
  // A header of n unknown stanzas with 64-column bodies, fed in line-sized writes, ending with a bad MAC.
  const header = (n: number) => {
    const lines = Array.from({ length: n }, () => `-> x\n${'A'.repeat(64)}\n\n`).join('');
    return Buffer.from(`age-encryption.org/v1\n${lines}`, 'latin1');
  };
  const bigStanza = (n: number) => Buffer.from(`age-encryption.org/v1\n-> x\n${`${'A'.repeat(64)}\n`.repeat(n)}\n--- ${'A'.repeat(43)}\n`, 'latin1');
  const decryptIn = (piece: number) => async (b: Buffer) => {
    const { error } = await pump(decryptStream([id]), pieces(b, piece));
    assertAgeError(error);
  };
  await assertLinear('header in 65-byte writes', bigStanza, decryptIn(65), 90);
  // Found by this check: every write was joined to the held header, so byte-sized writes were
  // quadratic (x39 for ten times the header).
  await assertLinear('header in 1-byte writes', bigStanza, decryptIn(1), 90);
  await assertLinear('stanzas in whole writes', header, decryptIn(1 << 20), 6);
  const payload = async (n: number) => encrypt(plaintext(n * 1024, 0), [recipientOf(id)], new Uint8Array(16), new Uint8Array(16));
  const small = await payload(256);
  const large = await payload(2560);
  await assertLinear(
    'payload in 100-byte writes',
    (n: number) => (n === 256 ? small : large),
    async (b: Buffer) => {
      const { error } = await pump(decryptStream([id]), pieces(b, 100));
      assert.is(error, undefined);
    },
    256,
  );
});

test.run();
