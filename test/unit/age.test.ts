/*
 * The age implementation against independent references: the C2SP CCTV vectors (cctv-age), the Go
 * `age` binaries, and the `age-encryption` npm package. Every decryption is also fed whole, in
 * small pieces and (for small files) byte by byte, because chunk boundaries are where a streaming
 * parser goes wrong.
 */

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Transform } from 'node:stream';
import { inflateSync } from 'node:zlib';
import * as vectors from 'cctv-age';
import * as ageJs from 'age-encryption';
import { AirlockError } from '../../manifests/errors.js';
import { formatIdentity, formatRecipient, generateIdentity, parseIdentities, parseRecipient, recipientOf } from '../../manifests/age/keys.js';
import { MAX_STANZAS, encodeHeader, parseHeader, wrapX25519 } from '../../manifests/age/header.js';
import { AgeError, CHUNK_SIZE, decryptStream, encryptStream, payloadSize } from '../../manifests/age/stream.js';

const SEALED = CHUNK_SIZE + 16;
const SIZES = [0, 1, CHUNK_SIZE, 3 * CHUNK_SIZE, CHUNK_SIZE + 1, (1 << 20) + 4099];

// --- helpers ---

/** Writes `pieces` into `t` honouring backpressure; resolves with everything emitted and the error, if any. */
async function pump(t: Transform, pieces: Iterable<Uint8Array>): Promise<{ out: Buffer; error: unknown }> {
  const outs: Buffer[] = [];
  let error: unknown;
  const ended = new Promise<void>((resolve) => {
    t.on('data', (d: Buffer) => outs.push(d));
    t.on('end', resolve);
    t.on('error', (e) => {
      error = e;
      resolve();
    });
  });
  for (const p of pieces) {
    if (error !== undefined || t.destroyed) break;
    if (!t.write(p))
      await new Promise<void>((resolve) => {
        t.once('drain', resolve);
        t.once('error', () => resolve());
      });
  }
  if (error === undefined && !t.destroyed) t.end();
  await ended;
  return { out: Buffer.concat(outs), error };
}

function* pieces(buf: Uint8Array, size: number): Generator<Uint8Array> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

/** Deterministic pseudo-random piece sizes from 1 to 1500 bytes. */
function* ragged(buf: Uint8Array): Generator<Uint8Array> {
  let seed = 12345;
  for (let i = 0; i < buf.length;) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const n = 1 + (seed % 1500);
    yield buf.subarray(i, i + n);
    i += n;
  }
}

async function encrypt(plain: Uint8Array, recipients: Uint8Array[]): Promise<Buffer> {
  const { out, error } = await pump(encryptStream(recipients), pieces(plain, 50000));
  if (error) throw error;
  return out;
}

async function decrypt(file: Uint8Array, identities: Uint8Array[], feed: (b: Uint8Array) => Iterable<Uint8Array> = (b) => [b]): Promise<Buffer> {
  const { out, error } = await pump(decryptStream(identities), feed(file));
  if (error) throw error;
  return out;
}

