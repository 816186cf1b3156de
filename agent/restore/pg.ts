/*
 * Restoring PostgreSQL from a verified media set.
 *
 * Point in time: choose the newest base backup that ends at or before the target, decrypt its bundle
 * into staging (every entry hashed and checked against the inner manifest before anything is used),
 * unpack the base backup's parts as they are decrypted into a partial data folder (unpack.ts), gather the WAL of that
 * bundle and of every later one the target needs into a WAL folder with a sidecar hash per file,
 * write the configuration the server starts from (pgconf.ts: never the source's files, which a
 * stolen appliance key could fill with commands), and rename the partial folder into place. The
 * settings always turn archiving off and bind the server to localhost on the given port, so a
 * restored cluster never archives into a production spool; restore_command is `airlock wal-fetch`,
 * which hands PostgreSQL only files whose hash matches.
 *
 * Logical: stream the parts of one database's `pg_dump -Fc` into `pg_restore`, or, for parallel
 * jobs (which pg_restore runs only from a file it can seek in), join them into one file first.
 *
 * Tablespaces: tablespaces.ts maps each to its folder before anything is decrypted, unpacks it beside
 * that folder and links it from pg_tblspc; it is promoted and removed together with the data folder.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { chown, lchown, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { childFailed, runChild } from '../../manifests/child.js';
import type { PostgresCoverage } from '../../manifests/coverage.js';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import type {
  IndexRecord,
  PgBaseEndRecord,
  PgBaseRecord,
  PgDumpEndRecord,
  PgDumpRecord,
  PgGlobalsEndRecord,
  PgGlobalsRecord,
  PgTablespaceEndRecord,
  PgTablespaceRecord,
  PgWalRecord,
} from '../../manifests/records.js';
import { shellQuote } from '../../manifests/shell.js';
import type { ReadEntry } from '../../manifests/tar.js';
import { digestStream } from '../../manifests/hash.js';
import type { BundleReport } from '../../verifier/verify.js';
import { removeTree } from '../fsutil.js';
import { clientEnv, psqlFailure } from '../postgres/programs.js';
import { formatLsn, parseLsn, parseWalFileName, segmentNumber, type WalFileName } from '../postgres/wal.js';
import { SIDECAR_SUFFIX, sidecarText } from '../spool.js';
import { confString, writeRestoreConfig } from './pgconf.js';
import { openStaging, promote, requireEmpty, stageBundle, type Notes, type StageHooks } from './staging.js';
import { linkTablespaces, planTablespaces, promoteTablespaces, removeTablespaces, TablespaceSinks, type TablespaceMapping } from './tablespaces.js';
import { BaseBackupSink } from './unpack.js';

export type Target =
  | { kind: 'latest' }
  /** `time` as given, `pg` the same instant as PostgreSQL reads it, `us` microseconds since 1970 */
  | { kind: 'time'; time: string; pg: string; us: number }
  | { kind: 'lsn'; lsn: string }
  | { kind: 'name'; name: string };

/** ISO 8601 date and time with an offset: `T` or space, optional fraction, `Z`, `±HH`, `±HHMM` or `±HH:MM`. */
const TARGET_TIME_RE = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))? ?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)$/;

/**
 * Parses a --target-time value, which must carry an explicit offset, into the instant it names and
 * the form PostgreSQL accepts in recovery_target_time. PostgreSQL reads that setting before it knows
 * time zone abbreviations, so `Z` (an abbreviation to it) is refused at start: the value is written
 * in UTC as `YYYY-MM-DD HH:MM:SS.ffffff+00`, to the microsecond. Throws `usage`.
 */
export function parseTargetTime(text: string): Extract<Target, { kind: 'time' }> {
  const bad = (why: string) =>
    new AirlockError('usage', `--target-time ${JSON.stringify(text)}: ${why}`, {
      hint: 'write it like 2026-03-01T12:00:00Z or 2026-03-01 13:00:00.250+01:00; a time without an offset is ambiguous across the air gap',
    });
  const m = TARGET_TIME_RE.exec(text);
  if (!m) throw bad('not a time with an explicit offset');
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const ms = Date.UTC(y, mo - 1, d, h, mi, s);
  const back = new Date(ms);
  if (y < 1970 || back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d || h > 23 || mi > 59 || s > 59)
    throw bad('not a valid date and time');
  const offsetMin = m[8] ? 0 : (m[9] === '-' ? -1 : 1) * (Number(m[10]) * 60 + Number(m[11] ?? '0'));
  if (Number(m[10] ?? '0') > 15 || Number(m[11] ?? '0') > 59) throw bad('not a valid offset');
  const us = ms * 1000 + Number((m[7] ?? '').padEnd(6, '0')) - offsetMin * 60_000_000;
  return { kind: 'time', time: text, pg: utcMicros(us), us };
}

