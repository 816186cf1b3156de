// SSHSIG signing and verification, OpenSSH keys and allowed_signers, checked against the stock
// ssh-keygen: whatever it accepts we must accept, whatever it refuses we must refuse.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AirlockError } from '../../manifests/errors.js';
import {
  fingerprint,
  formatPrivateKey,
  formatPublicKeyLine,
  generateSigningKey,
  parsePrivateKey,
  parsePublicKeyLine,
  publicKeyBlob,
  sshString,
  u32,
  wrap70,
} from '../../manifests/sshkey.js';
import { BUNDLE_NAMESPACE, parseSignature, sign, verify } from '../../manifests/sshsig.js';
import { isAllowed, parseAllowedSigners, principalsFor } from '../../manifests/allowed-signers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'airlock-sshsig-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const MESSAGE = Buffer.from('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  payload.000\n');
const NOW = new Date();

function file(name: string, content: string | Uint8Array, mode = 0o644): string {
  const p = path.join(dir, name);
  writeFileSync(p, content, { mode });
  return p;
}

function sshKeygen(args: string[], input?: Uint8Array): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('ssh-keygen', args, { input: input ?? Buffer.alloc(0), cwd: dir });
  // ssh-keygen may reject a signature before it reads the message: the write then fails with EPIPE
  if (r.error && !((r.error as NodeJS.ErrnoException).code === 'EPIPE' && r.status !== null)) throw r.error;
  return { status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** Makes a key with ssh-keygen and returns the path of the private key. */
function keygen(name: string, extra: string[]): string {
  const p = path.join(dir, name);
  const r = sshKeygen(['-q', '-f', p, ...extra]);
  assert.is(r.status, 0, r.stderr);
  return p;
}

/** ssh-keygen -Y verify with an allowed_signers file; true when it exits 0. */
function sshVerify(allowed: string, principal: string, namespace: string, signature: string, message: Uint8Array): boolean {
  const a = file('allowed_signers.tmp', allowed);
  const s = file('check.sig', signature);
  return sshKeygen(['-Y', 'verify', '-f', a, '-I', principal, '-n', namespace, '-s', s], message).status === 0;
}

function sshCheckNoValidate(namespace: string, signature: string, message: Uint8Array): boolean {
  const s = file('check.sig', signature);
  return sshKeygen(['-Y', 'check-novalidate', '-n', namespace, '-s', s], message).status === 0;
}

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof AirlockError) return e.code;
    throw e;
  }
  return 'ok';
}

function errorOf(f: () => unknown): AirlockError {
  try {
    f();
  } catch (e) {
    if (e instanceof AirlockError) return e;
    throw e;
  }
  throw new Error('expected an AirlockError');
}

const ours = generateSigningKey('airlock@site-a');
const oursPath = file('ours', ours.privateKeyText, 0o600);
const oursKey = parsePrivateKey(ours.privateKeyText);
const theirsPath = keygen('theirs', ['-t', 'ed25519', '-N', '', '-C', 'made by ssh-keygen']);
const theirsKey = parsePrivateKey(readFileSync(theirsPath, 'utf8'));
const oursAllowed = `site-a ${ours.publicKeyLine}\n`;
const rsaPath = keygen('rsa', ['-t', 'rsa', '-b', '2048', '-N', '']);

// ---- keys ----

test('a generated key is accepted by ssh-keygen -y, -l and -Y sign', () => {
  const y = sshKeygen(['-y', '-f', oursPath]);
  assert.is(y.status, 0, y.stderr);
  assert.equal(parsePublicKeyLine(y.stdout).publicKey, ours.publicKey);
  assert.is(y.stdout.trim(), ours.publicKeyLine);

  const l = sshKeygen(['-l', '-f', oursPath]);
  assert.is(l.status, 0, l.stderr);
  assert.is(l.stdout.split(' ')[1], fingerprint(ours.publicKey));
  assert.match(l.stdout, 'airlock@site-a (ED25519)');

  const s = sshKeygen(['-Y', 'sign', '-f', oursPath, '-n', BUNDLE_NAMESPACE], MESSAGE);
  assert.is(s.status, 0, s.stderr);
  assert.equal(verify(s.stdout, MESSAGE, BUNDLE_NAMESPACE).publicKey, ours.publicKey);
  // Ed25519 is deterministic, so ssh-keygen and we must write the very same file.
  assert.is(sign(oursKey, MESSAGE, BUNDLE_NAMESPACE), s.stdout);
});

