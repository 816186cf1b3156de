/*
 * Fuzzing what the verifier reads of OpenSSH formats: the armored SSHSIG signature (SHA256SUMS.sig
 * on the medium), allowed_signers, and public key lines. Signatures are made with the project's
 * own signer, then damaged in the armor and, decoded, field by field in the wire format (lengths,
 * strings, the version, the hash name, the signature blob) and armored again, so that the damage
 * reaches the parser behind the base64. A sample is also judged by the stock `ssh-keygen -Y
 * check-novalidate`, which must agree: auditors check the same files with it. Parsers may only
 * throw their typed codes; a signature verifies only as the signer made it; time is linear.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { isAllowed, parseAllowedSigners, principalsFor, type AllowedSigner } from '../../manifests/allowed-signers.js';
import {
  decodeBase64Strict,
  formatPrivateKey,
  formatPublicKeyLine,
  parsePrivateKey,
  parsePublicKeyLine,
  publicKeyBlob,
  wrap70,
  type SigningKey,
} from '../../manifests/sshkey.js';
import { BUNDLE_NAMESPACE, SIG_LIMIT, parseSignature, sign, verify } from '../../manifests/sshsig.js';
import { tmp } from '../helpers.js';
import { ascii, assertLinear, check, embedded, fc, mutate, mutations, typedOnly } from './fuzz.js';

const MESSAGE = Buffer.from(`${'a'.repeat(64)}  payload.000\n`);
const dir = tmp('airlock-fuzz-ssh-');

const keyOf = (seed: Uint8Array): SigningKey => parsePrivateKey(formatPrivateKey(seed, 'fuzz'));
const seed = fc.uint8Array({ minLength: 32, maxLength: 32 });
const namespace = fc.oneof(fc.constant(BUNDLE_NAMESPACE), fc.constantFrom('file', 'a', 'airlock-bundle\u0000'), fc.string({ minLength: 1, maxLength: 20 }));

/** Offsets of each field of an SSHSIG blob (and inside its key and signature blobs). */
function wireFields(blob: Buffer): number[] {
  const out = [0, 6];
  let at = 10;
  for (let i = 0; i < 5 && at + 4 <= blob.length; i++) {
    out.push(at, at + 4);
    const n = blob.readUInt32BE(at);
    if (i === 0 || i === 4) {
      // the key blob and the signature blob are themselves strings of strings
      for (let inner = at + 4; inner + 4 <= at + 4 + n && inner + 4 <= blob.length; inner += 4 + blob.readUInt32BE(inner)) out.push(inner, inner + 4);
    }
    at += 4 + n;
  }
  out.push(blob.length);
  return out;
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const WIRE_TOKENS = [
  u32(0),
  u32(1),
  u32(2),
  u32(32),
  u32(64),
  u32(0xffffffff),
  u32(0x7fffffff),
  ...ascii('SSHSIG', 'sha256', 'sha512', 'sha1', 'ssh-ed25519', 'ssh-rsa', '\u0000', 'sha512\u0000', 'ssh-ed25519\u0000'),
];
const ARMOR_TOKENS = ascii(
  '-----BEGIN SSH SIGNATURE-----\n',
  '-----END SSH SIGNATURE-----\n',
  '-----END SSH SIGNATURE-----',
  '\r\n',
  '\n',
  ' ',
  '=',
  '==',
  '===',
  'A',
  '\u0000',
  '\u00e9',
  '*',
);

function armor(blob: Buffer): string {
  return `-----BEGIN SSH SIGNATURE-----\n${wrap70(blob.toString('base64'))}-----END SSH SIGNATURE-----\n`;
}

const signature = fc.record({
  seed,
  ns: namespace,
  ms: mutations(3),
  level: fc.constantFrom('armor', 'wire', 'both'),
  verifyNs: fc.oneof(fc.constant(undefined), namespace),
});

/** A signature made by `s.seed`, damaged as `s` says. */
function damaged(s: { seed: Uint8Array; ns: string; ms: Parameters<typeof mutate>[1]; level: string }): { text: string; key: SigningKey } {
  const key = keyOf(s.seed);
  const good = sign(key, MESSAGE, s.ns);
  let text = good;
  if (s.level !== 'armor') {
    const blob = decodeBase64Strict(good.split('\n').slice(1, -2).join('')) as Buffer;
    text = armor(mutate(blob, s.ms, { fields: wireFields(blob), tokens: WIRE_TOKENS }));
  }
  if (s.level !== 'wire')
    text = mutate(Buffer.from(text, 'latin1'), s.ms, { fields: [0, 29, 30, 99, text.length - 29, text.length], tokens: ARMOR_TOKENS }).toString('latin1');
  return { text, key };
}

test("damaged signatures: parse and verify throw only malformed or bad-signature; what verifies is the signer's", () => {
  check(signature, 200, (s) => {
    const { text, key } = damaged(s);
    typedOnly(['malformed', 'bad-signature'], () => parseSignature(text));
    const ns = s.verifyNs ?? s.ns;
    let got: { publicKey: Uint8Array } | undefined;
    typedOnly(['malformed', 'bad-signature'], () => {
      got = verify(text, MESSAGE, ns);
    });
    if (got !== undefined) {
      // Only the key that signed can have made a signature that verifies, and only in its namespace.
      assert.equal(Buffer.from(got.publicKey), Buffer.from(key.publicKey));
      assert.is(
        Buffer.from(ns).equals(Buffer.from(s.ns)) ||
          Buffer.from(`${ns}\u0000`).equals(Buffer.from(s.ns)) ||
          Buffer.from(ns).equals(Buffer.from(`${s.ns}\u0000`)),
        true,
        `verified in namespace ${JSON.stringify(ns)}, signed in ${JSON.stringify(s.ns)}`,
      );
    }
  });
});

test('damaged signatures: airlock and ssh-keygen -Y check-novalidate agree on every one', () => {
  const sigFile = path.join(dir, 'check.sig');
  check(signature, 30, (s) => {
    const { text } = damaged({ ...s, ns: BUNDLE_NAMESPACE });
    writeFileSync(sigFile, text, 'latin1');
    const r = spawnSync('ssh-keygen', ['-Y', 'check-novalidate', '-n', BUNDLE_NAMESPACE, '-s', sigFile], { input: MESSAGE });
    const theirs = r.status === 0;
    let ours = false;
    typedOnly(['malformed', 'bad-signature'], () => {
      verify(text, MESSAGE, BUNDLE_NAMESPACE);
      ours = true;
    });
    assert.is(ours, theirs, `airlock ${ours ? 'accepts' : 'refuses'}, ssh-keygen ${theirs ? 'accepts' : 'refuses'}: ${JSON.stringify(text)}`);
  });
});

// Found by the property above (FUZZ_SEED=7, path "736"): ssh-keygen takes the armored body as a C
// string that may end in one NUL (sshbuf_dup_string), so it accepts a NUL as the body's last byte,
// while airlock refused every NUL: an auditor's stock check passed where airlock-verify failed.
test('vector: a NUL in the armor is accepted exactly where ssh-keygen accepts it', () => {
  const key = keyOf(new Uint8Array(32).fill(5));
  const [begin = '', ...rest] = sign(key, MESSAGE, BUNDLE_NAMESPACE).split('\n');
  const body = rest.slice(0, -2).join('\n');
  const end = '\n-----END SSH SIGNATURE-----\n';
  const cases: [string, string, boolean][] = [
    ['one NUL ending the body', `${begin}\n${body}\u0000${end}`, true],
    ['one NUL on its own last line', `${begin}\n${body}\n\u0000${end}`, true],
    ['two NULs ending the body', `${begin}\n${body}\u0000\u0000${end}`, false],
    ['a NUL inside the base64', `${begin}\n${body.slice(0, 20)}\u0000${body.slice(20)}${end}`, false],
    ['a NUL ending the first line', `${begin}\n${body.replace('\n', '\u0000\n')}${end}`, false],
    ['a NUL then more base64', `${begin}\n${body}\u0000AAAA${end}`, false],
  ];
  const sigFile = path.join(dir, 'nul.sig');
  for (const [what, text, accepted] of cases) {
    writeFileSync(sigFile, text, 'latin1');
    assert.is(
      spawnSync('ssh-keygen', ['-Y', 'check-novalidate', '-n', BUNDLE_NAMESPACE, '-s', sigFile], { input: MESSAGE }).status === 0,
      accepted,
      `ssh-keygen: ${what}`,
    );
    const e = typedOnly(['malformed'], () => verify(text, MESSAGE, BUNDLE_NAMESPACE));
    assert.is(e === undefined, accepted, `airlock: ${what}: ${e?.message ?? 'accepted'}`);
  }
});

test('signatures: the same answer inside a larger string; over 16 KiB is refused unread', () => {
  check(signature, 100, (s) => {
    const { text } = damaged(s);
    const a = typedOnly(['malformed', 'bad-signature'], () => parseSignature(text));
    // a string has no view to read past; the filler after a parse that stopped early must not matter
    const b = typedOnly(['malformed', 'bad-signature'], () => parseSignature(embedded(Buffer.from(text, 'latin1')).toString('latin1')));
    assert.is(b?.message, a?.message);
  });
  const big = `-----BEGIN SSH SIGNATURE-----\n${'A'.repeat(SIG_LIMIT)}\n-----END SSH SIGNATURE-----\n`;
  assert.match(typedOnly(['malformed'], () => parseSignature(big))?.message ?? '', 'larger than 16 KiB');
});

// ---- allowed_signers ----

const principal = fc.oneof(fc.constantFrom('site-a', '*', 'site-?', '!site-b', '*a*b*c*', ''), fc.stringMatching(/^[a-z0-9.*?!-]{1,12}$/));
const time = (from: number, to: number) =>
  fc
    .tuple(fc.integer({ min: from, max: to }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 31 }), fc.constantFrom('', '0000', '235959', '1200'))
    .map(([y, m, d, t]) => `${y}${String(m).padStart(2, '0')}${String(d).padStart(2, '0')}${t}`);