/** Microseconds since 1970 as `YYYY-MM-DD HH:MM:SS.ffffff+00`. */
export function utcMicros(us: number): string {
  const ms = Math.floor(us / 1000);
  const frac = String(us - Math.floor(us / 1_000_000) * 1_000_000).padStart(6, '0');
  return `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')}.${frac}+00`;
}

/** A manifest time (ISO, UTC, milliseconds) in microseconds since 1970. */
const micros = (iso: string) => Date.parse(iso) * 1000;

interface PgBundle {
  b: BundleReport;
  seq: number;
  pg: PostgresCoverage;
}

function pgBundles(verified: readonly BundleReport[]): PgBundle[] {
  return verified
    .filter((b) => b.manifest?.coverage?.postgres && b.seq !== undefined)
    .map((b) => ({ b, seq: b.seq as number, pg: b.manifest?.coverage?.postgres as PostgresCoverage }))
    .sort((a, b) => a.seq - b.seq);
}

export interface RestorePlan {
  base: PgBundle;
  /** the base bundle and every later one whose WAL the target needs, in order */
  bundles: PgBundle[];
  /** the newest point the chosen bundles reach */
  newest: { time?: string; lsn?: string };
}

/**
 * Chooses the base backup and the bundles for `target`. Throws `no-bundle` when the set holds no
 * base backup that ends before the target, `usage` when the target lies after the newest data (unless
 * `orLatest`, which then restores everything).
 */
export function planRestore(verified: readonly BundleReport[], target: Target, orLatest: boolean): { plan: RestorePlan; target: Target } {
  const all = pgBundles(verified);
  const bases = all.filter((x) => x.pg.base);
  if (bases.length === 0)
    throw new AirlockError('no-bundle', 'the media set holds no base backup', {
      hint: 'restore from a set that includes a bundle exported with --pg-base, or restore a logical dump with --dump',
    });
  const newestPoint = all
    .map((x) => x.pg.restorePoint)
    .filter((p) => p !== undefined)
    .at(-1);
  let chosen = target;
  let base: PgBundle | undefined;
  if (target.kind === 'latest') base = bases.at(-1);
  else if (target.kind === 'time') {
    if (newestPoint && target.us > micros(newestPoint.time)) {
      if (!orLatest) {
        throw new AirlockError(
          'usage',
          `the target time ${target.time} is after the newest data of the set (restore point ${newestPoint.name} at ${newestPoint.time})`,
          {
            hint: 'give an earlier --target-time, or --latest (or add --or-latest to take the newest when the target is beyond it)',
          },
        );
      }
      chosen = { kind: 'latest' };
      base = bases.at(-1);
    } else base = bases.filter((x) => micros(x.pg.base?.stopTime as string) <= target.us).at(-1);
  } else if (target.kind === 'lsn') {
    const want = parseLsn(target.lsn);
    if (newestPoint && want > parseLsn(newestPoint.lsn)) {
      if (!orLatest) {
        throw new AirlockError(
          'usage',
          `the target LSN ${target.lsn} is after the newest data of the set (restore point ${newestPoint.name} at ${newestPoint.lsn})`,
          {
            hint: 'give an earlier --target-lsn, or --latest (or add --or-latest to take the newest when the target is beyond it)',
          },
        );
      }
      chosen = { kind: 'latest' };
    }
    base = bases.filter((x) => parseLsn(x.pg.base?.stopLsn as string) <= want).at(-1);
  } else {
    const named = all.find((x) => x.pg.restorePoint?.name === target.name);
    base = bases.filter((x) => named === undefined || x.seq <= named.seq).at(-1);
  }
  if (!base) {
    const first = bases[0]?.pg.base;
    throw new AirlockError('no-bundle', `no base backup in the set ends before the target (the oldest ends at ${first?.stopTime} / ${first?.stopLsn})`, {
      hint: 'choose a later target, or fetch the media holding an older base backup',
    });
  }
  const after = all.filter((x) => x.seq >= base.seq);
  // only as far as the target needs: up to the first bundle whose restore point is at or past it
  const needed: PgBundle[] = [];
  for (const x of after) {
    needed.push(x);
    const p = x.pg.restorePoint;
    if (!p || chosen.kind === 'latest') continue;
    if (chosen.kind === 'name' && p.name === chosen.name) break;
    if (chosen.kind === 'time' && micros(p.time) >= chosen.us) break;
    if (chosen.kind === 'lsn' && parseLsn(p.lsn) >= parseLsn(chosen.lsn)) break;
  }
  const lastPoint = needed
    .map((x) => x.pg.restorePoint)
    .filter((p) => p !== undefined)
    .at(-1);
  return { plan: { base, bundles: needed, newest: { ...(lastPoint ? { time: lastPoint.time, lsn: lastPoint.lsn } : {}) } }, target: chosen };
}

