/*
 * The bundle's plaintext: one POSIX tar stream, written and read here.
 *
 * Written (a strict subset of pax, POSIX.1-2001 "pax interchange format"):
 *   - 512-byte ustar headers, magic "ustar\0" version "00", typeflag '0' (file) or '5' (directory),
 *     uid/gid 0, empty uname/gname, devmajor/devminor 0, octal fields NUL-terminated, directory
 *     names WITHOUT a trailing slash (so a read gives back exactly the path that was written);
 *   - the name/prefix split when an ASCII path fits in 100 + 155 bytes;
 *   - one pax 'x' header before an entry when it needs one: a non-ASCII or too-long path ('path'),
 *     a size of 8 GiB or more ('size'), an mtime outside 0..8^11-1 ('mtime'), or any AIRLOCK.*
 *     record. Records are emitted in a fixed order, so equal input gives equal bytes;
 *   - the end-of-archive marker: two zero blocks (no padding to a 10 KiB record: tar does not need it).
 * Writers should emit a directory before its contents and keep the contents together (depth-first):
 * GNU tar sets a directory's mtime once it leaves it, so coming back later would change it again.
 * GNU tar extracts AIRLOCK.* records silently only with --warning=no-unknown-keyword; without it
 * it warns "Ignoring unknown extended header keyword" once per key and still exits 0.
 *
 * Accepted by readTar (anything else that is structural is AirlockError('malformed') with an offset):
 *   - headers with "ustar\0" + "00" (POSIX) or "ustar  \0" (GNU) magic and an unsigned checksum;
 *     the prefix field is only joined to the name for the POSIX magic (GNU keeps other data there);
 *   - octal numeric fields (leading spaces, NUL/space terminated) and base-256 numbers;
 *   - pax 'x' and 'g' headers (<= 1 MiB). 'x' records apply to the next entry; 'g' records apply to
 *     every later entry, as POSIX says, AND the 'g' header is yielded as its own entry so a consumer
 *     sees that the stream is not one airlock wrote;
 *   - GNU 'L'/'K' long names are APPLIED to the next entry (its path/linkpath is the long one), so
 *     the reader sees the name that GNU tar would extract to; they are not yielded on their own;
 *   - GNU old-style sparse 'S' headers with extension blocks (skipped, so framing stays right);
 *   - every other typeflag is yielded raw, its body framed by its size, as POSIX says of unknown
 *     types. Links, devices, FIFOs, absolute and '..' paths are well-formed and therefore yielded:
 *     judging them is entryProblem's job, so a verifier can report them and go on.
 * Deliberately refused as malformed because readers disagree on them and an entry could hide in
 * the difference: a non-zero size on typeflags '1'..'6', two pax (or two 'L'/'K') headers for one
 * entry, a metadata header not followed by an entry, duplicate keys in one pax header (except the
 * GNU.sparse.* ones, which GNU sparse 0.0 repeats), a lone zero block, and anything but zero bytes
 * after the end-of-archive marker. More than 64 global records in force is refused too, since they
 * are copied into every entry.
 * Text (names, pax values) is decoded as UTF-8; bytes that are not UTF-8 become U+FFFD, which
 * entryProblem then rejects, so a foreign name can never silently alias another one.
 */

import { AirlockError } from './errors.js';
import { LIMITS } from './limits.js';

const BLOCK = 512;
/** The largest value an 11-digit octal field holds: 8 GiB - 1. */
const OCTAL11_MAX = 8 ** 11 - 1;
/** Upper bound on a pax or GNU long-name body (read and written): a path is <= 4 KiB, an object key <= 1 KiB. */
export const MAX_META_BYTES = LIMITS.paxHeaderBytes;
/** The longest path entryProblem accepts and encodeHeader writes, in UTF-8 bytes (Linux PATH_MAX). */
export const MAX_PATH_BYTES = LIMITS.tarPathBytes;

const ZERO_BLOCK: Buffer = Buffer.alloc(BLOCK);
const EMPTY: Buffer = Buffer.alloc(0);

/** Two zero blocks: what ends every tar stream (a shared buffer: do not write to it). */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(2 * BLOCK);

