/*
 * A restore drill: prove that a media set restores, and how long it takes.
 *
 * The drill verifies the whole set, restores PostgreSQL into a throwaway cluster (a scratch data
 * folder, a free port on localhost, archiving off) up to the newest export's restore point, the
 * newest bundle's files and buckets into scratch folders, and checks what the exports recorded: row
 * counts and checksums per table taken at the restore point (export --pg-table-checks), pg_amcheck
 * over every database, and the file and object counts. Every stage is a check with pass, fail or
 * skipped and a reason; a failed stage does not hide the ones after it when they can still run. The
 * report says pass only when every check that ran passed.
 */
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { AirlockError } from '../manifests/errors.js';
import type { BundleReport } from '../verifier/verify.js';
import { restoreFiles } from './restore/files.js';
import { NO_BUCKET, restoreObjects } from './restore/objects.js';
import { preparePgRestore, runAsOwner, startAndRecover, stopRestored, type PgRestoreResult } from './restore/pg.js';
import { removeTree } from './fsutil.js';
import { freePort } from './port.js';
import { versionBin } from './postgres/programs.js';
import { tableChecksSql } from './postgres/sql.js';
import { queryJson, type Connection } from './sources/postgres/server.js';
import { askReplay, readStandbyState, replayGoal, standbyConnection } from './standby.js';
import { lsnValue } from '../manifests/coverage.js';

export interface DrillCheck {
  name: string;
  result: 'pass' | 'fail' | 'skipped';
  detail: string;
}

export interface DrillReport {
  result: 'pass' | 'fail';
  media: string;
  site: string | undefined;
  started: string;
  finished: string;
  /** wall time of the whole drill */
  seconds: number;
  /** from starting the restored server to the end of recovery */
  recoverySeconds?: number;
  /** from the start of the drill to a promoted, checked cluster */
  restoreSeconds?: number;
  bundles: { seq: number; created: string | undefined; base: boolean; restorePoint: string | undefined }[];
  target?: string;
  checks: DrillCheck[];
}