/** Decrypts `bundle` into `dir`, checking every entry (staging.ts); returns its index records. */
async function stagedRecords(
  bundle: BundleReport,
  identities: readonly Uint8Array[],
  dir: string,
  hooks: Omit<StageHooks, 'onRecord'> = {},
): Promise<IndexRecord[]> {
  const records: IndexRecord[] = [];
  await stageBundle(bundle, identities, dir, { ...hooks, onRecord: (r) => records.push(r) });
  return records;
}

/** The staged parts of one stream, checked against its end record, in order. */
function streamParts(
  records: readonly IndexRecord[],
  type: StreamPart['type'],
  endType: StreamEnd['type'],
  match: (r: StreamPart | StreamEnd) => boolean,
  what: string,
): string[] {
  const parts = records
    .filter((r): r is StreamPart => r.type === type)
    .filter(match)
    .sort((a, b) => a.part - b.part);
  const end = records.filter((r): r is StreamEnd => r.type === endType).find(match);
  if (end?.parts !== parts.length || parts.some((p, i) => p.part !== i + 1)) {
    throw new AirlockError('malformed', `${what}: the parts in the bundle do not match its end record`, {
      hint: 'the bundle was not written by a complete export; use another bundle',
    });
  }
  return parts.map((p) => p.path);
}

type StreamPart = PgBaseRecord | PgTablespaceRecord | PgDumpRecord | PgGlobalsRecord;
type StreamEnd = PgBaseEndRecord | PgTablespaceEndRecord | PgDumpEndRecord | PgGlobalsEndRecord;

/** Runs `cmd args` with the files concatenated on stdin; throws `child-failed` on a non-zero exit. */
async function feed(
  cmd: string,
  args: readonly string[],
  files: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; signal?: AbortSignal } = {},
): Promise<void> {
  const input = async function* () {
    for (const f of files) yield* createReadStream(f);
  };
  const r = await runChild(cmd, args, { input: input(), install: 'install the PostgreSQL client programs, or give --pg-bin', ...opts });
  // pg_restore's error spans lines: the server's message, then the statement that failed
  if (r.code !== 0) throw childFailed(path.basename(cmd), r, { lines: 3 });
}

/** The owner restored files get: the data folder's, or its parent's when it does not exist yet. */
export async function ownerFor(pgdata: string): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const st = await stat(pgdata).catch(() => stat(path.dirname(pgdata)));
  return st.uid === 0 ? undefined : { uid: st.uid, gid: st.gid };
}

export async function chownTree(dir: string, owner: { uid: number; gid: number }): Promise<void> {
  await chown(dir, owner.uid, owner.gid);
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await chownTree(p, owner);
    else await lchown(p, owner.uid, owner.gid);
  }
}

export interface PgRestoreOptions {
  verified: readonly BundleReport[];
  identities: readonly Uint8Array[];
  pgdata: string;
  target: Target;
  orLatest: boolean;
  port: number;
  /** the folder of each tablespace of the base backup (tablespaces.ts) */
  tablespaceMap?: readonly TablespaceMapping[];
  /** node and the airlock CLI as the server's user runs them for restore_command */
  walFetch: { node: string; cli: string };
  /**
   * Lay down a warm standby instead (standby.ts): standby.signal, hot_standby, no recovery target, and
   * the WAL in `walDir` (which airlock keeps filling) instead of DIR.wal beside the data folder.
   */
  standby?: { walDir: string };
  signal?: AbortSignal;
  say?: (line: string) => void;
  /** warnings that must reach the operator even when `say` is quiet */
  notes?: Notes;
  /** told the bundle bytes read so far, and the total, for a progress line */
  progress?: (bytes: number, total: number) => void;
}

export interface PgRestoreResult {
  pgdata: string;
  walDir: string;
  site: string;
  baseSeq: number;
  bundles: number[];
  target: Target;
  port: number;
  walFiles: number;
  /** the last WAL segment the chosen bundles hold */
  lastSegment: string | undefined;
  segmentSize: number;
  restorePoint?: { name: string; lsn: string; time: string };
  /** pg/tables.json of the newest chosen bundle that has one (export --pg-table-checks) */
  tableChecks?: { database: string; restorePoint: string; tables: Record<string, [number, string]> };
  /** warnings for the operator, e.g. a collation library that differs from the source's */
  warnings: string[];
  /** where each tablespace was laid down (linked from pg_tblspc) */
  tablespaces: { oid: number; name: string; dir: string }[];
}