export interface EntryHeader {
  /** relative, '/'-separated; for directories without trailing slash */
  path: string;
  type: 'file' | 'dir';
  /** bytes (files); 0 for dirs; may exceed 8 GiB (then a pax size record is written) */
  size: number;
  /** permission bits only (0o7777 mask) */
  mode: number;
  /** seconds since the epoch (integer) */
  mtime: number;
  /** extra pax records; keys must match /^AIRLOCK\.[A-Za-z0-9_.]+$/ */
  pax?: Record<string, string>;
}

export interface ReadEntry {
  /** exactly as stored (after applying pax 'path' or a GNU long name), no normalisation */
  path: string;
  /** raw typeflag character, e.g. '0' file, '5' dir, '2' symlink, '\0' old-style file, 'g' global pax */
  typeflag: string;
  size: number;
  /** masked to 0o7777 */
  mode: number;
  mtime: number;
  linkpath: string;
  /** all pax records that applied to this entry (global ones included); for a 'g' entry, its own */
  pax: Record<string, string>;
  /** byte offset of this entry's first header (its pax / long-name header if any) in the stream */
  offset: number;
}

export type EntryProblem = 'absolute-path' | 'dot-dot' | 'bad-path' | 'link' | 'device' | 'unsupported-type' | 'duplicate';

// ------------------------------------------------------------------------------------------------
// Writing
// ------------------------------------------------------------------------------------------------

const AIRLOCK_KEY = /^AIRLOCK\.[A-Za-z0-9_.]+$/;

const ASCII = /^[\x00-\x7f]*$/;

interface Plan {
  name: string;
  prefix: string;
  sizeField: number;
  mtimeField: number;
  pax: Buffer | undefined;
  headerBytes: number;
}

