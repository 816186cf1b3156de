/*
 * The age v1 header: its text encoding, its MAC, and the X25519 recipient stanza.
 *
 *   age-encryption.org/v1
 *   -> X25519 <ephemeral share, base64>
 *   <wrapped file key, base64 in 64-column lines, ending with a shorter (possibly empty) line>
 *   --- <HMAC-SHA-256 over everything up to and including "---", base64>
 *
 * Parsing is strict the way the spec and the C2SP vectors want it (canonical unpadded base64, no
 * CR, no empty arguments) and bounded (header size, stanza count), and it needs no key, so a
 * keyless verifier can inspect a header. Unknown stanza types are kept and skipped by the unwrap,
 * which is how age stays extensible. Crypto is node:crypto only.
 */

import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { AirlockError } from '../errors.js';
import { LIMITS } from '../limits.js';
import { KEY_SIZE, recipientOf, x25519 } from './keys.js';

export const VERSION_LINE = 'age-encryption.org/v1';
export const FILE_KEY_SIZE = 16;
/** Bounds a hostile header; far above what any sane recipient list needs. */
export const MAX_HEADER_BYTES = LIMITS.ageHeaderBytes;
export const MAX_STANZAS = LIMITS.ageStanzas;

const X25519_TYPE = 'X25519';
const X25519_INFO = 'age-encryption.org/v1/X25519';
const BODY_COLUMNS = 64;
const TAG_SIZE = 16;

export type AgeFailure = 'no-match' | 'header' | 'hmac' | 'payload';

/** Any failure to decrypt an age file; `reason` says which stage failed (the C2SP vector classes). */
export class AgeError extends AirlockError {
  readonly reason: AgeFailure;

  constructor(reason: AgeFailure, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super('decrypt-failed', message, options);
    this.name = 'AgeError';
    this.reason = reason;
  }
}

const headerError = (why: string): AgeError =>
  new AgeError('header', `malformed age header: ${why}`, { hint: 'the file is not an age v1 file, or it is corrupt' });

export interface Stanza {
  /** The first argument of the `->` line. */
  type: string;
  /** The remaining arguments. */
  args: string[];
  body: Buffer;
}

export interface ParsedHeader {
  stanzas: Stanza[];
  /** The bytes the MAC covers: the header up to and including "---". */
  macInput: Buffer;
  mac: Buffer;
  /** Bytes from the start of the file to the end of the MAC line (the payload nonce follows). */
  length: number;
}

// --- base64 ---

const B64_CHARS = /^[A-Za-z0-9+/]*$/;

/** Decodes unpadded base64, refusing any non-canonical form (stray bits, bad length, padding). */
export function decodeBase64(s: string): Buffer | undefined {
  if (!B64_CHARS.test(s)) return undefined;
  const bytes = Buffer.from(s, 'base64');
  return encodeBase64(bytes) === s ? bytes : undefined;
}

export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64').replace(/=+$/, '');
}

// --- parsing ---

/**
 * Parses the header at the start of `buf`. Returns undefined while `buf` holds a valid prefix of a
 * header that is not complete yet.
 * @throws AgeError('header') as soon as the bytes cannot be a valid header, including one larger
 *   than MAX_HEADER_BYTES or with more than MAX_STANZAS stanzas
 */
export function parseHeader(buf: Uint8Array): ParsedHeader | undefined {
  const b = Buffer.from(buf.buffer, buf.byteOffset, Math.min(buf.byteLength, MAX_HEADER_BYTES));
  let pos = 0;
  let lineNo = 0;
  // Reads the next LF-terminated line as latin1 so that every byte stays visible to the checks.
  const nextLine = (): string | undefined => {
    const nl = b.indexOf(0x0a, pos);
    if (nl < 0) return undefined;
    const line = b.toString('latin1', pos, nl);
    pos = nl + 1;
    lineNo++;
    return line;
  };
  const incomplete = (): undefined => {
    if (buf.byteLength >= MAX_HEADER_BYTES) throw headerError(`larger than ${MAX_HEADER_BYTES} bytes`);
    return undefined;
  };

  const version = nextLine();
  if (version === undefined) {
    // Reject a non-age file on its first bytes instead of reading up to the size limit.
    const head = b.toString('latin1', 0, Math.min(b.length, VERSION_LINE.length));
    if (!VERSION_LINE.startsWith(head)) throw headerError('not an age file (no age-encryption.org/v1 line)');
    incomplete();
    return;
  }
  if (version !== VERSION_LINE) {
    throw headerError(version.startsWith('age-encryption.org/') ? 'unsupported age version' : 'not an age file (no age-encryption.org/v1 line)');
  }

  const stanzas: Stanza[] = [];
  for (;;) {
    const lineStart = pos;
    const line = nextLine();
    if (line === undefined) {
      incomplete();
      return;
    }
    if (line.startsWith('-> ')) {
      const args = line.slice(3).split(' ');
      if (args.some((a) => !/^[\x21-\x7e]+$/.test(a))) throw headerError(`stanza ${stanzas.length + 1} has an empty or invalid argument`);
      if (stanzas.length === MAX_STANZAS) throw headerError(`more than ${MAX_STANZAS} recipient stanzas`);
      const lines: string[] = [];
      for (;;) {
        const bodyLine = nextLine();
        if (bodyLine === undefined) {
          incomplete();
          return;
        }
        if (bodyLine.length > BODY_COLUMNS) throw headerError(`stanza ${stanzas.length + 1} has a body line longer than ${BODY_COLUMNS} columns`);
        lines.push(bodyLine);
        if (bodyLine.length < BODY_COLUMNS) break;
      }
      const body = decodeBase64(lines.join(''));
      if (body === undefined) throw headerError(`stanza ${stanzas.length + 1} has a body that is not canonical base64`);
      const [type, ...rest] = args;
      stanzas.push({ type: type!, args: rest, body });
    } else if (line.startsWith('---')) {
      const m = /^--- ([A-Za-z0-9+/]{43})$/.exec(line);
      const mac = m ? decodeBase64(m[1]!) : undefined;
      if (mac === undefined) throw headerError('the MAC line is not "--- " and a canonical base64 32-byte MAC');
      return { stanzas, macInput: Buffer.from(b.subarray(0, lineStart + 3)), mac, length: pos };
    } else {
      throw headerError(`line ${lineNo} is neither a stanza nor the MAC line`);
    }
  }
}