/**
 * restore_command as `sh` runs it: `fetch` (wal-fetch) behind a test that answers "absent" (exit 1)
 * without starting node when neither file `%f` nor its sidecar is in `walDir`. PostgreSQL asks for
 * such files at every turn of recovery: the segment after the last, the history of the next
 * timeline at promotion, and, on a standby, the next segment every few seconds. Whatever the test
 * does not settle goes to wal-fetch: a missing folder (an error, so recovery stops instead of ending
 * early), a sidecar without its file (vouched for, so missing), links and every file to copy.
 */
export function absentShortcut(walDir: string, fetch: string): string {
  const dir = shellQuote(walDir);
  const missing = (p: string) => `! test -e ${dir}/${p} && ! test -L ${dir}/${p}`;
  return `if test -d ${dir} && ${missing('%f')} && ${missing(`%f${SIDECAR_SUFFIX}`)}; then exit 1; fi; exec ${fetch}`;
}

/**
 * The settings a restored server starts with, after the source's KEPT ones (pgconf.ts): where its WAL
 * comes from (wal-fetch, which hands over only files whose hash matches), the recovery target, and
 * always archiving off and localhost only, so it never archives into a production spool.
 */
function serverSettings(opts: PgRestoreOptions, target: Target, walDir: string, pgdata: string, seqs: readonly number[]): string[] {
  // a standby waits for files that are not there yet: wal-fetch must not take a half-placed one for a broken one
  const fetch = `${shellQuote(opts.walFetch.node)} ${shellQuote(opts.walFetch.cli)} wal-fetch %f %p --from ${shellQuote(walDir)}${opts.standby ? ' --standby' : ''}`;
  return [
    `# ${opts.standby ? 'warm standby' : 'recovery'}, from seq ${seqs.join(', ')}`,
    `restore_command = ${confString(absentShortcut(walDir, fetch))}`,
    ...recoveryTarget(target),
    ...(opts.standby
      ? [
          // read-only queries (status, drill) while it replays; it never promotes by itself. It asks
          // wal-fetch for the next file every wal_retrieve_retry_interval (5 s) while none is there;
          // standby apply wakes it at once after adding some (standby.ts, wakeStandby)
          'hot_standby = on',
        ]
      : ["recovery_target_action = 'promote'"]),
    "recovery_target_timeline = 'latest'",
    '# a restored cluster must never archive into the production spool, nor listen beyond this host',
    'archive_mode = off',
    `port = ${opts.port}`,
    "listen_addresses = 'localhost'",
    `unix_socket_directories = ${confString(pgdata)}`,
  ];
}

/** The recovery_target_* settings of `target` (none for latest). */
export function recoveryTarget(target: Target): string[] {
  if (target.kind === 'time') return [`recovery_target_time = ${confString(target.pg)}`];
  if (target.kind === 'lsn') return [`recovery_target_lsn = ${confString(target.lsn)}`];
  if (target.kind === 'name') return [`recovery_target_name = ${confString(target.name)}`];
  return [];
}

/**
 * Lays down a data folder ready for point-in-time recovery. Throws `target-exists` when `pgdata` is
 * not empty, `verification-failed` / `malformed` for a payload that does not check, `unsafe-entry`
 * for a base backup holding anything but folders and files; the data folder is left absent on failure.
 */
