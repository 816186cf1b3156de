/*
 * A warm standby at the recovery site: a PostgreSQL server kept in recovery, fed by the media that
 * arrive, so that taking over replays one medium's WAL instead of a base backup and every day since.
 *
 *   init     verify the set -> lay down the newest base backup and every WAL file after it (restore/pg.ts,
 *            standby mode: standby.signal, hot_standby, archiving off, localhost only, restore_command
 *            `airlock wal-fetch --standby` reading the standby's WAL folder) -> state -> start -> wait for replay
 *   apply    lock -> verify the media -> the bundles after the one applied must continue the chain the
 *            standby holds (seq + 1, prev = its SHA256SUMS hash, the same cluster and timeline, WAL from
 *            the segment after its last on), or nothing is applied -> decrypt them into staging, every
 *            entry checked, WAL only -> each file into the WAL folder (sidecar first, then the file, each
 *            written whole under a temporary name and renamed) -> state -> wait until replay reached them
 *   promote  end recovery at a target and promote (never by itself: no recovery target while it is a standby)
 *
 * The standby's folder (0700, owned like the data folder, on its file system) holds `state.json`
 * (what chain it holds: site, last bundle applied and its hash, last WAL segment, timeline, restore
 * points; written atomically), the WAL folder `wal/`, the server's log and the lock `standby.lock`
 * that keeps two applies from both applying (lock.ts).
 *
 * A standby replays everything it is given and cannot rewind. So a target can only be reached while
 * replay has not passed it: apply replays each medium to its restore point; to take over at a time
 * inside media that just arrived (before a bad change they carry), give them to promote instead of
 * apply, which adds their WAL with the target set. The README explains the routine.
 */
