/*
 * OpenSSH Ed25519 keys, read and written with node:crypto only.
 *
 * SSH wire format (RFC 4251): uint32 is big-endian; a string is a uint32 length and that many bytes.
 * An Ed25519 public key blob is string "ssh-ed25519" + string key(32), and a public key line is
 * "ssh-ed25519 BASE64(blob) comment". Its fingerprint is "SHA256:" + unpadded base64 of the blob's
 * SHA-256, as `ssh-keygen -l` prints it.
 *
 * Private keys follow OpenSSH's PROTOCOL.key: PEM armor ("-----BEGIN OPENSSH PRIVATE KEY-----",
 * base64 at 70 columns) around
 *   "openssh-key-v1\0"  string cipher  string kdf  string kdfoptions  uint32 N (always 1)
 *   string public-key-blob  string private-section
 * and the private section (encrypted unless cipher and kdf are "none") is
 *   uint32 checkint  uint32 checkint  string "ssh-ed25519"  string pk(32)  string seed||pk(64)
 *   string comment  padding 1,2,3,... up to a multiple of the block size (8 when unencrypted).
 * The two check-ints are one random value written twice: with a cipher they detect a wrong
 * passphrase, without one they still catch a damaged file. We only read and write unencrypted keys:
 * airlock runs unattended, so there is nobody to type a passphrase.
 *
 * The wire and base64 helpers at the end are shared with sshsig.ts and allowed-signers.ts.
 */

import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { AirlockError } from './errors.js';

export interface SigningKey {
  /** the raw 32-byte Ed25519 public key */
  publicKey: Uint8Array;
  privateKey: KeyObject;
  comment: string;
}

export const ED25519_KEY_TYPE = 'ssh-ed25519';

const AUTH_MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const PEM_BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const PEM_END = '-----END OPENSSH PRIVATE KEY-----';
/** the cipher block size for cipher "none", which sets the padding */
const BLOCK_SIZE = 8;
// DER prefixes that turn a raw seed / public key into PKCS#8 / SPKI for node:crypto (RFC 8410).
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

const CREATE_KEY_HINT = "create an unencrypted ed25519 key with: ssh-keygen -t ed25519 -N '' -f <file>";

/**
 * Parses an unencrypted OpenSSH ("openssh-key-v1") Ed25519 private key.
 *
 * @throws AirlockError 'bad-key' when the text is not an OpenSSH private key, holds another key
 *   type (the message names it), is protected by a passphrase, or is damaged (check-ints differ,
 *   the embedded public keys disagree with each other or with the seed, bad padding).
 */
export function parsePrivateKey(text: string): SigningKey {
  const blob = unarmorPrivateKey(text);
  const r = new WireReader(blob, (reason) => {
    throw new AirlockError('bad-key', `signing key is damaged: ${reason}`, { hint: CREATE_KEY_HINT });
  });
  if (!r.bytes(AUTH_MAGIC.length).equals(AUTH_MAGIC)) {
    throw new AirlockError('bad-key', 'signing key is not in openssh-key-v1 format', { hint: CREATE_KEY_HINT });
  }
  const cipher = r.cstring();
  const kdf = r.cstring();
  const kdfOptions = r.string();
  const count = r.u32();
  if (count !== 1) r.fail(`it holds ${count} keys instead of one`);
  const outerPublic = r.string();
  const section = r.string();
  r.end();

  // The public half is never encrypted, so the type is known before the passphrase question; a
  // passphrase-less RSA key would not help, so the type is reported first.
  const outerType = new WireReader(outerPublic, (reason) => r.fail(`public key: ${reason}`)).cstring();
  if (outerType !== ED25519_KEY_TYPE) throw wrongKeyType('signing key', outerType);
  if (cipher !== 'none' || kdf !== 'none') {
    throw new AirlockError('bad-key', 'signing key is protected by a passphrase', {
      hint: "airlock signs unattended; remove the passphrase from a copy of the key with: ssh-keygen -p -N '' -f <copy>",
    });
  }
  if (kdfOptions.length !== 0) r.fail('an unencrypted key has kdf options');
  const publicKey = parsePublicKeyBlob(outerPublic, (reason) => r.fail(`public key: ${reason}`));

  if (section.length % BLOCK_SIZE !== 0) r.fail('private section is not a whole number of blocks');
  const p = new WireReader(section, (reason) => r.fail(`private section: ${reason}`));
  const check1 = p.u32();
  const check2 = p.u32();
  if (check1 !== check2) r.fail('check-ints differ');
  const innerType = p.cstring();
  if (innerType !== ED25519_KEY_TYPE) r.fail('private key type differs from public key type');
  const innerPublic = p.string();
  const secret = p.string();
  const comment = p.string().toString('utf8');
  if (innerPublic.length !== 32 || secret.length !== 64) r.fail('wrong ed25519 key length');
  const seed = secret.subarray(0, 32);
  if (!innerPublic.equals(publicKey) || !secret.subarray(32).equals(publicKey)) {
    r.fail('embedded public keys differ');
  }
  for (let i = 1; p.remaining > 0; i++) {
    if (p.bytes(1)[0] !== (i & 0xff)) r.fail('bad padding');
  }
  const privateKey = privateKeyFromSeed(seed);
  // A seed that does not yield the stored public key would sign with a key nobody can verify.
  if (!rawPublicKey(privateKey).equals(publicKey)) r.fail('public key does not belong to the private key');
  return { publicKey: new Uint8Array(publicKey), privateKey, comment };
}

