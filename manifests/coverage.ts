/*
 * PostgreSQL coverage: what a bundle claims about the database it carries, in the cleartext
 * manifest (SPEC.md, "Coverage"), so an auditor without the key can check WAL continuity across a
 * media set and see to which times the set restores.
 *
 * A WAL range names its first and last segment files; the range is contiguous (every segment
 * between them is in the bundle). Across the bundles of a site, the ranges of each timeline must
 * join up from the oldest base backup onwards; a gap is `wal-gap`, a timeline whose history file is
 * in no bundle is `timeline-break`. LSNs are strings ("0/3000028"), system identifiers decimal
 * strings, so no 64-bit value passes through a JSON number.
 */
import { fieldsOf, type Problems } from './fields.js';

export interface WalRange {
  timeline: number;
  /** the first segment file name, 24 hex digits */
  first: string;
  /** the last segment file name; the range holds every segment from first to last */
  last: string;
}

export interface TimelineSwitch {
  /** the timeline that began */
  timeline: number;
  /** the timeline it branched from */
  parent: number;
  /** where the parent's WAL stops and the new timeline starts */
  switchLsn: string;
}

export interface BaseBackupCoverage {
  timeline: number;
  startLsn: string;
  stopLsn: string;
  startTime: string;
  stopTime: string;
  /** the tablespaces besides pg_default and pg_global, by OID; absent when there are none */
  tablespaces?: Tablespace[];
}

/** A tablespace of a base backup: what a restore must map to a folder of its own. */
export interface Tablespace {
  /** the tablespace's OID, which names its tar and its link in pg_tblspc */
  oid: number;
  name: string;
  /** the folder it lived in on the source server */
  location: string;
}

/** PostgreSQL names are at most 63 bytes, paths at most 1023 (MAXPGPATH). */
const TABLESPACE_NAME_BYTES = 63;
const TABLESPACE_LOCATION_BYTES = 1023;

/** Whether `v` is a tablespace record's oid, name and location as SPEC 3.4 allows them. */
export function isTablespace(v: object): boolean {
  const { oid, name, location } = v as Record<string, unknown>;
  return (
    typeof oid === 'number' &&
    Number.isSafeInteger(oid) &&
    oid > 0 &&
    oid <= 0xffffffff &&
    typeof name === 'string' &&
    name.length > 0 &&
    Buffer.byteLength(name) <= TABLESPACE_NAME_BYTES &&
    !name.includes('\0') &&
    typeof location === 'string' &&
    location.startsWith('/') &&
    Buffer.byteLength(location) <= TABLESPACE_LOCATION_BYTES &&
    !location.includes('\0')
  );
}

export interface RestorePoint {
  name: string;
  lsn: string;
  time: string;
  timeline: number;
}

export interface PostgresCoverage {
  /** pg_control's database system identifier, decimal */
  systemIdentifier: string;
  /** the server's major version, e.g. 15 */
  major: number;
  /** wal_segment_size in bytes */
  segmentSize: number;
  dataChecksums: boolean;
  /** the timeline the server was on at export */
  timeline: number;
  /** the WAL segments in the bundle, as contiguous runs, sorted by timeline then name */
  wal: WalRange[];
  /** the timeline history carried by the bundle's .history files */
  timelines: TimelineSwitch[];
  /** present when the bundle holds a physical base backup */
  base?: BaseBackupCoverage;
  /** logical dumps in the bundle (databases, plus one for the globals) */
  dumps: number;
  /** the restore point the export created and sealed with a WAL switch */
  restorePoint?: RestorePoint;
}

export interface Coverage {
  postgres?: PostgresCoverage;
}

const SEGMENT_RE = /^[0-9A-F]{24}$/;
const LSN_RE = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/;
const TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$/;
const SYSID_RE = /^[1-9][0-9]{0,19}$/;

const fields = fieldsOf;

const isTimeline = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1 && v <= 0xffffffff;

function check(ok: boolean, p: Problems, where: string, what: string): void {
  if (!ok) p.push(`${where}: must be ${what}`);
}

const matches = (v: unknown, re: RegExp) => typeof v === 'string' && re.test(v);

