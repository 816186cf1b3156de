/*
 * What airlock knows about PostgreSQL's write-ahead log files, read from their names and bytes alone
 * (no server, no libpq), so the agent can judge a spooled file before it trusts it.
 *
 * Names (all hexadecimal, upper case):
 *   TTTTTTTTLLLLLLLLSSSSSSSS            a segment: timeline T, then the segment number split into
 *                                       "log" L = segno / (2^32 / segsize) and "seg" S = the rest
 *   TTTTTTTTLLLLLLLLSSSSSSSS.partial    the last, incomplete segment of a timeline left at promotion
 *   TTTTTTTT.history                    the history of timeline T: its parents and where it forked
 *   TTTTTTTTLLLLLLLLSSSSSSSS.OOOOOOOO.backup   a base backup's label (start/stop location and time)
 *
 * A segment starts with a long page header (XLogLongPageHeaderData, native byte order, which is
 * little-endian on every platform airlock runs on):
 *
 *   offset  size  field
 *        0     2  xlp_magic        the WAL format version, one per major (WAL_MAGIC)
 *        2     2  xlp_info         flags; XLP_LONG_HEADER (0x0002) is set on a segment's first page
 *        4     4  xlp_tli          timeline of this page
 *        8     8  xlp_pageaddr     WAL location of this page = the segment's start location
 *       16     4  xlp_rem_len      bytes of a record continued from the previous page
 *       20     4  (padding to 8)
 *       24     8  xlp_sysid        the cluster's system identifier
 *       32     4  xlp_seg_size     wal_segment_size
 *       36     4  xlp_xlog_blcksz  WAL block size
 *
 * Names, headers, timeline history files and backup history files have had this form in every major
 * airlock supports (13 to 17): only xlp_magic tells the versions apart. A segment of a major airlock
 * does not know is refused, never guessed at, because its records may mean something else.
 *
 * A segment's first page may carry an older timeline than its name: at a timeline switch the new
 * timeline's first segment starts as a copy of the old one. LSNs are written as PostgreSQL writes
 * them ("0/3000028") and 64-bit identifiers as decimal strings, because JSON numbers lose precision
 * above 2^53; arithmetic happens in bigint.
 */
import { formatLsnValue, lsnValue, segmentFileName } from '../../manifests/coverage.js';
import { AirlockError } from '../../manifests/errors.js';

/** The PostgreSQL major versions airlock archives, exports and restores. */
export const SUPPORTED_MAJORS: readonly number[] = [13, 14, 15, 16, 17];

/** xlp_magic (XLOG_PAGE_MAGIC in access/xlog_internal.h) of each supported major version. */
const WAL_MAGIC: ReadonlyMap<number, number> = new Map([
  [0xd106, 13],
  [0xd10d, 14],
  [0xd110, 15],
  [0xd113, 16],
  [0xd116, 17],
]);

/** The major version whose WAL carries `magic`, or undefined for a magic airlock does not support. */
export function majorOfMagic(magic: number): number | undefined {
  return WAL_MAGIC.get(magic);
}

/** xlp_magic of a supported major version. */
export function walMagic(major: number): number | undefined {
  for (const [magic, m] of WAL_MAGIC) if (m === major) return magic;
  return undefined;
}

/** The "supported" list as messages give it. */
export const SUPPORTED_TEXT = `postgresql ${SUPPORTED_MAJORS[0]} to ${SUPPORTED_MAJORS.at(-1)}`;

const hex4 = (n: number) => `0x${n.toString(16).toUpperCase().padStart(4, '0')}`;

/**
 * Why a page magic is not the one expected: the major it belongs to, or that it is none airlock
 * supports; undefined when it is fine (a supported major's, and `major`'s when given).
 */
export function magicProblem(magic: number, major?: number): string | undefined {
  const of = majorOfMagic(magic);
  if (of === undefined) return `magic ${hex4(magic)} is not the wal of any supported version (${SUPPORTED_TEXT})`;
  if (major !== undefined && of !== major) return `magic ${hex4(magic)} is postgresql ${of}'s, not ${major}'s (${hex4(walMagic(major) ?? 0)})`;
  return undefined;
}