/**
 * Writes an unencrypted OpenSSH private key in the byte layout ssh-keygen uses (only the random
 * check-int differs between two runs).
 *
 * @throws AirlockError 'internal' when the seed is not 32 bytes; 'usage' when the comment has a line break.
 */
export function formatPrivateKey(seed: Uint8Array, comment: string): string {
  if (seed.length !== 32) throw new AirlockError('internal', `ed25519 seed must be 32 bytes, got ${seed.length}`);
  checkComment(comment);
  const publicKey = rawPublicKey(privateKeyFromSeed(seed));
  const check = randomBytes(4);
  const parts = [check, check, sshString(ED25519_KEY_TYPE), sshString(publicKey), sshString(Buffer.concat([seed, publicKey])), sshString(comment)];
  const unpadded = parts.reduce((n, b) => n + b.length, 0);
  const padding = Buffer.alloc((BLOCK_SIZE - (unpadded % BLOCK_SIZE)) % BLOCK_SIZE);
  for (let i = 0; i < padding.length; i++) padding[i] = i + 1;
  const blob = Buffer.concat([
    AUTH_MAGIC,
    sshString('none'),
    sshString('none'),
    sshString(''),
    u32(1),
    sshString(publicKeyBlob(publicKey)),
    sshString(Buffer.concat([...parts, padding])),
  ]);
  return `${PEM_BEGIN}\n${wrap70(blob.toString('base64'))}${PEM_END}\n`;
}

/**
 * Makes a new Ed25519 key pair.
 *
 * @throws AirlockError 'usage' when the comment has a line break.
 */
export function generateSigningKey(comment: string): {
  privateKeyText: string;
  publicKeyLine: string;
  publicKey: Uint8Array;
} {
  checkComment(comment);
  const { privateKey } = generateKeyPairSync('ed25519');
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
  const seed = pkcs8.subarray(pkcs8.length - 32);
  const publicKey = rawPublicKey(privateKey);
  const privateKeyText = formatPrivateKey(seed, comment);
  seed.fill(0);
  return { privateKeyText, publicKeyLine: formatPublicKeyLine(publicKey, comment), publicKey: new Uint8Array(publicKey) };
}

/**
 * Parses a public key line "ssh-ed25519 AAAA... comment" (the comment is optional).
 *
 * @throws AirlockError 'bad-key' for another key type (named in the message) or a damaged key.
 */