test('a key made by ssh-keygen parses, matches its .pub and signs', () => {
  const pub = parsePublicKeyLine(readFileSync(`${theirsPath}.pub`, 'utf8'));
  assert.equal(theirsKey.publicKey, pub.publicKey);
  assert.is(theirsKey.comment, 'made by ssh-keygen');
  assert.is(pub.comment, 'made by ssh-keygen');
  const s = sshKeygen(['-Y', 'sign', '-f', theirsPath, '-n', BUNDLE_NAMESPACE], MESSAGE);
  assert.is(s.status, 0, s.stderr);
  assert.is(sign(theirsKey, MESSAGE, BUNDLE_NAMESPACE), s.stdout);
});

test('formatPrivateKey lays out bytes as ssh-keygen does, except the random check-int', () => {
  const text = readFileSync(theirsPath, 'utf8');
  const theirs = Buffer.from(text.split('\n').slice(1, -2).join(''), 'base64');
  const seed = Buffer.from(theirsKey.privateKey.export({ format: 'der', type: 'pkcs8' })).subarray(-32);
  const mine = formatPrivateKey(seed, theirsKey.comment);
  const mineBytes = Buffer.from(mine.split('\n').slice(1, -2).join(''), 'base64');
  // magic 15 + "none" 8 + "none" 8 + kdfoptions 4 + N 4 + public blob 4+51 + section length 4
  const checkAt = 98;
  assert.ok(mineBytes.readUInt32BE(checkAt) === mineBytes.readUInt32BE(checkAt + 4));
  theirs.copy(mineBytes, checkAt, checkAt, checkAt + 8);
  assert.equal(mineBytes, theirs);
  const lines = mine.split('\n');
  assert.ok(lines.slice(1, -3).every((l) => l.length === 70));
  assert.is(lines.length, text.split('\n').length);
  // and it round-trips, padding included, for comments of every length modulo the block size
  for (const comment of ['', 'a', 'ab', 'abc', 'abcd', 'abcde', 'abcdef', 'abcdefg', 'é']) {
    const k = parsePrivateKey(formatPrivateKey(seed, comment));
    assert.is(k.comment, comment);
    assert.equal(k.publicKey, theirsKey.publicKey);
  }
});

test('a passphrase-protected key is refused with a passphrase message', () => {
  const p = keygen('secret', ['-t', 'ed25519', '-N', 'secret']);
  const e = errorOf(() => parsePrivateKey(readFileSync(p, 'utf8')));
  assert.is(e.code, 'bad-key');
  assert.is(e.message, 'signing key is protected by a passphrase');
  assert.ok(e.hint?.includes('ssh-keygen -p'));
  assert.not.match(`${e.message} ${e.hint ?? ''}`, 'secret ');
});

test('rsa keys are refused, naming the type', () => {
  const e = errorOf(() => parsePrivateKey(readFileSync(rsaPath, 'utf8')));
  assert.is(e.code, 'bad-key');
  assert.match(e.message, 'ssh-rsa');
  const pem = keygen('rsa-pem', ['-t', 'rsa', '-b', '2048', '-N', '', '-m', 'PEM']);
  const e2 = errorOf(() => parsePrivateKey(readFileSync(pem, 'utf8')));
  assert.is(e2.code, 'bad-key');
  assert.match(e2.message, 'RSA PRIVATE KEY');
  const e3 = errorOf(() => parsePublicKeyLine(readFileSync(`${rsaPath}.pub`, 'utf8')));
  assert.is(e3.code, 'bad-key');
  assert.match(e3.message, 'ssh-rsa');
});