const option = fc.oneof(
  fc.constant('cert-authority'),
  fc.array(fc.constantFrom('airlock-bundle', 'file', '*', 'a\\"b', '!x'), { minLength: 1, maxLength: 3 }).map((ns) => `namespaces="${ns.join(',')}"`),
  // valid-before later than any valid-after, so that a whole file is valid
  fc.tuple(time(1971, 2100), fc.constantFrom('', 'Z', 'UTC', 'z')).map(([t, z]) => `valid-after="${t}${z}"`),
  fc.tuple(time(2101, 2200), fc.constantFrom('', 'Z', 'UTC')).map(([t, z]) => `VALID-BEFORE="${t}${z}"`),
);
const signerLine = fc.record({
  principals: fc.array(principal, { minLength: 1, maxLength: 4 }),
  quoted: fc.boolean(),
  options: fc.uniqueArray(option, { maxLength: 3, selector: (o) => o.split('=')[0]?.toLowerCase() }),
  seed,
  type: fc.constantFrom('ssh-ed25519', 'ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256'),
  comment: fc.constantFrom('', ' comment', ' a b c', '\r'),
  blank: fc.constantFrom('', '#', '# comment', '   '),
});

type SignerLine = typeof signerLine extends fc.Arbitrary<infer T> ? T : never;