export async function preparePgRestore(opts: PgRestoreOptions): Promise<PgRestoreResult> {
  const { plan, target } = planRestore(opts.verified, opts.target, opts.orLatest);
  const pgdata = path.resolve(opts.pgdata);
  await requireEmpty(pgdata, 'restore into a new or empty data folder');
  const owner = await ownerFor(pgdata);
  const walDir = opts.standby ? path.resolve(opts.standby.walDir) : `${pgdata}.wal`;
  await requireEmpty(walDir, 'it holds the WAL of an earlier restore: remove it once that recovery finished');
  const spaces = await planTablespaces(plan.base.pg.base?.tablespaces ?? [], opts.tablespaceMap ?? [], pgdata);
  const spaceSinks = new TablespaceSinks(spaces, opts.signal);
  let promoting = false;
  const say = opts.say ?? (() => {});
  let lastSegment: string | undefined;
  let walFiles = 0;
  let tableChecks: PgRestoreResult['tableChecks'];
  const warnings: string[] = [];
  const total = plan.bundles.reduce((a, x) => a + (x.b.manifest?.payload.size ?? 0), 0);
  let read = 0;
  const onBytes = opts.progress ? (n: number) => opts.progress?.((read += n), total) : undefined;
  const settings = serverSettings(
    opts,
    target,
    walDir,
    pgdata,
    plan.bundles.map((x) => x.seq),
  );
  const staging = await openStaging(pgdata, opts.notes ? { notes: opts.notes } : {});
  // the data folder and its WAL are built inside staging, on the target's file system
  const partial = path.join(staging.dir, 'pgdata');
  const walTree = path.join(staging.dir, 'wal');
  try {
    await mkdir(partial, { mode: 0o700 });
    await mkdir(walTree, { mode: 0o700 });
    await spaceSinks.open();
    for (const x of plan.bundles) {
      const dir = path.join(staging.dir, String(x.seq));
      say(`decrypting and checking seq ${x.seq}`);
      const sink = x === plan.base ? new BaseBackupSink(partial, opts.signal) : undefined;
      if (sink) say(`unpacking the base backup of seq ${x.seq} as it is decrypted`);
      let records: IndexRecord[];
      try {
        records = await stagedRecords(x.b, opts.identities, dir, {
          ...(sink ? { divert: (entry: ReadEntry) => (entry.path.startsWith('pg/base/') ? sink.take(entry) : spaceSinks.take(entry)) } : {}),
          ...(opts.signal ? { signal: opts.signal } : {}),
          ...(onBytes ? { onBytes } : {}),
        });
        if (sink) {
          streamParts(records, 'pg-base', 'pg-base-end', () => true, `the base backup of seq ${x.seq}`);
          for (const t of spaces)
            streamParts(records, 'pg-tblspc', 'pg-tblspc-end', (r) => 'oid' in r && r.oid === t.oid, `tablespace ${t.oid} of seq ${x.seq}`);
          await sink.finish();
          await spaceSinks.finish();
          await linkTablespaces(partial, spaces);
        }
      } catch (e) {
        await sink?.abort();
        await spaceSinks.abort();
        throw e;
      }
      const checks = records.find((r) => r.type === 'pg-tables');
      if (checks) tableChecks = JSON.parse(await readFile(path.join(dir, checks.path), 'utf8')) as PgRestoreResult['tableChecks'];
      const info = records.find((r) => r.type === 'pg-info');
      if (info && x === plan.base) warnings.push(...collationWarnings(JSON.parse(await readFile(path.join(dir, info.path), 'utf8')) as SourceInfo));
      if (x === plan.base) {
        const carried = records.filter((r) => r.type === 'pg-config').map((r) => ({ file: r.file, staged: path.join(dir, r.path) }));
        warnings.push(...(await writeRestoreConfig(partial, carried, settings, pgdata)));
      }
      for (const r of records) {
        if (r.type !== 'pg-wal') continue;
        const n = walRecordName(r);
        await rename(path.join(dir, r.path), path.join(walTree, n.name));
        await writeFile(path.join(walTree, `${n.name}${SIDECAR_SUFFIX}`), sidecarText(n.name, r.sha256), { mode: 0o600 });
        walFiles++;
        if (n.kind === 'segment' && (lastSegment === undefined || n.name > lastSegment)) lastSegment = n.name;
      }
      await removeTree(dir);
    }
    await writeFile(path.join(partial, opts.standby ? 'standby.signal' : 'recovery.signal'), '', { mode: 0o600 });
    if (owner) {
      await chownTree(partial, owner);
      await chownTree(walTree, owner);
      for (const t of spaces) await chownTree(t.partial, owner);
    }
    promoting = true;
    await promoteTablespaces(spaces);
    // the WAL before the data folder: a data folder in place says the restore is complete
    await promote(walTree, walDir);
    await promote(partial, pgdata).catch(async (e: unknown) => {
      await removeTree(walDir).catch(() => {});
      throw e;
    });
  } catch (e) {
    await removeTablespaces(spaces, promoting);
    throw fromSystemError(e, pgdata);
  } finally {
    await staging.close();
  }
  const point = plan.bundles
    .map((x) => x.pg.restorePoint)
    .filter((p) => p !== undefined)
    .at(-1);
  return {
    pgdata,
    walDir,
    site: plan.base.b.site as string,
    baseSeq: plan.base.seq,
    bundles: plan.bundles.map((x) => x.seq),
    target,
    port: opts.port,
    walFiles,
    lastSegment,
    segmentSize: plan.base.pg.segmentSize,
    ...(tableChecks ? { tableChecks } : {}),
    warnings,
    tablespaces: spaces.map((t) => ({ oid: t.oid, name: t.name, dir: t.dir })),
    ...(point ? { restorePoint: { name: point.name, lsn: point.lsn, time: point.time } } : {}),
  };
}