function bug(message: string): AirlockError {
  return new AirlockError('internal', `tar writer: ${message}`);
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A lone surrogate would be silently replaced by U+FFFD in UTF-8, so it could not round-trip. */
function isWellFormed(s: string): boolean {
  return !LONE_SURROGATE.test(s);
}

function paxRecord(key: string, value: string): string {
  // The length prefix counts its own digits: find the digit count d with len(kv + d) == d.
  const kv = Buffer.byteLength(key) + Buffer.byteLength(value) + 3; // ' ', '=', '\n'
  let d = 1;
  while (String(kv + d).length !== d) d++;
  return `${kv + d} ${key}=${value}\n`;
}

/**
 * A stand-in ustar name for readers that do not know pax: restricted to [A-Za-z0-9_/-] so that
 * cutting it at 100 bytes can never form '..', '.', or an absolute path.
 */
function fallbackName(path: string): string {
  return path.replace(/[^A-Za-z0-9_/-]/g, '_').slice(0, 100);
}

function plan(h: EntryHeader): Plan {
  // the type is checked where the header is parsed; a new type must not reach here unplanned
  const type: string = h.type;
  if (type !== 'file' && type !== 'dir') throw bug(`unknown entry type ${JSON.stringify(type)}`);
  const problem = pathProblem(h.path);
  if (problem !== undefined) throw bug(`refusing to write ${problem} path ${JSON.stringify(h.path)}`);
  if (!isWellFormed(h.path)) throw bug(`path ${JSON.stringify(h.path)} is not well-formed unicode`);
  if (!Number.isSafeInteger(h.size) || h.size < 0) throw bug(`bad size ${h.size} for ${JSON.stringify(h.path)}`);
  if (h.type === 'dir' && h.size !== 0) throw bug(`directory ${JSON.stringify(h.path)} with size ${h.size}`);
  if (!Number.isInteger(h.mode) || h.mode < 0 || h.mode > 0o7777) throw bug(`bad mode ${h.mode} for ${JSON.stringify(h.path)}`);
  if (!Number.isSafeInteger(h.mtime)) throw bug(`bad mtime ${h.mtime} for ${JSON.stringify(h.path)}`);

  let name = h.path;
  let prefix = '';
  let paxText = '';
  const len = h.path.length; // == bytes when ASCII
  if (!ASCII.test(h.path) || len > 256) {
    paxText += paxRecord('path', h.path);
    name = fallbackName(h.path);
  } else if (len > 100) {
    // The longest prefix that fits leaves the shortest name; if even that is too long, nothing fits.
    const cut = h.path.lastIndexOf('/', 155);
    if (cut > 0 && len - cut - 1 <= 100) {
      prefix = h.path.slice(0, cut);
      name = h.path.slice(cut + 1);
    } else {
      paxText += paxRecord('path', h.path);
      name = fallbackName(h.path);
    }
  }
  let sizeField = h.size;
  if (h.size > OCTAL11_MAX) {
    paxText += paxRecord('size', String(h.size));
    sizeField = 0;
  }
  let mtimeField = h.mtime;
  if (h.mtime < 0 || h.mtime > OCTAL11_MAX) {
    paxText += paxRecord('mtime', String(h.mtime));
    mtimeField = h.mtime < 0 ? 0 : OCTAL11_MAX;
  }
  if (h.pax !== undefined) {
    // Sorted so that the bytes do not depend on the order the caller built the object in.
    for (const key of Object.keys(h.pax).sort()) {
      const value = h.pax[key] as string;
      if (!AIRLOCK_KEY.test(key)) throw bug(`pax key ${JSON.stringify(key)} is not AIRLOCK.*`);
      if (typeof value !== 'string' || !isWellFormed(value)) throw bug(`pax value for ${key} is not a well-formed string`);
      // An empty value means "delete the record" in pax, so it would not read back.
      if (value === '') throw bug(`pax value for ${key} is empty`);
      paxText += paxRecord(key, value);
    }
  }
  let pax: Buffer | undefined;
  let headerBytes = BLOCK;
  if (paxText !== '') {
    pax = Buffer.from(paxText, 'utf8');
    if (pax.length > MAX_META_BYTES) throw bug(`pax header of ${pax.length} bytes for ${JSON.stringify(h.path)} exceeds what readers accept`);
    headerBytes += BLOCK + roundUp(pax.length);
  }
  return { name, prefix, sizeField, mtimeField, pax, headerBytes };
}

function roundUp(n: number): number {
  return Math.ceil(n / BLOCK) * BLOCK;
}

/** Zero-padded octal digits and a NUL; digit by digit because this runs for every entry. */
function writeOctal(buf: Buffer, off: number, len: number, value: number): void {
  let v = value;
  for (let i = off + len - 2; i >= off; i--) {
    buf[i] = 0x30 + (v % 8);
    v = Math.floor(v / 8);
  }
  buf[off + len - 1] = 0;
}

/** `s` is ASCII here (see plan), so one byte per UTF-16 unit. */
function writeAscii(buf: Buffer, off: number, s: string): void {
  for (let i = 0; i < s.length; i++) buf[off + i] = s.charCodeAt(i);
}

const MAGIC = Buffer.from('ustar\u000000', 'latin1');

function writeUstar(buf: Buffer, off: number, f: { name: string; prefix: string; mode: number; size: number; mtime: number; typeflag: string }): void {
  writeAscii(buf, off, f.name);
  writeOctal(buf, off + 100, 8, f.mode);
  writeOctal(buf, off + 108, 8, 0); // uid
  writeOctal(buf, off + 116, 8, 0); // gid
  writeOctal(buf, off + 124, 12, f.size);
  writeOctal(buf, off + 136, 12, f.mtime);
  buf[off + 156] = f.typeflag.charCodeAt(0);
  MAGIC.copy(buf, off + 257);
  writeOctal(buf, off + 329, 8, 0); // devmajor
  writeOctal(buf, off + 337, 8, 0); // devminor
  writeAscii(buf, off + 345, f.prefix);
  buf.fill(0x20, off + 148, off + 156);
  let sum = 0;
  for (let i = off; i < off + BLOCK; i++) sum += buf[i] as number;
  writeOctal(buf, off + 148, 7, sum);
  buf[off + 155] = 0x20;
}

/**
 * The header bytes for one entry: a ustar header, preceded by a pax 'x' header (and its padded
 * records) when the entry needs one. Deterministic: equal input gives equal bytes.
 * The caller writes the body (`h.size` bytes) and then `paddingFor(h.size)` after it.
 * @throws AirlockError('internal') when `h` breaks the contract: a path that entryProblem would
 *   reject (absolute, '..', '.', empty components, NUL, backslash, U+FFFD, > 4096 bytes, trailing
 *   slash), a lone surrogate, a bad size/mode/mtime, a pax key that is not AIRLOCK.*, an empty pax
 *   value, or pax records over 1 MiB. Callers are expected to have validated their input.
 */
export function encodeHeader(h: EntryHeader): Buffer {
  const p = plan(h);
  // From the shared pool (headers are small), so zero it: unused fields and padding must be NULs.
  const out = Buffer.allocUnsafe(p.headerBytes).fill(0);
  let off = 0;
  if (p.pax !== undefined) {
    writeUstar(out, 0, {
      name: `PaxHeaders/${fallbackName(h.path.slice(h.path.lastIndexOf('/') + 1))}`.slice(0, 100),
      prefix: '',
      mode: 0o644,
      size: p.pax.length,
      mtime: p.mtimeField,
      typeflag: 'x',
    });
    p.pax.copy(out, BLOCK);
    off = BLOCK + roundUp(p.pax.length);
  }
  writeUstar(out, off, {
    name: p.name,
    prefix: p.prefix,
    mode: h.mode,
    size: p.sizeField,
    mtime: p.mtimeField,
    typeflag: h.type === 'dir' ? '5' : '0',
  });
  return out;
}

/** Zero bytes from the end of a `size`-byte body to the next 512-byte boundary (a shared buffer: do not write to it). */
export function paddingFor(size: number): Buffer {
  const rem = size % BLOCK;
  return rem === 0 ? EMPTY : ZERO_BLOCK.subarray(0, BLOCK - rem);
}

/**
 * Bytes one entry takes in the stream: headers + body + padding, so a writer can know the total
 * size up front (total = sum of entryBytes + END_OF_ARCHIVE.length).
 * @throws AirlockError('internal') on the same contract violations as encodeHeader.
 */
export function entryBytes(h: EntryHeader): number {
  return plan(h).headerBytes + roundUp(h.size);
}

// ------------------------------------------------------------------------------------------------
// Judging entries
// ------------------------------------------------------------------------------------------------

/** The path rules shared by the writer and entryProblem; undefined when the path is safe. */
function pathProblem(path: string): 'absolute-path' | 'dot-dot' | 'bad-path' | undefined {
  if (path === '') return 'bad-path';
  if (path.charCodeAt(0) === 0x2f) return 'absolute-path';
  // One pass over the characters (this runs for every entry written and read); '..' wins over the rest.
  let bad = false;
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    const c = i === path.length ? 0x2f : path.charCodeAt(i);
    if (c === 0x2f) {
      const n = i - start;
      if (n === 0) bad = true;
      else if (n <= 2 && path.charCodeAt(start) === 0x2e && (n === 1 || path.charCodeAt(start + 1) === 0x2e)) {
        if (n === 2) return 'dot-dot';
        bad = true;
      }
      start = i + 1;
    } else if (c < 0x20 || c === 0x7f || c === 0x5c || c === 0xfffd) {
      // Control characters (NUL, LF, ESC, ...) end or forge lines of sha256sum lists and terminals;
      // backslash is a separator to Windows tools; U+FFFD marks bytes that were not UTF-8.
      bad = true;
    }
  }
  if (bad) return 'bad-path';
  // A UTF-16 unit is at most 3 UTF-8 bytes, so short strings need no count.
  if (path.length > MAX_PATH_BYTES / 3 && Buffer.byteLength(path) > MAX_PATH_BYTES) return 'bad-path';
  return undefined;
}