export const XLP_FIRST_IS_CONTRECORD = 0x0001;
export const XLP_LONG_HEADER = 0x0002;
export const XLP_BKP_REMOVABLE = 0x0004;
export const XLP_FIRST_IS_OVERWRITE_CONTRECORD = 0x0008;
const XLP_ALL_FLAGS = 0x000f;

/** Size of XLogLongPageHeaderData: the bytes needed to check a segment's header. */
export const LONG_PAGE_HEADER_SIZE = 40;
export const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;

export type WalFileName =
  | { kind: 'segment'; name: string; timeline: number; log: number; seg: number }
  | { kind: 'partial'; name: string; timeline: number; log: number; seg: number }
  | { kind: 'history'; name: string; timeline: number }
  | { kind: 'backup'; name: string; timeline: number; log: number; seg: number; offset: number };

const SEGMENT_RE = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;
const PARTIAL_RE = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.partial$/;
const HISTORY_RE = /^([0-9A-F]{8})\.history$/;
const BACKUP_RE = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.([0-9A-F]{8})\.backup$/;

const hex = (s: string | undefined): number => Number.parseInt(s as string, 16);

/**
 * Parses a WAL file name (a bare name, no folder). Returns undefined for anything else, so a caller
 * can refuse a name before it touches the file system with it. Timeline 0 is never valid.
 */
export function parseWalFileName(name: string): WalFileName | undefined {
  let m = SEGMENT_RE.exec(name) ?? PARTIAL_RE.exec(name);
  if (m) {
    const timeline = hex(m[1]);
    if (timeline === 0) return undefined;
    return { kind: name.endsWith('.partial') ? 'partial' : 'segment', name, timeline, log: hex(m[2]), seg: hex(m[3]) };
  }
  m = HISTORY_RE.exec(name);
  if (m) {
    const timeline = hex(m[1]);
    // timeline 1 has no parent, so no history file exists for it, but PostgreSQL asks for
    // 00000001.history at the end of recovery: the name is valid, the file is simply absent
    return timeline === 0 ? undefined : { kind: 'history', name, timeline };
  }
  m = BACKUP_RE.exec(name);
  if (m) {
    const timeline = hex(m[1]);
    if (timeline === 0) return undefined;
    return { kind: 'backup', name, timeline, log: hex(m[2]), seg: hex(m[3]), offset: hex(m[4]) };
  }
  return undefined;
}

/** True for a valid wal_segment_size: a power of two from 1 MiB to 1 GiB. */
export function isValidSegmentSize(size: number): boolean {
  return Number.isInteger(size) && size >= 1024 * 1024 && size <= 1024 ** 3 && (size & (size - 1)) === 0;
}

function segmentsPerLog(segmentSize: number): bigint {
  if (!isValidSegmentSize(segmentSize)) throw new AirlockError('usage', `wal segment size ${segmentSize} is not a power of two from 1 MiB to 1 GiB`);
  return 0x1_0000_0000n / BigInt(segmentSize);
}

/**
 * The segment number of a segment name for `segmentSize`. Throws `bad-wal` when the seg part is
 * out of range for that size (such a name cannot come from a cluster with that wal_segment_size).
 */
export function segmentNumber(name: { name: string; log: number; seg: number }, segmentSize: number): bigint {
  const per = segmentsPerLog(segmentSize);
  if (BigInt(name.seg) >= per) {
    throw new AirlockError('bad-wal', `${name.name}: not a segment name for a wal_segment_size of ${segmentSize}`, {
      hint: 'the file is not from this cluster, or its name was changed',
    });
  }
  return BigInt(name.log) * per + BigInt(name.seg);
}

/** The name of segment `segno` on `timeline`. Throws `usage` for an invalid segment size. */
export function segmentName(timeline: number, segno: bigint, segmentSize: number): string {
  segmentsPerLog(segmentSize); // only its check of the size
  return segmentFileName(timeline, segno, segmentSize);
}

/** The WAL location where a segment starts. Throws like segmentNumber. */
export function segmentStartLsn(name: { name: string; log: number; seg: number }, segmentSize: number): string {
  return formatLsn(segmentNumber(name, segmentSize) * BigInt(segmentSize));
}

/** Parses "X/Y" (hexadecimal halves, as PostgreSQL prints an LSN). Throws `malformed`. */
export function parseLsn(text: string): bigint {
  if (!/^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/.test(text)) throw new AirlockError('malformed', `${JSON.stringify(text)} is not a WAL location like 0/3000028`);
  return lsnValue(text);
}