function allowedSignersText(lines: readonly SignerLine[]): string {
  return lines
    .map((l) => {
      // unquoted, an empty list would leave the key type in the principals' place
      const principals = l.quoted || l.principals.join(',') === '' ? `"${l.principals.join(', ')}"` : l.principals.join(',');
      const key =
        l.type === 'ssh-ed25519'
          ? formatPublicKeyLine(keyOf(l.seed).publicKey, '')
          : `${l.type} ${Buffer.from(`\u0000\u0000\u0000\u0007${l.type}`).toString('base64')}`;
      const opts = l.options.length > 0 ? `${l.options.join(',')} ` : '';
      return `${l.blank}\n${principals} ${opts}${key}${l.comment}`;
    })
    .join('\n');
}

const SIGNER_TOKENS = ascii(
  '"',
  ',',
  ' ',
  '\t',
  '\n',
  '\r',
  '#',
  '=',
  '""',
  'cert-authority,',
  'namespaces=',
  'namespaces="',
  'valid-after="19700101"',
  'valid-before="99991231"',
  'ssh-ed25519 ',
  'AAAA',
  '\\"',
  '*',
  '!',
  '?',
  '\u0000',
  '\u00e9',
);

function lineStarts(text: Buffer): number[] {
  const out = [0];
  for (let i = text.indexOf(0x0a); i >= 0; i = text.indexOf(0x0a, i + 1)) out.push(i, i + 1);
  for (let i = text.indexOf(0x22); i >= 0; i = text.indexOf(0x22, i + 1)) out.push(i, i + 1);
  return out;
}