export function parsePublicKeyLine(line: string): { publicKey: Uint8Array; comment: string } {
  const m = /^[ \t]*(\S+)[ \t]+([^ \t\r\n]+)(?:[ \t]+(.*?))?[ \t\r\n]*$/s.exec(line);
  if (m === null) {
    throw new AirlockError('bad-key', 'public key line is not "ssh-ed25519 <base64> [comment]"', { hint: CREATE_KEY_HINT });
  }
  const [, type = '', base64 = '', comment = ''] = m;
  if (type !== ED25519_KEY_TYPE) throw wrongKeyType('public key', type.slice(0, 64));
  const blob = decodeBase64Strict(base64);
  const fail = (reason: string): never => {
    throw new AirlockError('bad-key', `public key is damaged: ${reason}`);
  };
  if (blob === undefined) fail('not valid base64');
  return { publicKey: new Uint8Array(parsePublicKeyBlob(blob as Buffer, fail)), comment };
}

/** Formats "ssh-ed25519 BASE64 comment" as ssh-keygen writes .pub files (without the newline). */
export function formatPublicKeyLine(publicKey: Uint8Array, comment: string): string {
  const key = `${ED25519_KEY_TYPE} ${publicKeyBlob(publicKey).toString('base64')}`;
  return comment === '' ? key : `${key} ${comment}`;
}

/** The SSH wire-format public key blob: string "ssh-ed25519" + string key. */
export function publicKeyBlob(publicKey: Uint8Array): Buffer {
  return Buffer.concat([sshString(ED25519_KEY_TYPE), sshString(publicKey)]);
}

/** "SHA256:<unpadded base64>" of the key blob, as `ssh-keygen -l` prints it. */
export function fingerprint(publicKey: Uint8Array): string {
  return `SHA256:${createHash('sha256').update(publicKeyBlob(publicKey)).digest('base64').replace(/=+$/, '')}`;
}

/**
 * Reads an Ed25519 public key blob (string type, string key). Rejects trailing bytes, as
 * OpenSSH does.
 * @internal shared with sshsig.ts and allowed-signers.ts
 */
export function parsePublicKeyBlob(blob: Buffer, fail: (reason: string) => never): Buffer {
  const r = new WireReader(blob, fail);
  const type = r.cstring();
  if (type !== ED25519_KEY_TYPE) fail(`key type is ${JSON.stringify(type.slice(0, 64))}, not ${ED25519_KEY_TYPE}`);
  const key = r.string();
  if (key.length !== 32) fail(`ed25519 key is ${key.length} bytes, not 32`);
  r.end();
  return key;
}

/** @internal a node:crypto public key from a raw 32-byte Ed25519 key */
export function ed25519PublicKeyObject(publicKey: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]), format: 'der', type: 'spki' });
}

function privateKeyFromSeed(seed: Uint8Array): KeyObject {
  const der = Buffer.concat([PKCS8_ED25519_PREFIX, seed]);
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    der.fill(0);
  }
}

function rawPublicKey(key: KeyObject): Buffer {
  const spki = createPublicKey(key).export({ format: 'der', type: 'spki' });
  return spki.subarray(spki.length - 32);
}

function wrongKeyType(what: string, type: string): AirlockError {
  return new AirlockError('bad-key', `${what} is of type ${JSON.stringify(type)}; airlock signs with ${ED25519_KEY_TYPE} keys`, {
    hint: CREATE_KEY_HINT,
  });
}

function checkComment(comment: string): void {
  if (/[\r\n]/.test(comment)) throw new AirlockError('usage', 'key comment must be a single line');
}

/** Strips the PEM armor; other PEM kinds and public keys get a message saying what they are. */
function unarmorPrivateKey(text: string): Buffer {
  const begin = text.indexOf(PEM_BEGIN);
  if (begin < 0) {
    const other = /-----BEGIN ([A-Z0-9 ]{1,40})-----/.exec(text);
    const what =
      other !== null
        ? `a PEM "${other[1]}" file, not an OpenSSH private key`
        : /^\s*(ssh-|ecdsa-|sk-)/.test(text)
          ? 'a public key, not a private key'
          : 'not an OpenSSH private key';
    throw new AirlockError('bad-key', `signing key is ${what}`, { hint: CREATE_KEY_HINT });
  }
  const end = text.indexOf(PEM_END, begin + PEM_BEGIN.length);
  if (end < 0) throw new AirlockError('bad-key', 'signing key is truncated: no END line', { hint: CREATE_KEY_HINT });
  const blob = decodeBase64Strict(text.slice(begin + PEM_BEGIN.length, end));
  if (blob === undefined) throw new AirlockError('bad-key', 'signing key is damaged: not valid base64', { hint: CREATE_KEY_HINT });
  return blob;
}