import { chmod, chown, lstat, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../manifests/atomic.js';
import { lsnValue, segmentNo, type PostgresCoverage } from '../manifests/coverage.js';
import { AirlockError, fromSystemError } from '../manifests/errors.js';
import { digestStream } from '../manifests/hash.js';
import type { IndexRecord } from '../manifests/records.js';
import type { BundleReport } from '../verifier/verify.js';
import { fsyncDir, removeTree } from './fsutil.js';
import { acquireLock } from './lock.js';
import { formatLsn } from './postgres/wal.js';
import {
  ownerFor,
  preparePgRestore,
  runAsOwner,
  segmentStart,
  serverFailure,
  startAndRecover,
  startServer,
  stopRestored,
  walRecordName,
  type PgRestoreResult,
  recoveryTarget,
  type Target,
} from './restore/pg.js';
import { openStaging, requireEmpty, stageBundle, type Notes } from './restore/staging.js';
import { queryJson } from './sources/postgres/server.js';
import { SIDECAR_SUFFIX, parseSidecar, sidecarText } from './spool.js';

export const STATE_FILE = 'state.json';
export const WAL_DIR = 'wal';
export const SERVER_LOG = 'postgresql.log';
const FORMAT = 'airlock-standby';

export interface StandbyPoint {
  seq: number;
  name: string;
  lsn: string;
  time: string;
}

export interface StandbyState {
  format: typeof FORMAT;
  version: 1;
  site: string;
  pgdata: string;
  port: number;
  major: number;
  systemIdentifier: string;
  segmentSize: number;
  timeline: number;
  baseSeq: number;
  /** node and the airlock CLI as the server's user runs them for restore_command (a rebase writes it again) */
  walFetch: { node: string; cli: string };
  /** the newest bundle whose WAL the standby holds, and its identity (the sha256 of its SHA256SUMS) */
  applied: { seq: number; sums: string; created?: string; at: string };
  /** the newest WAL segment in the WAL folder */
  lastSegment?: string;
  restorePoints: StandbyPoint[];
  /** the table checks of the newest bundle that recorded them (export --pg-table-checks) */
  tableChecks?: PgRestoreResult['tableChecks'];
  promoted?: { at: string; target: string; seconds: number };
}

const statePath = (dir: string) => path.join(dir, STATE_FILE);

/** Reads the standby's state. Throws `not-found` for a folder that holds none, `malformed` for a file that is not one. */
export async function readStandbyState(dir: string): Promise<StandbyState> {
  let text: string;
  try {
    text = await readFile(statePath(dir), 'utf8');
  } catch (e) {
    const typed = fromSystemError(e, statePath(dir), 'not-found');
    if (typed instanceof AirlockError && typed.code === 'not-found')
      throw new AirlockError('not-found', `${dir} holds no standby (no ${STATE_FILE})`, { hint: 'give --standby the folder standby init made' });
    throw typed;
  }
  let s: Partial<StandbyState>;
  try {
    s = JSON.parse(text) as Partial<StandbyState>;
  } catch {
    s = {};
  }
  if (s.format !== FORMAT || s.version !== 1 || typeof s.site !== 'string' || typeof s.applied?.sums !== 'string' || !Array.isArray(s.restorePoints))
    throw new AirlockError('malformed', `${statePath(dir)} is not the state of an airlock standby`, { hint: 'give --standby the folder standby init made' });
  return s as StandbyState;
}

async function writeStandbyState(dir: string, state: StandbyState): Promise<void> {
  await writeFileAtomic(statePath(dir), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
}

/** Takes the standby's lock; returns its release. Throws `locked` while another standby command holds it. */
function lockStandby(dir: string): () => void {
  try {
    return acquireLock(dir, 'standby');
  } catch (e) {
    if (e instanceof AirlockError && e.code === 'locked')
      throw new AirlockError('locked', `another airlock standby command is running on ${dir}`, {
        hint: 'wait for it to finish: the lock is released when that process ends',
      });
    throw e;
  }
}

const pgOf = (b: BundleReport): PostgresCoverage | undefined => b.manifest?.coverage?.postgres;
const pointsOf = (bundles: readonly BundleReport[]): StandbyPoint[] =>
  bundles.flatMap((b) => {
    const p = pgOf(b)?.restorePoint;
    return p ? [{ seq: b.seq as number, name: p.name, lsn: p.lsn, time: p.time }] : [];
  });

/**
 * The verified bundles that come after what the standby holds, in order; none when it holds them
 * all already. Throws `standby-fork` when the media's chain is not the standby's (another bundle
 * with the seq it applied, a `prev` that is not its hash, another cluster or timeline) and
 * `standby-gap` when bundles or WAL segments are missing in between.
 */
export function newBundles(state: StandbyState, verified: readonly BundleReport[]): BundleReport[] {
  const mine = verified.filter((b) => b.site === state.site && b.seq !== undefined).sort((a, b) => (a.seq as number) - (b.seq as number));
  const same = mine.find((b) => b.seq === state.applied.seq);
  if (same && same.sums !== state.applied.sums)
    throw new AirlockError('standby-fork', `seq ${state.applied.seq} on the media is not the bundle the standby applied (${path.basename(same.path)})`, {
      hint: 'the media carry another chain of this site; nothing was applied. Find out where it comes from before trusting either',
    });
  const after = mine.filter((b) => (b.seq as number) > state.applied.seq);
  const first = after[0];
  if (!first) return [];
  if (first.seq !== state.applied.seq + 1) {
    const missing =
      (first.seq as number) - state.applied.seq === 2 ? `seq ${state.applied.seq + 1} is` : `seq ${state.applied.seq + 1} to ${(first.seq as number) - 1} are`;
    throw new AirlockError('standby-gap', `${missing} missing: the standby holds up to seq ${state.applied.seq} and the media start at seq ${first.seq}`, {
      hint: 'apply the media holding the missing bundles first; nothing was applied',
    });
  }
  if (first.manifest?.prev !== state.applied.sums)
    throw new AirlockError('standby-fork', `prev of seq ${first.seq} is not the hash of seq ${state.applied.seq}, which the standby applied`, {
      hint: 'the media carry another chain of this site; nothing was applied',
    });
  let last = state.lastSegment === undefined ? undefined : segmentNo(state.lastSegment, state.segmentSize);
  for (const b of after) {
    const pg = pgOf(b);
    if (!pg) continue;
    if (pg.systemIdentifier !== state.systemIdentifier || pg.segmentSize !== state.segmentSize)
      throw new AirlockError(
        'standby-fork',
        `seq ${b.seq} is of another cluster (system identifier ${pg.systemIdentifier}) than the standby (${state.systemIdentifier})`,
        {
          hint: 'nothing was applied',
        },
      );
    for (const r of pg.wal) {
      if (r.timeline !== state.timeline)
        throw new AirlockError('standby-fork', `seq ${b.seq} carries WAL of timeline ${r.timeline}; the standby follows timeline ${state.timeline}`, {
          hint: 'the source was restored or promoted: make a new standby (standby init) from a base backup of the new timeline; nothing was applied',
        });
      const from = segmentNo(r.first, state.segmentSize);
      if (last !== undefined && from > last + 1n)
        throw new AirlockError(
          'standby-gap',
          `seq ${b.seq} starts its WAL at ${r.first}, but the standby's WAL ends before it (at segment ${state.lastSegment})`,
          {
            hint: 'the WAL in between is in no bundle given; nothing was applied',
          },
        );
      const to = segmentNo(r.last, state.segmentSize);
      if (last === undefined || to > last) last = to;
    }
  }
  return after;
}

interface Placed {
  name: string;
  sha256: string;
  staged: string;
}

/**
 * Decrypts `bundles` into a staging folder beside the WAL folder (their WAL and table checks only;
 * every other entry is hashed and dropped), and once every one of them checked out, moves their WAL
 * into the WAL folder: each sidecar first, then its file, so `wal-fetch --standby` never sees a file
 * it cannot check. Throws what stageBundle throws, and `wal-conflict` for a file the folder holds
 * with other bytes, before anything was moved.
 */
async function addWal(
  bundles: readonly BundleReport[],
  identities: readonly Uint8Array[],
  walDir: string,
  opts: { notes?: Notes; signal?: AbortSignal; say?: (line: string) => void },
): Promise<{ files: number; lastSegment?: string; tableChecks?: PgRestoreResult['tableChecks'] }> {
  const owner = await ownerFor(walDir);
  const staging = await openStaging(walDir, opts.notes ? { notes: opts.notes } : {});
  try {
    const placed: Placed[] = [];
    let lastSegment: string | undefined;
    let tableChecks: PgRestoreResult['tableChecks'];
    for (const b of bundles) {
      opts.say?.(`decrypting and checking seq ${b.seq}`);
      const dir = path.join(staging.dir, String(b.seq));
      const records: IndexRecord[] = [];
      await stageBundle(b, identities, dir, {
        divert: (entry) => (entry.path.startsWith('pg/wal/') || entry.path === 'pg/tables.json' ? undefined : digestStream),
        onRecord: (r) => records.push(r),
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      for (const r of records) {
        if (r.type === 'pg-tables') tableChecks = JSON.parse(await readFile(path.join(dir, r.path), 'utf8')) as PgRestoreResult['tableChecks'];
        if (r.type !== 'pg-wal') continue;
        const n = walRecordName(r);
        placed.push({ name: n.name, sha256: r.sha256, staged: path.join(dir, r.path) });
        if (n.kind === 'segment' && (lastSegment === undefined || n.name > lastSegment)) lastSegment = n.name;
      }
    }
    // every bundle checked out; a file already there (an overlap) must be the same file, and one whose
    // sidecar an interrupted apply wrote without the file is placed again
    const fresh: Placed[] = [];
    for (const f of placed) {
      const sidecar = path.join(walDir, `${f.name}${SIDECAR_SUFFIX}`);
      const known = await readFile(sidecar, 'utf8').catch(() => undefined);
      const there = await lstat(path.join(walDir, f.name)).then(
        () => true,
        () => false,
      );
      if (known === undefined || (!there && parseSidecar(f.name, known) === f.sha256)) fresh.push(f);
      else if (parseSidecar(f.name, known) !== f.sha256)
        throw new AirlockError('wal-conflict', `${f.name} is in the standby's WAL folder with other bytes than the media carry`, {
          hint: 'the media are not of the chain the standby holds; nothing was applied',
        });
    }
    for (const f of fresh) {
      const sidecar = path.join(walDir, `${f.name}${SIDECAR_SUFFIX}`);
      await writeFileAtomic(sidecar, sidecarText(f.name, f.sha256), { mode: 0o600 });
      // the staged file was written and fsynced under a name no reader looks at; the rename publishes it whole
      if (owner) {
        await chown(sidecar, owner.uid, owner.gid);
        await chown(f.staged, owner.uid, owner.gid);
      }
      await rename(f.staged, path.join(walDir, f.name));
    }
    await fsyncDir(walDir);
    return { files: fresh.length, ...(lastSegment ? { lastSegment } : {}), ...(tableChecks ? { tableChecks } : {}) };
  } finally {
    await staging.close();
  }
}

/** How to reach the standby's server, and how long to wait for it. */
export interface ServerOptions {
  /** the folder of pg_ctl, psql and pg_amcheck */
  bin: string | undefined;
  /** the role the queries run as */
  user: string;
  timeoutMs: number;
  /** the clock and the pause between two polls; tests make them fast */
  pollMs?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  signal?: AbortSignal;
}

export interface Replay {
  inRecovery: boolean;
  replayLsn: string | null;
  /** the commit time of the last transaction replayed (UTC, microseconds) */
  lastCommit: string | null;
  paused: boolean;
}

const conn = (state: StandbyState, s: Pick<ServerOptions, 'bin' | 'user'>, dbname = 'postgres') => ({
  conninfo: `host=${state.pgdata} port=${state.port} user=${s.user} dbname=${dbname}`,
  ...(s.bin ? { bin: s.bin } : {}),
});

/**
 * Wakes the standby's recovery so that it asks for the WAL just added now, not after the rest of its
 * wal_retrieve_retry_interval: a reload signals every server process, and the startup process takes
 * the signal as a wake-up. A failure only means waiting for that interval.
 */
async function wakeStandby(pgdata: string, bin: string | undefined): Promise<void> {
  await runAsOwner(bin ? path.join(bin, 'pg_ctl') : 'pg_ctl', ['-D', pgdata, 'reload'], await ownerFor(pgdata)).catch(() => undefined);
}

/** Where the standby's replay is. Throws `pg-failed` when the server does not answer. */
export async function askReplay(state: StandbyState, s: Pick<ServerOptions, 'bin' | 'user' | 'signal'>): Promise<Replay> {
  const r = await queryJson<Replay>(
    conn(state, s),
    `SELECT json_build_object('inRecovery', pg_is_in_recovery(), 'replayLsn', pg_last_wal_replay_lsn(),
      'lastCommit', to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
      'paused', CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END)`,
    s.signal,
  );
  return r;
}

/** Whether the standby's server runs: its postmaster.pid names a live process. */
export async function serverRuns(pgdata: string): Promise<boolean> {
  const pid = Number((await readFile(path.join(pgdata, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The location replay must reach to hold everything applied: the newest restore point, else the last segment's start. */
export function replayGoal(state: StandbyState): bigint | undefined {
  const point = state.restorePoints.at(-1);
  const seg = state.lastSegment === undefined ? undefined : segmentStart(state.lastSegment, state.segmentSize);
  const p = point?.seq === state.applied.seq ? lsnValue(point.lsn) : undefined;
  if (p !== undefined) return seg !== undefined && seg > p ? seg : p;
  return seg;
}

/**
 * Polls the standby until its replay reached `goal`. Throws `recovery-failed` when the server is
 * gone (with its log's FATAL lines) or `timeoutMs` passed.
 */
export async function waitForReplay(dir: string, state: StandbyState, goal: bigint, s: ServerOptions): Promise<Replay> {
  const now = s.now ?? Date.now;
  const sleep = s.sleep ?? ((ms: number) => new Promise<void>((res) => setTimeout(res, ms)));
  const deadline = now() + s.timeoutMs;
  const log = path.join(dir, SERVER_LOG);
  for (;;) {
    let r: Replay | undefined;
    try {
      r = await askReplay(state, s);
    } catch (e) {
      if (!(await serverRuns(state.pgdata))) {
        const f = serverFailure(await readFile(log, 'utf8').catch(() => ''));
        throw new AirlockError('recovery-failed', `the standby's server is not running: ${f.why}`, {
          hint: `read ${log}; start it with pg_ctl -D ${state.pgdata} start`,
        });
      }
      if (!(e instanceof AirlockError && e.code === 'pg-failed')) throw e;
    }
    if (r?.replayLsn && lsnValue(r.replayLsn) >= goal) return r;
    if (now() > deadline)
      throw new AirlockError(
        'recovery-failed',
        `the standby did not replay up to ${formatLsn(goal)} within ${Math.round(s.timeoutMs / 1000)} s (it is at ${r?.replayLsn ?? 'an unknown location'})`,
        {
          hint: `read ${log}; the WAL is in place and the standby goes on replaying it`,
        },
      );
    // a query a tenth of a second costs the server nothing, and the caught-up moment is seen within it
    await sleep(s.pollMs ?? 100);
  }
}

export interface InitOptions extends ServerOptions {
  verified: readonly BundleReport[];
  identities: readonly Uint8Array[];
  pgdata: string;
  dir: string;
  port: number;
  walFetch: { node: string; cli: string };
  say?: (line: string) => void;
  notes?: Notes;
}

/**
 * Makes a standby (see the top of this file) and waits until it replayed the newest restore point.
 * Throws `target-exists` when the data folder or the standby's folder is not empty, what
 * preparePgRestore throws, and `recovery-failed` when the server does not start or replay.
 */
export async function initStandby(opts: InitOptions): Promise<{ state: StandbyState; replay: Replay; restore: PgRestoreResult }> {
  const dir = path.resolve(opts.dir);
  const pgdata = path.resolve(opts.pgdata);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // it will hold decrypted WAL: the server's user's alone, whatever the folder was made with
  await chmod(dir, 0o700);
  const taken = await lstat(path.join(dir, STATE_FILE)).then(
    () => true,
    () => false,
  );
  if (taken)
    throw new AirlockError('target-exists', `${dir} holds a standby already`, { hint: 'give a new folder with --standby, or remove that standby first' });
  const owner = await ownerFor(pgdata);
  // the server's user reads the WAL folder inside it
  if (owner) await chown(dir, owner.uid, owner.gid);
  const release = lockStandby(dir);
  try {
    const restore = await preparePgRestore({
      verified: opts.verified,
      identities: opts.identities,
      pgdata,
      target: { kind: 'latest' },
      orLatest: false,
      port: opts.port,
      walFetch: opts.walFetch,
      standby: { walDir: path.join(dir, WAL_DIR) },
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.say ? { say: opts.say } : {}),
      ...(opts.notes ? { notes: opts.notes } : {}),
    });
    const held = opts.verified
      .filter((b) => b.site === restore.site && restore.bundles.includes(b.seq as number))
      .sort((a, b) => (a.seq as number) - (b.seq as number));
    const newest = held.at(-1) as BundleReport;
    const pg = pgOf(newest) as PostgresCoverage;
    const state: StandbyState = {
      format: FORMAT,
      version: 1,
      site: restore.site,
      pgdata,
      port: opts.port,
      major: pg.major,
      systemIdentifier: pg.systemIdentifier,
      segmentSize: pg.segmentSize,
      timeline: pg.timeline,
      baseSeq: restore.baseSeq,
      walFetch: opts.walFetch,
      applied: {
        seq: newest.seq as number,
        sums: newest.sums as string,
        ...(newest.created ? { created: newest.created } : {}),
        at: new Date(opts.now?.() ?? Date.now()).toISOString(),
      },
      ...(restore.lastSegment ? { lastSegment: restore.lastSegment } : {}),
      restorePoints: pointsOf(held),
      ...(restore.tableChecks ? { tableChecks: restore.tableChecks } : {}),
    };
    await writeStandbyState(dir, state);
    for (const w of restore.warnings) opts.notes?.(`warning: ${w}`);
    opts.say?.(`starting the standby on port ${opts.port}`);
    await startServer(pgdata, path.join(dir, SERVER_LOG), opts);
    const goal = replayGoal(state);
    const replay = goal === undefined ? await askReplay(state, opts) : await waitForReplay(dir, state, goal, opts);
    return { state, replay, restore };
  } finally {
    release();
  }
}

export interface ApplyOptions extends ServerOptions {
  dir: string;
  /** when the new bundles carry a newer base backup: lay the standby down again from it */
  rebase?: boolean;
  /** verifies the media and returns their bundles (the clean set), or throws why not */
  verify: (state: StandbyState) => Promise<BundleReport[]>;
  identities: readonly Uint8Array[];
  say?: (line: string) => void;
  notes?: Notes;
}

export interface ApplyResult {
  applied: number[];
  walFiles: number;
  state: StandbyState;
  replay?: Replay;
}

/** Refuses a standby that was promoted (`standby-promoted`). */
function assertStandby(state: StandbyState, dir: string): void {
  if (state.promoted)
    throw new AirlockError('standby-promoted', `the standby of ${dir} was promoted at ${state.promoted.at}; it is a server of its own now`, {
      hint: 'make a new standby with standby init to follow the site again',
    });
}

/**
 * Adds the WAL of the bundles after what the standby holds and waits until it replayed them.
 * Already applied bundles are skipped: nothing new is a result (applied: []), not an error. Throws
 * `locked`, `standby-promoted`, what newBundles and addWal throw (nothing was applied then), and
 * `recovery-failed` when replay does not get there in time (the WAL stays: a later apply finds nothing new).
 */
export async function applyStandby(opts: ApplyOptions): Promise<ApplyResult> {
  const dir = path.resolve(opts.dir);
  const release = lockStandby(dir);
  try {
    const before = await readStandbyState(dir);
    assertStandby(before, dir);
    const fresh = newBundles(before, await opts.verify(before));
    if (fresh.length === 0) return { applied: [], walFiles: 0, state: before };
    if (opts.rebase === true && fresh.some((b) => pgOf(b)?.base)) return await rebase(dir, before, fresh, opts);
    if (opts.rebase === true) opts.say?.('the new media hold no base backup: applying their WAL');
    const added = await addWal(fresh, opts.identities, path.join(dir, WAL_DIR), {
      ...(opts.notes ? { notes: opts.notes } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.say ? { say: opts.say } : {}),
    });
    const state = withApplied(before, fresh, added, opts.now?.() ?? Date.now());
    await writeStandbyState(dir, state);
    await wakeStandby(state.pgdata, opts.bin);
    opts.say?.(`${added.files} WAL file(s) of seq ${fresh.map((b) => b.seq).join(', ')} added; waiting for the standby to replay them`);
    const goal = replayGoal(state);
    const replay = goal === undefined ? undefined : await waitForReplay(dir, state, goal, opts);
    return { applied: fresh.map((b) => b.seq as number), walFiles: added.files, state, ...(replay ? { replay } : {}) };
  } finally {
    release();
  }
}

/**
 * Lays the standby down again from the newest base backup of `fresh` (apply --rebase), so its WAL
 * folder and replay start there: the server is stopped, its data folder and WAL folder set aside,
 * the new ones laid down in their place (restore/pg.ts, as init), the server started and waited for;
 * only then is the old copy removed. A failure before the start puts the old copy back and starts it.
 * Throws what preparePgRestore throws, `target-exists` when an interrupted rebase left its old copy.
 */
async function rebase(dir: string, before: StandbyState, fresh: readonly BundleReport[], opts: ApplyOptions): Promise<ApplyResult> {
  const walDir = path.join(dir, WAL_DIR);
  const aside = { data: `${before.pgdata}.airlock-old`, wal: `${walDir}.airlock-old` };
  for (const p of [aside.data, aside.wal])
    await requireEmpty(p, 'an interrupted standby apply --rebase left the old standby there: move it back (or remove it), then apply again');
  const base = fresh.filter((b) => pgOf(b)?.base).at(-1) as BundleReport;
  opts.say?.(`rebasing the standby on the base backup of seq ${base.seq}: stopping it`);
  if (await serverRuns(before.pgdata)) await stopRestored(before.pgdata, opts.bin);
  await rename(before.pgdata, aside.data);
  await rename(walDir, aside.wal);
  let restore: PgRestoreResult;
  try {
    restore = await preparePgRestore({
      verified: fresh,
      identities: opts.identities,
      pgdata: before.pgdata,
      target: { kind: 'latest' },
      orLatest: false,
      port: before.port,
      walFetch: before.walFetch,
      standby: { walDir },
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.say ? { say: opts.say } : {}),
      ...(opts.notes ? { notes: opts.notes } : {}),
    });
  } catch (e) {
    // preparePgRestore leaves neither folder behind on failure: the old standby goes back as it was
    await rename(aside.data, before.pgdata);
    await rename(aside.wal, walDir);
    await startServer(before.pgdata, path.join(dir, SERVER_LOG), opts);
    throw e;
  }
  const held = fresh.filter((b) => restore.bundles.includes(b.seq as number));
  const state: StandbyState = {
    ...withApplied(before, fresh, { ...(restore.tableChecks ? { tableChecks: restore.tableChecks } : {}) }, opts.now?.() ?? Date.now()),
    baseSeq: restore.baseSeq,
    ...(restore.lastSegment ? { lastSegment: restore.lastSegment } : {}),
  };
  await writeStandbyState(dir, state);
  opts.say?.(`laid down from seq ${restore.baseSeq} with the WAL of seq ${held.map((b) => b.seq).join(', ')}: starting it`);
  await startServer(before.pgdata, path.join(dir, SERVER_LOG), opts);
  const goal = replayGoal(state);
  const replay = goal === undefined ? undefined : await waitForReplay(dir, state, goal, opts);
  for (const p of [aside.data, aside.wal]) await removeTree(p).catch(() => opts.notes?.(`warning: could not remove ${p}; it holds the old standby's data`));
  return { applied: fresh.map((b) => b.seq as number), walFiles: restore.walFiles, state, ...(replay ? { replay } : {}) };
}

function withApplied(
  before: StandbyState,
  fresh: readonly BundleReport[],
  added: { lastSegment?: string; tableChecks?: PgRestoreResult['tableChecks'] },
  nowMs: number,
): StandbyState {
  const newest = fresh.at(-1) as BundleReport;
  const lastSegment = [before.lastSegment, added.lastSegment]
    .filter((s) => s !== undefined)
    .sort()
    .at(-1);
  const tableChecks = added.tableChecks ?? before.tableChecks;
  return {
    ...before,
    applied: {
      seq: newest.seq as number,
      sums: newest.sums as string,
      ...(newest.created ? { created: newest.created } : {}),
      at: new Date(nowMs).toISOString(),
    },
    ...(lastSegment ? { lastSegment } : {}),
    restorePoints: [...before.restorePoints, ...pointsOf(fresh)],
    ...(tableChecks ? { tableChecks } : {}),
  };
}

export interface PromoteOptions extends ServerOptions {
  dir: string;
  target: Target;
  /** media that arrived since the last apply: verified, their WAL added and replayed up to the target */
  fresh?: { verify: (state: StandbyState) => Promise<BundleReport[]>; identities: readonly Uint8Array[] };
  say?: (line: string) => void;
  notes?: Notes;
}

export interface Promoted {
  seconds: number;
  timeline: number | null;
  replayLsn: string | null;
  lastCommit: string | null;
  /** how recovery ended: `promote` after every WAL file held was replayed, `target` at the target */
  how: 'promote' | 'target';
}

const micros = (iso: string) => Date.parse(iso) * 1000 + Number(/\.\d{3}(\d{3})/.exec(iso)?.[1] ?? '0');

/** How a promotion ends recovery (promotePlan). */
export interface PromotePlan {
  /** `promote`: replay everything it is given, then promote; `target`: restart with the target set */
  how: 'promote' | 'target';
  /** whether the WAL of the new media is added: not when the target lies before them */
  addNew: boolean;
}

/**
 * How recovery must end for `target`, given what replay passed (`replay`), the restore points held
 * (`points`, in order; those of seq above `applied` are on new media not replayed yet). Replaying
 * everything and promoting is exact when nothing held commits after the target; a target inside the
 * new media's WAL needs the server restarted with it set. Throws `standby-passed` for a target
 * replay already passed, `usage` for one after everything held or a name nothing holds.
 */
export function promotePlan(target: Target, replay: Replay, points: readonly StandbyPoint[], applied: number): PromotePlan {
  const lastApplied = points.filter((p) => p.seq <= applied).at(-1);
  const newest = points.at(-1);
  const passed = (what: string) =>
    new AirlockError(
      'standby-passed',
      `the standby replayed past ${what} already${replay.lastCommit ? ` (its last transaction committed at ${replay.lastCommit})` : ''}`,
      {
        hint: 'a standby cannot rewind: use restore pg with this target on the media, or promote to a later one',
      },
    );
  const committedAfter = (us: number) => replay.lastCommit !== null && micros(replay.lastCommit) > us;
  if (target.kind === 'latest') return { how: 'promote', addNew: true };
  if (target.kind === 'lsn') throw new AirlockError('usage', 'standby promote takes --target-time, --target-name or --latest');
  if (target.kind === 'name') {
    const at = points.find((p) => p.name === target.name);
    if (!at)
      throw new AirlockError('usage', `no restore point ${target.name} in what the standby holds or the media given`, {
        hint: `the newest is ${newest?.name ?? 'none'}; give --from with the media that carry it`,
      });
    if (at.seq > applied) return { how: 'target', addNew: true };
    // replay passed it, unless it is the newest applied and nothing committed after it was replayed
    if (at !== lastApplied || committedAfter(micros(at.time))) throw passed(`restore point ${target.name}`);
    return { how: 'promote', addNew: false };
  }
  if (committedAfter(target.us)) throw passed(target.time);
  if (newest && target.us > micros(newest.time))
    throw new AirlockError(
      'usage',
      `the target time ${target.time} is after the newest data the standby holds (restore point ${newest.name} at ${newest.time})`,
      {
        hint: 'give --latest, or --from with the media that reach the target',
      },
    );
  if (lastApplied === undefined || target.us <= micros(lastApplied.time)) return { how: 'promote', addNew: false };
  // inside the new media, unless at or after their newest restore point, where they end
  return newest && target.us >= micros(newest.time) ? { how: 'promote', addNew: true } : { how: 'target', addNew: true };
}

/**
 * Ends the standby's recovery at `target` and promotes it (see promotePlan), after adding the WAL of
 * `fresh` media when given. Returns how long it took. Throws what promotePlan, newBundles and
 * addWal throw (the standby is left as it was), and `recovery-failed` when the server does not
 * reach the target or promote in time.
 */
export async function promoteStandby(opts: PromoteOptions): Promise<Promoted> {
  const t0 = (opts.now ?? Date.now)();
  const dir = path.resolve(opts.dir);
  const release = lockStandby(dir);
  try {
    let state = await readStandbyState(dir);
    assertStandby(state, dir);
    if (!(await serverRuns(state.pgdata))) {
      opts.say?.('the standby is not running: starting it');
      await startServer(state.pgdata, path.join(dir, SERVER_LOG), opts);
    }
    const fresh = opts.fresh ? newBundles(state, await opts.fresh.verify(state)) : [];
    const replay = await askReplay(state, opts);
    if (!replay.inRecovery) throw new AirlockError('standby-promoted', `the server of ${state.pgdata} is not in recovery: it was promoted already`);
    const plan = promotePlan(opts.target, replay, [...state.restorePoints, ...pointsOf(fresh)], state.applied.seq);
    const how = plan.how;
    if (how === 'target') await stopRestored(state.pgdata, opts.bin);
    if (fresh.length > 0 && plan.addNew) {
      const added = await addWal(fresh, opts.fresh?.identities ?? [], path.join(dir, WAL_DIR), {
        ...(opts.notes ? { notes: opts.notes } : {}),
        ...(opts.say ? { say: opts.say } : {}),
      }).catch(async (e: unknown) => {
        // a bundle that does not check adds nothing: the standby goes on as it was
        if (how === 'target') await startServer(state.pgdata, path.join(dir, SERVER_LOG), opts);
        throw e;
      });
      state = withApplied(state, fresh, added, (opts.now ?? Date.now)());
      await writeStandbyState(dir, state);
      if (how === 'promote') await wakeStandby(state.pgdata, opts.bin);
    }
    let result: Omit<Promoted, 'seconds'>;
    if (how === 'promote') {
      const goal = replayGoal(state);
      if (goal !== undefined) await waitForReplay(dir, state, goal, opts);
      opts.say?.('every WAL file held is replayed: promoting');
      const owner = await ownerFor(state.pgdata);
      const p = await runAsOwner(
        opts.bin ? path.join(opts.bin, 'pg_ctl') : 'pg_ctl',
        ['-D', state.pgdata, '-w', '-t', String(Math.ceil(opts.timeoutMs / 1000)), 'promote'],
        owner,
      );
      if (p.code !== 0)
        throw new AirlockError('recovery-failed', `pg_ctl promote failed: ${p.stderr.trim() || p.stdout.trim()}`, {
          hint: `read ${path.join(dir, SERVER_LOG)}`,
        });
      const after = await askReplay(state, opts);
      result = {
        how,
        timeline: await timelineOf(state, opts),
        replayLsn: after.replayLsn ?? replay.replayLsn,
        lastCommit: after.lastCommit ?? replay.lastCommit,
      };
    } else {
      opts.say?.('restarting the standby with the target set, to end recovery there and promote');
      await setTarget(state.pgdata, opts.target);
      const rec = await startAndRecover(
        { pgdata: state.pgdata, port: state.port, target: opts.target, lastSegment: state.lastSegment, segmentSize: state.segmentSize },
        opts,
      );
      result = { how, timeline: rec.timeline, replayLsn: rec.replayLsn, lastCommit: rec.lastCommit ?? null };
    }
    const seconds = ((opts.now ?? Date.now)() - t0) / 1000;
    const targetText =
      opts.target.kind === 'latest'
        ? 'latest'
        : opts.target.kind === 'name'
          ? `restore point ${opts.target.name}`
          : opts.target.kind === 'time'
            ? opts.target.time
            : opts.target.lsn;
    await writeStandbyState(dir, { ...state, promoted: { at: new Date((opts.now ?? Date.now)()).toISOString(), target: targetText, seconds } });
    return { ...result, seconds };
  } finally {
    release();
  }
}

/**
 * Makes the stopped standby recover to `target` at its next start and promote there: the target
 * after airlock's settings (pgconf.ts wrote postgresql.conf, so they are ours to extend), and
 * recovery.signal in place of standby.signal.
 */
async function setTarget(pgdata: string, target: Target): Promise<void> {
  const conf = path.join(pgdata, 'postgresql.conf');
  const text = await readFile(conf, 'utf8');
  const lines = ['', '# standby promote: end recovery at the target and promote', ...recoveryTarget(target), "recovery_target_action = 'promote'", ''];
  await writeFileAtomic(conf, `${text}${lines.join('\n')}`, { mode: 0o600 });
  const owner = await ownerFor(pgdata);
  if (owner) await chown(conf, owner.uid, owner.gid);
  await writeFile(path.join(pgdata, 'recovery.signal'), '', { mode: 0o600 });
  if (owner) await chown(path.join(pgdata, 'recovery.signal'), owner.uid, owner.gid);
  await rm(path.join(pgdata, 'standby.signal'), { force: true });
}

async function timelineOf(state: StandbyState, s: Pick<ServerOptions, 'bin' | 'user' | 'signal'>): Promise<number | null> {
  // the timeline of the WAL written now: the new one at once, before the first checkpoint records it
  return queryJson<number | null>(
    conn(state, s),
    `SELECT to_json(('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint)`,
    s.signal,
  ).catch(() => null);
}

/** The connection to the standby as `user`, for read-only checks (drill). */
export function standbyConnection(state: StandbyState, s: Pick<ServerOptions, 'bin' | 'user'>, dbname?: string): { conninfo: string; bin?: string } {
  return conn(state, s, dbname);
}