test('damaged allowed_signers: only bad-allowed-signers; what parses can be matched against without throwing', () => {
  check(
    fc.record({
      lines: fc.array(signerLine, { minLength: 1, maxLength: 4 }),
      ms: mutations(3),
      key: seed,
      who: principal,
      ns: namespace,
      now: fc.date({ min: new Date(0), max: new Date('2300-01-01'), noInvalidDate: true }),
    }),
    200,
    ({ lines, ms, key, who, ns, now }) => {
      const valid = Buffer.from(allowedSignersText(lines));
      const text = mutate(valid, ms, { fields: lineStarts(valid), tokens: SIGNER_TOKENS }).toString('utf8');
      let signers: AllowedSigner[] | undefined;
      typedOnly(['bad-allowed-signers'], () => {
        signers = parseAllowedSigners(text);
      });
      if (signers === undefined) return;
      for (const s of signers) assert.is(s.publicKey.length, 32);
      const pk = signers[0]?.publicKey ?? keyOf(key).publicKey;
      const principals = principalsFor(signers, pk, ns, now);
      for (const p of principals) assert.ok(!p.startsWith('!') && p !== '', p);
      isAllowed(signers, who, pk, ns, now);
    },
  );
});

test('allowed_signers, damaged or not: when airlock reads the file, it and ssh-keygen -Y verify agree on who may sign', () => {
  const allowedFile = path.join(dir, 'allowed_signers');
  const sigFile = path.join(dir, 'verify.sig');
  const utcOnly = signerLine.map((l) => ({ ...l, options: l.options.map((o) => o.replace(/"(\d+)(|UTC|z)"$/, '"$1Z"')) }));
  check(
    fc.record({
      lines: fc.array(utcOnly, { minLength: 1, maxLength: 3 }),
      ms: fc.option(mutations(2), { nil: undefined }),
      who: fc.constantFrom('site-a', 'site-b', 'x', 'a,b'),
      line: fc.nat(),
      ns: fc.constantFrom(BUNDLE_NAMESPACE, 'file'),
    }),
    30,
    ({ lines, ms, who, line, ns }) => {
      const valid = Buffer.from(allowedSignersText(lines));
      const text = ms === undefined ? valid.toString('utf8') : mutate(valid, ms, { fields: lineStarts(valid), tokens: SIGNER_TOKENS }).toString('utf8');
      let signers: AllowedSigner[] | undefined;
      typedOnly(['bad-allowed-signers'], () => {
        signers = parseAllowedSigners(text);
      });
      if (signers === undefined) return;
      // signed by the key of one of the lines (or another key), in `ns`
      const signer = keyOf((lines[line % lines.length] as SignerLine).seed);
      writeFileSync(allowedFile, text);
      writeFileSync(sigFile, sign(signer, MESSAGE, ns));
      const r = spawnSync('ssh-keygen', ['-Y', 'verify', '-f', allowedFile, '-I', who, '-n', ns, '-s', sigFile], { input: MESSAGE });
      const ours = isAllowed(signers, who, signer.publicKey, ns, new Date());
      assert.is(
        ours,
        r.status === 0,
        `airlock ${ours ? 'allows' : 'refuses'} ${who} in ${ns}, ssh-keygen ${r.status === 0 ? 'allows' : 'refuses'}: ${JSON.stringify(text)} ${r.stderr.toString()}`,
      );
    },
  );
});

