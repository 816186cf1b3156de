/*
 * OpenSSH allowed_signers files (ssh-keygen(1), "ALLOWED SIGNERS"), the trust list that
 * `ssh-keygen -Y verify -f allowed_signers -I <principal>` reads. One entry per line:
 *
 *   principals [options] keytype base64-key [comment]
 *
 * - principals: a comma-separated pattern list (`*`, `?`, `!negation`), optionally in double quotes
 *   so it may contain spaces;
 * - options, comma-separated: cert-authority, namespaces="pattern-list", valid-after="time",
 *   valid-before="time" (names case-insensitive), time being YYYYMMDD[HHMM[SS]] in local time or
 *   with a "Z" / "UTC" suffix for UTC;
 * - blank lines and lines starting with "#" are ignored.
 *
 * Matching follows sshsig.c: a line authorizes a key when the key is equal (cert-authority lines
 * only vouch for certificates, which airlock never verifies), the principal matches the list, the
 * namespace matches the namespaces list if there is one, and the time in whole seconds is not
 * before valid-after nor after valid-before.
 *
 * One deliberate difference: ssh-keygen only parses lines whose principals match and silently skips
 * broken ones, while we reject a broken file outright, so a typo cannot quietly drop a trusted key
 * or leave an untrusted one in. Lines with other key types are skipped: airlock only verifies
 * ssh-ed25519 signatures, but a shared file may list RSA or ECDSA keys for other uses.
 */

import { AirlockError } from './errors.js';
import { ED25519_KEY_TYPE, decodeBase64Strict, parsePublicKeyBlob } from './sshkey.js';

export interface AllowedSigner {
  /** the principal patterns, split at commas, quotes removed */
  principals: string[];
  publicKey: Uint8Array;
  /** the namespaces="..." patterns, split at commas */
  namespaces?: string[];
  validAfter?: Date;
  validBefore?: Date;
  certAuthority: boolean;
  /** 1-based line number in the file */
  line: number;
}

/** Key type names OpenSSH knows; after the principals, one of these means "no options". */
const KNOWN_KEY_TYPES = new Set([
  'ssh-ed25519',
  'ssh-ed25519-cert-v01@openssh.com',
  'sk-ssh-ed25519@openssh.com',
  'sk-ssh-ed25519-cert-v01@openssh.com',
  'ssh-rsa',
  'rsa-sha2-256',
  'rsa-sha2-512',
  'ssh-rsa-cert-v01@openssh.com',
  'rsa-sha2-256-cert-v01@openssh.com',
  'rsa-sha2-512-cert-v01@openssh.com',
  'ssh-dss',
  'ssh-dss-cert-v01@openssh.com',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'ecdsa-sha2-nistp256-cert-v01@openssh.com',
  'ecdsa-sha2-nistp384-cert-v01@openssh.com',
  'ecdsa-sha2-nistp521-cert-v01@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
  'sk-ecdsa-sha2-nistp256-cert-v01@openssh.com',
  'webauthn-sk-ecdsa-sha2-nistp256@openssh.com',
  'ssh-xmss@openssh.com',
  'ssh-xmss-cert-v01@openssh.com',
]);

const HINT = 'see "ALLOWED SIGNERS" in ssh-keygen(1); each line is: principals [options] ssh-ed25519 <base64-key>';
/** OpenSSH's match_pattern_list gives up (no match) on a sub-pattern this long */
const MAX_SUBPATTERN = 1023;
const WHITESPACE = ' \t\r\n';

/**
 * Parses an allowed_signers file. Entries with key types other than ssh-ed25519 are left out.
 *
 * @throws AirlockError 'bad-allowed-signers' ("line N: ...") for a line that is not a valid entry:
 *   unterminated quote, missing or damaged key, unknown or repeated option, bad time, valid-before
 *   not after valid-after.
 */
export function parseAllowedSigners(text: string): AllowedSigner[] {
  const signers: AllowedSigner[] = [];
  text.split('\n').forEach((raw, index) => {
    const signer = parseLine(raw, index + 1);
    if (signer !== undefined) signers.push(signer);
  });
  return signers;
}