interface SourceInfo {
  os?: { glibc?: string | null };
  collation?: { provider: string; version: string | null }[];
}

/**
 * Text sorts by the C library's (or ICU's) collation: an index built under one version may be
 * wrong under another, silently. When the source's glibc differs from this machine's, say so.
 */
function collationWarnings(info: SourceInfo): string[] {
  const here = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime;
  const there = info.os?.glibc ?? undefined;
  const libc = (info.collation ?? []).some((c) => c.provider === 'libc');
  if (!libc || !here || !there || here === there) return [];
  return [
    `the source ran glibc ${there}, this machine has ${here}: indexes on text columns may be ordered differently; run REINDEX (or amcheck) on the restored cluster before trusting them`,
  ];
}

/** The WAL file a pg-wal record names, which must be the entry it points at (`pg/wal/<name>`). Throws `unsafe-entry`. */
export function walRecordName(r: PgWalRecord): WalFileName {
  const n = parseWalFileName(r.name);
  if (!n || `pg/wal/${n.name}` !== r.path) throw new AirlockError('unsafe-entry', `index names WAL ${JSON.stringify(r.name)} at ${JSON.stringify(r.path)}`);
  return n;
}

/** The first WAL location of a segment name. */
export function segmentStart(name: string, segmentSize: number): bigint {
  const n = parseWalFileName(name);
  if (n?.kind !== 'segment') throw new AirlockError('internal', `${name} is not a segment name`);
  return segmentNumber(n, segmentSize) * BigInt(segmentSize);
}