test('damaged private keys are refused', () => {
  const blob = Buffer.from(ours.privateKeyText.split('\n').slice(1, -2).join(''), 'base64');
  const armor = (b: Buffer) => `-----BEGIN OPENSSH PRIVATE KEY-----\n${wrap70(b.toString('base64'))}-----END OPENSSH PRIVATE KEY-----\n`;
  const checkInt = Buffer.from(blob);
  checkInt[98] = (checkInt[98] as number) ^ 1;
  assert.match(errorOf(() => parsePrivateKey(armor(checkInt))).message, 'check-ints differ');
  const outerKey = Buffer.from(blob);
  outerKey[70] = (outerKey[70] as number) ^ 1; // inside the outer public key
  assert.match(errorOf(() => parsePrivateKey(armor(outerKey))).message, 'embedded public keys differ');
  const seed = Buffer.from(blob);
  seed[170] = (seed[170] as number) ^ 1; // inside the seed
  assert.match(errorOf(() => parsePrivateKey(armor(seed))).message, 'does not belong');
  assert.is(
    codeOf(() => parsePrivateKey(ours.privateKeyText.slice(0, 200))),
    'bad-key',
  );
  assert.is(
    codeOf(() => parsePrivateKey(ours.publicKeyLine)),
    'bad-key',
  );
  assert.is(
    codeOf(() => parsePrivateKey('')),
    'bad-key',
  );
  // CRLF line endings (a key copied through Windows) still parse
  assert.equal(parsePrivateKey(ours.privateKeyText.replace(/\n/g, '\r\n')).publicKey, ours.publicKey);
});

test('public key lines and fingerprints', () => {
  const line = formatPublicKeyLine(ours.publicKey, 'a comment  with spaces');
  assert.equal(parsePublicKeyLine(line), { publicKey: ours.publicKey, comment: 'a comment  with spaces' });
  assert.equal(parsePublicKeyLine(`${formatPublicKeyLine(ours.publicKey, '')}\n`), { publicKey: ours.publicKey, comment: '' });
  assert.is(publicKeyBlob(ours.publicKey).length, 51);
  assert.match(fingerprint(ours.publicKey), /^SHA256:[A-Za-z0-9+/]{43}$/);
  assert.is(
    codeOf(() => parsePublicKeyLine('ssh-ed25519 AAAA')),
    'bad-key',
  );
  assert.is(
    codeOf(() => parsePublicKeyLine('ssh-ed25519')),
    'bad-key',
  );
  assert.is(
    codeOf(() => parsePublicKeyLine(line.replace('ssh-ed25519 AAAA', 'ssh-ed25519 AAAB'))),
    'bad-key',
  );
});

// ---- signatures ----

test('our signature verifies with ssh-keygen -Y verify and check-novalidate', () => {
  const sig = sign(oursKey, MESSAGE, BUNDLE_NAMESPACE);
  assert.ok(sshVerify(oursAllowed, 'site-a', BUNDLE_NAMESPACE, sig, MESSAGE));
  assert.ok(sshCheckNoValidate(BUNDLE_NAMESPACE, sig, MESSAGE));
  assert.equal(verify(sig, MESSAGE, BUNDLE_NAMESPACE).publicKey, ours.publicKey);
  const p = parseSignature(sig);
  assert.is(p.namespace, BUNDLE_NAMESPACE);
  assert.is(p.hashAlgorithm, 'sha512');
  assert.is(p.signature.length, 64);
  assert.match(sig, /^-----BEGIN SSH SIGNATURE-----\n([A-Za-z0-9+/=]{70}\n)+[A-Za-z0-9+/=]{1,70}\n-----END SSH SIGNATURE-----\n$/);
});

test("ssh-keygen's signature verifies with ours", () => {
  const s = sshKeygen(['-Y', 'sign', '-f', theirsPath, '-n', BUNDLE_NAMESPACE], MESSAGE);
  assert.is(s.status, 0, s.stderr);
  assert.equal(verify(s.stdout, MESSAGE, BUNDLE_NAMESPACE).publicKey, theirsKey.publicKey);
  // and a file signed on disk (ssh-keygen writes <file>.sig next to it)
  const m = file('SHA256SUMS', MESSAGE);
  assert.is(sshKeygen(['-Y', 'sign', '-f', theirsPath, '-n', BUNDLE_NAMESPACE, m]).status, 0);
  assert.equal(verify(readFileSync(`${m}.sig`, 'utf8'), MESSAGE, BUNDLE_NAMESPACE).publicKey, theirsKey.publicKey);
});

