/*
 * age X25519 keys: the bech32 text forms and the raw Diffie-Hellman.
 *
 * A recipient is `age1...` (lowercase bech32, HRP "age") holding a 32-byte X25519 public key; an
 * identity is `AGE-SECRET-KEY-1...` (uppercase bech32) holding the 32-byte secret scalar. bech32
 * (BIP-173, without its 90-character cap, as age does) is small enough to implement here rather
 * than depend on a package. X25519 itself is node:crypto: it only takes KeyObjects, so raw keys are
 * wrapped in the fixed DER prefixes of PKCS#8 and SPKI for the X25519 OID (1.3.101.110).
 * Error messages never include key material: an identity file is secret, so only line numbers are
 * named.
 */

import { createPrivateKey, createPublicKey, diffieHellman, randomBytes, type KeyObject } from 'node:crypto';
import { AirlockError } from '../errors.js';

export const KEY_SIZE = 32;

const RECIPIENT_HRP = 'age';
const IDENTITY_HRP = 'age-secret-key-';

// --- bech32 (BIP-173) ---

const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const CHARSET_REV = new Map([...CHARSET].map((c, i) => [c, i]));
const GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function polymod(values: number[]): number {
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= GENERATOR[i]!;
  }
  return chk >>> 0;
}

function hrpExpand(hrp: string): number[] {
  const codes = [...hrp].map((c) => c.charCodeAt(0));
  return [...codes.map((c) => c >>> 5), 0, ...codes.map((c) => c & 31)];
}

/** Regroups bits; from 8 to 5 pads with zeros, from 5 to 8 requires the padding to be zero bits. */
function convertBits(data: ArrayLike<number>, from: number, to: number, pad: boolean): number[] | undefined {
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  const mask = (1 << to) - 1;
  // eslint-disable-next-line @typescript-eslint/prefer-for-of -- an ArrayLike has no iterator
  for (let i = 0; i < data.length; i++) {
    acc = (acc << from) | data[i]!;
    bits += from;
    while (bits >= to) {
      bits -= to;
      out.push((acc >>> bits) & mask);
    }
    acc &= (1 << bits) - 1;
  }
  if (pad) {
    if (bits > 0) out.push((acc << (to - bits)) & mask);
  } else if (bits >= from || acc !== 0) {
    return undefined;
  }
  return out;
}

/** Encodes in lowercase; the caller uppercases the whole string where the format wants that. */
function bech32Encode(hrp: string, bytes: Uint8Array): string {
  const data = convertBits(bytes, 8, 5, true)!;
  const mod = polymod([...hrpExpand(hrp), ...data, 0, 0, 0, 0, 0, 0]) ^ 1;
  const checksum = [0, 1, 2, 3, 4, 5].map((i) => (mod >>> (5 * (5 - i))) & 31);
  return hrp + '1' + [...data, ...checksum].map((d) => CHARSET[d]).join('');
}

/** Returns the HRP as written (so the caller can apply its case rule) and the bytes, or a reason. */
function bech32Decode(s: string): { hrp: string; bytes: Uint8Array } | string {
  if (!/^[\x21-\x7e]+$/.test(s)) return 'contains a character outside printable ASCII';
  const lower = s.toLowerCase();
  if (s !== lower && s !== s.toUpperCase()) return 'mixes upper and lower case';
  const sep = lower.lastIndexOf('1');
  if (sep < 1 || sep + 7 > lower.length) return 'is not bech32 (separator or checksum missing)';
  const data: number[] = [];
  for (const c of lower.slice(sep + 1)) {
    const v = CHARSET_REV.get(c);
    if (v === undefined) return 'contains a character outside the bech32 alphabet';
    data.push(v);
  }
  if (polymod([...hrpExpand(lower.slice(0, sep)), ...data]) !== 1) return 'has a bad checksum (a typo?)';
  const bytes = convertBits(data.slice(0, -6), 5, 8, false);
  if (bytes === undefined) return 'has invalid padding';
  return { hrp: s.slice(0, sep), bytes: Uint8Array.from(bytes) };
}

// --- X25519 on node:crypto ---

const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

function privateKeyObject(secret: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, secret]), format: 'der', type: 'pkcs8' });
}

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
}

/**
 * X25519(secret, publicKey). Returns undefined when the result is all zeros (a low-order point),
 * which age requires to abort on; OpenSSL refuses to derive it, so that is mapped to the same.
 */
export function x25519(secret: Uint8Array, publicKey: Uint8Array): Buffer | undefined {
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey: privateKeyObject(secret), publicKey: publicKeyObject(publicKey) });
  } catch {
    return undefined;
  }
  return shared.every((b) => b === 0) ? undefined : shared;
}

