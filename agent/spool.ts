/*
 * The WAL spool: the one folder the database's OS user may write, and the hand-over point between
 * PostgreSQL's archive_command (`airlock wal-push`, running as that user) and the agent (its own user,
 * owning the catalog). Any database superuser can run programs as the database's OS user, so nothing
 * written here is trusted until the agent has checked it on ingest.
 *
 * Layout, flat:
 *   <name>           a WAL file under PostgreSQL's own name (segment, .partial, .history, .backup)
 *   <name>.sha256    its sidecar, `<sha256>  <name>\n` (sha256sum format): the commit marker
 *   .<name>.*.tmp    a push in progress (or one killed mid-way); never read, never ingested
 *
 * A push writes the file under a temporary name, fsyncs it, hard-links it to its final name (which
 * fails if the name exists, so a file is never replaced), fsyncs the folder, then writes the sidecar
 * the same way. A file without a sidecar is an unfinished push: the next push of it completes it,
 * ingest waits for it. PostgreSQL never archives two different files under one name, so a second
 * push with other bytes is refused loudly and the first file kept.
 *
 * agent/native/wal-push.c (`airlock-wal-push`, the fast archive_command) writes a new push by the
 * same steps and hands every other case to pushToSpool: a change to the layout changes both.
 *
 * This module is loaded by `wal-push` once per segment: it must stay light (Node built-ins, no
 * catalog, no commander), so the catalog is only a type here.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, existsSync, fstatSync, fsyncSync, openSync, readdirSync, readSync, statSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { fsyncDirSync, writeFileAtomicSync } from '../manifests/atomic.js';
import { AirlockError, fromSystemError } from '../manifests/errors.js';
import { formatSumLine, parseSumLine } from '../manifests/sums.js';
import type { Catalog, WalRow } from './catalog.js';
import {
  LONG_PAGE_HEADER_SIZE,
  checkSegmentHeader,
  formatLsn,
  isValidSegmentSize,
  magicProblem,
  parseBackupLabel,
  parseHistory,
  parsePageHeader,
  parseWalFileName,
  segmentNumber,
  XLP_LONG_HEADER,
  type TimelineHistory,
  type WalFileName,
} from './postgres/wal.js';

export const SIDECAR_SUFFIX = '.sha256';
const CHUNK = 1024 * 1024;
/** history and backup files are a few lines; anything bigger is not one */
const MAX_TEXT_FILE = 1024 * 1024;

/** The sidecar text for a file: one sha256sum line. */
export function sidecarText(name: string, sha256: string): string {
  return formatSumLine({ name, sha256 });
}

/** The sha256 a sidecar gives for `name`, or undefined when it is not exactly one sha256sum line for that name. */
export function sidecarSha256(name: string, text: string): string | undefined {
  const line = text.endsWith('\n') ? parseSumLine(text.slice(0, -1)) : undefined;
  return line?.name === name ? line.sha256 : undefined;
}

/** Parses a sidecar for `name`; throws `malformed` naming the sidecar when it is not one line for that name. */
export function parseSidecar(name: string, text: string): string {
  const sha256 = sidecarSha256(name, text);
  if (sha256 === undefined)
    throw new AirlockError('malformed', `${name}${SIDECAR_SUFFIX}: not a sha256sum line for ${name}`, { hint: 'the sidecar is damaged; push the file again' });
  return sha256;
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone, or the error that brought us here matters more
  }
}

/** The largest file the spool takes: a WAL segment is at most 1 GiB. */
const MAX_SPOOL_FILE = 1024 ** 3;

/**
 * Opens a file for reading without following a symbolic link or blocking on a FIFO, and requires a
 * regular file: the spool is writable by the database's user, whom the agent does not trust.
 * Throws `malformed` for anything else, system errors otherwise.
 */
export function openRegularSync(file: string): number {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ELOOP') throw e;
    throw new AirlockError('malformed', `${path.basename(file)}: a symbolic link, not a file`, {
      hint: 'something other than wal-push wrote into the spool; investigate before anything else',
    });
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new AirlockError('malformed', `${path.basename(file)}: not a regular file`, {
      hint: 'something other than wal-push wrote into the spool; investigate before anything else',
    });
  }
  return fd;
}