export interface DrillOptions {
  from: readonly string[];
  identities: readonly Uint8Array[];
  /** verifies the set and returns its bundles (the clean set), or throws why not */
  verify: () => Promise<BundleReport[]>;
  scratch: string;
  /** the OS user that owns and runs the throwaway cluster when the drill runs as root */
  osUser: { uid: number; gid: number } | undefined;
  pgUser: string;
  pgBin: string | undefined;
  airlockCli: string;
  timeoutMs: number;
  now: () => Date;
  keep: boolean;
  say?: (line: string) => void;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Runs a drill; never throws for a failed stage (that is a failed check), only for bad usage. */
export async function runDrill(opts: DrillOptions): Promise<DrillReport> {
  const t0 = Date.now();
  const started = opts.now();
  const say = opts.say ?? (() => {});
  const checks: DrillCheck[] = [];
  const check = (name: string, result: DrillCheck['result'], detail: string) => {
    checks.push({ name, result, detail });
    say(`${result}: ${name}: ${detail}`);
  };
  const report: DrillReport = {
    result: 'fail',
    media: opts.from.map((m) => path.resolve(m)).join(', '),
    site: undefined,
    started: started.toISOString(),
    finished: '',
    seconds: 0,
    bundles: [],
    checks,
  };

  let verified: BundleReport[] = [];
  try {
    say(`verifying ${opts.from.join(', ')}`);
    verified = await opts.verify();
    check('verify', 'pass', `${verified.length} bundle(s) verified without findings`);
  } catch (e) {
    check('verify', 'fail', message(e));
  }
  const sorted = [...verified].sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
  report.site = sorted[0]?.site;
  report.bundles = sorted.map((b) => ({
    seq: b.seq as number,
    created: b.created,
    base: b.manifest?.coverage?.postgres?.base !== undefined,
    restorePoint: b.manifest?.coverage?.postgres?.restorePoint?.name,
  }));
  const newest = sorted.at(-1);

  await mkdir(opts.scratch, { recursive: true, mode: 0o711 });
  const scratch = await stat(opts.scratch);
  if (!scratch.isDirectory()) throw new AirlockError('usage', `${opts.scratch}: not a folder`);
  // the cluster's user passes through (not lists) it to its own 0700 folder
  if (opts.osUser) await chmod(opts.scratch, 0o711);
  let restored: PgRestoreResult | undefined;
  let pid: number | undefined;
  try {
    const point = sorted
      .map((b) => b.manifest?.coverage?.postgres?.restorePoint?.name)
      .filter((n) => n !== undefined)
      .at(-1);
    if (verified.length === 0) check('postgresql', 'skipped', 'the set did not verify');
    else if (!sorted.some((b) => b.manifest?.coverage?.postgres?.base)) check('postgresql', 'skipped', 'no base backup in the set');
    else if (!point) check('postgresql', 'skipped', 'no restore point in the set');
    else {
      report.target = point;
      const pgHome = path.join(opts.scratch, 'pg');
      await mkdir(pgHome, { mode: 0o700 });
      if (opts.osUser) await chown(pgHome, opts.osUser.uid, opts.osUser.gid);
      const port = await freePort();
      try {
        restored = await preparePgRestore({
          verified,
          identities: opts.identities,
          pgdata: path.join(pgHome, 'data'),
          // each tablespace into the scratch too, by OID
          tablespaceMap: (sorted.filter((b) => b.manifest?.coverage?.postgres?.base).at(-1)?.manifest?.coverage?.postgres?.base?.tablespaces ?? []).map(
            (t) => ({ key: String(t.oid), dir: path.join(pgHome, 'tblspc', String(t.oid)) }),
          ),
          target: { kind: 'name', name: point },
          orLatest: false,
          port,
          walFetch: { node: process.execPath, cli: opts.airlockCli },
          say,
          notes: say,
        });
        for (const w of restored.warnings) say(`warning: ${w}`);
        const major = sorted.find((b) => b.seq === restored?.baseSeq)?.manifest?.coverage?.postgres?.major ?? 0;
        const bin = opts.pgBin ?? versionBin(major);
        const rec = await startAndRecover(restored, { bin, user: opts.pgUser, timeoutMs: opts.timeoutMs });
        pid = rec.pid;
        report.recoverySeconds = rec.recoveryMs / 1000;
        check(
          'postgresql recovery',
          'pass',
          `base backup of seq ${restored.baseSeq} and WAL of seq ${restored.bundles.join(', ')} recovered to ${point} at ${rec.replayLsn} in ${report.recoverySeconds.toFixed(1)} s`,
        );
        const conn = {
          conninfo: `host=${restored.pgdata} port=${port} user=${opts.pgUser} dbname=${restored.tableChecks?.database ?? 'postgres'}`,
          ...(bin ? { bin } : {}),
        };
        const t = await tableChecks(conn, restored.tableChecks, point);
        check(t.name, t.result, t.detail);
        const a = await amcheck({ host: restored.pgdata, port, user: opts.pgUser, bin, major, installMissing: true });
        check(a.name, a.result, a.detail);
        report.restoreSeconds = (Date.now() - t0) / 1000;
      } catch (e) {
        check('postgresql recovery', 'fail', message(e));
      }
    }

    if (newest && (newest.manifest?.contents.files ?? 0) > 0) {
      try {
        const s = await restoreFiles(newest, opts.identities, path.join(opts.scratch, 'files'), { notes: say });
        const want = newest.manifest?.contents.files ?? 0;
        check('files', s.files === want ? 'pass' : 'fail', `${s.files} of ${want} file(s) of seq ${s.seq} restored and checked`);
      } catch (e) {
        check('files', 'fail', message(e));
      }
    } else check('files', 'skipped', 'the newest bundle carries no files');

    if (newest) {
      try {
        const s = await restoreObjects(newest, opts.identities, { kind: 'folder', to: path.join(opts.scratch, 'objects') }, { verified, notes: say });
        if (s.buckets === 0) check('objects', 'skipped', 'the newest bundle carries no buckets');
        else
          check(
            'objects',
            'pass',
            `${s.written} current object(s) of ${s.buckets} bucket(s) restored with their sizes and hashes checked (${s.versions} version(s), ${s.deleteMarkers} delete marker(s) in the set)`,
          );
      } catch (e) {
        if (e instanceof AirlockError && e.code === 'not-found' && e.message === NO_BUCKET) check('objects', 'skipped', 'the newest bundle carries no buckets');
        else check('objects', 'fail', message(e));
      }
    }
  } finally {
    // a server that started but failed a check (or never finished recovering) runs too: stop it
    if (restored && (pid !== undefined || existsSync(path.join(restored.pgdata, 'postmaster.pid')))) {
      await stopRestored(restored.pgdata, opts.pgBin ?? versionBin(sorted[0]?.manifest?.coverage?.postgres?.major ?? 0)).catch((e: unknown) =>
        say(`warning: could not stop the drill's server${pid !== undefined ? ` (pid ${pid})` : ''}: ${message(e)}`),
      );
    }
    if (!opts.keep) {
      for (const d of ['pg', 'files', 'objects'])
        await removeTree(path.join(opts.scratch, d)).catch(() => say(`warning: could not remove ${path.join(opts.scratch, d)}`));
      if (restored) await removeTree(restored.walDir).catch(() => {});
    }
  }
  const finished = opts.now();
  report.finished = finished.toISOString();
  report.seconds = (Date.now() - t0) / 1000;
  report.result =
    checks.length > 0 && checks.every((c) => c.result !== 'fail') && checks.some((c) => c.result === 'pass' && c.name !== 'verify') ? 'pass' : 'fail';
  return report;
}

/**
 * Compares the row counts and checksums the exports recorded at restore point `point`
 * (export --pg-table-checks) with what the cluster at `conn` holds now. Read-only.
 */
export async function tableChecks(conn: Connection, expected: PgRestoreResult['tableChecks'], point: string): Promise<DrillCheck> {
  const name = 'table checks';
  if (!expected) return { name, result: 'skipped', detail: 'the exports recorded none (export --pg-table-checks)' };
  if (expected.restorePoint !== point) return { name, result: 'skipped', detail: `recorded at ${expected.restorePoint}, not at ${point}` };
  const names = Object.keys(expected.tables);
  const got = (await queryJson<Record<string, [number, string]> | null>(conn, `SELECT ${tableChecksSql(names)}`)) ?? {};
  const differ = names.filter((t) => JSON.stringify(got[t]) !== JSON.stringify(expected.tables[t]));
  return {
    name,
    result: differ.length === 0 ? 'pass' : 'fail',
    detail:
      differ.length === 0
        ? `${names.length} table(s) of ${expected.database}: row counts and checksums equal those taken at the restore point`
        : `differ: ${differ.map((t) => `${t} (recorded ${JSON.stringify(expected.tables[t])}, restored ${JSON.stringify(got[t] ?? null)})`).join('; ')}`,
  };
}

/**
 * pg_amcheck over every database of the server at `host` (a socket folder) and `port`: heap and
 * B-tree indexes. `installMissing` creates the amcheck extension where it is missing, which a
 * throwaway cluster allows and a standby (read-only) does not.
 */
export async function amcheck(s: {
  host: string;
  port: number;
  user: string;
  bin: string | undefined;
  major: number;
  installMissing: boolean;
}): Promise<DrillCheck> {
  const name = 'pg_amcheck';
  if (s.major < 14) return { name, result: 'skipped', detail: `PostgreSQL ${s.major} has no pg_amcheck (it came with 14)` };
  const am = await runAsOwner(
    s.bin ? path.join(s.bin, 'pg_amcheck') : 'pg_amcheck',
    ['-h', s.host, '-p', String(s.port), '-U', s.user, '--all', ...(s.installMissing ? ['--install-missing'] : []), '--heapallindexed', '-w'],
    undefined,
  ).catch((e: unknown) => ({ code: null, stdout: '', stderr: message(e) }));
  const said = `${am.stdout}${am.stderr}`.trim().split('\n').slice(-3).join(' / ');
  return am.code === 0
    ? { name, result: 'pass', detail: 'heap and B-tree indexes of every database are consistent' }
    : { name, result: 'fail', detail: `exit ${am.code}: ${said}` };
}

/**
 * A drill on a running standby (standby.ts), without disturbing it: is it up and in recovery, has it
 * replayed everything applied, do the tables equal the checks recorded at the newest restore point it
 * replayed, and pg_amcheck (where the source installed amcheck: a standby is read-only). Only reads.
 */
export async function runStandbyDrill(opts: {
  dir: string;
  pgUser: string;
  pgBin: string | undefined;
  now: () => Date;
  say?: (line: string) => void;
}): Promise<DrillReport> {
  const t0 = Date.now();
  const started = opts.now();
  const checks: DrillCheck[] = [];
  const check = (c: DrillCheck) => {
    checks.push(c);
    opts.say?.(`${c.result}: ${c.name}: ${c.detail}`);
  };
  const state = await readStandbyState(opts.dir);
  const bin = opts.pgBin ?? versionBin(state.major);
  const server = { bin, user: opts.pgUser };
  const point = state.restorePoints.at(-1);
  const report: DrillReport = {
    result: 'fail',
    media: `standby ${path.resolve(opts.dir)}`,
    site: state.site,
    started: started.toISOString(),
    finished: '',
    seconds: 0,
    bundles: state.restorePoints.map((p) => ({ seq: p.seq, created: undefined, base: p.seq === state.baseSeq, restorePoint: p.name })),
    ...(point ? { target: point.name } : {}),
    checks,
  };
  try {
    const replay = await askReplay(state, server);
    const goal = replayGoal(state);
    const caughtUp = goal === undefined || (replay.replayLsn !== null && lsnValue(replay.replayLsn) >= goal);
    if (!replay.inRecovery) check({ name: 'standby', result: 'fail', detail: 'the server is not in recovery: it was promoted' });
    else
      check({
        name: 'standby',
        result: caughtUp ? 'pass' : 'fail',
        detail: caughtUp
          ? `in recovery, replayed everything applied (seq ${state.applied.seq}) at ${replay.replayLsn}`
          : `in recovery, but replay is at ${replay.replayLsn ?? 'nothing yet'}, short of what was applied (seq ${state.applied.seq})`,
      });
    const db = state.tableChecks?.database ?? 'postgres';
    check(
      caughtUp
        ? await tableChecks(standbyConnection(state, server, db), state.tableChecks, point?.name ?? '')
        : { name: 'table checks', result: 'skipped', detail: 'replay has not reached the newest restore point' },
    );
    const installed = await queryJson<number>(standbyConnection(state, server), "SELECT count(*) FROM pg_extension WHERE extname = 'amcheck'").catch(() => 0);
    check(
      installed > 0
        ? await amcheck({ host: state.pgdata, port: state.port, user: opts.pgUser, bin, major: state.major, installMissing: false })
        : {
            name: 'pg_amcheck',
            result: 'skipped',
            detail: 'the source has no amcheck extension in the postgres database, and a standby cannot create it (CREATE EXTENSION amcheck at the source)',
          },
    );
  } catch (e) {
    check({ name: 'standby', result: 'fail', detail: message(e) });
  }
  report.finished = opts.now().toISOString();
  report.seconds = (Date.now() - t0) / 1000;
  report.result = checks.length > 0 && checks.every((c) => c.result !== 'fail') && checks.some((c) => c.result === 'pass') ? 'pass' : 'fail';
  return report;
}

/** The drill report for people. */
export function drillText(r: DrillReport): string {
  const lines = [
    `airlock restore drill: ${r.result.toUpperCase()}`,
    `media: ${r.media}`,
    `site: ${r.site ?? '(none verified)'}; bundles: ${r.bundles.map((b) => `${b.seq}${b.base ? ' (base)' : ''}`).join(', ') || 'none'}`,
    ...(r.target ? [`target: restore point ${r.target}`] : []),
    `started ${r.started}, finished ${r.finished}: ${r.seconds.toFixed(1)} s${r.restoreSeconds !== undefined ? `; a checked, promoted cluster after ${r.restoreSeconds.toFixed(1)} s (recovery ${r.recoverySeconds?.toFixed(1)} s)` : ''}`,
    '',
    ...r.checks.map((c) => `${c.result}: ${c.name}: ${c.detail}`),
  ];
  return `${lines.join('\n')}\n`;
}