test('a changed message is refused by both', () => {
  const sig = sign(oursKey, MESSAGE, BUNDLE_NAMESPACE);
  const changed = Buffer.from(MESSAGE);
  changed[0] = 0x66;
  const e = errorOf(() => verify(sig, changed, BUNDLE_NAMESPACE));
  assert.is(e.code, 'bad-signature');
  assert.match(e.message, 'does not match');
  assert.not.ok(sshVerify(oursAllowed, 'site-a', BUNDLE_NAMESPACE, sig, changed));
  assert.is(
    codeOf(() => verify(sig, Buffer.concat([MESSAGE, Buffer.from('\n')]), BUNDLE_NAMESPACE)),
    'bad-signature',
  );
});

test('a signature from another key verifies but is not allowed, by either', () => {
  const sig = sign(theirsKey, MESSAGE, BUNDLE_NAMESPACE);
  assert.equal(verify(sig, MESSAGE, BUNDLE_NAMESPACE).publicKey, theirsKey.publicKey);
  const signers = parseAllowedSigners(oursAllowed);
  assert.not.ok(isAllowed(signers, 'site-a', theirsKey.publicKey, BUNDLE_NAMESPACE, NOW));
  assert.equal(principalsFor(signers, theirsKey.publicKey, BUNDLE_NAMESPACE, NOW), []);
  assert.not.ok(sshVerify(oursAllowed, 'site-a', BUNDLE_NAMESPACE, sig, MESSAGE));
  // a signature whose key was swapped for ours no longer checks out
  const swapped = parseSignature(sig);
  assert.is(swapped.signature.length, 64);
  const forged = armor(sigBlob({ key: publicKeyBlob(ours.publicKey), sig: swapped.signature }));
  assert.is(
    codeOf(() => verify(forged, MESSAGE, BUNDLE_NAMESPACE)),
    'bad-signature',
  );
  assert.not.ok(sshCheckNoValidate(BUNDLE_NAMESPACE, forged, MESSAGE));
});

test('another namespace is refused by both', () => {
  const sig = sign(oursKey, MESSAGE, 'git');
  const e = errorOf(() => verify(sig, MESSAGE, BUNDLE_NAMESPACE));
  assert.is(e.code, 'bad-signature');
  assert.match(e.message, 'namespace "git"');
  assert.not.ok(sshVerify(oursAllowed, 'site-a', BUNDLE_NAMESPACE, sig, MESSAGE));
  assert.not.ok(sshCheckNoValidate(BUNDLE_NAMESPACE, sig, MESSAGE));
  assert.ok(sshCheckNoValidate('git', sig, MESSAGE));
  assert.equal(verify(sig, MESSAGE, 'git').publicKey, ours.publicKey);
  assert.is(
    codeOf(() => sign(oursKey, MESSAGE, '')),
    'usage',
  );
});

test('every single-character change of the armor is refused with a typed code, and ssh-keygen agrees', () => {
  const sig = sign(oursKey, MESSAGE, BUNDLE_NAMESPACE);
  const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const start = sig.indexOf('\n') + 1;
  const end = sig.indexOf('-----END');
  const offsets: number[] = [];
  for (let i = start; i < end; i++) if (sig[i] !== '\n' && sig[i] !== '=') offsets.push(i);
  assert.is(offsets.length, 246); // the whole 184-byte blob
  let accepted = 0;
  offsets.forEach((i, n) => {
    const text = sig.slice(0, i) + (B64[(B64.indexOf(sig[i] as string) + 1) % 64] as string) + sig.slice(i + 1);
    const code = codeOf(() => verify(text, MESSAGE, BUNDLE_NAMESPACE));
    if (code === 'ok') accepted++;
    else assert.ok(code === 'malformed' || code === 'bad-signature', `offset ${i}: ${code}`);
    // ssh-keygen costs a process each, so it checks every third change and every one we accept.
    if (n % 3 === 0 || code === 'ok') {
      const ssh = sshCheckNoValidate(BUNDLE_NAMESPACE, text, MESSAGE);
      assert.is(code === 'ok', ssh, `offset ${i}: ours ${code}, ssh-keygen ${ssh ? 'accepts' : 'refuses'}`);
    }
  });
  // Only the version field can change and still verify: 1 -> 0 passes ssh-keygen's "version <= 1".
  assert.ok(accepted <= 1);
});