/** Formats an LSN the way PostgreSQL does: "%X/%X". */
export const formatLsn = formatLsnValue;

export interface PageHeader {
  magic: number;
  /** the PostgreSQL major version this magic belongs to, when supported */
  pgVersion: number | undefined;
  info: number;
  flags: { longHeader: boolean; firstIsContRecord: boolean; bkpRemovable: boolean; firstIsOverwriteContRecord: boolean };
  timeline: number;
  pageAddress: string;
  remLen: number;
  /** present only with XLP_LONG_HEADER */
  long: { systemIdentifier: string; segmentSize: number; blockSize: number } | undefined;
}

/**
 * Decodes a WAL page header from the first bytes of a page (at least 24, or 40 for a long one).
 * Throws `bad-wal` when there are too few bytes.
 */
export function parsePageHeader(bytes: Uint8Array, what = 'wal page'): PageHeader {
  if (bytes.byteLength < 24) throw new AirlockError('bad-wal', `${what}: ${bytes.byteLength} bytes is too short for a wal page header`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = v.getUint16(0, true);
  const info = v.getUint16(2, true);
  const longHeader = (info & XLP_LONG_HEADER) !== 0;
  if (longHeader && bytes.byteLength < LONG_PAGE_HEADER_SIZE)
    throw new AirlockError('bad-wal', `${what}: ${bytes.byteLength} bytes is too short for a long wal page header`);
  return {
    magic,
    pgVersion: majorOfMagic(magic),
    info,
    flags: {
      longHeader,
      firstIsContRecord: (info & XLP_FIRST_IS_CONTRECORD) !== 0,
      bkpRemovable: (info & XLP_BKP_REMOVABLE) !== 0,
      firstIsOverwriteContRecord: (info & XLP_FIRST_IS_OVERWRITE_CONTRECORD) !== 0,
    },
    timeline: v.getUint32(4, true),
    pageAddress: formatLsn(v.getBigUint64(8, true)),
    remLen: v.getUint32(16, true),
    long: longHeader
      ? { systemIdentifier: v.getBigUint64(24, true).toString(), segmentSize: v.getUint32(32, true), blockSize: v.getUint32(36, true) }
      : undefined,
  };
}

export interface SegmentExpectations {
  /** the wal_segment_size the segment must have */
  segmentSize?: number;
  /** the cluster the segment must come from (decimal string) */
  systemIdentifier?: string;
  /** the file's size, checked against the header's segment size */
  fileSize?: number;
  /** the parsed history of the name's timeline, to accept a first page from an ancestor timeline */
  history?: TimelineHistory;
  /** the server's major version: the magic must be its (without it, any supported major's) */
  major?: number;
}

export interface CheckedSegment {
  name: WalFileName & { kind: 'segment' | 'partial' };
  header: PageHeader & { long: NonNullable<PageHeader['long']> };
  segno: bigint;
  startLsn: string;
}

/**
 * Checks that `first` (the first bytes of a segment file, at least 40) is the start of the segment
 * `name` says it is: the magic of a supported major (of `expect.major` when given), a long header without unknown flags, the name's timeline
 * (or an ancestor from `expect.history`), a page address equal to the start of the named segment, a
 * valid segment and block size, and whatever `expect` adds. Throws `bad-wal` naming the file and
 * listing every problem found.
 */
export function checkSegmentHeader(fileName: string, first: Uint8Array, expect: SegmentExpectations = {}): CheckedSegment {
  const name = parseWalFileName(fileName);
  if (!name || (name.kind !== 'segment' && name.kind !== 'partial')) {
    throw new AirlockError('bad-wal', `${fileName}: not a wal segment name`, { hint: 'segment names are 24 hexadecimal digits' });
  }
  const fail = (problems: string[]) =>
    new AirlockError('bad-wal', `${fileName}: not a valid postgresql wal segment: ${problems.join('; ')}`, {
      hint: 'the file is damaged or not from this cluster; do not use it (a server keeps a segment until it is archived, so archive it again from there)',
    });
  if (first.byteLength < LONG_PAGE_HEADER_SIZE) throw fail([`only ${first.byteLength} bytes`]);
  const h = parsePageHeader(first, fileName);
  const problems: string[] = [];
  const magic = magicProblem(h.magic, expect.major);
  if (magic !== undefined) problems.push(magic);
  if (!h.long) {
    problems.push('the first page has no long header');
    throw fail(problems);
  }
  if ((h.info & ~XLP_ALL_FLAGS) !== 0) problems.push(`unknown page flags 0x${h.info.toString(16)}`);
  const segmentSize = h.long.segmentSize;
  let segno = -1n;
  let startLsn = '';
  if (!isValidSegmentSize(segmentSize)) {
    problems.push(`segment size ${segmentSize} is not a power of two from 1 MiB to 1 GiB`);
  } else {
    try {
      segno = segmentNumber(name, segmentSize);
      startLsn = formatLsn(segno * BigInt(segmentSize));
      if (h.pageAddress !== startLsn) problems.push(`page address ${h.pageAddress} is not the segment's start ${startLsn}`);
    } catch (e) {
      problems.push((e as Error).message.replace(`${fileName}: `, ''));
    }
  }
  if (expect.segmentSize !== undefined && segmentSize !== expect.segmentSize)
    problems.push(`segment size ${segmentSize} is not the expected ${expect.segmentSize}`);
  if (expect.fileSize !== undefined && expect.fileSize !== segmentSize)
    problems.push(`the file has ${expect.fileSize} bytes, not the segment size ${segmentSize}`);
  const bs = h.long.blockSize;
  if (bs < 1024 || bs > 65536 || (bs & (bs - 1)) !== 0) problems.push(`block size ${bs} is not a power of two from 1 KiB to 64 KiB`);
  if (expect.systemIdentifier !== undefined && h.long.systemIdentifier !== expect.systemIdentifier) {
    problems.push(`system identifier ${h.long.systemIdentifier} is not the cluster's ${expect.systemIdentifier}`);
  }
  if (h.timeline > name.timeline || h.timeline === 0) {
    problems.push(`page timeline ${h.timeline} does not fit the name's timeline ${name.timeline}`);
  } else if (h.timeline < name.timeline) {
    // legitimate only for the first segment of a new timeline, copied from its parent's
    const parent = expect.history?.parents.find((p) => p.timeline === h.timeline);
    if (!parent) problems.push(`page timeline ${h.timeline} is not an ancestor of timeline ${name.timeline} in a known history`);
    else if (segno >= 0n && parseLsn(parent.end) < parseLsn(startLsn)) problems.push(`timeline ${h.timeline} ended at ${parent.end}, before this segment`);
  }
  if (problems.length > 0) throw fail(problems);
  return { name, header: h as CheckedSegment['header'], segno, startLsn };
}

export interface TimelineHistory {
  /** the timeline this history file belongs to */
  timeline: number;
  /** every ancestor, oldest first, with the location where it ended (where its child forked) */
  parents: { timeline: number; end: string; reason: string }[];
}

/**
 * Parses a `.history` file: one line per ancestor, `<timeline>\t<end LSN>\t<reason>`, `#` comments
 * and blank lines ignored. Throws `bad-wal` naming the file: a bad line, timelines not rising,
 * locations going backwards, an ancestor not below the file's own timeline.
 */
export function parseHistory(fileName: string, text: string): TimelineHistory {
  const name = parseWalFileName(fileName);
  if (name?.kind !== 'history') throw new AirlockError('bad-wal', `${fileName}: not a timeline history file name`);
  const bad = (why: string) => new AirlockError('bad-wal', `${fileName}: ${why}`, { hint: 'the history file is damaged; archive it again from the server' });
  const parents: TimelineHistory['parents'] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^(\d+)\s+([0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8})(?:\s+(.*))?$/.exec(line);
    if (!m) throw bad(`line ${i + 1} is not "timeline<TAB>location<TAB>reason"`);
    const timeline = Number(m[1]);
    const end = formatLsn(parseLsn(m[2] as string));
    const prev = parents.at(-1);
    if (timeline === 0 || timeline >= name.timeline) throw bad(`line ${i + 1}: timeline ${timeline} is not an ancestor of ${name.timeline}`);
    if (prev && timeline <= prev.timeline) throw bad(`line ${i + 1}: timelines must rise`);
    if (prev && parseLsn(end) < parseLsn(prev.end)) throw bad(`line ${i + 1}: location ${end} is before ${prev.end}`);
    parents.push({ timeline, end, reason: (m[3] ?? '').trim() });
  });
  if (parents.length === 0) throw bad('no ancestor line');
  return { timeline: name.timeline, parents };
}

