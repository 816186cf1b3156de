/*
 * The database tier of an export: a physical base backup and/or logical dumps, then the WAL that the
 * agent ingested from the spool, sealed by a restore point and a WAL switch so even an idle database
 * gives a bundle that restores up to the moment of the export.
 *
 * Order inside the bundle:
 *   pg/info.json              what the server was: version, checksums, collations, settings
 *   pg/config/NNN             postgresql.conf, pg_hba.conf, pg_ident.conf when outside the data folder
 *   pg/base/NNNNNN            `pg_basebackup -Ft -D - -X none` as numbered parts (base.tar, in order)
 *   pg/tblspc/<OID>/NNNNNN    with tablespaces, each one's tar (tablespaces.ts: such a backup goes
 *                             through a scratch folder, since pg_basebackup streams one tar at most)
 *   pg/dump/DDD/NNNNNN        `pg_dump -Fc` of database DDD, as numbered parts
 *   pg/globals/NNNNNN         `pg_dumpall --globals-only` (roles without passwords unless superuser)
 *   pg/wal/<name>             every ingested WAL file not in an earlier bundle, under its own name
 * A program's output is cut into parts of at most `partSize` bytes because a tar entry's size comes
 * before its bytes; one part is held in memory at a time, never the whole backup, and the last part
 * is emitted only after the program exited 0, so a failed program never looks like a short backup.
 * Each stream ends with a record (`pg-base-end`, ...) giving its part count and bytes.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname, release, type as osType } from 'node:os';
import { childFailed, startChild } from '../../../manifests/child.js';
import { walRanges, type PostgresCoverage, type Tablespace, type TimelineSwitch } from '../../../manifests/coverage.js';
import { AirlockError } from '../../../manifests/errors.js';
import { readChunks } from '../../../manifests/hash.js';
import type { UnplacedRecord } from '../../../manifests/records.js';
import type { SourceItem } from '../../bundle/writer.js';
import type { Catalog, WalRow } from '../../catalog.js';
import { faultPoint } from '../../faults.js';
import { ingestSpool, readSmallSync } from '../../spool.js';
import { clientEnv } from '../../postgres/programs.js';
import { quoteLiteral, tableChecksSql } from '../../postgres/sql.js';
import { assertSupportedMajor, program, queryJson, serverInfo, withDatabase, type Connection, type ServerInfo } from './server.js';
import { listTablespaces, tablespaceBackup } from './tablespaces.js';
import { Gather } from '../gather.js';
import { formatLsn, parseBackupLabel, parseHistory, parseLsn, parseWalFileName, type BackupLabel } from '../../postgres/wal.js';

export const DEFAULT_PART_SIZE = 32 * 1024 * 1024;
/** Full parts read ahead of the one being written. */
const READ_AHEAD = 1;
const TEXT_LIMIT = 64 * 1024;

export interface PostgresExportOptions {
  conn: Connection;
  /** the folder wal-push writes into */
  spool: string;
  catalog: Catalog;
  site: string;
  seq: number;
  base: boolean;
  dumps: boolean;
  /** where a base backup of a cluster with tablespaces is written first (a private folder is made in it) */
  scratch: string;
  partSize?: number;
  /** how long to wait for the server to archive the restore point's segment */
  walTimeoutMs: number;
  now: () => Date;
  sleep?: (ms: number) => Promise<void>;
  signal?: AbortSignal;
  /** record row counts and checksums of every table at the restore point, for restore drills */
  tableChecks?: boolean;
  /** progress messages for people */
  say?: (line: string) => void;
  /** warnings for people, shown whatever the output is (a refused spool file may leave a hole) */
  warn: (line: string) => void;
}

const pad = (n: number, width: number) => String(n).padStart(width, '0');
const utc = (d: Date) => d.toISOString();

/**
 * The server's clock once pg_basebackup has exited, in ms rounded up: the backup's end record was
 * written before it, so no commit before the consistent point carries a later time.
 */
async function serverTimeAfterBackup(conn: Connection, signal?: AbortSignal): Promise<string> {
  const us = BigInt(await queryJson<string>(conn, 'SELECT to_json(((extract(epoch FROM clock_timestamp()) * 1000000)::bigint)::text)', signal));
  return new Date(Number((us + 999n) / 1000n)).toISOString();
}

/**
 * When a restore to a time can start: no earlier than the backup's end (its consistent point). The
 * label's STOP TIME is cut to the second, so the backup ended before that second plus one; the
 * server's clock after pg_basebackup exited is the tighter bound when it is earlier. A target before
 * the real end makes PostgreSQL stop before the consistent point and fail, so this rounds up.
 */