test('truncated armor is malformed', () => {
  const sig = sign(oursKey, MESSAGE, BUNDLE_NAMESPACE);
  assert.is(
    codeOf(() => verify(sig.slice(0, sig.length / 2), MESSAGE, BUNDLE_NAMESPACE)),
    'malformed',
  );
  assert.is(
    codeOf(() => verify(sig.replace(/-----END SSH SIGNATURE-----\n$/, ''), MESSAGE, BUNDLE_NAMESPACE)),
    'malformed',
  );
  const lines = sig.split('\n');
  const shortBody = [...lines.slice(0, 3), ...lines.slice(-2)].join('\n');
  assert.is(
    codeOf(() => verify(shortBody, MESSAGE, BUNDLE_NAMESPACE)),
    'malformed',
  );
  assert.not.ok(sshCheckNoValidate(BUNDLE_NAMESPACE, shortBody, MESSAGE));
  assert.is(
    codeOf(() => parseSignature('')),
    'malformed',
  );
  assert.is(
    codeOf(() => parseSignature(`${sig}${' '.repeat(16 * 1024)}`)),
    'malformed',
  );
});

test('signing is deterministic', () => {
  assert.is(sign(oursKey, MESSAGE, BUNDLE_NAMESPACE), sign(oursKey, MESSAGE, BUNDLE_NAMESPACE));
  assert.is(sign(parsePrivateKey(ours.privateKeyText), MESSAGE, BUNDLE_NAMESPACE), sign(oursKey, MESSAGE, BUNDLE_NAMESPACE));
  assert.is.not(sign(oursKey, MESSAGE, BUNDLE_NAMESPACE), sign(oursKey, Buffer.from('other'), BUNDLE_NAMESPACE));
});

// Hand-built signatures that probe ssh-keygen's acceptance rules; we must agree on each.
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
function sigBlob(o: {
  version?: number;
  key?: Buffer;
  ns?: string;
  reserved?: string;
  hash?: string;
  sigType?: string;
  sig?: Uint8Array;
  tail?: string;
}): Buffer {
  const base = parseSignature(sign(oursKey, MESSAGE, BUNDLE_NAMESPACE));
  return Buffer.concat([
    Buffer.from('SSHSIG'),
    u32(o.version ?? 1),
    sshString(o.key ?? publicKeyBlob(ours.publicKey)),
    sshString(o.ns ?? BUNDLE_NAMESPACE),
    sshString(o.reserved ?? ''),
    sshString(o.hash ?? 'sha512'),
    sshString(Buffer.concat([sshString(o.sigType ?? 'ssh-ed25519'), sshString(o.sig ?? base.signature)])),
    Buffer.from(o.tail ?? ''),
  ]);
}
function armor(blob: Buffer): string {
  return `-----BEGIN SSH SIGNATURE-----\n${wrap70(blob.toString('base64'))}-----END SSH SIGNATURE-----\n`;
}