/**
 * The principal patterns of every entry that authorizes `publicKey` for `namespace` at `now`, in
 * file order without duplicates. Negated patterns ("!x") authorize nothing and are left out.
 */
export function principalsFor(signers: AllowedSigner[], publicKey: Uint8Array, namespace: string, now: Date): string[] {
  const out: string[] = [];
  for (const s of signers) {
    if (!entryApplies(s, publicKey, namespace, now)) continue;
    for (const p of s.principals) if (p !== '' && !p.startsWith('!') && !out.includes(p)) out.push(p);
  }
  return out;
}

/**
 * Whether some entry lets `publicKey` sign as `principal` in `namespace` at `now`, exactly as
 * `ssh-keygen -Y verify -I principal -n namespace` decides (with -Overify-time=now).
 */
export function isAllowed(signers: AllowedSigner[], principal: string, publicKey: Uint8Array, namespace: string, now: Date): boolean {
  return signers.some((s) => matchPatternList(principal, s.principals.join(',')) && entryApplies(s, publicKey, namespace, now));
}

function entryApplies(s: AllowedSigner, publicKey: Uint8Array, namespace: string, now: Date): boolean {
  if (s.certAuthority || !sameBytes(s.publicKey, publicKey)) return false;
  if (s.namespaces !== undefined && !matchPatternList(namespace, s.namespaces.join(','))) return false;
  // ssh-keygen compares whole seconds: valid-before is inclusive, valid-after too.
  const t = Math.floor(now.getTime() / 1000);
  if (s.validAfter !== undefined && t < s.validAfter.getTime() / 1000) return false;
  if (s.validBefore !== undefined && t > s.validBefore.getTime() / 1000) return false;
  return true;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function parseLine(raw: string, line: number): AllowedSigner | undefined {
  const fail = (reason: string): never => {
    throw new AirlockError('bad-allowed-signers', `line ${line}: ${reason}`, { hint: HINT });
  };
  let pos = skip(raw, 0, WHITESPACE);
  if (pos >= raw.length || raw[pos] === '#') return undefined;

  // The principals token ends at the first blank; a double quote anywhere opens a quoted run that
  // may hold blanks, the quotes themselves are dropped (OpenSSH strdelimw).
  let principalText = '';
  for (;;) {
    if (pos >= raw.length) fail('missing key after the principals');
    const c = raw[pos] as string;
    if (c === '"') {
      const close = raw.indexOf('"', pos + 1);
      if (close < 0) fail('unterminated quote in the principals');
      principalText += raw.slice(pos + 1, close);
      pos = close + 1;
      break;
    }
    if (WHITESPACE.includes(c)) break;
    principalText += c;
    pos++;
  }
  pos = skip(raw, pos, WHITESPACE);

  let optionText: string | undefined;
  if (!KNOWN_KEY_TYPES.has(word(raw, pos)) && !looksLikeKey(raw, pos)) {
    const end = endOfOptions(raw, pos);
    if (end === undefined) fail('unterminated quote in the options');
    optionText = raw.slice(pos, end);
    pos = skip(raw, end as number, ' \t');
  }
  const keyType = word(raw, pos);
  if (keyType === '' || pos >= raw.length) fail('missing key');
  const options = parseOptions(optionText ?? '', fail);
  if (!KNOWN_KEY_TYPES.has(keyType) && !looksLikeKey(raw, pos)) fail(`unknown key type ${JSON.stringify(keyType.slice(0, 64))}`);
  if (keyType !== ED25519_KEY_TYPE) return undefined; // another key type: not ours to check

  const base64 = word(raw, skip(raw, pos + keyType.length, ' \t'));
  if (base64 === '') fail('missing key after ssh-ed25519');
  const blob = decodeBase64Strict(base64);
  if (blob === undefined) fail('key is not valid base64');
  const publicKey = parsePublicKeyBlob(blob as Buffer, (reason) => fail(`key is damaged: ${reason}`));

  const signer: AllowedSigner = {
    principals: principalText.split(','),
    publicKey: new Uint8Array(publicKey),
    certAuthority: options.certAuthority,
    line,
  };
  if (options.namespaces !== undefined) signer.namespaces = options.namespaces.split(',');
  if (options.validAfter !== undefined) signer.validAfter = options.validAfter;
  if (options.validBefore !== undefined) signer.validBefore = options.validBefore;
  return signer;
}

function skip(s: string, pos: number, chars: string): number {
  while (pos < s.length && chars.includes(s[pos] as string)) pos++;
  return pos;
}

/** the text from pos to the next space or tab (a key's base64 may carry a trailing "\r") */
function word(s: string, pos: number): string {
  let end = pos;
  while (end < s.length && s[end] !== ' ' && s[end] !== '\t') end++;
  return s.slice(pos, end).replace(/[\r\n]+$/, '');
}

/**
 * A key type OpenSSH learned after this list was written still reads as a key when its base64
 * blob names that same type, so it is skipped rather than taken for options.
 */
function looksLikeKey(s: string, pos: number): boolean {
  const type = word(s, pos);
  const blob = decodeBase64Strict(word(s, skip(s, pos + type.length, ' \t')));
  if (blob === undefined || blob.length < 4) return false;
  const n = blob.readUInt32BE(0);
  return n === type.length && blob.subarray(4, 4 + n).toString('latin1') === type;
}

/** Options end at the first blank outside double quotes; \" does not close a quote. */
function endOfOptions(s: string, pos: number): number | undefined {
  let quoted = false;
  for (; pos < s.length; pos++) {
    const c = s[pos];
    if (c === '\\' && s[pos + 1] === '"') pos++;
    else if (c === '"') quoted = !quoted;
    else if (!quoted && (c === ' ' || c === '\t')) break;
  }
  return quoted ? undefined : pos;
}

interface Options {
  certAuthority: boolean;
  namespaces?: string;
  validAfter?: Date;
  validBefore?: Date;
}

function parseOptions(text: string, fail: (reason: string) => never): Options {
  const out: Options = { certAuthority: false };
  let pos = 0;
  const startsWith = (name: string): boolean => text.slice(pos, pos + name.length).toLowerCase() === name;
  // A quoted value; \" inside stands for a quote.
  const value = (name: string): string => {
    if (text[pos] !== '"') fail(`option ${name} needs a value in double quotes`);
    let v = '';
    for (pos++; pos < text.length && text[pos] !== '"'; pos++) {
      if (text[pos] === '\\' && text[pos + 1] === '"') pos++;
      v += text.charAt(pos);
    }
    if (pos >= text.length) fail(`option ${name} has no closing quote`);
    pos++;
    return v;
  };
  while (pos < text.length) {
    if (startsWith('cert-authority')) {
      pos += 'cert-authority'.length;
      out.certAuthority = true;
    } else if (startsWith('namespaces=')) {
      if (out.namespaces !== undefined) fail('namespaces is given twice');
      pos += 'namespaces='.length;
      out.namespaces = value('namespaces');
    } else if (startsWith('valid-after=') || startsWith('valid-before=')) {
      const name = startsWith('valid-after=') ? 'valid-after' : 'valid-before';
      const key = name === 'valid-after' ? 'validAfter' : 'validBefore';
      if (out[key] !== undefined) fail(`${name} is given twice`);
      pos += name.length + 1;
      const raw = value(name);
      const date = parseTime(raw);
      if (date === undefined) fail(`${name} ${JSON.stringify(raw.slice(0, 40))} is not YYYYMMDD[HHMM[SS]][Z]`);
      out[key] = date;
    }
    if (pos >= text.length) break;
    if (text[pos] !== ',') {
      const name = /^[^,=]*/.exec(text.slice(pos))?.[0] ?? '';
      fail(`unknown option ${JSON.stringify(name.slice(0, 40))}`);
    }
    pos++;
    if (pos >= text.length) fail('options end with a comma');
  }
  if (out.validAfter !== undefined && out.validBefore !== undefined && out.validBefore <= out.validAfter) {
    fail('valid-before is not after valid-after');
  }
  return out;
}

/**
 * YYYYMMDD[HHMM[SS]] with an optional "Z" or "UTC" suffix (any case) for UTC, otherwise local
 * time, as OpenSSH's parse_absolute_time. Out-of-range days roll over (20240230 is 1 March), as
 * mktime does. Times at or before the Unix epoch are refused, as OpenSSH refuses them.
 */
function parseTime(text: string): Date | undefined {
  let s = text;
  let utc = false;
  if (s.length > 1 && s.slice(-1).toUpperCase() === 'Z') {
    utc = true;
    s = s.slice(0, -1);
  } else if (s.length > 3 && s.slice(-3).toUpperCase() === 'UTC') {
    utc = true;
    s = s.slice(0, -3);
  }
  if (!/^\d+$/.test(s) || ![8, 12, 14].includes(s.length)) return undefined;
  const n = (from: number): number => (from < s.length ? Number(s.slice(from, from + 2)) : 0);
  const [year, month, day, hour, minute, second] = [Number(s.slice(0, 4)), n(4), n(6), n(8), n(10), n(12)];
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 61) return undefined;
  let ms = Date.UTC(2000, month - 1, day, hour, minute, second);
  // Date.UTC maps years 0-99 to 19xx, so the year goes in separately.
  const d = new Date(ms);
  d.setUTCFullYear(year, month - 1, day);
  ms = d.getTime();
  if (!utc) ms += standardOffsetMinutes(year) * 60_000;
  return ms <= 0 ? undefined : new Date(ms);
}

