/*
 * SSHSIG signatures (OpenSSH's PROTOCOL.sshsig), the format of `ssh-keygen -Y sign/verify`, over
 * Ed25519 keys with node:crypto only.
 *
 * The armored file is "-----BEGIN SSH SIGNATURE-----\n", base64 at 70 columns, then
 * "-----END SSH SIGNATURE-----\n", around the blob
 *   byte[6] "SSHSIG"  uint32 version (1)  string public-key-blob  string namespace
 *   string reserved  string hash-algorithm  string signature-blob
 * where the signature blob is string "ssh-ed25519" + string sig(64). What the key signs is
 *   byte[6] "SSHSIG"  string namespace  string reserved("")  string hash-algorithm  string H(message)
 * and we hash with sha512 as ssh-keygen does; sha256 is accepted when verifying.
 *
 * The verifier deliberately reproduces ssh-keygen's acceptance rules (OpenSSH sshsig.c), because
 * auditors check the same files with stock ssh-keygen and the two must never disagree:
 * - the header line must start the file and end in a bare "\n"; anything after the END line is
 *   ignored; the base64 follows b64_pton (see decodeBase64Strict);
 * - versions up to 1 are accepted (so 0 is), and the reserved field is skipped unread: it is not
 *   covered by the signature, which is always computed with an empty reserved field;
 * - strings read as C strings may end in one NUL, which is dropped;
 * - the Ed25519 check is OpenSSH's: S only needs its top three bits clear instead of being fully
 *   reduced below the group order L, so S and S+L both verify (see canonicalS).
 */

import { createHash, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import { AirlockError } from './errors.js';
import { LIMITS } from './limits.js';
import {
  ED25519_KEY_TYPE,
  WireReader,
  decodeBase64Strict,
  ed25519PublicKeyObject,
  parsePublicKeyBlob,
  publicKeyBlob,
  sshString,
  u32,
  wrap70,
  type SigningKey,
} from './sshkey.js';

export const BUNDLE_NAMESPACE = 'airlock-bundle';

const MAGIC = Buffer.from('SSHSIG', 'latin1');
const VERSION = 1;
const BEGIN = '-----BEGIN SSH SIGNATURE-----\n';
const END = '-----END SSH SIGNATURE-----';
/** An Ed25519 signature is under 300 bytes armored; this bounds what we read from a medium. */
/** An armored signature is a few hundred bytes; anything near this is not one. */
export const SIG_LIMIT = LIMITS.signatureBytes;
const MAX_ARMORED = SIG_LIMIT;
const HASH = 'sha512';
/** the order of the Ed25519 base point */
const L = 2n ** 252n + 27742317777372353535851937790883648493n;

type HashAlgorithm = 'sha256' | 'sha512';

interface ParsedSignature {
  publicKey: Uint8Array;
  namespace: string;
  hashAlgorithm: HashAlgorithm;
  signature: Uint8Array;
}

/**
 * Signs `message` in `namespace` and returns the armored signature, byte-identical to what
 * `ssh-keygen -Y sign` writes for the same key, namespace and message.
 *
 * @throws AirlockError 'usage' for an empty namespace; 'bad-key' when the key's private half does
 *   not produce signatures its public half verifies.
 */
export function sign(key: SigningKey, message: Uint8Array, namespace: string): string {
  if (namespace === '') throw new AirlockError('usage', 'signature namespace must not be empty');
  const digest = createHash(HASH).update(message).digest();
  const signed = signedData(namespace, HASH, digest);
  const signature = cryptoSign(null, signed, key.privateKey);
  // Catches a SigningKey whose halves were mixed up (and faults) before the signature leaves us.
  if (!cryptoVerify(null, signed, ed25519PublicKeyObject(key.publicKey), signature)) {
    throw new AirlockError('bad-key', 'signing key does not match its public key', {
      hint: 'load the signing key again from its file',
    });
  }
  const blob = Buffer.concat([
    MAGIC,
    u32(VERSION),
    sshString(publicKeyBlob(key.publicKey)),
    sshString(namespace),
    sshString(''),
    sshString(HASH),
    sshString(Buffer.concat([sshString(ED25519_KEY_TYPE), sshString(signature)])),
  ]);
  return `${BEGIN}${wrap70(blob.toString('base64'))}${END}\n`;
}

/**
 * Decodes an armored SSHSIG signature without checking it.
 *
 * @throws AirlockError 'malformed' when the armor, base64 or structure is broken, the file is larger
 *   than 16 KiB, or the hash algorithm is not sha256/sha512; 'bad-signature' when the signature is
 *   well formed but made with a key type other than ssh-ed25519.
 */
export function parseSignature(armored: string): ParsedSignature {
  return parse(armored).parsed;
}

/**
 * Checks an armored SSHSIG signature over `message` in `namespace`, as `ssh-keygen -Y
 * check-novalidate` does; whether the key is trusted is the caller's business (allowed-signers.ts).
 *
 * @throws AirlockError 'bad-signature' when the namespace differs, the key type is not ssh-ed25519,
 *   or the signature does not match the message; 'malformed' as parseSignature.
 */
export function verify(armored: string, message: Uint8Array, namespace: string): { publicKey: Uint8Array } {
  const { parsed, namespaceBytes } = parse(armored);
  if (!namespaceBytes.equals(Buffer.from(namespace, 'utf8'))) {
    throw new AirlockError('bad-signature', `signature is for namespace ${JSON.stringify(parsed.namespace.slice(0, 100))}, not ${JSON.stringify(namespace)}`, {
      hint: 'the signature was made for another purpose; it cannot vouch for this file',
    });
  }
  const digest = createHash(parsed.hashAlgorithm).update(message).digest();
  const signature = canonicalS(parsed.signature);
  let ok = false;
  if (signature !== undefined) {
    try {
      ok = cryptoVerify(null, signedData(namespace, parsed.hashAlgorithm, digest), ed25519PublicKeyObject(parsed.publicKey), signature);
    } catch {
      ok = false; // a public key that is not a curve point cannot have signed anything
    }
  }
  if (!ok) {
    throw new AirlockError('bad-signature', 'signature does not match the signed data', {
      hint: 'the file was changed after signing, or the signature belongs to another file',
    });
  }
  return { publicKey: parsed.publicKey };
}

function signedData(namespace: string, hashAlgorithm: string, digest: Buffer): Buffer {
  return Buffer.concat([MAGIC, sshString(namespace), sshString(''), sshString(hashAlgorithm), sshString(digest)]);
}

/**
 * OpenSSH's Ed25519 (SUPERCOP ref10) rejects a signature only when the top three bits of S are set
 * and otherwise reduces S modulo L; OpenSSL insists on S < L. Since [S]B = [S mod L]B, reducing S
 * first makes OpenSSL accept exactly the signatures OpenSSH accepts. Returns undefined when the
 * top bits are set.
 */
function canonicalS(signature: Uint8Array): Buffer | undefined {
  const sig = Buffer.from(signature);
  if (((sig[63] as number) & 0xe0) !== 0) return undefined;
  let s = 0n;
  for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i] as number);
  if (s < L) return sig;
  s %= L;
  for (let i = 32; i < 64; i++) {
    sig[i] = Number(s & 0xffn);
    s >>= 8n;
  }
  return sig;
}