test("ssh-keygen's acceptance quirks are reproduced", () => {
  const good = sign(oursKey, MESSAGE, BUNDLE_NAMESPACE);
  const s = parseSignature(good).signature;
  const plusL = Buffer.from(s);
  let v = 0n;
  for (let i = 63; i >= 32; i--) v = (v << 8n) | BigInt(plusL[i] as number);
  v += L;
  for (let i = 32; i < 64; i++) {
    plusL[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  const highBits = Buffer.from(s);
  highBits[63] = (highBits[63] as number) | 0x80;
  const cases: [string, string, boolean][] = [
    ['as signed', good, true],
    ['version 0', armor(sigBlob({ version: 0 })), true],
    ['version 2', armor(sigBlob({ version: 2 })), false],
    ['unsigned reserved field', armor(sigBlob({ reserved: 'x' })), true],
    ['namespace with a final NUL', armor(sigBlob({ ns: `${BUNDLE_NAMESPACE}\0` })), true],
    ['namespace with an inner NUL', armor(sigBlob({ ns: `${BUNDLE_NAMESPACE}\0x` })), false],
    ['hash name with a final NUL', armor(sigBlob({ hash: 'sha512\0' })), true],
    ['hash relabelled sha256', armor(sigBlob({ hash: 'sha256' })), false],
    ['hash md5', armor(sigBlob({ hash: 'md5' })), false],
    ['signature type with a final NUL', armor(sigBlob({ sigType: 'ssh-ed25519\0' })), true],
    ['trailing data', armor(sigBlob({ tail: 'x' })), false],
    ['key blob with trailing data', armor(sigBlob({ key: Buffer.concat([publicKeyBlob(ours.publicKey), Buffer.from('x')]) })), false],
    ['S + L (OpenSSH does not insist on S < L)', armor(sigBlob({ sig: plusL })), true],
    ['S with its top bit set', armor(sigBlob({ sig: highBits })), false],
    ['63-byte signature', armor(sigBlob({ sig: s.subarray(0, 63) })), false],
    ['no final newline', good.slice(0, -1), true],
    ['text after the END line', `${good}trailing text\n`, true],
    ['CRLF everywhere', good.replace(/\n/g, '\r\n'), false],
    ['CRLF after the header only kept plain', good.replace(/\n/g, '\r\n').replace('-----\r\n', '-----\n'), true],
    ['blank before the header', `\n${good}`, false],
    ['base64 on one line', `-----BEGIN SSH SIGNATURE-----\n${sigBlob({}).toString('base64')}\n-----END SSH SIGNATURE-----\n`, true],
    ['blanks inside the base64', good.replace(/\n(?=[A-Za-z0-9])/g, '\n \t'), true],
    ['padding removed', good.replace(/=+\n-----END/, '\n-----END'), false],
    [
      'non-zero bits before the padding',
      good.replace(/(.)(=+)\n-----END/, (_m, c: string, p: string) => `${c === '/' ? 'A' : String.fromCharCode(c.charCodeAt(0) + 1)}${p}\n-----END`),
      false,
    ],
    ['a stray character', good.replace('U1NIU0lH', 'U1NIU0lH*'), false],
  ];
  for (const [name, text, expected] of cases) {
    const code = codeOf(() => verify(text, MESSAGE, BUNDLE_NAMESPACE));
    assert.is(sshCheckNoValidate(BUNDLE_NAMESPACE, text, MESSAGE), expected, `ssh-keygen on ${name}`);
    assert.is(code === 'ok', expected, `ours on ${name}: ${code}`);
    if (!expected) assert.ok(code === 'malformed' || code === 'bad-signature', `${name}: ${code}`);
  }
});

test('a key type other than ed25519 is refused as bad-signature', () => {
  const s = sshKeygen(['-Y', 'sign', '-f', rsaPath, '-n', BUNDLE_NAMESPACE], MESSAGE);
  assert.is(s.status, 0, s.stderr);
  const e = errorOf(() => verify(s.stdout, MESSAGE, BUNDLE_NAMESPACE));
  assert.is(e.code, 'bad-signature');
  assert.match(e.message, 'ssh-rsa');
});

// ---- allowed_signers ----

function allowedBoth(allowed: string, principal: string, namespace = BUNDLE_NAMESPACE): boolean {
  const sig = sign(oursKey, MESSAGE, namespace);
  const mine = isAllowed(parseAllowedSigners(allowed), principal, ours.publicKey, namespace, new Date());
  assert.is(sshVerify(allowed, principal, namespace, sig, MESSAGE), mine, `ssh-keygen disagrees on ${JSON.stringify(allowed)} for ${principal}`);
  return mine;
}

test('allowed_signers: principal, wildcards, negation, namespaces and validity as ssh-keygen decides', () => {
  const key = ours.publicKeyLine;
  assert.ok(allowedBoth(`site-a ${key}\n`, 'site-a'));
  assert.not.ok(allowedBoth(`site-b ${key}\n`, 'site-a'));
  assert.ok(allowedBoth(`site-* ${key}\n`, 'site-a'));
  assert.ok(allowedBoth(`site-? ${key}\n`, 'site-a'));
  assert.not.ok(allowedBoth(`site-?? ${key}\n`, 'site-a'));
  assert.not.ok(allowedBoth(`site-*,!site-a ${key}\n`, 'site-a'));
  assert.ok(allowedBoth(`site-*,!site-b ${key}\n`, 'site-a'));
  assert.ok(allowedBoth(`"site-a,other" ${key}\n`, 'site-a'));
  assert.not.ok(allowedBoth(`site-a namespaces="other" ${key}\n`, 'site-a'));
  assert.ok(allowedBoth(`site-a namespaces="git,airlock-*" ${key}\n`, 'site-a'));
  assert.ok(allowedBoth(`site-a NAMESPACES="airlock-bundle" ${key}\n`, 'site-a'));
  assert.not.ok(allowedBoth(`site-a valid-before="20200101Z" ${key}\n`, 'site-a'));
  assert.not.ok(allowedBoth(`site-a valid-after="20990101Z" ${key}\n`, 'site-a'));
  assert.ok(allowedBoth(`site-a valid-after="20200101",valid-before="209901011200Z" ${key}\n`, 'site-a'));
  assert.not.ok(allowedBoth(`site-a cert-authority ${key}\n`, 'site-a'));
  assert.ok(allowedBoth(`# trust list\n\n   \nsite-b ${key}\r\nsite-a\t${key}\r\n`, 'site-a'));
  const rsaLine = readFileSync(`${rsaPath}.pub`, 'utf8').trim();
  assert.ok(allowedBoth(`site-a ${rsaLine}\nsite-a ${key}\n`, 'site-a'));
});

test('allowed_signers: parsed fields, principalsFor and times', () => {
  const [s, ...rest] = parseAllowedSigners(
    `# comment\n"site a,site-*,!site-x" namespaces="airlock-bundle,git",valid-after="20240102030405Z",valid-before="20300101Z" ${ours.publicKeyLine}\n`,
  );
  assert.is(rest.length, 0);
  assert.ok(s !== undefined);
  assert.equal(s.principals, ['site a', 'site-*', '!site-x']);
  assert.equal(s.namespaces, ['airlock-bundle', 'git']);
  assert.is(s.validAfter?.toISOString(), '2024-01-02T03:04:05.000Z');
  assert.is(s.validBefore?.toISOString(), '2030-01-01T00:00:00.000Z');
  assert.is(s.certAuthority, false);
  assert.is(s.line, 2);
  const at = new Date('2025-06-01T00:00:00Z');
  assert.equal(principalsFor([s], ours.publicKey, BUNDLE_NAMESPACE, at), ['site a', 'site-*']);
  assert.equal(principalsFor([s], ours.publicKey, 'file', at), []);
  assert.equal(principalsFor([s], ours.publicKey, BUNDLE_NAMESPACE, new Date('2031-01-01T00:00:00Z')), []);
  assert.ok(isAllowed([s], 'site a', ours.publicKey, 'git', at));
  assert.not.ok(isAllowed([s], 'site-x', ours.publicKey, 'git', at));
  // valid-before is inclusive to the second, valid-after too
  assert.ok(isAllowed([s], 'site-b', ours.publicKey, 'git', new Date('2030-01-01T00:00:00.999Z')));
  assert.not.ok(isAllowed([s], 'site-b', ours.publicKey, 'git', new Date('2030-01-01T00:00:01Z')));
  assert.ok(isAllowed([s], 'site-b', ours.publicKey, 'git', new Date('2024-01-02T03:04:05Z')));
  assert.not.ok(isAllowed([s], 'site-b', ours.publicKey, 'git', new Date('2024-01-02T03:04:04.999Z')));
});

test('allowed_signers: broken lines are reported with their number', () => {
  const key = ours.publicKeyLine;
  const bad = [
    `site-a foo ${key}`,
    `site-a namespaces=airlock-bundle ${key}`,
    `site-a namespaces="x",namespaces="y" ${key}`,
    `site-a valid-after="2020" ${key}`,
    `site-a valid-after="20201301Z" ${key}`,
    `site-a valid-after="20990101",valid-before="20200101" ${key}`,
    `"site-a ${key}`,
    'site-a',
    'site-a ssh-ed25519',
    'site-a ssh-ed25519 AAAA',
    `site-a namespaces="x", ${key}`,
    `site-a ${key.replace('AAAA', 'AAA*')}`,
  ];
  for (const line of bad) {
    const e = errorOf(() => parseAllowedSigners(`# header\n${line}\n`));
    assert.is(e.code, 'bad-allowed-signers', line);
    assert.match(e.message, /^line 2: /);
    assert.not.ok(sshVerify(`${line}\n`, 'site-a', BUNDLE_NAMESPACE, sign(oursKey, MESSAGE, BUNDLE_NAMESPACE), MESSAGE), line);
  }
  assert.equal(parseAllowedSigners(''), []);
  assert.equal(parseAllowedSigners('# only a comment\n\n'), []);
});

test.run();