test('allowed_signers made whole parse, and match the principals they list', () => {
  check(fc.array(signerLine, { minLength: 1, maxLength: 4 }), 150, (lines) => {
    const signers = parseAllowedSigners(allowedSignersText(lines));
    assert.is(signers.length, lines.filter((l) => l.type === 'ssh-ed25519').length);
  });
});

test('public key lines damaged: only bad-key', () => {
  check(fc.record({ seed, comment: fc.string({ maxLength: 20 }), ms: mutations(3) }), 200, ({ seed: s, comment, ms }) => {
    const line = Buffer.from(formatPublicKeyLine(keyOf(s).publicKey, comment.replace(/[\r\n]/g, '')));
    const blobAt = line.indexOf(' ') + 1;
    typedOnly(['bad-key'], () =>
      parsePublicKeyLine(
        mutate(line, ms, {
          fields: [0, blobAt - 1, blobAt, blobAt + 4, line.length],
          tokens: ascii('ssh-ed25519', ' ', '\t', '\r\n', 'AAAA', '=', '\u0000'),
        }).toString('utf8'),
      ),
    );
  });
});

test('time is linear: signers, principals per line, pattern length, armored size', async () => {
  const pk = keyOf(new Uint8Array(32).fill(3)).publicKey;
  const keyText = formatPublicKeyLine(pk, '');
  const lines = (n: number) => Array.from({ length: n }, (_, i) => `p${i},*x${i}* namespaces="airlock-*",valid-after="20200101Z" ${keyText} c`).join('\n');
  await assertLinear('allowed_signers lines', lines, (t: string) => parseAllowedSigners(t), 200);
  const many = (n: number) => parseAllowedSigners(`${Array.from({ length: n }, (_, i) => `*a*b${i}`).join(',')} ${keyText}\n`);
  await assertLinear('principals on one line', many, (s: AllowedSigner[]) => isAllowed(s, 'a'.repeat(200), pk, BUNDLE_NAMESPACE, new Date()), 500);
  // the worst case of glob matching: a pattern of stars that almost matches, against a long name
  const stars = parseAllowedSigners(`${'*a'.repeat(500)}b ${keyText}\n`);
  await assertLinear(
    'a name against a star pattern',
    (n: number) => 'a'.repeat(n),
    (name: string) => isAllowed(stars, name, pk, BUNDLE_NAMESPACE, new Date()),
    5000,
  );
  const blob = publicKeyBlob(pk);
  const armored = (n: number) =>
    `-----BEGIN SSH SIGNATURE-----\n${wrap70(Buffer.concat([Buffer.from('SSHSIG'), Buffer.alloc(4), Buffer.alloc(n * 100, 0x41), blob]).toString('base64'))}-----END SSH SIGNATURE-----\n`;
  await assertLinear('armored size', armored, (t: string) => typedOnly(['malformed', 'bad-signature'], () => parseSignature(t)), 10);
});

test.run();