export interface BackupLabel {
  startLsn: string;
  startSegment: string;
  stopLsn: string;
  stopSegment: string;
  checkpointLsn: string | undefined;
  method: string | undefined;
  from: string | undefined;
  label: string | undefined;
  startTimeline: number;
  stopTimeline: number;
  /** as PostgreSQL wrote it, in log_timezone */
  startTime: string;
  stopTime: string;
  /** ISO 8601 in UTC when the written zone is UTC, GMT or a numeric offset */
  startTimeUtc: string | undefined;
  stopTimeUtc: string | undefined;
}

function toUtc(text: string): string | undefined {
  const m = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) (UTC|GMT|Z|[+-]\d{2}(?::?\d{2})?)$/.exec(text);
  if (!m) return undefined;
  let zone = m[3] as string;
  if (zone === 'UTC' || zone === 'GMT') zone = 'Z';
  else if (/^[+-]\d{2}$/.test(zone)) zone = `${zone}:00`;
  else if (/^[+-]\d{4}$/.test(zone)) zone = `${zone.slice(0, 3)}:${zone.slice(3)}`;
  const d = new Date(`${m[1]}T${m[2]}${zone}`);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString().replace('.000Z', 'Z');
}

/**
 * Parses a `.backup` file (the backup history file PostgreSQL archives at the end of a base backup):
 * `KEY: value` lines. Throws `bad-wal` naming the file when a required line is missing or bad, or
 * when the start location disagrees with the file's name.
 */