async function reasonOf(file: Uint8Array, identities: Uint8Array[]): Promise<{ reason: string; released: number }> {
  const { out, error } = await pump(decryptStream(identities), pieces(file, 7000));
  if (!(error instanceof AgeError)) throw new Error(`expected an AgeError, got ${String(error)}`);
  assert.is(error.code, 'decrypt-failed');
  return { reason: error.reason, released: out.length };
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const throwsCode = (fn: () => unknown, code: string): AirlockError => {
  try {
    fn();
  } catch (e) {
    assert.instance(e, AirlockError);
    assert.is((e as AirlockError).code, code);
    return e as AirlockError;
  }
  throw new Error(`expected AirlockError ${code}`);
};

const tmp = mkdtempSync(path.join(tmpdir(), 'airlock-age-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

// --- keys ---

test('bech32 keys round-trip and match age-keygen', () => {
  const keyFile = path.join(tmp, 'keygen.txt');
  execFileSync('age-keygen', ['-o', keyFile], { stdio: 'ignore' });
  const text = readFileSync(keyFile, 'utf8');
  const [secret] = parseIdentities(text);
  const goRecipient = execFileSync('age-keygen', ['-y', keyFile], { encoding: 'utf8' }).trim();
  assert.is(formatRecipient(recipientOf(secret!)), goRecipient);
  assert.equal(parseRecipient(goRecipient), recipientOf(secret!));
  assert.ok(text.includes(formatIdentity(secret!)));
  const g = generateIdentity();
  assert.match(g.identity, /^AGE-SECRET-KEY-1[0-9A-Z]{58}$/);
  assert.match(g.recipient, /^age1[0-9a-z]{58}$/);
  assert.equal(parseIdentities(`# comment\r\n\r\n  ${g.identity}  \r\n`), [g.secret]);
});

test('bad recipients and identity files give typed errors without key material', () => {
  const g = generateIdentity();
  throwsCode(() => parseRecipient('age1notarecipient'), 'bad-recipient');
  throwsCode(() => parseRecipient(g.recipient.toUpperCase()), 'bad-recipient');
  throwsCode(() => parseRecipient(g.recipient.slice(0, 10) + g.recipient.slice(10).toUpperCase()), 'bad-recipient');
  const flipped = g.recipient.slice(0, -1) + (g.recipient.endsWith('q') ? 'p' : 'q');
  assert.match(throwsCode(() => parseRecipient(flipped), 'bad-recipient').message, 'checksum');
  throwsCode(() => parseRecipient(g.identity), 'bad-recipient');
  throwsCode(() => parseRecipient(formatRecipient(new Uint8Array(32)).replace('age1', 'agf1')), 'bad-recipient');

  const typo = g.identity.slice(0, 20) + (g.identity[20] === 'Q' ? 'P' : 'Q') + g.identity.slice(21);
  for (const [text, line] of [
    [`# key\n\n${typo}\n`, 3],
    [`${g.identity}\n${g.identity.toLowerCase()}\n`, 2],
    [`${g.identity.slice(0, 30)}${g.identity.slice(30).toLowerCase()}\n`, 1],
    [`${g.recipient}\n`, 1],
  ] as const) {
    const e = throwsCode(() => parseIdentities(text), 'bad-identity');
    assert.match(e.message, `line ${line}`);
    assert.not.match(e.message, g.identity.slice(16, 40));
    assert.not.match(e.message, g.identity.slice(16, 40).toLowerCase());
  }
  throwsCode(() => parseIdentities('# nothing here\n'), 'bad-identity');
  assert.match(throwsCode(() => parseIdentities('age-encryption.org/v1\n-> scrypt x 18\n'), 'bad-identity').message, 'encrypted');
  throwsCode(() => encryptStream([new Uint8Array(31)]), 'bad-recipient');
  throwsCode(() => decryptStream([]), 'bad-identity');
});

// --- header ---

test('header encodes, wraps bodies at 64 columns and parses back', () => {
  const fileKey = randomBytes(16);
  const stanzas = [
    wrapX25519(fileKey, recipientOf(generateIdentity().secret)),
    { type: 'grease-x', args: ['a', '!~'], body: randomBytes(48) }, // exactly 64 columns: needs an empty final line
    { type: 'empty', args: [], body: Buffer.alloc(0) },
    { type: 'long', args: [], body: randomBytes(100) },
  ];
  const h = encodeHeader(stanzas, fileKey);
  const text = h.toString('latin1');
  assert.ok(text.includes(`\n${stanzas[1]!.body.toString('base64')}\n\n-> empty\n\n-> long\n`));
  const parsed = parseHeader(Buffer.concat([h, randomBytes(20)]))!;
  assert.is(parsed.length, h.length);
  assert.equal(parsed.stanzas, stanzas);
  assert.is(parsed.stanzas.filter((s) => s.type === 'X25519').length, 1);
  for (let i = 0; i < h.length; i++) assert.is(parseHeader(h.subarray(0, i)), undefined, `prefix ${i}`);
});

test('header limits and early rejection of non-age input', () => {
  const fileKey = randomBytes(16);
  const many = Array.from({ length: MAX_STANZAS + 1 }, () => ({ type: 'x', args: [], body: Buffer.alloc(1) }));
  assert.throws(
    () => parseHeader(encodeHeader(many, fileKey)),
    (e: unknown) => e instanceof AgeError && e.reason === 'header',
  );
  assert.ok(parseHeader(encodeHeader(many.slice(1), fileKey)));
  assert.throws(
    () => parseHeader(Buffer.from('PK\x03\x04')),
    (e: unknown) => e instanceof AgeError && e.reason === 'header',
  );
  const huge = Buffer.concat([Buffer.from('age-encryption.org/v1\n-> x\n'), Buffer.alloc(70000, 'A')]);
  assert.throws(
    () => parseHeader(huge),
    (e: unknown) => e instanceof AgeError && e.reason === 'header',
  );
});

test('unknown stanzas are skipped and the X25519 one still unwraps', async () => {
  const id = generateIdentity();
  const fileKey = randomBytes(16);
  const plain = randomBytes(70_000);
  const file = (await pump(encryptStream([parseRecipient(id.recipient)], { fileKey, nonce: randomBytes(16) }), [plain])).out;
  const header = parseHeader(file)!;
  const grease = [
    { type: 'x25519', args: ['lowercase-is-another-type'], body: randomBytes(32) },
    { type: 'ssh-ed25519', args: ['abc', 'def'], body: randomBytes(80) },
  ];
  const rebuilt = Buffer.concat([encodeHeader([...grease, ...header.stanzas], fileKey), file.subarray(header.length)]);
  assert.ok((await decrypt(rebuilt, [id.secret])).equals(plain));
  const onlyGrease = Buffer.concat([encodeHeader(grease, fileKey), file.subarray(header.length)]);
  assert.is((await reasonOf(onlyGrease, [id.secret])).reason, 'no-match');
});

// --- C2SP vectors ---

const EXPECT: Record<string, string> = {
  success: 'ok',
  'no match': 'no-match',
  'HMAC failure': 'hmac',
  'header failure': 'header',
  'payload failure': 'payload',
};

test('C2SP age test vectors (cctv-age)', async () => {
  let run = 0;
  const skipped: string[] = [];
  const dummy = generateIdentity().secret; // for vectors without an identity line
  for (const [name, raw] of Object.entries(vectors as Record<string, Uint8Array>)) {
    const buf = Buffer.from(raw);
    const split = buf.indexOf('\n\n');
    const meta = new Map<string, string[]>();
    for (const line of buf.toString('latin1', 0, split).split('\n')) {
      const i = line.indexOf(': ');
      meta.set(line.slice(0, i), [...(meta.get(line.slice(0, i)) ?? []), line.slice(i + 2)]);
    }
    const ids = meta.get('identity') ?? [];
    const expect = EXPECT[meta.get('expect')?.[0] ?? ''];
    if (meta.has('armored') || meta.has('passphrase') || expect === undefined || ids.some((id) => !id.startsWith('AGE-SECRET-KEY-1'))) {
      skipped.push(name);
      continue;
    }
    let file = buf.subarray(split + 2);
    if (meta.get('compressed')?.[0] === 'zlib') file = inflateSync(file);
    const identities = ids.length > 0 ? ids.map((id) => parseIdentities(id)[0]!) : [dummy];
    const feeds: [string, (b: Uint8Array) => Iterable<Uint8Array>][] = [
      ['whole', (b) => [b]],
      ['ragged', ragged],
    ];
    if (file.length < 10_000) feeds.push(['bytewise', (b) => pieces(b, 1)]);
    for (const [how, feed] of feeds) {
      const { out, error } = await pump(decryptStream(identities), feed(file));
      const got = error === undefined ? 'ok' : error instanceof AgeError ? error.reason : `unexpected ${inspect(error)}`;
      assert.is(got, expect, `${name} (${how}): ${error instanceof Error ? error.message : ''}`);
      const payload = meta.get('payload')?.[0];
      if (payload !== undefined) assert.is(sha256(out), payload, `${name} (${how}): released plaintext`);
      else assert.is(out.length, 0, `${name} (${how}): nothing released`);
    }
    run++;
  }
  console.log(`  cctv-age: ${run} vectors run (whole, ragged, bytewise under 10 KB), ${skipped.length} skipped (armor, scrypt, hybrid)`);
  assert.ok(run >= 60, `only ${run} vectors run`);
});

// --- interop ---

test('interop with the Go age binaries, both directions', async () => {
  const a = generateIdentity();
  const b = generateIdentity();
  const keyA = path.join(tmp, 'a.key');
  const keyB = path.join(tmp, 'b.key');
  writeFileSync(keyA, `# a\n${a.identity}\n`);
  writeFileSync(keyB, `${b.identity}\n`);
  for (const size of SIZES) {
    const plain = randomBytes(size);
    const ours = await encrypt(plain, [parseRecipient(a.recipient), parseRecipient(b.recipient)]);
    for (const key of [keyA, keyB]) {
      const back = execFileSync('age', ['-d', '-i', key], { input: ours, maxBuffer: 1 << 26 });
      assert.ok(back.equals(plain), `go age decrypts ours (${size} bytes)`);
    }
    const theirs = execFileSync('age', ['-r', a.recipient, '-r', b.recipient], { input: plain, maxBuffer: 1 << 26 });
    assert.ok((await decrypt(theirs, [a.secret], ragged)).equals(plain), `we decrypt go age (${size} bytes)`);
    assert.ok((await decrypt(theirs, [generateIdentity().secret, b.secret])).equals(plain));
  }
});

test('interop with the age-encryption npm package, both directions', async () => {
  const a = generateIdentity();
  for (const size of SIZES) {
    const plain = randomBytes(size);
    const d = new ageJs.Decrypter();
    d.addIdentity(a.identity);
    const ours = await encrypt(plain, [parseRecipient(a.recipient)]);
    assert.ok(Buffer.from(await d.decrypt(ours, 'uint8array')).equals(plain), `age-encryption decrypts ours (${size} bytes)`);
    const e = new ageJs.Encrypter();
    e.addRecipient(a.recipient);
    const theirs = await e.encrypt(plain);
    assert.ok((await decrypt(theirs, [a.secret], (x) => pieces(x, 65537))).equals(plain), `we decrypt age-encryption (${size} bytes)`);
  }
  const jsIdentity = await ageJs.generateIdentity();
  const e = new ageJs.Encrypter();
  e.addRecipient(await ageJs.identityToRecipient(jsIdentity));
  assert.equal(parseRecipient(await ageJs.identityToRecipient(jsIdentity)), recipientOf(parseIdentities(jsIdentity)[0]!));
});

// --- STREAM edges and negatives ---

test('sizes, determinism and no empty final chunk on chunk multiples', async () => {
  const id = generateIdentity();
  const r = parseRecipient(id.recipient);
  for (const size of SIZES) {
    const plain = randomBytes(size);
    const file = await encrypt(plain, [r]);
    const headerLen = parseHeader(file)!.length;
    assert.is(file.length - headerLen, payloadSize(size), `payload size for ${size}`);
    for (const feed of [(b: Uint8Array) => [b], ragged, (b: Uint8Array) => pieces(b, SEALED)]) {
      assert.ok((await decrypt(file, [id.secret], feed)).equals(plain));
    }
    // Byte-sized plaintext writes go through the same hold-back logic.
    if (size <= CHUNK_SIZE + 1) {
      const { out } = await pump(encryptStream([r]), pieces(plain, 997));
      assert.ok((await decrypt(out, [id.secret])).equals(plain));
    }
  }
  const fileKey = randomBytes(16);
  const nonce = randomBytes(16);
  const plain = randomBytes(100_000);
  const one = (await pump(encryptStream([r], { fileKey, nonce }), [plain])).out;
  const two = (await pump(encryptStream([r], { fileKey, nonce }), pieces(plain, 333))).out;
  assert.ok(one.subarray(parseHeader(one)!.length).equals(two.subarray(parseHeader(two)!.length)));
});

test('truncation, flipped bytes, trailing data and wrong keys fail with the right reason', async () => {
  const id = generateIdentity();
  const plain = randomBytes(3 * CHUNK_SIZE + 10);
  const file = await encrypt(plain, [parseRecipient(id.recipient)]);
  const start = parseHeader(file)!.length + 16;
  assert.is(file.length, start + 3 * SEALED + 26);

  for (const chunks of [0, 1, 2, 3]) {
    const cut = await reasonOf(file.subarray(0, start + chunks * SEALED), [id.secret]);
    assert.equal(cut, { reason: 'payload', released: chunks * CHUNK_SIZE }, `cut after ${chunks} chunks`);
  }
  assert.is((await reasonOf(file.subarray(0, file.length - 1), [id.secret])).reason, 'payload');
  assert.is((await reasonOf(file.subarray(0, start - 3), [id.secret])).reason, 'header');
  assert.is((await reasonOf(file.subarray(0, 30), [id.secret])).reason, 'header');

  for (const [chunk, at] of [
    [0, 100],
    [1, SEALED - 1],
    [3, 5],
  ] as const) {
    const bad = Buffer.from(file);
    bad[start + chunk * SEALED + at]! ^= 0x01;
    assert.equal(await reasonOf(bad, [id.secret]), { reason: 'payload', released: chunk * CHUNK_SIZE }, `flip in chunk ${chunk}`);
  }
  for (const extra of [1, 16, 100_000]) {
    const r = await reasonOf(Buffer.concat([file, randomBytes(extra)]), [id.secret]);
    assert.is(r.reason, 'payload', `${extra} trailing bytes`);
  }
  // A full final chunk followed by trailing bytes: it authenticated, so it is released, then the stream fails.
  const full = await encrypt(randomBytes(2 * CHUNK_SIZE), [parseRecipient(id.recipient)]);
  assert.equal(await reasonOf(Buffer.concat([full, Buffer.from('x')]), [id.secret]), { reason: 'payload', released: 2 * CHUNK_SIZE });

  assert.is((await reasonOf(file, [generateIdentity().secret])).reason, 'no-match');
  const mac = Buffer.from(file);
  const macAt = file.indexOf('\n--- ') + 5;
  mac[macAt] = mac[macAt] === 0x41 ? 0x42 : 0x41;
  assert.is((await reasonOf(mac, [id.secret])).reason, 'hmac');
  assert.is((await reasonOf(Buffer.from('not an age file at all\n'), [id.secret])).reason, 'header');
  assert.is((await reasonOf(Buffer.alloc(0), [id.secret])).reason, 'header');
});

test.run();