/**
 * The public key of an X25519 secret.
 * @throws AirlockError('bad-identity') if the secret is not 32 bytes
 */
export function recipientOf(secret: Uint8Array): Uint8Array {
  if (secret.length !== KEY_SIZE) throw new AirlockError('bad-identity', `an X25519 secret key is ${KEY_SIZE} bytes, got ${secret.length}`);
  const spki = createPublicKey(privateKeyObject(secret)).export({ format: 'der', type: 'spki' });
  return new Uint8Array(spki.subarray(SPKI_PREFIX.length));
}

// --- text forms ---

/**
 * Parses an `age1...` recipient into its 32-byte X25519 public key.
 * @throws AirlockError('bad-recipient') naming what is wrong (the recipient is public, so it is quoted)
 */
export function parseRecipient(s: string): Uint8Array {
  const fail = (why: string): AirlockError =>
    new AirlockError('bad-recipient', `recipient ${JSON.stringify(s.length > 100 ? s.slice(0, 100) + '...' : s)} ${why}`, {
      hint: 'an age X25519 recipient looks like age1... (62 characters); age-keygen -y prints the one of an identity file',
    });
  const d = bech32Decode(s.trim());
  if (typeof d === 'string') throw fail(d);
  if (d.hrp !== RECIPIENT_HRP) {
    throw fail(d.hrp.toLowerCase() === RECIPIENT_HRP ? 'must be lowercase' : 'is not an age X25519 recipient (age1...)');
  }
  if (d.bytes.length !== KEY_SIZE) throw fail(`holds ${d.bytes.length} bytes, not ${KEY_SIZE}`);
  return d.bytes;
}

/**
 * The `age1...` form of a 32-byte X25519 public key.
 * @throws AirlockError('bad-recipient') if the key is not 32 bytes
 */
export function formatRecipient(publicKey: Uint8Array): string {
  if (publicKey.length !== KEY_SIZE) {
    throw new AirlockError('bad-recipient', `an X25519 public key is ${KEY_SIZE} bytes, got ${publicKey.length}`);
  }
  return bech32Encode(RECIPIENT_HRP, publicKey);
}

/**
 * The `AGE-SECRET-KEY-1...` form of a 32-byte X25519 secret.
 * @throws AirlockError('bad-identity') if the secret is not 32 bytes
 */
export function formatIdentity(secret: Uint8Array): string {
  if (secret.length !== KEY_SIZE) throw new AirlockError('bad-identity', `an X25519 secret key is ${KEY_SIZE} bytes, got ${secret.length}`);
  return bech32Encode(IDENTITY_HRP, secret).toUpperCase();
}

/**
 * Parses the text of an age identity file: one `AGE-SECRET-KEY-1...` per line; lines starting with
 * '#' and blank lines are skipped; CRLF line ends and surrounding spaces are tolerated.
 * @throws AirlockError('bad-identity') naming the line number (never its content), or when the file
 *   holds no identity at all
 */
export function parseIdentities(text: string): Uint8Array[] {
  const hint = 'an age identity file holds AGE-SECRET-KEY-1... lines, as written by age-keygen';
  if (/^\s*(age-encryption\.org\/|-----BEGIN AGE ENCRYPTED FILE-----)/.test(text)) {
    throw new AirlockError('bad-identity', 'the identity file is itself age-encrypted', {
      hint: 'decrypt it first (age -d) into a file readable only by you, and pass that',
    });
  }
  const out: Uint8Array[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fail = (why: string): AirlockError => new AirlockError('bad-identity', `identity file line ${i + 1}: ${why}`, { hint });
    const d = bech32Decode(line);
    if (typeof d === 'string') throw fail(`the identity ${d}`);
    if (d.hrp !== IDENTITY_HRP.toUpperCase()) {
      if (d.hrp === IDENTITY_HRP) throw fail('the identity must be uppercase');
      if (d.hrp === RECIPIENT_HRP) throw fail('this is a recipient (public key), not an identity');
      throw fail('not an age X25519 identity (plugin and post-quantum identities are not supported)');
    }
    if (d.bytes.length !== KEY_SIZE) throw fail(`the identity holds ${d.bytes.length} bytes, not ${KEY_SIZE}`);
    out.push(d.bytes);
  }
  if (out.length === 0) throw new AirlockError('bad-identity', 'the identity file holds no identity', { hint });
  return out;
}

/** A fresh X25519 key pair in both raw and text forms. */
export function generateIdentity(): { secret: Uint8Array; identity: string; recipient: string } {
  const secret = new Uint8Array(randomBytes(KEY_SIZE));
  return { secret, identity: formatIdentity(secret), recipient: formatRecipient(recipientOf(secret)) };
}