// --- encoding ---

function encodeStanza(s: Stanza): string {
  const b64 = encodeBase64(s.body);
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += BODY_COLUMNS) lines.push(b64.slice(i, i + BODY_COLUMNS));
  // A full last line would read as "more follows", so the body always ends with a short line.
  if (b64.length % BODY_COLUMNS === 0) lines.push('');
  return `-> ${[s.type, ...s.args].join(' ')}\n${lines.join('\n')}\n`;
}

/** HMAC-SHA-256 of the header under the key HKDF(file key, "header"). */
export function headerMac(fileKey: Uint8Array, macInput: Uint8Array): Buffer {
  const key = Buffer.from(hkdfSync('sha256', fileKey, Buffer.alloc(0), 'header', 32));
  return createHmac('sha256', key).update(macInput).digest();
}

/** Encodes a complete header, MAC line included. */
export function encodeHeader(stanzas: Stanza[], fileKey: Uint8Array): Buffer {
  const macInput = Buffer.from(`${VERSION_LINE}\n${stanzas.map(encodeStanza).join('')}---`, 'latin1');
  return Buffer.concat([macInput, Buffer.from(` ${encodeBase64(headerMac(fileKey, macInput))}\n`, 'latin1')]);
}

// --- X25519 stanza ---

const ZERO_NONCE = Buffer.alloc(12);

function wrapKey(shared: Uint8Array, share: Uint8Array, recipient: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, Buffer.concat([share, recipient]), X25519_INFO, 32));
}

/**
 * Wraps the file key to one X25519 recipient with a fresh ephemeral key.
 * @throws AirlockError('bad-recipient') for a key that is not 32 bytes or is a low-order point
 */
export function wrapX25519(fileKey: Uint8Array, recipient: Uint8Array): Stanza {
  if (recipient.length !== KEY_SIZE) throw new AirlockError('bad-recipient', `an X25519 public key is ${KEY_SIZE} bytes, got ${recipient.length}`);
  const ephemeral = randomBytes(KEY_SIZE);
  const share = recipientOf(ephemeral);
  const shared = x25519(ephemeral, recipient);
  if (shared === undefined) throw new AirlockError('bad-recipient', 'the recipient is a low-order point and cannot be encrypted to');
  const cipher = createCipheriv('chacha20-poly1305', wrapKey(shared, share, recipient), ZERO_NONCE, { authTagLength: TAG_SIZE });
  const body = Buffer.concat([cipher.update(fileKey), cipher.final(), cipher.getAuthTag()]);
  return { type: X25519_TYPE, args: [encodeBase64(share)], body };
}

interface PreparedIdentity {
  secret: Uint8Array;
  publicKey: Uint8Array;
}

/**
 * Undefined when the stanza is not for this identity (or not X25519 at all).
 * @throws AgeError('header') for a malformed X25519 stanza or an all-zero shared secret
 */
function unwrapX25519(stanza: Stanza, id: PreparedIdentity): Buffer | undefined {
  if (stanza.type !== X25519_TYPE) return undefined;
  if (stanza.args.length !== 1) throw headerError('an X25519 stanza must have exactly one argument');
  const share = decodeBase64(stanza.args[0]!);
  if (share?.length !== KEY_SIZE) throw headerError('an X25519 share is not 32 bytes in canonical base64');
  if (stanza.body.length !== FILE_KEY_SIZE + TAG_SIZE) throw headerError('an X25519 stanza body is not a wrapped 16-byte file key');
  const shared = x25519(id.secret, share);
  if (shared === undefined) throw headerError('an X25519 share is a low-order point');
  const decipher = createDecipheriv('chacha20-poly1305', wrapKey(shared, share, id.publicKey), ZERO_NONCE, { authTagLength: TAG_SIZE });
  decipher.setAuthTag(stanza.body.subarray(FILE_KEY_SIZE));
  const fileKey = decipher.update(stanza.body.subarray(0, FILE_KEY_SIZE));
  try {
    decipher.final();
  } catch {
    return undefined;
  }
  return fileKey;
}

/**
 * Finds the file key for one of `identities` and checks the header MAC with it.
 * @throws AgeError('header') for a malformed X25519 stanza, AgeError('no-match') when no identity
 *   unwraps any stanza, AgeError('hmac') when the MAC does not match
 */
export function unwrapFileKey(header: ParsedHeader, identities: Uint8Array[]): Buffer {
  let fileKey: Buffer | undefined;
  for (const secret of identities) {
    const id = { secret, publicKey: recipientOf(secret) };
    for (const stanza of header.stanzas) {
      fileKey = unwrapX25519(stanza, id);
      if (fileKey) break;
    }
    if (fileKey) break;
  }
  if (fileKey === undefined) {
    throw new AgeError('no-match', 'no identity matches a recipient of this age file', {
      hint: 'use the identity (secret key) whose recipient the file was encrypted to',
    });
  }
  if (!timingSafeEqual(headerMac(fileKey, header.macInput), header.mac)) {
    throw new AgeError('hmac', 'the age header MAC does not match', { hint: 'the header was modified or is corrupt' });
  }
  return fileKey;
}