export function parseBackupLabel(fileName: string, text: string): BackupLabel {
  const name = parseWalFileName(fileName);
  if (name?.kind !== 'backup') throw new AirlockError('bad-wal', `${fileName}: not a backup history file name`);
  const bad = (why: string) =>
    new AirlockError('bad-wal', `${fileName}: ${why}`, { hint: 'the backup history file is damaged; archive it again from the server' });
  const fields = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const m = /^([A-Z][A-Z ]*[A-Z]): (.*)$/.exec(raw.trimEnd());
    if (m) fields.set(m[1] as string, m[2] as string);
  }
  const need = (k: string) => {
    const v = fields.get(k);
    if (v === undefined) throw bad(`no ${k} line`);
    return v;
  };
  const location = (k: string) => {
    const m = /^([0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}) \(file ([0-9A-F]{24})\)$/.exec(need(k));
    if (!m) throw bad(`${k} is not "X/Y (file NAME)"`);
    return { lsn: formatLsn(parseLsn(m[1] as string)), segment: m[2] as string };
  };
  const timeline = (k: string) => {
    const v = need(k);
    if (!/^\d+$/.test(v) || Number(v) === 0) throw bad(`${k} is not a timeline`);
    return Number(v);
  };
  const start = location('START WAL LOCATION');
  const stop = location('STOP WAL LOCATION');
  if (!fileName.startsWith(start.segment)) throw bad(`the start segment ${start.segment} is not the one in the file's name`);
  if (parseLsn(stop.lsn) < parseLsn(start.lsn)) throw bad(`stop location ${stop.lsn} is before start location ${start.lsn}`);
  const ckpt = fields.get('CHECKPOINT LOCATION');
  if (ckpt !== undefined && !/^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/.test(ckpt)) throw bad('CHECKPOINT LOCATION is not a location');
  const startTime = need('START TIME');
  const stopTime = need('STOP TIME');
  return {
    startLsn: start.lsn,
    startSegment: start.segment,
    stopLsn: stop.lsn,
    stopSegment: stop.segment,
    checkpointLsn: ckpt === undefined ? undefined : formatLsn(parseLsn(ckpt)),
    method: fields.get('BACKUP METHOD'),
    from: fields.get('BACKUP FROM'),
    label: fields.get('LABEL'),
    startTimeline: timeline('START TIMELINE'),
    stopTimeline: timeline('STOP TIMELINE'),
    startTime,
    stopTime,
    startTimeUtc: toUtc(startTime),
    stopTimeUtc: toUtc(stopTime),
  };
}