/** Lists every problem of a `coverage` section (an empty list when it is well-formed). */
export function coverageProblems(v: unknown): string[] {
  const p: Problems = [];
  const c = fields(v, 'coverage', p, [], ['postgres']);
  if (c?.postgres === undefined) return p;
  const where = 'coverage.postgres';
  const pg = fields(
    c.postgres,
    where,
    p,
    ['systemIdentifier', 'major', 'segmentSize', 'dataChecksums', 'timeline', 'wal', 'timelines', 'dumps'],
    ['base', 'restorePoint'],
  );
  if (!pg) return p;
  check(matches(pg.systemIdentifier, SYSID_RE), p, `${where}.systemIdentifier`, 'a decimal string');
  check(typeof pg.major === 'number' && Number.isSafeInteger(pg.major) && pg.major >= 9 && pg.major < 1000, p, `${where}.major`, 'a major version');
  const seg = pg.segmentSize;
  check(
    typeof seg === 'number' && Number.isSafeInteger(seg) && seg >= 1 << 20 && seg <= 1 << 30 && (seg & (seg - 1)) === 0,
    p,
    `${where}.segmentSize`,
    'a power of two from 1 MiB to 1 GiB',
  );
  check(typeof pg.dataChecksums === 'boolean', p, `${where}.dataChecksums`, 'true or false');
  check(isTimeline(pg.timeline), p, `${where}.timeline`, 'a timeline id');
  check(typeof pg.dumps === 'number' && Number.isSafeInteger(pg.dumps) && pg.dumps >= 0, p, `${where}.dumps`, 'a count');
  if (!Array.isArray(pg.wal)) p.push(`${where}.wal: must be a list`);
  else {
    pg.wal.forEach((r, i) => {
      const w = `${where}.wal[${i}]`;
      const o = fields(r, w, p, ['timeline', 'first', 'last']);
      if (!o) return;
      check(isTimeline(o.timeline), p, `${w}.timeline`, 'a timeline id');
      check(matches(o.first, SEGMENT_RE) && matches(o.last, SEGMENT_RE), p, `${w}.first/last`, 'WAL segment file names');
      if (typeof o.first === 'string' && typeof o.last === 'string' && o.first > o.last) p.push(`${w}: first is after last`);
      if (typeof o.first === 'string' && isTimeline(o.timeline) && parseInt(o.first.slice(0, 8), 16) !== o.timeline)
        p.push(`${w}.first: not on timeline ${String(o.timeline)}`);
    });
  }
  if (!Array.isArray(pg.timelines)) p.push(`${where}.timelines: must be a list`);
  else {
    pg.timelines.forEach((t, i) => {
      const w = `${where}.timelines[${i}]`;
      const o = fields(t, w, p, ['timeline', 'parent', 'switchLsn']);
      if (!o) return;
      check(
        isTimeline(o.timeline) && isTimeline(o.parent) && (o.parent as number) < (o.timeline as number),
        p,
        `${w}.timeline/parent`,
        'timeline ids, the parent lower',
      );
      check(matches(o.switchLsn, LSN_RE), p, `${w}.switchLsn`, 'an LSN like 0/3000028');
    });
  }
  if (pg.base !== undefined) {
    const w = `${where}.base`;
    const b = fields(pg.base, w, p, ['timeline', 'startLsn', 'stopLsn', 'startTime', 'stopTime'], ['tablespaces']);
    if (b) {
      check(isTimeline(b.timeline), p, `${w}.timeline`, 'a timeline id');
      check(matches(b.startLsn, LSN_RE) && matches(b.stopLsn, LSN_RE), p, `${w}.startLsn/stopLsn`, 'LSNs');
      check(matches(b.startTime, TIME_RE) && matches(b.stopTime, TIME_RE), p, `${w}.startTime/stopTime`, 'UTC times');
      if (b.tablespaces !== undefined) tablespaceProblems(b.tablespaces, `${w}.tablespaces`, p);
    }
  }
  if (pg.restorePoint !== undefined) {
    const w = `${where}.restorePoint`;
    const r = fields(pg.restorePoint, w, p, ['name', 'lsn', 'time', 'timeline']);
    if (r) {
      check(matches(r.name, /^[ -~]{1,63}$/), p, `${w}.name`, 'printable ASCII of at most 63 characters');
      check(matches(r.lsn, LSN_RE), p, `${w}.lsn`, 'an LSN');
      check(matches(r.time, TIME_RE), p, `${w}.time`, 'a UTC time');
      check(isTimeline(r.timeline), p, `${w}.timeline`, 'a timeline id');
    }
  }
  return p;
}

/** A non-empty list of distinct tablespaces, sorted by OID, with distinct names. */
function tablespaceProblems(v: unknown, where: string, p: Problems): void {
  if (!Array.isArray(v) || v.length === 0) {
    p.push(`${where}: must be a non-empty list (absent when there are none)`);
    return;
  }
  const names = new Set<string>();
  let last = 0;
  v.forEach((t, i) => {
    const w = `${where}[${i}]`;
    const o = fields(t, w, p, ['oid', 'name', 'location']);
    if (!o) return;
    check(
      isTablespace(o),
      p,
      w,
      `an OID, a name of 1 to ${TABLESPACE_NAME_BYTES} bytes and an absolute location of at most ${TABLESPACE_LOCATION_BYTES} bytes`,
    );
    if (typeof o.oid === 'number' && o.oid <= last) p.push(`${w}.oid: not above the one before (sorted by OID, each once)`);
    if (typeof o.oid === 'number') last = o.oid;
    if (typeof o.name === 'string' && names.has(o.name)) p.push(`${w}.name: named twice`);
    if (typeof o.name === 'string') names.add(o.name);
  });
}