// ---- shared helpers: SSH wire format and base64 ----

/** @internal SSH wire-format uint32 */
export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** @internal SSH wire-format string (UTF-8 for text) */
export function sshString(data: Uint8Array | string): Buffer {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  return Buffer.concat([u32(bytes.length), bytes]);
}

/** @internal base64 wrapped at 70 columns, each line ending in "\n", as OpenSSH armors */
export function wrap70(base64: string): string {
  let out = '';
  for (let i = 0; i < base64.length; i += 70) out += `${base64.slice(i, i + 70)}\n`;
  return out;
}

/**
 * Sequential reader of SSH wire-format fields. Every failure goes through `fail`, which must
 * throw, so each caller picks its own error code and wording.
 * @internal shared with sshsig.ts
 */
export class WireReader {
  private pos = 0;
  constructor(
    private readonly buf: Buffer,
    readonly fail: (reason: string) => never,
  ) {}

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  bytes(n: number): Buffer {
    if (n > this.remaining) this.fail('truncated');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  u32(): number {
    return this.bytes(4).readUInt32BE(0);
  }

  string(): Buffer {
    return this.bytes(this.u32());
  }

  /**
   * A text string with OpenSSH's sshbuf_get_cstring rules: a NUL is allowed only as the last byte,
   * and is then dropped (so "sha512\0" reads as "sha512", like in C).
   */
  cstringBytes(): Buffer {
    const s = this.string();
    const nul = s.indexOf(0);
    if (nul >= 0 && nul !== s.length - 1) this.fail('string contains a NUL byte');
    return nul >= 0 ? s.subarray(0, nul) : s;
  }

  cstring(): string {
    return this.cstringBytes().toString('utf8');
  }

  end(): void {
    if (this.remaining !== 0) this.fail('trailing data');
  }
}

const B64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_VALUE = new Map([...B64_ALPHABET].map((c, i) => [c, i]));
const C_SPACE = new Set([' ', '\t', '\n', '\v', '\f', '\r']);

/**
 * Decodes base64 with the rules of the b64_pton that OpenSSH uses: whitespace is skipped, padding
 * is required and must be right ("==" after 2 characters of a quantum, "=" after 3), nothing but
 * whitespace may follow it, and the unused low bits of the last character must be zero. Node's own
 * decoder silently ignores junk, which would make us accept signatures ssh-keygen refuses.
 * Returns undefined when the text is not valid.
 * @internal shared with sshsig.ts and allowed-signers.ts
 */
export function decodeBase64Strict(text: string): Buffer | undefined {
  const values: number[] = [];
  let i = 0;
  let pads = 0;
  for (; i < text.length; i++) {
    const c = text[i] as string;
    if (C_SPACE.has(c)) continue;
    if (c === '=') break;
    const v = B64_VALUE.get(c);
    if (v === undefined) return undefined;
    values.push(v);
  }
  if (i < text.length) {
    // at '=': only valid after 2 or 3 characters of the last quantum
    const state = values.length % 4;
    if (state < 2) return undefined;
    pads = 1;
    i++;
    if (state === 2) {
      while (i < text.length && C_SPACE.has(text[i] as string)) i++;
      if (text[i] !== '=') return undefined;
      pads = 2;
      i++;
    }
    for (; i < text.length; i++) if (!C_SPACE.has(text[i] as string)) return undefined;
  } else if (values.length % 4 !== 0) {
    return undefined;
  }
  const last = values[values.length - 1] ?? 0;
  if ((pads === 1 && (last & 0x3) !== 0) || (pads === 2 && (last & 0xf) !== 0)) return undefined;
  let b64 = '';
  for (const v of values) b64 += B64_ALPHABET.charAt(v);
  return Buffer.from(b64, 'base64');
}