export interface RecoveryOptions {
  /** the folder of pg_ctl and psql */
  bin: string | undefined;
  /** the role psql connects as for the checks */
  user: string;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface Recovered {
  pid: number;
  port: number;
  timeline: number;
  replayLsn: string;
  /** the commit time of the last transaction replayed (UTC, microseconds); absent when recovery replayed none */
  lastCommit?: string;
  /** from the server's start to the end of recovery */
  recoveryMs: number;
  log: string;
}

/** Runs a PostgreSQL program (as `owner`, when given) to completion; resolves with its exit status and output. */
export async function runAsOwner(
  cmd: string,
  args: readonly string[],
  owner: { uid: number; gid: number } | undefined,
  signal?: AbortSignal,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = await runChild(cmd, args, {
    env: clientEnv(),
    capture: true,
    install: 'install the PostgreSQL server programs, or give --pg-bin',
    ...(owner ? { owner } : {}),
    ...(signal ? { signal } : {}),
  });
  return { code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr };
}

/**
 * Why a restored server failed, from its log: the phase it reached (it never started, recovery
 * failed, or it stopped after recovery), the last refusal wal-fetch wrote there, and the server's
 * FATAL or PANIC lines with the DETAIL and HINT lines that follow them, which name the cause; the
 * log's last lines when it has none.
 */
export function serverFailure(log: string): { phase: string; why: string } {
  const lines = log.trimEnd().split('\n');
  const recovering = lines.some((l) => /starting (point-in-time|archive) recovery|redo starts at/.test(l));
  const promoted = lines.some((l) => /selected new timeline ID|archive recovery complete/.test(l));
  const phase = promoted
    ? 'the restored server stopped after recovery ended'
    : recovering
      ? 'recovery failed after the restored server started'
      : 'the restored server did not start';
  const fatal: string[] = [];
  // wal-fetch says why it refused a file on the server's stderr, which is this log
  const refused = lines.filter((l) => l.startsWith('airlock: error: ')).slice(-1);
  fatal.push(...refused);
  lines.forEach((l, i) => {
    if (!/\b(FATAL|PANIC):/.test(l)) return;
    fatal.push(l.replace(/^.*?\b(FATAL|PANIC):/, '$1:').trim());
    for (const next of lines.slice(i + 1, i + 3)) if (/\b(DETAIL|HINT):/.test(next)) fatal.push(next.replace(/^.*?\b(DETAIL|HINT):/, '$1:').trim());
  });
  const why = (fatal.length > 0 ? fatal.slice(0, 6) : lines.slice(-4)).join(' / ');
  return { phase, why };
}

/**
 * Starts the server of `pgdata` through pg_ctl (as the data folder's owner), logging to `log`, and
 * returns its PID once it runs. Throws `recovery-failed` with the log's FATAL lines when it does not start.
 */
export async function startServer(pgdata: string, log: string, opts: Pick<RecoveryOptions, 'bin' | 'timeoutMs' | 'signal'>): Promise<number> {
  const pgCtl = opts.bin ? path.join(opts.bin, 'pg_ctl') : 'pg_ctl';
  const owner = await ownerFor(pgdata);
  const start = await runAsOwner(pgCtl, ['-D', pgdata, '-l', log, '-w', '-t', String(Math.ceil(opts.timeoutMs / 1000)), 'start'], owner, opts.signal);
  if (start.code !== 0) {
    const f = serverFailure(await readFile(log, 'utf8').catch(() => ''));
    throw new AirlockError('recovery-failed', `${f.phase}: ${f.why}`, { hint: `read ${log}; the data folder is kept for inspection` });
  }
  const pidText = await readFile(path.join(pgdata, 'postmaster.pid'), 'utf8').catch(() => '');
  return Number(pidText.split('\n')[0]);
}

/**
 * Starts the restored server, waits until recovery ended and it was promoted, and checks that replay
 * reached what was asked: the named restore point, the target LSN, or (latest) the set's last
 * segment. Throws `recovery-failed` with the server log's tail otherwise. The server keeps running.
 */
export async function startAndRecover(
  r: Pick<PgRestoreResult, 'pgdata' | 'port' | 'target' | 'lastSegment' | 'segmentSize'>,
  opts: RecoveryOptions,
): Promise<Recovered> {
  const bin = (name: string) => (opts.bin ? path.join(opts.bin, name) : name);
  const log = path.join(r.pgdata, 'airlock-restore.log');
  const started = Date.now();
  const readLog = () => readFile(log, 'utf8').catch(() => '');
  const pid = await startServer(r.pgdata, log, opts);
  // one JSON value per query, as every query airlock sends (sources/postgres/server.ts)
  const psql = (sql: string) =>
    runAsOwner(
      bin('psql'),
      [
        '-X',
        '-w',
        '-q',
        '-A',
        '-t',
        '-v',
        'ON_ERROR_STOP=1',
        '-v',
        'VERBOSITY=terse',
        '-h',
        r.pgdata,
        '-p',
        String(r.port),
        '-U',
        opts.user,
        '-d',
        'postgres',
        '-c',
        sql,
      ],
      undefined,
      opts.signal,
    );
  const deadline = started + opts.timeoutMs;
  for (;;) {
    const q = await psql('SELECT to_json(pg_is_in_recovery())');
    if (q.code === 0 && q.stdout.trim() === 'false') break;
    let alive = Number.isInteger(pid) && pid > 0;
    try {
      if (alive) process.kill(pid, 0);
    } catch {
      alive = false;
    }
    if (!alive) {
      const f = serverFailure(await readLog());
      throw new AirlockError('recovery-failed', `${f.phase}: ${f.why}`, { hint: `read ${log}; the data folder is kept for inspection` });
    }
    if (Date.now() > deadline)
      throw new AirlockError('recovery-failed', `recovery did not end within ${Math.round(opts.timeoutMs / 1000)} s`, {
        hint: `the server (pid ${pid}) still runs; read ${log}`,
      });
    await new Promise((res) => setTimeout(res, 200));
  }
  const recoveryMs = Date.now() - started;
  const q = await psql(
    `SELECT json_build_object('replay', pg_last_wal_replay_lsn(), 'timeline', ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint, 'lastCommit', to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))`,
  );
  let answer: { replay?: unknown; timeline?: unknown; lastCommit?: unknown } = {};
  try {
    answer = q.code === 0 ? ((JSON.parse(q.stdout) as typeof answer | null) ?? {}) : {};
  } catch {
    // not one JSON value: refused below
  }
  const replay = typeof answer.replay === 'string' ? answer.replay : '';
  const tli = typeof answer.timeline === 'number' ? answer.timeline : 0;
  const lastCommit = typeof answer.lastCommit === 'string' ? answer.lastCommit : '';
  if (q.code !== 0 || !/^[0-9A-F]+\/[0-9A-F]+$/.test(replay))
    throw new AirlockError('recovery-failed', `cannot ask the restored server where replay ended: ${psqlFailure(q.stderr, q.code)}`, {
      hint: `check --pg-user; the server (pid ${pid}) runs on port ${r.port}`,
    });
  const text = await readLog();
  const replayLsn = parseLsn(replay);
  const t = r.target;
  const fail = (why: string) =>
    new AirlockError('recovery-failed', `recovery ended at ${replay} but ${why}`, {
      hint: `read ${log}; the server (pid ${pid}) still runs on port ${r.port}`,
    });
  if (t.kind === 'name' && !text.includes(`recovery stopping at restore point "${t.name}"`))
    throw fail(`the server log does not say it stopped at restore point ${t.name}`);
  if (t.kind === 'lsn' && replayLsn < parseLsn(t.lsn)) throw fail(`the target was ${t.lsn}`);
  if (t.kind === 'time' && !/recovery stopping (before|after) (commit|abort)/.test(text))
    throw fail('the server log does not say it stopped at the target time');
  if (t.kind === 'latest' && r.lastSegment !== undefined && replayLsn < segmentStart(r.lastSegment, r.segmentSize))
    throw fail(`the set's WAL goes on into ${r.lastSegment}`);
  return { pid, port: r.port, timeline: tli, replayLsn: formatLsn(replayLsn), ...(lastCommit ? { lastCommit } : {}), recoveryMs, log };
}

/** Stops a restored server (fast shutdown) through pg_ctl. */
export async function stopRestored(pgdata: string, bin: string | undefined): Promise<void> {
  const owner = await ownerFor(pgdata);
  const r = await runAsOwner(bin ? path.join(bin, 'pg_ctl') : 'pg_ctl', ['-D', pgdata, '-m', 'fast', '-w', 'stop'], owner);
  if (r.code !== 0) throw new AirlockError('child-failed', `pg_ctl stop failed: ${r.stderr.trim()}`);
}

/**
 * The staged parts of a dump as one file `file` (0600), each part removed once appended, so the
 * dump takes its size on disk once: pg_restore --jobs reads a file, never a pipe.
 */
async function joinParts(parts: readonly string[], file: string): Promise<void> {
  const each = async function* () {
    for (const p of parts) {
      yield* createReadStream(p);
      await rm(p);
    }
  };
  await pipeline(Readable.from(each()), createWriteStream(file, { flags: 'wx', mode: 0o600 }));
}

/**
 * Restores database `database` of the verified `bundle` into the database `conninfo` names, through
 * pg_restore: streamed on its stdin, or with `jobs` from a file in the private staging folder
 * (removed afterwards, as the parts are) by that many parallel jobs. The staging folder is made in
 * the folder `staging`. Throws `no-bundle` when the bundle has no dump of it, `child-failed` when
 * pg_restore fails, and what stageBundle throws.
 */
export async function restoreDump(
  bundle: BundleReport,
  identities: readonly Uint8Array[],
  database: string,
  conninfo: string,
  bin: string | undefined,
  staging: string,
  opts: { signal?: AbortSignal; jobs?: number | undefined; notes?: Notes } = {},
): Promise<{ parts: number }> {
  const { signal, jobs } = opts;
  // runs into other databases may share the folder: only what killed runs left there is removed
  const stage = await openStaging(path.join(staging, 'dump'), { exclusive: false, ...(opts.notes ? { notes: opts.notes } : {}) });
  const dir = stage.dir;
  try {
    // only the dumps are written to disk; every other entry is hashed (checked) and dropped
    const records = await stagedRecords(bundle, identities, dir, {
      divert: (entry) => (entry.path.startsWith('pg/dump/') || entry.path.startsWith('pg/globals/') ? undefined : digestStream),
      ...(signal ? { signal } : {}),
    });
    const dbs = records.filter((r) => r.type === 'pg-dump-end').map((r) => r.database);
    if (!dbs.includes(database))
      throw new AirlockError('no-bundle', `seq ${bundle.seq} holds no dump of database ${JSON.stringify(database)}`, {
        hint: `it holds dumps of: ${dbs.join(', ') || 'none'}`,
      });
    const parts = streamParts(records, 'pg-dump', 'pg-dump-end', (r) => 'database' in r && r.database === database, `the dump of ${database}`);
    const pgRestore = bin ? path.join(bin, 'pg_restore') : 'pg_restore';
    const args = ['-d', conninfo, '-w', '--exit-on-error', '--no-owner'];
    const run = { env: clientEnv(), ...(signal ? { signal } : {}) };
    if (jobs === undefined)
      await feed(
        pgRestore,
        args,
        parts.map((p) => path.join(dir, p)),
        run,
      );
    else {
      const file = path.join(dir, 'dump.custom');
      await joinParts(
        parts.map((p) => path.join(dir, p)),
        file,
      );
      await feed(pgRestore, [...args, '--jobs', String(jobs), file], [], run);
    }
    return { parts: parts.length };
  } finally {
    await stage.close();
  }
}