function consistentFrom(label: BackupLabel, serverAfter: string): string {
  const labelBound = label.stopTimeUtc ? Date.parse(label.stopTimeUtc) + 1000 : Number.POSITIVE_INFINITY;
  return new Date(Math.min(labelBound, Date.parse(serverAfter))).toISOString();
}

/** The permanent user tables of the connected database, as quoted identifiers. */
async function userTables(conn: Connection, signal?: AbortSignal): Promise<string[]> {
  return queryJson<string[]>(
    conn,
    `SELECT coalesce(json_agg(t ORDER BY t), '[]') FROM (SELECT format('%I.%I', n.nspname, c.relname) AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%') x`,
    signal,
  );
}

/**
 * The restore point, its time and timeline, and with `tables` their checks. The tables are locked
 * against writes (SHARE) before the statement's snapshot is taken, so the checks see exactly what a
 * recovery to the restore point sees; writers wait meanwhile, which is why the checks are optional.
 */
function sealSql(name: string, tables: readonly string[] | undefined): string {
  const point = `'lsn', pg_create_restore_point(${quoteLiteral(name)}), 'time', ${SQL_UTC('now()')}, 'timeline', ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint`;
  // A transaction id makes this statement's end a commit record, after the restore point and with a
  // later time. Recovery to a time stops at the first commit after it; on an idle server there
  // would be none, and PostgreSQL fails with "recovery ended before configured recovery target was
  // reached". With it, every time up to the restore point's is reached inside this bundle's WAL.
  const sealed = "'xact', pg_current_xact_id()::text";
  if (!tables) return `SELECT json_build_object(${point}, ${sealed})`;
  const lock = tables.length > 0 ? `LOCK TABLE ${tables.join(', ')} IN SHARE MODE; ` : '';
  return `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; ${lock}SELECT json_build_object(${point}, 'tables', ${tableChecksSql(tables)}, ${sealed})`;
}