/**
 * The safe-entry rules. Returns one problem, or undefined for an entry that may be restored. The
 * type is judged first (a symlink named '/etc/x' is a 'link'), then the path, then duplicates:
 *   - 'link': hard or symbolic link ('1', '2');
 *   - 'device': character or block device or FIFO ('3', '4', '6'): special files;
 *   - 'unsupported-type': any other typeflag than '0' and '5' (including '\0', '7', 'g', GNU 'S',
 *     'D', 'V', ...) and a file carrying GNU.sparse.* pax records (GNU tar would rebuild a sparse
 *     file, possibly under GNU.sparse.name, rather than extract the body as stored);
 *   - 'absolute-path' / 'dot-dot' / 'bad-path': the path is absolute, has a '..' component, or is
 *     empty, has '.' or empty components, a NUL, a backslash, U+FFFD (not UTF-8 in the stream), or
 *     more than 4096 bytes. A directory ('5') may end in one '/', as other tars write it;
 *   - 'duplicate': the path (without a directory's trailing '/', compared byte for byte, no unicode
 *     or case folding) was seen before.
 * Every entry with a good path is added to `seen`, whatever its type, so that a file following a
 * symlink of the same name is still reported as a duplicate. Never throws.
 */
export function entryProblem(entry: ReadEntry, seen: Set<string>): EntryProblem | undefined {
  let path = entry.path;
  if (entry.typeflag === '5' && path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
  const bad = pathProblem(path);
  const duplicate = bad === undefined && seen.has(path);
  if (bad === undefined) seen.add(path);
  const typeProblem = typeProblemOf(entry);
  return typeProblem ?? bad ?? (duplicate ? 'duplicate' : undefined);
}

function typeProblemOf(entry: ReadEntry): 'link' | 'device' | 'unsupported-type' | undefined {
  switch (entry.typeflag) {
    case '0':
    case '5':
      break;
    case '1':
    case '2':
      return 'link';
    case '3':
    case '4':
    case '6':
      return 'device';
    default:
      return 'unsupported-type';
  }
  for (const key of Object.keys(entry.pax)) if (key.startsWith('GNU.sparse.')) return 'unsupported-type';
  return undefined;
}

// ------------------------------------------------------------------------------------------------
// Reading
// ------------------------------------------------------------------------------------------------

function malformed(offset: number, message: string): AirlockError {
  return new AirlockError('malformed', `tar stream: ${message} at offset ${offset}`, {
    hint: 'the bundle is damaged or was not written by airlock',
  });
}

/** Pulls bytes from the source on demand: never more than one source chunk ahead. */
class ByteReader {
  offset = 0;
  private chunk: Buffer = EMPTY;
  private pos = 0;
  private ended = false;

  constructor(private readonly it: AsyncIterator<Uint8Array>) {}

  /** Makes at least one byte available; false at the end of the source. */
  private async fill(): Promise<boolean> {
    while (this.pos >= this.chunk.length) {
      if (this.ended) return false;
      const r = await this.it.next();
      if (r.done === true) {
        this.ended = true;
        this.chunk = EMPTY;
        this.pos = 0;
        return false;
      }
      const v: unknown = r.value;
      if (!(v instanceof Uint8Array)) throw new AirlockError('internal', 'tar stream: source yielded a non-binary chunk');
      this.chunk = Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      this.pos = 0;
    }
    return true;
  }

  /** Up to `max` bytes (a view into a source chunk), or undefined at the end of the source. */
  async read(max: number): Promise<Buffer | undefined> {
    if (!(await this.fill())) return undefined;
    const n = Math.min(max, this.chunk.length - this.pos);
    const out = this.chunk.subarray(this.pos, this.pos + n);
    this.pos += n;
    this.offset += n;
    return out;
  }

  /** Exactly `n` bytes, or fewer if the source ends first. */
  async readExact(n: number): Promise<Buffer> {
    if (this.pos + n <= this.chunk.length) {
      const out = this.chunk.subarray(this.pos, this.pos + n);
      this.pos += n;
      this.offset += n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      const b = await this.read(n - got);
      if (b === undefined) return out.subarray(0, got);
      b.copy(out, got);
      got += b.length;
    }
    return out;
  }

  /** Skips up to `n` bytes; returns how many were skipped (fewer only at the end of the source). */
  async skip(n: number): Promise<number> {
    let done = 0;
    while (done < n) {
      if (!(await this.fill())) break;
      const k = Math.min(n - done, this.chunk.length - this.pos);
      this.pos += k;
      this.offset += k;
      done += k;
    }
    return done;
  }

  async close(): Promise<void> {
    if (!this.ended) {
      this.ended = true;
      await this.it.return?.();
    }
  }
}

interface Header {
  name: string;
  typeflag: string;
  size: number;
  mode: number;
  mtime: number;
  linkname: string;
  gnu: boolean;
}

function text(buf: Buffer, off: number, len: number): string {
  let end = off;
  while (end < off + len && buf[end] !== 0) end++;
  return buf.toString('utf8', off, end);
}

/**
 * A numeric header field: octal digits with optional leading spaces, ended by NUL or space and
 * followed by nothing else; or base-256 (first byte 0x80 positive, 0xff negative) as GNU tar
 * writes values too large for octal. `empty` says whether an all-blank field reads as 0.
 */
function numeric(buf: Buffer, off: number, len: number, what: string, at: number, opts: { empty: boolean; negative: boolean }): number {
  const first = buf[off] as number;
  if (first & 0x80) {
    if (first !== 0x80 && !(first === 0xff && opts.negative)) throw malformed(at, `bad base-256 ${what} field`);
    let v = 0n;
    for (let i = off; i < off + len; i++) v = (v << 8n) | BigInt(buf[i] as number);
    if (first === 0xff) v = BigInt.asIntN(len * 8, v);
    else v &= (1n << BigInt(len * 8 - 8)) - 1n;
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw malformed(at, `${what} field out of range`);
    return Number(v);
  }
  const end = off + len;
  let i = off;
  while (i < end && buf[i] === 0x20) i++;
  const start = i;
  let v = 0;
  for (let c = buf[i] as number; i < end && c >= 0x30 && c <= 0x37; c = buf[++i] as number) v = v * 8 + (c - 0x30);
  const digits = i - start;
  for (; i < end; i++) if (buf[i] !== 0 && buf[i] !== 0x20) throw malformed(at, `non-octal ${what} field`);
  if (digits === 0 && !opts.empty) throw malformed(at, `empty ${what} field`);
  return v;
}

const NUMBER = { empty: false, negative: false };
const OPTIONAL_NUMBER = { empty: true, negative: false };
const MTIME = { empty: false, negative: true };

function parseHeader(buf: Buffer, at: number): Header {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (buf[i] as number);
  if (numeric(buf, 148, 8, 'checksum', at, NUMBER) !== sum) throw malformed(at, 'bad header checksum');
  // "ustar\0" "00" is POSIX; "ustar  \0" is what GNU tar writes in its own format.
  const magic = buf.toString('latin1', 257, 265);
  const gnu = magic === 'ustar  \u0000';
  if (!gnu && magic !== 'ustar\u000000') throw malformed(at, 'missing ustar magic');
  const typeflag = String.fromCharCode(buf[156] as number);
  numeric(buf, 108, 8, 'uid', at, OPTIONAL_NUMBER);
  numeric(buf, 116, 8, 'gid', at, OPTIONAL_NUMBER);
  numeric(buf, 329, 8, 'devmajor', at, OPTIONAL_NUMBER);
  numeric(buf, 337, 8, 'devminor', at, OPTIONAL_NUMBER);
  let name = text(buf, 0, 100);
  if (!gnu && buf[345] !== 0) name = `${text(buf, 345, 155)}/${name}`;
  return {
    name,
    typeflag,
    size: numeric(buf, 124, 12, 'size', at, NUMBER),
    mode: numeric(buf, 100, 8, 'mode', at, NUMBER) & 0o7777,
    mtime: numeric(buf, 136, 12, 'mtime', at, MTIME),
    linkname: text(buf, 157, 100),
    gnu,
  };
}

/** Parses "<len> <key>=<value>\n" records; every byte must belong to a record. */
function parsePax(buf: Buffer, at: number): Map<string, string> {
  const records = new Map<string, string>();
  let pos = 0;
  while (pos < buf.length) {
    let i = pos;
    while (i < buf.length && i - pos < 8 && (buf[i] as number) >= 0x30 && (buf[i] as number) <= 0x39) i++;
    if (i === pos || buf[i] !== 0x20 || buf[pos] === 0x30) throw malformed(at, `bad pax record length at byte ${pos} of the pax header`);
    const end = pos + Number(buf.toString('latin1', pos, i));
    if (end > buf.length || end <= i + 2 || buf[end - 1] !== 0x0a)
      throw malformed(at, `pax record length does not match its record at byte ${pos} of the pax header`);
    const eq = buf.indexOf(0x3d, i + 1);
    if (eq <= i + 1 || eq >= end - 1) throw malformed(at, `pax record without key=value at byte ${pos} of the pax header`);
    const key = buf.toString('utf8', i + 1, eq);
    // GNU sparse format 0.0 repeats its offset/numbytes keys; any other repeat is ambiguous.
    if (records.has(key) && !key.startsWith('GNU.sparse.')) throw malformed(at, `duplicate pax record ${JSON.stringify(key)}`);
    records.set(key, buf.toString('utf8', eq + 1, end - 1));
    pos = end;
  }
  return records;
}

function paxSize(value: string, at: number): number {
  const n = Number(value);
  if (!/^[0-9]{1,16}$/.test(value) || !Number.isSafeInteger(n)) throw malformed(at, `bad pax size ${JSON.stringify(value)}`);
  return n;
}

function paxMtime(value: string, at: number): number {
  const m = /^(-?)([0-9]{1,16})(\.[0-9]*)?$/.exec(value);
  const whole = m === null ? NaN : Number(m[2]);
  if (m === null || !Number.isSafeInteger(whole)) throw malformed(at, `bad pax mtime ${JSON.stringify(value)}`);
  if (m[1] === '') return whole;
  // Floor, not truncate: -1.5 is a moment in second -2 (which may leave the safe-integer range).
  const floored = -whole - (m[3] !== undefined && /[1-9]/.test(m[3]) ? 1 : 0) || 0;
  if (!Number.isSafeInteger(floored)) throw malformed(at, `bad pax mtime ${JSON.stringify(value)}`);
  return floored;
}

/** Real archives have a handful (GNU tar: none, or a comment). */
const MAX_GLOBAL_RECORDS = LIMITS.paxGlobalRecords;

/** Types that POSIX says carry no data; a size on them would be framed differently by different tars. */
const NO_DATA = new Set(['1', '2', '3', '4', '5', '6']);

/**
 * Reads a tar stream entry by entry. For each entry it yields the header and its body; the body
 * chunks are views into the source's chunks (not copies). A body not read to its end before the
 * next entry is requested is skipped; reading a body after that throws AirlockError('internal').
 * Read a body and advance the generator one after the other, not concurrently.
 * Memory stays bounded by one source chunk plus metadata headers (<= 1 MiB each); the source is
 * only pulled as the consumer asks for data. Stopping the iteration early returns the source's
 * iterator. The generator ends normally only after the end-of-archive marker and the end of the
 * source, having checked that nothing but zeros came after the marker.
 * @throws AirlockError('malformed') with the offset, from the generator or from a body: bad
 *   checksum, missing magic, a non-numeric field, bad or oversized (> 1 MiB) pax/long-name data,
 *   a non-zero size on a link/device/dir/FIFO, metadata headers not followed by an entry, more than
 *   64 global pax records in force, a stream that ends inside an entry or without the
 *   end-of-archive marker, non-zero data after the marker.
 *   Errors of the source itself are passed on unchanged.
 */
export async function* readTar(source: AsyncIterable<Uint8Array>): AsyncGenerator<{ entry: ReadEntry; body: AsyncIterable<Buffer> }> {
  const reader = new ByteReader(source[Symbol.asyncIterator]());
  // What the current entry's body still owes the stream; bodies check `generation` to notice staleness.
  let generation = 0;
  let remaining = 0;
  let padding = 0;
  let bodyAt = 0;
  let bodyPath = '';
  const globals = new Map<string, string>();

  const truncated = (what: string): AirlockError => malformed(reader.offset, `stream ends inside ${what}`);

  async function* body(gen: number): AsyncGenerator<Buffer> {
    for (;;) {
      if (gen !== generation) throw new AirlockError('internal', 'tar stream: entry body read after moving on to the next entry');
      if (remaining === 0) return;
      const b = await reader.read(remaining);
      if (b === undefined) throw truncated(`the body of ${JSON.stringify(bodyPath)} (entry at offset ${bodyAt})`);
      remaining -= b.length;
      yield b;
    }
  }

  async function readMeta(size: number, at: number, what: string): Promise<Buffer> {
    if (size > MAX_META_BYTES) throw malformed(at, `${what} of ${size} bytes is larger than ${MAX_META_BYTES}`);
    const data = await reader.readExact(size);
    if (data.length < size || (await reader.skip(paddingFor(size).length)) < paddingFor(size).length) throw truncated(what);
    return data;
  }

  try {
    for (;;) {
      // Pending metadata for the next entry.
      let ext: Map<string, string> | undefined;
      let longName: string | undefined;
      let longLink: string | undefined;
      let first: number | undefined;
      for (;;) {
        if (remaining + padding > 0) {
          const owed = remaining + padding;
          if ((await reader.skip(owed)) < owed) throw truncated(`the body of ${JSON.stringify(bodyPath)} (entry at offset ${bodyAt})`);
        }
        remaining = 0;
        padding = 0;
        generation++;

        const at = reader.offset;
        const block = await reader.readExact(BLOCK);
        if (block.length === 0) {
          if (first !== undefined) throw malformed(first, 'metadata header not followed by an entry');
          throw malformed(at, 'stream ends without the end-of-archive marker');
        }
        if (block.length < BLOCK) throw truncated('a header');
        if (block.equals(ZERO_BLOCK)) {
          if (first !== undefined) throw malformed(first, 'metadata header not followed by an entry');
          const second = await reader.readExact(BLOCK);
          if (second.length < BLOCK) throw truncated('the end-of-archive marker');
          if (!second.equals(ZERO_BLOCK)) throw malformed(at, 'lone zero block');
          for (;;) {
            const b = await reader.read(64 * 1024);
            if (b === undefined) return;
            for (let i = 0; i < b.length; i += BLOCK) {
              const part = b.subarray(i, i + BLOCK);
              if (!part.equals(ZERO_BLOCK.subarray(0, part.length))) {
                const j = part.findIndex((x) => x !== 0);
                throw malformed(reader.offset - b.length + i + j, 'non-zero data after the end-of-archive marker');
              }
            }
          }
        }

        const h = parseHeader(block, at);
        if (h.typeflag === 'x' || h.typeflag === 'L' || h.typeflag === 'K') {
          const data = await readMeta(h.size, at, `${h.typeflag === 'x' ? 'pax' : 'GNU long-name'} header`);
          first ??= at;
          if (h.typeflag === 'x') {
            if (ext !== undefined) throw malformed(at, 'second pax header for one entry');
            ext = parsePax(data, at);
          } else {
            const nul = data.indexOf(0);
            const value = data.toString('utf8', 0, nul < 0 ? data.length : nul);
            if ((h.typeflag === 'L' ? longName : longLink) !== undefined) throw malformed(at, `second '${h.typeflag}' header for one entry`);
            if (h.typeflag === 'L') longName = value;
            else longLink = value;
          }
          continue;
        }

        if (h.typeflag === 'g') {
          if (first !== undefined) throw malformed(first, 'metadata header not followed by an entry');
          const data = await readMeta(h.size, at, 'global pax header');
          const records = parsePax(data, at);
          for (const [k, v] of records) {
            // An empty value deletes the record (POSIX).
            if (v === '') globals.delete(k);
            else globals.set(k, v);
          }
          // Globals are copied into every later entry, so many of them would cost time per entry.
          if (globals.size > MAX_GLOBAL_RECORDS) throw malformed(at, `more than ${MAX_GLOBAL_RECORDS} global pax records`);
          const entry: ReadEntry = {
            path: h.name,
            typeflag: 'g',
            size: h.size,
            mode: h.mode,
            mtime: h.mtime,
            linkpath: h.linkname,
            pax: Object.fromEntries(records),
            offset: at,
          };
          const gen = generation;
          yield {
            entry,
            body: (async function* () {
              if (gen !== generation) throw new AirlockError('internal', 'tar stream: entry body read after moving on to the next entry');
              if (data.length > 0) yield data;
            })(),
          };
          continue;
        }

        // A real entry: apply global, then per-entry records (an empty 'x' value deletes).
        const pax = new Map(globals);
        for (const [k, v] of ext ?? []) {
          if (v === '') pax.delete(k);
          else pax.set(k, v);
        }
        const paxPath = pax.get('path');
        const paxLink = pax.get('linkpath');
        const paxSizeValue = pax.get('size');
        const paxMtimeValue = pax.get('mtime');
        const entry: ReadEntry = {
          path: paxPath ?? longName ?? h.name,
          typeflag: h.typeflag,
          size: paxSizeValue === undefined ? h.size : paxSize(paxSizeValue, first ?? at),
          mode: h.mode,
          mtime: paxMtimeValue === undefined ? h.mtime : paxMtime(paxMtimeValue, first ?? at),
          linkpath: paxLink ?? longLink ?? h.linkname,
          pax: Object.fromEntries(pax),
          offset: first ?? at,
        };
        if (NO_DATA.has(entry.typeflag) && entry.size !== 0) {
          throw malformed(at, `typeflag '${entry.typeflag}' entry ${JSON.stringify(entry.path)} with non-zero size ${entry.size}`);
        }
        if (h.typeflag === 'S' && h.gnu && block[482] !== 0) {
          // Old GNU sparse: extension blocks of the sparse map sit between the header and the data.
          for (let more = true; more;) {
            const ext = await reader.readExact(BLOCK);
            if (ext.length < BLOCK) throw truncated('a GNU sparse extension header');
            more = ext[504] !== 0;
          }
        }
        remaining = entry.size;
        padding = paddingFor(entry.size).length;
        bodyAt = entry.offset;
        bodyPath = entry.path;
        yield { entry, body: body(generation) };
        break;
      }
    }
  } finally {
    generation++;
    await reader.close();
  }
}