function parse(armored: string): { parsed: ParsedSignature; namespaceBytes: Buffer } {
  const malformed = (reason: string, hint?: string): never => {
    throw new AirlockError('malformed', `signature is malformed: ${reason}`, hint === undefined ? {} : { hint });
  };
  if (Buffer.byteLength(armored, 'utf8') > MAX_ARMORED) malformed(`larger than ${MAX_ARMORED / 1024} KiB`);
  if (!armored.startsWith(BEGIN)) {
    if (armored.startsWith(BEGIN.slice(0, -1))) {
      malformed('header line does not end in a plain newline', 'convert the file to Unix line endings; ssh-keygen refuses it too');
    }
    malformed('no "-----BEGIN SSH SIGNATURE-----" line at the start');
  }
  // The first "\n-----END" after the header closes the armor; ssh-keygen ignores what follows.
  const end = armored.indexOf(`\n${END}`, BEGIN.length);
  if (end < 0) malformed('no "-----END SSH SIGNATURE-----" line (truncated?)');
  // ssh-keygen reads the body as a C string (sshbuf_dup_string): one NUL may end it, any other is refused.
  const raw = armored.slice(BEGIN.length, end);
  const body = raw.endsWith('\0') ? raw.slice(0, -1) : raw;
  const blob = body.includes('\0') ? undefined : decodeBase64Strict(body);
  if (blob === undefined) return malformed('not valid base64');

  const r = new WireReader(blob, (reason) => malformed(reason));
  if (!r.bytes(MAGIC.length).equals(MAGIC)) malformed('not an SSHSIG signature');
  const version = r.u32();
  if (version > VERSION) malformed(`version ${version} is not supported`);
  const keyBlob = r.string();
  const namespaceBytes = r.cstringBytes();
  r.string(); // reserved: not signed, so ssh-keygen skips it whatever it holds
  const hashName = r.cstring();
  const sigBlob = r.string();
  r.end();
  if (hashName !== 'sha256' && hashName !== 'sha512') {
    malformed(`unsupported hash algorithm ${JSON.stringify(hashName.slice(0, 40))}`);
  }

  const keyType = new WireReader(keyBlob, (reason) => malformed(`public key: ${reason}`)).cstring();
  if (keyType !== ED25519_KEY_TYPE) {
    throw new AirlockError('bad-signature', `signature was made with a ${JSON.stringify(keyType.slice(0, 64))} key, not ${ED25519_KEY_TYPE}`, {
      hint: 'airlock bundles are signed with ed25519 keys; check which key signed this file',
    });
  }
  const publicKey = parsePublicKeyBlob(keyBlob, (reason) => malformed(`public key: ${reason}`));
  const s = new WireReader(sigBlob, (reason) => malformed(`signature blob: ${reason}`));
  if (s.cstring() !== ED25519_KEY_TYPE) malformed('signature blob type does not match the key');
  const signature = s.string();
  s.end();
  if (signature.length !== 64) malformed(`ed25519 signature is ${signature.length} bytes, not 64`);
  return {
    parsed: {
      publicKey: new Uint8Array(publicKey),
      namespace: namespaceBytes.toString('utf8'),
      hashAlgorithm: hashName as HashAlgorithm,
      signature: new Uint8Array(signature),
    },
    namespaceBytes,
  };
}