/** `SELECT ... AT TIME ZONE 'UTC'` as the manifest writes times. */
const SQL_UTC = (expr: string) => `to_char(${expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

interface StreamEnd {
  parts: number;
  bytes: number;
}

/**
 * Runs `cmd args` and yields its stdout as entries `<prefix>/NNNNNN` of at most `partSize` bytes.
 * Throws `child-failed` (the program's last stderr line) when it exits non-zero, `not-found` when
 * it is not installed.
 */
async function* programParts(
  cmd: string,
  args: readonly string[],
  prefix: string,
  record: (part: number) => UnplacedRecord,
  partSize: number,
  now: () => Date,
  signal?: AbortSignal,
): AsyncGenerator<SourceItem, StreamEnd> {
  const { child, exit } = startChild(cmd, args, {
    env: clientEnv(),
    install: "install the PostgreSQL client programs of the server's major version, or give --pg-bin",
    ...(signal ? { signal } : {}),
  });
  const exited = exit.then((ended) => {
    if (ended.code !== 0) throw childFailed(cmd, ended, { hint: 'nothing was written; fix the cause and export again' });
  });
  exited.catch(() => {}); // awaited below; a failure while a part is being written surfaces there
  const mtime = Math.floor(now().getTime() / 1000);
  let parts = 0;
  let bytes = 0;
  let held: Buffer[] = [];
  let heldBytes = 0;
  const part = (chunks: Buffer[], size: number): SourceItem => {
    parts++;
    bytes += size;
    return {
      kind: 'entry',
      name: `${prefix}/${pad(parts, 6)}`,
      size,
      mode: 0o600,
      mtime,
      open: async function* () {
        yield* chunks;
      },
      record: record(parts),
    };
  };
  // the program's output is read on while the previous part is written: at most READ_AHEAD full parts
  // wait, then the pipe is paused (and the program with it)
  const ready: Buffer[][] = [];
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const stdout = child.stdout;
  if (!stdout) throw new AirlockError('internal', `${cmd} was spawned without a stdout pipe`);
  // the pipe's 64 KiB pieces gathered into blocks (../gather.ts), cut where a part ends
  const gather = new Gather();
  const seal = () => {
    const block = gather.flush();
    held.push(block);
    heldBytes += block.byteLength;
    if (heldBytes === partSize) {
      ready.push(held);
      held = [];
      heldBytes = 0;
    }
  };
  stdout.on('data', (chunk: Buffer) => {
    for (let off = 0; off < chunk.byteLength;) {
      off += gather.take(chunk, off, partSize - heldBytes - gather.filled);
      if (gather.full || heldBytes + gather.filled === partSize) seal();
    }
    if (ready.length >= READ_AHEAD) stdout.pause();
    notify();
  });
  stdout.on('end', () => {
    if (gather.filled > 0) seal();
    ended = true;
    notify();
  });
  stdout.on('error', (e) => {
    failure = e;
    notify();
  });
  try {
    for (;;) {
      const next = ready.shift();
      if (next) {
        if (ready.length < READ_AHEAD && stdout.isPaused()) stdout.resume();
        yield part(next, partSize);
        continue;
      }
      if (failure !== undefined) throw failure;
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by the 'end' handler
      if (ended) break;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
    await exited;
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  }
  if (heldBytes > 0 || parts === 0) yield part(held, heldBytes);
  return { parts, bytes };
}

/**
 * The database part of one export. `items()` yields the entries; after it finished, `coverage`
 * holds the manifest's claims and `walNames` the WAL files the bundle carries, which the catalog
 * marks as exported when the bundle commits.
 */
export class PostgresSnapshot {
  coverage: PostgresCoverage | undefined;
  walNames: string[] = [];
  private info: ServerInfo | undefined;
  private tablespaces: Tablespace[] = [];
  /**
   * `airlock-<site>-<seq>-<6 hex>`: an export that failed after its seal leaves a restore point and
   * a backup label in the WAL, and its seq is used again; PostgreSQL stops at the first restore point
   * of a name, so every attempt gets its own. At most 63 characters (a long site id is cut).
   */
  readonly restorePointName: string;

  constructor(private readonly opts: PostgresExportOptions) {
    const tail = `-${opts.seq}-${randomBytes(3).toString('hex')}`;
    this.restorePointName = `airlock-${opts.site.slice(0, 63 - 'airlock-'.length - tail.length)}${tail}`;
  }

  /** Checks the server before anything is written: version, that it archives; lists the tablespaces. */
  async prepare(): Promise<ServerInfo> {
    const info = await serverInfo(this.opts.conn, this.opts.signal);
    assertSupportedMajor(info.major, info.version);
    if (info.walLevel === 'minimal')
      throw new AirlockError('pg-failed', 'wal_level is minimal: the server writes no WAL that can be archived', {
        hint: 'set wal_level = replica and archive_mode = on (airlock check lists every setting)',
      });
    if (info.archiveMode === 'off')
      throw new AirlockError('pg-failed', 'archive_mode is off: the server archives no WAL into the spool', {
        hint: "set archive_mode = on and archive_command = 'airlock wal-push %p --spool DIR', then restart the server",
      });
    if (this.opts.base && info.tablespaces.length > 0) {
      this.tablespaces = await listTablespaces(this.opts.conn, this.opts.signal);
    }
    const known = this.opts.catalog.walCluster();
    if (known && known.system_identifier !== info.systemIdentifier) {
      throw new AirlockError(
        'wal-conflict',
        `the server's system identifier ${info.systemIdentifier} is not the one of the WAL in the catalog (${known.system_identifier})`,
        {
          hint: 'this is another cluster than the one archived so far (a new initdb or a restore); use a new state folder and spool for it',
        },
      );
    }
    this.info = info;
    return info;
  }

  private readonly reported = new Set<string>();

  /** Ingests the spool; a refused file is reported once, as a warning (it may leave a hole). */
  private ingest(): void {
    const server = this.info && { system_identifier: this.info.systemIdentifier, segment_size: this.info.segmentSize, major: this.info.major };
    const r = ingestSpool(this.opts.catalog, this.opts.spool, this.opts.now, server);
    for (const p of r.problems) {
      if (this.reported.has(p.message)) continue;
      this.reported.add(p.message);
      this.opts.warn(`warning: spool: ${p.message}`);
    }
  }

  /** Ingests the spool until `found` returns a value; throws `wal-timeout` after walTimeoutMs. */
  private async waitFor<T>(what: string, found: () => T | undefined): Promise<T> {
    const sleep = this.opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    const deadline = Date.now() + this.opts.walTimeoutMs;
    for (;;) {
      this.ingest();
      const v = found();
      if (v !== undefined) return v;
      if (Date.now() > deadline) {
        throw new AirlockError('wal-timeout', `${what} did not reach the spool ${this.opts.spool} within ${Math.round(this.opts.walTimeoutMs / 1000)} s`, {
          hint: 'check that archive_command runs airlock wal-push into this spool (pg_stat_archiver shows failures, the server log says why); nothing was written',
        });
      }
      if (this.opts.signal?.aborted) throw new AirlockError('interrupted', 'interrupted');
      await sleep(50);
    }
  }

  /** Every entry of the database tier, in bundle order. */
  async *items(): AsyncGenerator<SourceItem> {
    const info = this.info ?? (await this.prepare());
    const { conn, now, signal } = this.opts;
    const partSize = this.opts.partSize ?? DEFAULT_PART_SIZE;
    const say = this.opts.say ?? (() => {});

    const infoJson = Buffer.from(
      `${JSON.stringify(
        {
          version: info.version,
          versionNum: info.versionNum,
          systemIdentifier: info.systemIdentifier,
          segmentSize: info.segmentSize,
          dataChecksums: info.dataChecksums,
          timeline: info.timeline,
          databases: info.databases,
          collation: info.collation,
          os: {
            type: osType(),
            release: release(),
            host: hostname(),
            glibc: (process.report.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime ?? null,
          },
          configFiles: info.configFiles,
        },
        null,
        2,
      )}\n`,
    );
    const mtime = Math.floor(now().getTime() / 1000);
    yield {
      kind: 'entry',
      name: 'pg/info.json',
      size: infoJson.byteLength,
      mode: 0o600,
      mtime,
      open: async function* () {
        yield infoJson;
      },
      record: { type: 'pg-info' },
    };

    for (const [i, file] of info.configFiles.entries()) {
      let text: Buffer;
      try {
        text = readFileSync(file);
      } catch (e) {
        throw new AirlockError(
          'source-unreadable',
          `${file}: the server's config file cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
          {
            hint: "let the agent's user read it (e.g. add it to the postgres group), since a restore needs it",
          },
        );
      }
      yield {
        kind: 'entry',
        name: `pg/config/${pad(i + 1, 3)}`,
        size: text.byteLength,
        mode: 0o600,
        mtime,
        open: async function* () {
          yield text;
        },
        record: { type: 'pg-config', file },
      };
    }

    let label: BackupLabel | undefined;
    let held: Tablespace[] = [];
    let baseTimes: { start: Date; stop: string } | undefined;
    if (this.opts.base) {
      say('base backup: pg_basebackup');
      const start = now();
      let end: StreamEnd;
      if (this.tablespaces.length > 0) {
        const r = yield* tablespaceBackup({
          conn,
          tablespaces: this.tablespaces,
          scratch: this.opts.scratch,
          label: this.restorePointName,
          partSize,
          mtime,
          ...(signal ? { signal } : {}),
        });
        end = r.base;
        held = r.tablespaces;
      } else {
        const args = ['-d', conn.conninfo, '-w', '-Ft', '-D', '-', '-X', 'none', '--checkpoint=fast', '--label', this.restorePointName];
        end = yield* programParts(program(conn, 'pg_basebackup'), args, 'pg/base', (part) => ({ type: 'pg-base', part }), partSize, now, signal);
      }
      yield { kind: 'record', record: { type: 'pg-base-end', parts: end.parts, bytes: end.bytes, label: this.restorePointName } };
      baseTimes = { start, stop: await serverTimeAfterBackup(conn, signal) };
      faultPoint('export:after-base');
      label = await this.waitFor("the base backup's .backup file", () => this.findLabel());
    }

    if (this.opts.dumps) {
      for (const [i, db] of info.databases.entries()) {
        say(`dump: pg_dump ${db}`);
        const prefix = `pg/dump/${pad(i + 1, 3)}`;
        const end = yield* programParts(
          program(conn, 'pg_dump'),
          ['-d', withDatabase(conn.conninfo, db), '-w', '-Fc'],
          prefix,
          (part) => ({ type: 'pg-dump', database: db, part }),
          partSize,
          now,
          signal,
        );
        yield { kind: 'record', record: { type: 'pg-dump-end', database: db, prefix, parts: end.parts, bytes: end.bytes } };
      }
      say('dump: pg_dumpall --globals-only');
      const globals = ['-d', conn.conninfo, '-w', '--globals-only', ...(info.superuser ? [] : ['--no-role-passwords'])];
      const end = yield* programParts(program(conn, 'pg_dumpall'), globals, 'pg/globals', (part) => ({ type: 'pg-globals', part }), partSize, now, signal);
      yield { kind: 'record', record: { type: 'pg-globals-end', parts: end.parts, bytes: end.bytes, passwords: info.superuser } };
      faultPoint('export:after-dumps');
    }

    // the seal: a named restore point, then a switch so its segment is archived now, not when full
    const tables = this.opts.tableChecks ? await userTables(conn, signal) : undefined;
    const point = await queryJson<{ lsn?: unknown; time?: unknown; timeline?: unknown; tables?: unknown } | null>(
      conn,
      sealSql(this.restorePointName, tables),
      signal,
    );
    const switched = await queryJson<unknown>(conn, 'SELECT to_json(pg_walfile_name(pg_switch_wal()))', signal);
    if (
      !point ||
      typeof point.lsn !== 'string' ||
      typeof point.time !== 'string' ||
      typeof point.timeline !== 'number' ||
      (tables && typeof point.tables !== 'object') ||
      typeof switched !== 'string' ||
      !parseWalFileName(switched)
    ) {
      throw new AirlockError('pg-failed', 'postgresql: unexpected answer when creating the restore point');
    }
    if (tables) {
      const checks = Buffer.from(`${JSON.stringify({ database: info.currentDatabase, restorePoint: this.restorePointName, tables: point.tables }, null, 1)}\n`);
      yield {
        kind: 'entry',
        name: 'pg/tables.json',
        size: checks.byteLength,
        mode: 0o600,
        mtime,
        open: async function* () {
          yield checks;
        },
        record: { type: 'pg-tables', database: info.currentDatabase },
      };
    }
    const restorePoint = { name: this.restorePointName, lsn: formatLsn(parseLsn(point.lsn)), time: point.time, timeline: point.timeline };
    say(`restore point ${restorePoint.name} at ${restorePoint.lsn}; waiting for ${switched} in the spool`);
    await this.waitFor(`WAL segment ${switched}`, () => (this.opts.catalog.wal(switched) ? true : undefined));
    faultPoint('export:after-switch');

    const rows = this.opts.catalog.unexportedWal(this.opts.site);
    this.walNames = rows.map((r) => r.name);
    for (const row of rows) yield walItem(row, mtime);

    // a refused or lost segment would leave a hole inside this bundle's WAL: refuse to seal it
    const ranges = walRanges(
      rows.filter((r) => r.kind === 'segment').map((r) => r.name),
      info.segmentSize,
    );
    const perTimeline = new Map<number, number>();
    for (const r of ranges) perTimeline.set(r.timeline, (perTimeline.get(r.timeline) ?? 0) + 1);
    const holed = [...perTimeline].filter(([, n]) => n > 1).map(([t]) => t);
    if (holed.length > 0) {
      throw new AirlockError(
        'bad-wal',
        `the WAL to export has a hole on timeline ${holed.join(', ')} (${ranges.map((r) => `${r.first}..${r.last}`).join(', ')}): a segment is missing from the spool or was refused`,
        {
          hint: 'read the spool warnings above; archive the missing segment again from the server (it may still be in pg_wal), then export again',
        },
      );
    }

    const timelines: TimelineSwitch[] = [];
    for (const row of rows.filter((r) => r.kind === 'history')) {
      const h = parseHistory(row.name, readSmallSync(row.spooled_path, TEXT_LIMIT));
      const parent = h.parents.at(-1);
      if (parent) timelines.push({ timeline: h.timeline, parent: parent.timeline, switchLsn: parent.end });
    }
    this.coverage = {
      systemIdentifier: info.systemIdentifier,
      major: info.major,
      segmentSize: info.segmentSize,
      dataChecksums: info.dataChecksums,
      timeline: restorePoint.timeline,
      wal: ranges,
      timelines,
      ...(label && baseTimes
        ? {
            base: {
              timeline: label.startTimeline,
              startLsn: label.startLsn,
              stopLsn: label.stopLsn,
              startTime: label.startTimeUtc ? new Date(label.startTimeUtc).toISOString() : utc(baseTimes.start),
              stopTime: consistentFrom(label, baseTimes.stop),
              ...(held.length > 0 ? { tablespaces: held } : {}),
            },
          }
        : {}),
      dumps: this.opts.dumps ? info.databases.length + 1 : 0,
      restorePoint,
    };
  }

  /** The ingested .backup file whose label is this export's, if it arrived. */
  private findLabel(): BackupLabel | undefined {
    for (const row of this.opts.catalog.unexportedWal(this.opts.site)) {
      if (row.kind !== 'backup') continue;
      const label = parseBackupLabel(row.name, readSmallSync(row.spooled_path, TEXT_LIMIT));
      if (label.label === this.restorePointName) return label;
    }
    return undefined;
  }
}

/** A spooled WAL file as an entry; the writer refuses it unless its bytes still hash as ingested. */
function walItem(row: WalRow, mtime: number): SourceItem {
  return {
    kind: 'entry',
    name: `pg/wal/${row.name}`,
    size: row.size,
    mode: 0o600,
    mtime,
    sha256: row.sha256,
    open: () => readChunks(row.spooled_path),
    record: { type: 'pg-wal', name: row.name, kind: row.kind, timeline: row.timeline },
  };
}