/** Reads a small regular file as text; throws `malformed` when it is larger than `limit`. */
export function readSmallSync(file: string, limit: number): string {
  const fd = openRegularSync(file);
  try {
    const buf = Buffer.alloc(limit + 1);
    const n = readSync(fd, buf, 0, limit + 1, 0);
    if (n > limit) throw new AirlockError('malformed', `${path.basename(file)}: larger than ${limit} bytes`);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads a regular file once in chunks, hashing it; returns its sha256, size and first bytes.
 * Throws `malformed` for a non-regular file or one over 1 GiB, system errors otherwise.
 */
export function hashFileSync(file: string, firstBytes = 0, sink?: (chunk: Uint8Array) => void): { sha256: string; size: number; first: Buffer } {
  const fd = openRegularSync(file);
  try {
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(CHUNK);
    let size = 0;
    let first = Buffer.alloc(0);
    for (;;) {
      const n = readSync(fd, buf, 0, CHUNK, null);
      if (n === 0) break;
      const chunk = buf.subarray(0, n);
      if (first.length < firstBytes) first = Buffer.concat([first, chunk.subarray(0, firstBytes - first.length)]);
      h.update(chunk);
      sink?.(chunk);
      size += n;
      if (size > MAX_SPOOL_FILE) throw new AirlockError('malformed', `${path.basename(file)}: larger than any WAL file`);
    }
    return { sha256: h.digest('hex'), size, first };
  } finally {
    closeSync(fd);
  }
}

function spoolError(e: unknown, what: string): unknown {
  const errno = (e as NodeJS.ErrnoException | null)?.code;
  if (errno === 'ENOSPC' || errno === 'EDQUOT') {
    return new AirlockError('spool-full', `${what}: no space left in the wal spool`, {
      cause: e,
      hint: 'free space in the spool (let the agent ingest and export it); nothing partial was left and postgresql retries the file',
    });
  }
  return fromSystemError(e, what);
}

function writeAll(fd: number, chunk: Uint8Array): void {
  let off = 0;
  while (off < chunk.byteLength) off += writeSync(fd, chunk, off, chunk.byteLength - off);
}

function writeSidecar(spool: string, name: string, sha256: string): void {
  // the sidecar may be replaced: it is derived from the file, which is never replaced
  writeFileAtomicSync(path.join(spool, `${name}${SIDECAR_SUFFIX}`), (fd) => writeAll(fd, Buffer.from(sidecarText(name, sha256))), { mode: 0o640 });
}

export interface Pushed {
  name: string;
  sha256: string;
  size: number;
  /** the same bytes were already in the spool */
  already: boolean;
}

/**
 * Copies a WAL file (PostgreSQL's %p) into the spool durably, with its sidecar. Succeeds without
 * writing when the same bytes are already there. Throws `usage` for a name that is not a WAL file
 * name, `not-found` for a missing source or spool, `wal-conflict` when the spool holds other bytes
 * under that name (the spooled file is kept), `spool-full` on ENOSPC (nothing partial left), and
 * other typed system errors.
 */
export function pushToSpool(source: string, spool: string): Pushed {
  const name = path.basename(source);
  if (!parseWalFileName(name)) {
    throw new AirlockError('usage', `${JSON.stringify(name)} is not a wal file name`, {
      hint: "archive_command must pass %p, e.g. archive_command = 'airlock wal-push %p --spool DIR'",
    });
  }
  try {
    if (!statSync(spool).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
  } catch (e) {
    throw new AirlockError('not-found', `the wal spool ${spool} is not a folder`, {
      hint: "create it, writable by the database's os user only, or fix --spool / AIRLOCK_SPOOL",
      cause: e,
    });
  }
  try {
    statSync(source);
  } catch (e) {
    throw new AirlockError('not-found', `${source}: no such file`, {
      hint: 'postgresql passes %p relative to its data folder, where it runs the command',
      cause: e,
    });
  }
  const parsed = parseWalFileName(name);
  if (parsed?.kind === 'segment' || parsed?.kind === 'partial') refuseUnsupportedMagic(source, name);
  const final = path.join(spool, name);
  // a retry of a file already spooled (PostgreSQL retries until it sees 0) must not need space
  if (existsSync(final)) {
    let got: { sha256: string; size: number };
    try {
      got = hashFileSync(source);
    } catch (e) {
      throw fromSystemError(e, source);
    }
    return confirmSpooled(spool, name, got);
  }
  let created = false;
  try {
    let copied: { sha256: string; size: number } | undefined;
    // exclusive: a file already spooled is never replaced
    created = writeFileAtomicSync(
      final,
      (fd) => {
        const r = hashFileSync(source, 0, (chunk) => writeAll(fd, chunk));
        copied = { sha256: r.sha256, size: r.size };
      },
      { mode: 0o640, exclusive: true },
    );
    const got = copied as { sha256: string; size: number };
    // another push of the same name won the race
    if (!created) return confirmSpooled(spool, name, got);
    writeSidecar(spool, name, got.sha256);
    return { name, ...got, already: false };
  } catch (e) {
    if (created) {
      // the sidecar failed: take the file back too, so the spool shows no half push
      unlinkQuietly(`${final}${SIDECAR_SUFFIX}`);
      unlinkQuietly(final);
    }
    if (e instanceof AirlockError) throw e;
    throw spoolError(e, name);
  }
}

/**
 * Refuses a segment whose first page is not the WAL of a supported major (a server airlock does not
 * support): every one of them would be refused at ingest, so archiving fails here, loudly and before
 * the spool fills with them. Throws `bad-wal`; a file too short for a magic is left to ingest.
 */
function refuseUnsupportedMagic(source: string, name: string): void {
  const head = Buffer.alloc(2);
  let fd: number | undefined;
  try {
    fd = openSync(source, 'r');
    if (readSync(fd, head, 0, 2, 0) < 2) return;
  } catch (e) {
    throw fromSystemError(e, source);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  const problem = magicProblem(head.readUInt16LE(0));
  if (problem !== undefined) {
    throw new AirlockError('bad-wal', `${name}: ${problem}`, {
      hint: 'this server is a postgresql version airlock does not support (airlock check names it); nothing was spooled, and the server keeps the file and retries',
    });
  }
}

/**
 * The spool already holds `name`: success when it has the pushed bytes (writing a missing or
 * damaged sidecar), `wal-conflict` otherwise, the spooled file kept either way.
 */
function confirmSpooled(spool: string, name: string, got: { sha256: string; size: number }): Pushed {
  const final = path.join(spool, name);
  try {
    const there = hashFileSync(final);
    if (there.sha256 !== got.sha256 || there.size !== got.size) {
      throw new AirlockError(
        'wal-conflict',
        `${name}: the spool already holds a different file of that name (sha256 ${there.sha256}, ${there.size} bytes; pushed ${got.sha256}, ${got.size} bytes)`,
        {
          hint: 'the spooled file was kept; two clusters may be archiving into one spool, or the spool was tampered with: investigate before anything else',
        },
      );
    }
    let sidecarOk = false;
    try {
      sidecarOk = parseSidecar(name, readSmallSync(`${final}${SIDECAR_SUFFIX}`, 4096)) === got.sha256;
    } catch {
      // missing or damaged: an earlier push died before its sidecar; write it now
    }
    if (!sidecarOk) writeSidecar(spool, name, got.sha256);
    // an earlier push may have died before its fsyncs: success means durable, so make it so now
    const fd = openRegularSync(final);
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    fsyncDirSync(spool);
    return { name, sha256: got.sha256, size: got.size, already: true };
  } catch (e) {
    if (e instanceof AirlockError) throw e;
    throw spoolError(e, name);
  }
}

export interface IngestReport {
  /** newly recorded in the catalog */
  ingested: WalRow[];
  /** already in the catalog with the same sha256 */
  known: string[];
  /** no sidecar yet: a push in progress or one that died; left for the next run */
  waiting: string[];
  /** refused files, each a typed error naming the file; none of them was recorded */
  problems: AirlockError[];
}

const KIND_ORDER: Record<WalFileName['kind'], number> = { history: 0, segment: 1, partial: 1, backup: 2 };

/** Size of XLogPageHeaderData, the header of every page after a segment's first. */
const PAGE_HEADER_SIZE = 24;
/** A segment's page problems named in an error; the rest are counted. */
const PAGE_PROBLEMS_NAMED = 3;
let zeros: Buffer | undefined;
/** `n` zero bytes to compare with, allocated when first needed (wal-push loads this module too). */
function zerosOf(n: number): Buffer {
  if (!zeros || zeros.byteLength < n) zeros = Buffer.alloc(Math.max(n, CHUNK));
  return zeros.subarray(0, n);
}
/** The page flags a page after a segment's first may carry: every known one but XLP_LONG_HEADER. */
const XLP_ALLOWED_AFTER_FIRST = 0x000f & ~XLP_LONG_HEADER;

/**
 * Checks every page of a segment after the first (which checkSegmentHeader checks) as the bytes
 * stream by, so 16 MiB of anything behind one plausible first page is not ingested. Each page
 * carries the first page's magic, no long header and no unknown flag, the page address of its place
 * in the segment, and a timeline at most the name's that never goes back and is the first page's,
 * the name's or an ancestor in the name timeline's history (a timeline's first segment begins as a
 * copy of its parent's). A segment ended early by a WAL switch (archive_timeout, pg_switch_wal) is
 * zeros from the first page after the switch record to its end: PostgreSQL writes those pages as
 * zeros, headers included, so once a page is all zeros every later byte must be too. A `.partial`
 * file is the end of a timeline, copied from a file that may have been recycled: its WAL ends at the
 * first page that does not continue it and what follows is never replayed, so checking stops there.
 * Memory: one page header, and a megabyte of zeros to compare the end of a switched segment with.
 */
export class SegmentPages {
  private at = 0;
  private readonly first = Buffer.alloc(LONG_PAGE_HEADER_SIZE);
  private readonly header = Buffer.alloc(PAGE_HEADER_SIZE);
  private layout: { blockSize: number; start: bigint; magic: number; timeline: number } | undefined | null;
  private timeline = 0;
  /** where the zeros after a WAL switch began */
  private zerosFrom: number | undefined;
  private ended = false;
  private readonly problems: string[] = [];
  private more = 0;

  constructor(
    private readonly name: WalFileName & { kind: 'segment' | 'partial' },
    private readonly history: TimelineHistory | undefined,
  ) {}

  feed(chunk: Uint8Array): void {
    let off = 0;
    while (off < chunk.byteLength && !this.ended) {
      if (this.layout === undefined) {
        // the first page's long header gives the block size and the segment's start
        const n = Math.min(LONG_PAGE_HEADER_SIZE - this.at, chunk.byteLength - off);
        this.first.set(chunk.subarray(off, off + n), this.at);
        this.at += n;
        off += n;
        if (this.at === LONG_PAGE_HEADER_SIZE) this.layout = this.readLayout();
        continue;
      }
      if (this.layout === null) return; // the first page does not check; checkSegmentHeader says why
      const { blockSize } = this.layout;
      if (this.zerosFrom !== undefined) {
        const rest = Buffer.from(chunk.buffer, chunk.byteOffset + off, chunk.byteLength - off);
        if (!rest.equals(zerosOf(rest.byteLength))) {
          const at = this.at + rest.findIndex((x) => x !== 0);
          this.problem(at - (at % blockSize), `not zeros, though the wal ended at ${this.zerosFrom}`);
          this.ended = true;
        }
        this.at += rest.byteLength;
        return;
      }
      const inPage = this.at % blockSize;
      if (this.at < blockSize || inPage >= PAGE_HEADER_SIZE) {
        // inside the first page, or past this page's header: on to the next page
        const step = Math.min(blockSize - inPage, chunk.byteLength - off);
        this.at += step;
        off += step;
        continue;
      }
      const n = Math.min(PAGE_HEADER_SIZE - inPage, chunk.byteLength - off);
      this.header.set(chunk.subarray(off, off + n), inPage);
      this.at += n;
      off += n;
      if (this.at % blockSize === PAGE_HEADER_SIZE) this.checkPage(this.at - PAGE_HEADER_SIZE);
    }
  }

  private readLayout(): SegmentPages['layout'] {
    try {
      const h = parsePageHeader(this.first);
      const blockSize = h.long?.blockSize ?? 0;
      if (!h.long || blockSize < 1024 || blockSize > 65536 || (blockSize & (blockSize - 1)) !== 0 || !isValidSegmentSize(h.long.segmentSize)) return null;
      this.timeline = h.timeline;
      return { blockSize, start: segmentNumber(this.name, h.long.segmentSize) * BigInt(h.long.segmentSize), magic: h.magic, timeline: h.timeline };
    } catch {
      return null;
    }
  }

  private checkPage(offset: number): void {
    const layout = this.layout as NonNullable<SegmentPages['layout']>;
    // the short header (XLogPageHeaderData): magic, info, timeline, page address
    const magic = this.header.readUInt16LE(0);
    const info = this.header.readUInt16LE(2);
    const t = this.header.readUInt32LE(4);
    const pageAddress = formatLsn(this.header.readBigUInt64LE(8));
    const wrong: string[] = [];
    if (magic !== layout.magic) wrong.push(`magic 0x${magic.toString(16).toUpperCase()}`);
    if ((info & ~XLP_ALLOWED_AFTER_FIRST) !== 0) wrong.push(`flags 0x${info.toString(16)}`);
    const expected = formatLsn(layout.start + BigInt(offset));
    if (pageAddress !== expected) wrong.push(`page address ${pageAddress}, not ${expected}`);
    const known = t === this.name.timeline || t === layout.timeline || this.history?.parents.some((p) => p.timeline === t) === true;
    if (t > this.name.timeline || !known) wrong.push(`timeline ${t}, neither the name's ${this.name.timeline} nor an ancestor`);
    else if (t < this.timeline) wrong.push(`timeline ${t} after ${this.timeline}`);
    if (wrong.length === 0) {
      this.timeline = t;
    } else if (this.name.kind === 'partial') {
      this.ended = true;
    } else if (this.header.equals(zerosOf(PAGE_HEADER_SIZE))) {
      this.zerosFrom = offset;
    } else {
      this.problem(offset, wrong.join(', '));
    }
  }

  private problem(offset: number, what: string): void {
    if (this.problems.length < PAGE_PROBLEMS_NAMED) this.problems.push(`the page at ${offset}: ${what}`);
    else this.more++;
  }

  /** The problems found, for an error message; empty when every page checked. */
  summary(): string[] {
    return this.more > 0 ? [...this.problems, `${this.more} more page(s) that do not continue the segment`] : this.problems;
  }
}

/**
 * The cluster whose WAL the catalog takes: its system identifier and segment size. An export with a
 * connection passes the server's own (`pg_control_system()`); without one, the catalog's, and with an
 * empty catalog the first segment that checks sets it.
 */
export interface WalCluster {
  system_identifier: string;
  segment_size: number;
  /** the server's major version: its WAL page magic is the only one taken */
  major?: number;
}

/**
 * Ingests every finished file in the spool into the catalog: checks the sidecar hash, then a
 * segment's first page header (a supported major's magic, the server's when `server` says, else one
 * major across the run; its name's timeline and start address, one cluster and one segment size
 * across the catalog) and every later page's header (SegmentPages), or parses a
 * history or backup file. `server` is the cluster the export is connected to: segments of any other
 * are refused, whatever the spool holds first. Keeps going after a bad file and returns each
 * problem (`checksum-mismatch`, `bad-wal`, `malformed`, `wal-conflict`, a system error) in the
 * report; a refused file is not recorded. Throws only when the spool cannot be listed (`not-found`
 * or another typed system error).
 */
export function ingestSpool(catalog: Catalog, spool: string, now: () => Date = () => new Date(), server?: WalCluster): IngestReport {
  let entries: string[];
  try {
    entries = readdirSync(spool);
  } catch (e) {
    throw fromSystemError(e, `the wal spool ${spool}`);
  }
  const present = new Set(entries);
  const report: IngestReport = { ingested: [], known: [], waiting: [], problems: [] };
  const names = entries
    .map((n) => parseWalFileName(n))
    .filter((n): n is WalFileName => n !== undefined)
    .sort((a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind] || (a.name < b.name ? -1 : 1));

  const histories = new Map<number, TimelineHistory>();
  for (const row of catalog.walFiles()) {
    if (row.kind !== 'history') continue;
    try {
      histories.set(row.timeline, parseHistory(row.name, readSmallSync(row.spooled_path, MAX_TEXT_FILE)));
    } catch {
      // already pruned from the spool; segments forked from it were checked when it was here
    }
  }
  let cluster = server ?? catalog.walCluster();
  let major = server?.major;

  for (const name of names) {
    if (!present.has(`${name.name}${SIDECAR_SUFFIX}`)) {
      report.waiting.push(name.name);
      continue;
    }
    const file = path.join(spool, name.name);
    try {
      const expected = parseSidecar(name.name, readSmallSync(`${file}${SIDECAR_SUFFIX}`, 4096));
      const known = catalog.wal(name.name);
      if (known) {
        if (known.sha256 === expected) {
          report.known.push(name.name);
          continue;
        }
        throw new AirlockError('wal-conflict', `${name.name}: the catalog already holds this file with sha256 ${known.sha256}, the spool now has ${expected}`, {
          hint: 'a file of this name was ingested before with other bytes; investigate the spool before anything else',
        });
      }
      const isSegment = name.kind === 'segment' || name.kind === 'partial';
      const pages = isSegment ? new SegmentPages(name, histories.get(name.timeline)) : undefined;
      const got = hashFileSync(file, isSegment ? LONG_PAGE_HEADER_SIZE : MAX_TEXT_FILE + 1, pages && ((chunk) => pages.feed(chunk)));
      if (got.sha256 !== expected) {
        throw new AirlockError('checksum-mismatch', `${name.name}: sha256 ${got.sha256} does not match its sidecar's ${expected}`, {
          hint: 'the spooled file changed after it was pushed; it was not ingested; archive the segment again from the server if it still has it',
        });
      }
      const row: WalRow = {
        name: name.name,
        kind: name.kind,
        timeline: name.timeline,
        size: got.size,
        sha256: got.sha256,
        spooled_path: path.resolve(file),
        header_checked: 0,
        start_lsn: null,
        system_identifier: null,
        segment_size: null,
        ingested: now().toISOString(),
      };
      if (isSegment) {
        const history = histories.get(name.timeline);
        const checked = checkSegmentHeader(name.name, got.first, {
          fileSize: got.size,
          ...(cluster ? { systemIdentifier: cluster.system_identifier, segmentSize: cluster.segment_size } : {}),
          ...(history ? { history } : {}),
          ...(major !== undefined ? { major } : {}),
        });
        const wrongPages = pages?.summary() ?? [];
        if (wrongPages.length > 0) {
          throw new AirlockError('bad-wal', `${name.name}: not a valid postgresql wal segment past its first page: ${wrongPages.join('; ')}`, {
            hint: 'the file is damaged or not wal; do not use it (a server keeps a segment until it is archived, so archive it again from there)',
          });
        }
        row.header_checked = 1;
        row.start_lsn = checked.startLsn;
        row.system_identifier = checked.header.long.systemIdentifier;
        row.segment_size = checked.header.long.segmentSize;
        cluster ??= { system_identifier: row.system_identifier, segment_size: row.segment_size };
        major ??= checked.header.pgVersion;
      } else {
        if (got.size > MAX_TEXT_FILE) throw new AirlockError('bad-wal', `${name.name}: ${got.size} bytes is too big for a ${name.kind} file`);
        const text = got.first.toString('utf8');
        if (name.kind === 'history') histories.set(name.timeline, parseHistory(name.name, text));
        else {
          const label = parseBackupLabel(name.name, text);
          row.start_lsn = label.startLsn;
        }
      }
      catalog.addWal(row);
      report.ingested.push(row);
    } catch (e) {
      const err = e instanceof AirlockError ? e : fromSystemError(e, name.name);
      report.problems.push(err instanceof AirlockError ? err : new AirlockError('io', `${name.name}: ${(e as Error).message}`, { cause: e }));
    }
  }
  return report;
}