/**
 * A span of time to which a media set can restore one site's database: from the end of a base
 * backup (the earliest consistent point) to the last WAL the set holds without a gap after it.
 */
export interface RecoveryWindow {
  timeline: number;
  /** the bundle holding the base backup the window starts from */
  baseSeq: number;
  /** the newest bundle whose WAL the window reaches */
  lastSeq: number;
  from: { lsn: string; time: string };
  /** `time` is the newest restore point's time in the window, or absent when none is known */
  to: { lsn: string; time?: string; segment: string };
}

const hex8 = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, '0');

/** A WAL location "X/Y" as a number. The caller checked the form (LSN_RE). */
export function lsnValue(lsn: string): bigint {
  const [hi = '0', lo = '0'] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
}

export function formatLsnValue(v: bigint): string {
  return `${(v >> 32n).toString(16).toUpperCase()}/${(v & 0xffff_ffffn).toString(16).toUpperCase()}`;
}

/** The segment number of a 24-digit segment file name. */
export function segmentNo(name: string, segmentSize: number): bigint {
  const per = 0x1_0000_0000n / BigInt(segmentSize);
  return BigInt(`0x${name.slice(8, 16)}`) * per + BigInt(`0x${name.slice(16, 24)}`);
}

/** The file name of segment `segno` on `timeline`. */
export function segmentFileName(timeline: number, segno: bigint, segmentSize: number): string {
  const per = 0x1_0000_0000n / BigInt(segmentSize);
  return `${hex8(timeline)}${hex8(segno / per)}${hex8(segno % per)}`;
}

/** Contiguous runs of segment file names, per timeline, sorted; names that are not segments are left out. */
export function walRanges(names: Iterable<string>, segmentSize: number): WalRange[] {
  const ranges: WalRange[] = [];
  let open: (WalRange & { next: bigint }) | undefined;
  for (const name of [...names].filter((n) => SEGMENT_RE.test(n)).sort()) {
    const timeline = parseInt(name.slice(0, 8), 16);
    const segno = segmentNo(name, segmentSize);
    if (open?.timeline === timeline && open.next === segno) {
      open.last = name;
      open.next = segno + 1n;
      continue;
    }
    if (open) ranges.push({ timeline: open.timeline, first: open.first, last: open.last });
    open = { timeline, first: name, last: name, next: segno + 1n };
  }
  if (open) ranges.push({ timeline: open.timeline, first: open.first, last: open.last });
  return ranges;
}

/**
 * With the key: does the manifest's coverage say what the index holds? The WAL ranges must be the
 * segments of the `pg-wal` records, a base backup claimed iff the payload has one, the dump and
 * timeline counts equal. Returns one message per disagreement.
 */
export function coverageAgainstIndex(coverage: Coverage | undefined, records: readonly { type: string; [k: string]: unknown }[]): string[] {
  const pg = coverage?.postgres;
  const wal = records.filter((r) => r.type === 'pg-wal');
  const has = (type: string) => records.some((r) => r.type === type);
  if (!pg) return wal.length > 0 || has('pg-base-end') || has('pg-dump-end') ? ['the payload holds PostgreSQL data that coverage does not declare'] : [];
  const out: string[] = [];
  const segments = wal.filter((r) => r.kind === 'segment' && typeof r.name === 'string').map((r) => r.name as string);
  const key = (rs: readonly WalRange[]) => rs.map((r) => `${r.timeline}:${r.first}-${r.last}`).join(',');
  if (key(walRanges(segments, pg.segmentSize)) !== key(pg.wal))
    out.push(`coverage.postgres.wal does not list the WAL segments the payload holds (${segments.length})`);
  if ((pg.base !== undefined) !== has('pg-base-end'))
    out.push(`coverage.postgres.base says ${pg.base ? 'a base backup' : 'none'}, the payload holds ${has('pg-base-end') ? 'one' : 'none'}`);
  const key3 = (ts: readonly object[]) =>
    JSON.stringify(
      ts
        .map((t) => t as Record<string, unknown>)
        .map((t) => [t.oid, t.name, t.location])
        .sort((a, b) => Number(a[0]) - Number(b[0])),
    );
  const spaces = records.filter((r) => r.type === 'pg-tblspc-end');
  if (key3(pg.base?.tablespaces ?? []) !== key3(spaces))
    out.push(
      `coverage.postgres.base.tablespaces lists ${pg.base?.tablespaces?.length ?? 0} tablespace(s), the payload holds ${spaces.length} (each by OID, name and location)`,
    );
  const dumps = records.filter((r) => r.type === 'pg-dump-end' || r.type === 'pg-globals-end').length;
  if (dumps !== pg.dumps) out.push(`coverage.postgres.dumps is ${pg.dumps}, the payload holds ${dumps}`);
  const histories = wal.filter((r) => r.kind === 'history').length;
  if (histories !== pg.timelines.length)
    out.push(`coverage.postgres.timelines lists ${pg.timelines.length} switch(es), the payload holds ${histories} history file(s)`);
  return out;
}