/**
 * OpenSSH calls mktime with tm_isdst = 0, so a local time is read as standard time even in summer.
 * The standard offset is the larger of January's and July's (getTimezoneOffset is minutes west).
 * That is what glibc does everywhere except in zones that tzdata gives "negative DST" (Europe/Dublin,
 * Africa/Casablanca), where we are an hour off; JavaScript cannot see the isdst flag. Entries that
 * must mean the same on every machine should use the "Z" suffix anyway.
 */
function standardOffsetMinutes(year: number): number {
  const jan = new Date(Date.UTC(year, 0, 1)).getTimezoneOffset();
  const jul = new Date(Date.UTC(year, 6, 1)).getTimezoneOffset();
  return Math.max(jan, jul);
}

/**
 * OpenSSH's match_pattern_list: true only when some sub-pattern matches and no negated one does.
 * Works on UTF-8 bytes so `?` is one byte, as in C.
 */
function matchPatternList(subject: string, list: string): boolean {
  const s = Buffer.from(subject, 'utf8');
  const items = Buffer.from(list, 'utf8').toString('latin1').split(',');
  // OpenSSH reads "a,,b" and ",a" as holding an empty pattern, but not "a," or "".
  if (list === '' || list.endsWith(',')) items.pop();
  let positive = false;
  for (const item of items) {
    const negated = item.startsWith('!');
    const pattern = Buffer.from(negated ? item.slice(1) : item, 'latin1');
    if (pattern.length >= MAX_SUBPATTERN) return false;
    if (matchPattern(s, pattern)) {
      if (negated) return false;
      positive = true;
    }
  }
  return positive;
}

/** Glob with `*` (any run) and `?` (one byte), iterative so hostile patterns stay linear-ish. */
function matchPattern(s: Buffer, p: Buffer): boolean {
  const STAR = 0x2a;
  const QUESTION = 0x3f;
  let si = 0;
  let pi = 0;
  let starP = -1;
  let starS = 0;
  while (si < s.length) {
    if (pi < p.length && (p[pi] === QUESTION || (p[pi] === s[si] && p[pi] !== STAR))) {
      si++;
      pi++;
    } else if (pi < p.length && p[pi] === STAR) {
      starP = pi++;
      starS = si;
    } else if (starP >= 0) {
      pi = starP + 1;
      si = ++starS;
    } else {
      return false;
    }
  }
  while (pi < p.length && p[pi] === STAR) pi++;
  return pi === p.length;
}
