/*
 * The agent's catalog: a SQLite database in the state folder that remembers every bundle written.
 * The catalog, not the medium, decides a site's next seq, because media are removed, pruned and
 * swapped. Writing a bundle is a small state machine:
 *
 *   (none) --intent--> writing --commit--> done
 *                         |
 *                         +--abandon--> (row deleted; the seq was never published)
 *
 * An export records the intent before it writes and commits after the rename. A crash in between
 * leaves a `writing` row that the next start reconciles by looking at the medium: a finished bundle
 * there is committed (its seq is never reused), a partial one is removed and the seq reused.
 */
import Database from 'better-sqlite3';
import { chmodSync, chownSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import path from 'node:path';
import { AirlockError } from '../manifests/errors.js';
import { SUMS } from '../manifests/sums.js';

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE bundles (
     site TEXT NOT NULL,
     seq INTEGER NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('writing', 'done')),
     path TEXT NOT NULL,
     sums_sha256 TEXT,
     size INTEGER,
     started TEXT NOT NULL,
     finished TEXT,
     imported INTEGER NOT NULL DEFAULT 0,
     PRIMARY KEY (site, seq)
   ) STRICT`,
  // WAL files ingested from the spool. The name is the key: PostgreSQL never archives two different
  // files under one name, so a second, different file with a known name is a conflict, not an update.
  `CREATE TABLE wal (
     name TEXT PRIMARY KEY,
     kind TEXT NOT NULL CHECK (kind IN ('segment', 'partial', 'history', 'backup')),
     timeline INTEGER NOT NULL,
     size INTEGER NOT NULL,
     sha256 TEXT NOT NULL,
     spooled_path TEXT NOT NULL,
     header_checked INTEGER NOT NULL CHECK (header_checked IN (0, 1)),
     start_lsn TEXT,
     system_identifier TEXT,
     segment_size INTEGER,
     ingested TEXT NOT NULL
   ) STRICT`,
  // object storage: which bundle last exported a bucket (or prefix), and every version it holds, so
  // an incremental export leaves out what an earlier bundle of the chain already carries
  `CREATE TABLE object_targets (
     site TEXT NOT NULL,
     endpoint TEXT NOT NULL,
     bucket TEXT NOT NULL,
     prefix TEXT NOT NULL,
     seq INTEGER NOT NULL,
     PRIMARY KEY (site, endpoint, bucket, prefix, seq)
   ) STRICT;
   CREATE TABLE object_versions (
     site TEXT NOT NULL,
     endpoint TEXT NOT NULL,
     bucket TEXT NOT NULL,
     prefix TEXT NOT NULL,
     key TEXT NOT NULL,
     version TEXT NOT NULL,
     seq INTEGER NOT NULL,
     PRIMARY KEY (site, endpoint, bucket, prefix, key, version)
   ) STRICT, WITHOUT ROWID`,
  // which bundle carries each WAL file; rows of a bundle that never finished are ignored by joins
  `CREATE TABLE wal_exports (
     site TEXT NOT NULL,
     name TEXT NOT NULL,
     seq INTEGER NOT NULL,
     PRIMARY KEY (site, name, seq)
   ) STRICT, WITHOUT ROWID`,
  // media are counted by the UUID of their label, never by mount path; a copy counts for retention
  // only once it was read back from that medium and verified. job_runs keeps the outcome of every
  // run of a job (export, media copy, ...) so a status view can show the last success and failure.
  `CREATE TABLE media (
     uuid TEXT PRIMARY KEY,
     label TEXT NOT NULL,
     first_seen TEXT NOT NULL
   ) STRICT;
   CREATE TABLE bundle_copies (
     site TEXT NOT NULL,
     seq INTEGER NOT NULL,
     media_uuid TEXT NOT NULL REFERENCES media (uuid),
     path TEXT NOT NULL,
     sums_sha256 TEXT NOT NULL,
     verified TEXT NOT NULL,
     PRIMARY KEY (site, seq, media_uuid)
   ) STRICT;
   CREATE TABLE job_runs (
     id INTEGER PRIMARY KEY,
     job TEXT NOT NULL,
     site TEXT,
     time TEXT NOT NULL,
     outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'failed')),
     code TEXT,
     message TEXT
   ) STRICT;
   CREATE INDEX job_runs_by_job ON job_runs (job, site, time)`,
  // a spooled WAL file removed by prune once enough verified media hold it
  `ALTER TABLE wal ADD COLUMN pruned TEXT`,
  // the fingerprint of an exported version's tags (and object lock) as last exported, so an incremental
  // export sees a change on a version it does not carry again (null: exported before it was remembered)
  `ALTER TABLE object_versions ADD COLUMN tags TEXT`,
];

export interface MediumRow {
  uuid: string;
  label: string;
  first_seen: string;
}

export interface CopyRow {
  site: string;
  seq: number;
  media_uuid: string;
  path: string;
  sums_sha256: string;
  verified: string;
}

export interface JobRun {
  job: string;
  site: string | null;
  time: string;
  outcome: 'ok' | 'failed';
  code: string | null;
  message: string | null;
}

export interface WalRow {
  name: string;
  kind: 'segment' | 'partial' | 'history' | 'backup';
  timeline: number;
  size: number;
  sha256: string;
  spooled_path: string;
  /** 1 when the segment's page headers were checked against its name (the first) and its place (every other) */
  header_checked: 0 | 1;
  start_lsn: string | null;
  system_identifier: string | null;
  segment_size: number | null;
  ingested: string;
  /** when prune removed the spooled copy (absent in rows read before that column existed) */
  pruned?: string | null;
}

/** What an export did with one version: carried it (or its new tags), or found it deleted for good. */
export interface ExportedVersion {
  key: string;
  version: string;
  /** the fingerprint of its tags ('' for none) */
  tags: string | null;
  removed?: boolean;
}

/** A bucket or prefix of one S3 endpoint, as the catalog tracks its exports. */
export interface ObjectTargetKey {
  endpoint: string;
  bucket: string;
  prefix: string;
}

export interface BundleRow {
  site: string;
  seq: number;
  state: 'writing' | 'done';
  path: string;
  sums_sha256: string | null;
  size: number | null;
  started: string;
  finished: string | null;
  imported: number;
}

const CATALOG_FILE = 'catalog.db';

/**
 * Brings the catalog to the newest schema. Under the database's exclusive lock, reading the version
 * again inside it: commands started together on a new or just-upgraded state folder would otherwise
 * each see the old version and run the same migration twice (`table bundles already exists`).
 * Throws `incompatible` when a newer airlock wrote the catalog.
 */
function migrate(db: Database.Database): void {
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new AirlockError('incompatible', 'the catalog was written by a newer airlock', { hint: 'use that newer airlock, or another --state-dir' });
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      // one prepared statement at a time: a migration may hold several, separated by ";" and a line end
      for (const statement of (MIGRATIONS[v] as string).split(/;\s*\n/)) db.prepare(statement).run();
    }
    if (version < MIGRATIONS.length) db.pragma(`user_version = ${MIGRATIONS.length}`);
  }).exclusive();
}

/**
 * Runs `f` (which must be safe to run again) until SQLite stops answering SQLITE_BUSY, for at most
 * as long as busy_timeout. Where waiting could deadlock SQLite answers SQLITE_BUSY at once instead
 * of calling the busy handler; that was seen with six processes opening a new catalog together.
 */
function whenNotBusy(f: () => void): void {
  const until = Date.now() + 10_000;
  for (;;) {
    try {
      f();
      return;
    } catch (e) {
      if ((e as { code?: string }).code !== 'SQLITE_BUSY' || Date.now() > until) throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5 + Math.random() * 20);
    }
  }
}

/**
 * Creates the state folder (0700) if it is missing, and refuses one that users other than its owner
 * may write: they could replace the catalog or the lock under the agent. Throws `unsafe-state`, or
 * system errors.
 */
export function checkStateDir(stateDir: string): void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const mode = statSync(stateDir).mode & 0o7777;
  if ((mode & 0o022) !== 0) {
    throw new AirlockError('unsafe-state', `the state folder ${stateDir} is writable by other users (mode ${mode.toString(8).padStart(4, '0')})`, {
      hint: `chmod 700 ${stateDir}: it holds the catalog, which names object keys and every bundle`,
    });
  }
}

/**
 * Makes the catalog and its companions readable by the agent's user only (0600): the catalog names
 * object keys and the bundle history, which SECURITY.md says live only in the encrypted payload.
 * A new catalog is created 0600 before SQLite opens it; SQLite gives its -wal, -shm and -journal
 * files the database's own mode. Files an older airlock created 0644 are narrowed here. The new
 * file is created exclusively ("wx"), so this never opens and closes a descriptor of a database
 * that this process may already have open (closing one would drop SQLite's fcntl locks on it).
 */
function restrictStateFiles(file: string): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`, `${file}-journal`]) {
    let mode: number;
    try {
      mode = statSync(f).mode;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw e;
    }
    if ((mode & 0o077) !== 0) chmodSync(f, mode & 0o7700);
  }
  try {
    closeSync(openSync(file, 'wx', 0o600));
    ownLikeFolder(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
}

/**
 * Gives a state file that root just created the owner of its folder: a command run once as root in
 * the agent's state folder must not leave a catalog or a lock (0600) that the agent cannot open.
 * SQLite gives the -wal, -shm and -journal files the database's owner itself.
 */
export function ownLikeFolder(file: string): void {
  if (process.getuid?.() !== 0) return;
  const dir = statSync(path.dirname(file));
  const st = statSync(file);
  if (st.uid !== dir.uid || st.gid !== dir.gid) chownSync(file, dir.uid, dir.gid);
}

/** The default state folder, unless --state-dir or AIRLOCK_STATE_DIR say otherwise. */
export const DEFAULT_STATE_DIR = '/var/lib/airlock';

export function resolveStateDir(flag: string | undefined): string {
  return path.resolve(flag ?? process.env.AIRLOCK_STATE_DIR ?? DEFAULT_STATE_DIR);
}

export class Catalog {
  private constructor(private readonly db: Database.Database) {}

  /**
   * Opens (creating and migrating) the catalog in `stateDir`. Throws `unsafe-state` for a state
   * folder that others may write, `io` when it cannot open it, `incompatible` for a newer catalog.
   */
  static open(stateDir: string): Catalog {
    const file = path.join(stateDir, CATALOG_FILE);
    let db: Database.Database;
    try {
      checkStateDir(stateDir);
      restrictStateFiles(file);
      db = new Database(file);
    } catch (e) {
      if (e instanceof AirlockError) throw e;
      throw new AirlockError('io', `cannot open the catalog in ${stateDir}: ${(e as Error).message}`, {
        hint: 'check --state-dir (or AIRLOCK_STATE_DIR) and its permissions',
        cause: e,
      });
    }
    // first: two commands opening a new catalog at once wait for each other instead of failing
    db.pragma('busy_timeout = 10000');
    try {
      whenNotBusy(() => {
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = FULL');
        if ((db.pragma('user_version', { simple: true }) as number) !== MIGRATIONS.length) migrate(db);
      });
    } catch (e) {
      db.close();
      throw e;
    }
    return new Catalog(db);
  }

  close(): void {
    this.db.close();
  }

  /** The newest finished bundle of `site`. */
  lastDone(site: string): BundleRow | undefined {
    return this.db.prepare(`SELECT * FROM bundles WHERE site = ? AND state = 'done' ORDER BY seq DESC LIMIT 1`).get(site) as BundleRow | undefined;
  }

  /** Every finished bundle of `site`, by seq. */
  doneBundles(site: string): BundleRow[] {
    return this.db.prepare(`SELECT * FROM bundles WHERE site = ? AND state = 'done' ORDER BY seq`).all(site) as BundleRow[];
  }

  unfinished(site: string): BundleRow[] {
    return this.db.prepare(`SELECT * FROM bundles WHERE site = ? AND state = 'writing' ORDER BY seq`).all(site) as BundleRow[];
  }

  /** Records the intent to write `seq`. Throws `seq-conflict` if that seq is already recorded. */
  intend(site: string, seq: number, where: string, now: Date): void {
    try {
      this.db.prepare(`INSERT INTO bundles (site, seq, state, path, started) VALUES (?, ?, 'writing', ?, ?)`).run(site, seq, where, now.toISOString());
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new AirlockError('seq-conflict', `seq ${seq} of ${site} is already in the catalog`);
      }
      throw e;
    }
  }

  /**
   * Marks the intent for `seq` done and, in the same transaction, records the WAL files it carries.
   * Throws `seq-conflict` if there is no such intent.
   */
  commit(site: string, seq: number, sumsSha256: string, size: number, now: Date, wal: readonly string[] = []): void {
    const mark = this.db.prepare(`INSERT OR IGNORE INTO wal_exports (site, name, seq) VALUES (?, ?, ?)`);
    this.db.transaction(() => {
      const r = this.db
        .prepare(`UPDATE bundles SET state = 'done', sums_sha256 = ?, size = ?, finished = ? WHERE site = ? AND seq = ? AND state = 'writing'`)
        .run(sumsSha256, size, now.toISOString(), site, seq);
      if (r.changes !== 1) throw new AirlockError('seq-conflict', `no export of ${site} seq ${seq} was in progress in the catalog`);
      for (const name of wal) mark.run(site, name, seq);
    })();
  }

  /** Ingested WAL files that no finished bundle of `site` carries yet, in name order. */
  unexportedWal(site: string): WalRow[] {
    return this.db
      .prepare(
        `SELECT * FROM wal w WHERE NOT EXISTS (SELECT 1 FROM wal_exports e JOIN bundles b ON b.site = e.site AND b.seq = e.seq AND b.state = 'done' WHERE e.site = ? AND e.name = w.name) ORDER BY name`,
      )
      .all(site) as WalRow[];
  }

  abandon(site: string, seq: number): void {
    this.db.prepare(`DELETE FROM bundles WHERE site = ? AND seq = ? AND state = 'writing'`).run(site, seq);
  }

  /** The ingested WAL file of that name. */
  wal(name: string): WalRow | undefined {
    return this.db.prepare(`SELECT * FROM wal WHERE name = ?`).get(name) as WalRow | undefined;
  }

  /** Every ingested WAL file, in name order (which is timeline, then WAL order). */
  walFiles(): WalRow[] {
    return this.db.prepare(`SELECT * FROM wal ORDER BY name`).all() as WalRow[];
  }

  /** The cluster that the ingested segments belong to, if any was ingested. */
  walCluster(): { system_identifier: string; segment_size: number } | undefined {
    return this.db.prepare(`SELECT system_identifier, segment_size FROM wal WHERE system_identifier IS NOT NULL ORDER BY ingested LIMIT 1`).get() as
      { system_identifier: string; segment_size: number } | undefined;
  }

  /** Records an ingested WAL file. Throws `wal-conflict` if that name is already recorded. */
  addWal(row: WalRow): void {
    try {
      this.db
        .prepare(
          `INSERT INTO wal (name, kind, timeline, size, sha256, spooled_path, header_checked, start_lsn, system_identifier, segment_size, ingested)
           VALUES (@name, @kind, @timeline, @size, @sha256, @spooled_path, @header_checked, @start_lsn, @system_identifier, @segment_size, @ingested)`,
        )
        .run(row);
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new AirlockError('wal-conflict', `${row.name} is already in the catalog`);
      }
      throw e;
    }
  }

  /** The newest finished bundle of `site` that exported `t`, if any. */
  lastObjectExport(site: string, t: ObjectTargetKey): number | undefined {
    const row = this.db
      .prepare(
        `SELECT MAX(o.seq) AS seq FROM object_targets o JOIN bundles b ON b.site = o.site AND b.seq = o.seq AND b.state = 'done' WHERE o.site = ? AND o.endpoint = ? AND o.bucket = ? AND o.prefix = ?`,
      )
      .get(site, t.endpoint, t.bucket, t.prefix) as { seq: number | null } | undefined;
    return row?.seq ?? undefined;
  }

  /**
   * A lookup of the versions of `t` that a finished bundle of `site` already holds: the fingerprint
   * of their tags and lock as last exported ('' for none, null when not remembered), undefined for a version
   * no bundle holds.
   */
  objectVersionChecker(site: string, t: ObjectTargetKey): (key: string, version: string) => string | null | undefined {
    const q = this.db
      .prepare(
        `SELECT v.tags FROM object_versions v JOIN bundles b ON b.site = v.site AND b.seq = v.seq AND b.state = 'done' WHERE v.site = ? AND v.endpoint = ? AND v.bucket = ? AND v.prefix = ? AND v.key = ? AND v.version = ?`,
      )
      .pluck();
    return (key, version) => q.get(site, t.endpoint, t.bucket, t.prefix, key, version) as string | null | undefined;
  }

  /**
   * Up to `limit` versions of `t` that finished bundles of `site` hold, in key byte order (SQLite
   * compares text as bytes), after `after` (key, version), to find the ones that are gone.
   */
  exportedVersions(site: string, t: ObjectTargetKey, after: readonly [string, string] | undefined, limit: number): [string, string][] {
    const [key, version] = after ?? ['', ''];
    const rows = this.db
      .prepare(
        `SELECT v.key, v.version FROM object_versions v JOIN bundles b ON b.site = v.site AND b.seq = v.seq AND b.state = 'done' WHERE v.site = ? AND v.endpoint = ? AND v.bucket = ? AND v.prefix = ? AND (v.key > ? OR (v.key = ? AND v.version > ?)) ORDER BY v.key, v.version LIMIT ?`,
      )
      .raw()
      .all(site, t.endpoint, t.bucket, t.prefix, key, key, after ? version : '', limit) as [string, string][];
    return rows;
  }

  /**
   * Records what bundle `seq` exported of `t`: new versions (key, version identity, tags
   * fingerprint), changed tags or lock of versions held before (their fingerprint is updated), and versions
   * found deleted for good (forgotten). Call it after the bundle is committed; rows of a seq that
   * never finishes are ignored by the joins above.
   */
  recordObjectExport(site: string, seq: number, t: ObjectTargetKey, versions: Iterable<ExportedVersion>): void {
    const target = this.db.prepare(`INSERT OR IGNORE INTO object_targets (site, endpoint, bucket, prefix, seq) VALUES (?, ?, ?, ?, ?)`);
    const version = this.db.prepare(
      `INSERT INTO object_versions (site, endpoint, bucket, prefix, key, version, seq, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET tags = excluded.tags`,
    );
    const removed = this.db.prepare(`DELETE FROM object_versions WHERE site = ? AND endpoint = ? AND bucket = ? AND prefix = ? AND key = ? AND version = ?`);
    this.db.transaction(() => {
      target.run(site, t.endpoint, t.bucket, t.prefix, seq);
      for (const v of versions) {
        if (v.removed) removed.run(site, t.endpoint, t.bucket, t.prefix, v.key, v.version);
        else version.run(site, t.endpoint, t.bucket, t.prefix, v.key, v.version, seq, v.tags);
      }
    })();
  }

  /** Remembers a labelled medium (the first time it is seen). */
  recordMedium(uuid: string, label: string, now: Date): void {
    this.db
      .prepare(`INSERT INTO media (uuid, label, first_seen) VALUES (?, ?, ?) ON CONFLICT (uuid) DO UPDATE SET label = excluded.label`)
      .run(uuid, label, now.toISOString());
  }

  /** Forgets the copies on a medium that was relabelled (wiped, or reused): they no longer count. */
  retireMedium(uuid: string): void {
    this.db.prepare(`DELETE FROM bundle_copies WHERE media_uuid = ?`).run(uuid);
  }

  medium(uuid: string): MediumRow | undefined {
    return this.db.prepare(`SELECT * FROM media WHERE uuid = ?`).get(uuid) as MediumRow | undefined;
  }

  /**
   * Records that the bundle `site`/`seq` with identity `sumsSha256` was read back from the medium
   * `mediaUuid` and verified at `now` (record the medium first). Throws `seq-conflict` when the
   * catalog knows another bundle under that seq: a copy of a foreign bundle must never count.
   */
  recordVerifiedCopy(site: string, seq: number, sumsSha256: string, mediaUuid: string, where: string, now: Date): void {
    const known = this.db.prepare(`SELECT sums_sha256 FROM bundles WHERE site = ? AND seq = ? AND state = 'done'`).pluck().get(site, seq) as
      string | null | undefined;
    if (known != null && known !== sumsSha256) {
      throw new AirlockError('seq-conflict', `${where} is not the bundle ${seq} of ${site} that this appliance wrote (its ${SUMS} differs)`, {
        hint: 'check where that bundle came from; it was not recorded as a copy',
      });
    }
    this.db
      .prepare(
        `INSERT INTO bundle_copies (site, seq, media_uuid, path, sums_sha256, verified) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (site, seq, media_uuid) DO UPDATE SET path = excluded.path, sums_sha256 = excluded.sums_sha256, verified = excluded.verified`,
      )
      .run(site, seq, mediaUuid, where, sumsSha256, now.toISOString());
  }

  /** The verified copies of a bundle, one per medium. */
  copies(site: string, seq: number): CopyRow[] {
    return this.db.prepare(`SELECT * FROM bundle_copies WHERE site = ? AND seq = ? ORDER BY verified`).all(site, seq) as CopyRow[];
  }

  /** On how many distinct media (by UUID) the bundle has a verified copy. */
  verifiedCopyCount(site: string, seq: number): number {
    return this.db.prepare(`SELECT COUNT(DISTINCT media_uuid) FROM bundle_copies WHERE site = ? AND seq = ?`).pluck().get(site, seq) as number;
  }

  /** Per labelled medium: the newest bundle of `site` verified on it. */
  newestCopies(site: string): { uuid: string; label: string; seq: number; verified: string }[] {
    return this.db
      .prepare(
        `SELECT m.uuid, m.label, c.seq, c.verified FROM media m JOIN bundle_copies c ON c.media_uuid = m.uuid
          WHERE c.site = ? AND c.seq = (SELECT MAX(seq) FROM bundle_copies WHERE site = c.site AND media_uuid = m.uuid) ORDER BY m.label, m.uuid`,
      )
      .all(site) as { uuid: string; label: string; seq: number; verified: string }[];
  }

  /** The newest bundle of `site` verified on any medium, with when its export began (its data is that recent). */
  newestVerifiedData(site: string): { seq: number; time: string } | undefined {
    return this.db
      .prepare(
        `SELECT b.seq, b.started AS time FROM bundles b JOIN bundle_copies c ON c.site = b.site AND c.seq = b.seq AND c.sums_sha256 = b.sums_sha256 WHERE b.site = ? AND b.state = 'done' ORDER BY b.seq DESC LIMIT 1`,
      )
      .get(site) as { seq: number; time: string } | undefined;
  }

  /** Ingested WAL files still in the spool that a finished bundle of `site` with verified copies on at least `copies` media carries. */
  prunableWal(site: string, copies: number): WalRow[] {
    return this.db
      .prepare(
        `SELECT w.* FROM wal w WHERE w.pruned IS NULL AND EXISTS (
           SELECT 1 FROM wal_exports e JOIN bundles b ON b.site = e.site AND b.seq = e.seq AND b.state = 'done'
            WHERE e.site = ? AND e.name = w.name
              AND (SELECT COUNT(DISTINCT c.media_uuid) FROM bundle_copies c WHERE c.site = b.site AND c.seq = b.seq AND c.sums_sha256 = b.sums_sha256) >= ?)
         ORDER BY w.name`,
      )
      .all(site, copies) as WalRow[];
  }

  /**
   * The catalog's retention window: forgets what is older than `before` and no longer needed, so
   * years of hourly exports do not grow it without end: WAL rows whose spooled copy prune removed,
   * and job runs. Bundles (the chain) and exported object versions (incremental exports) are kept.
   * Returns how many rows went.
   */
  expire(before: Date): { wal: number; jobs: number } {
    const cutoff = before.toISOString();
    return this.db.transaction(() => {
      const wal = this.db.prepare(`DELETE FROM wal WHERE pruned IS NOT NULL AND pruned < ?`).run(cutoff).changes;
      this.db.prepare(`DELETE FROM wal_exports WHERE name NOT IN (SELECT name FROM wal)`).run();
      const jobs = this.db.prepare(`DELETE FROM job_runs WHERE time < ?`).run(cutoff).changes;
      return { wal, jobs };
    })();
  }

  /** Marks a WAL file's spooled copy as removed. */
  markPruned(name: string, now: Date): void {
    this.db.prepare(`UPDATE wal SET pruned = ? WHERE name = ?`).run(now.toISOString(), name);
  }

  /** Records the outcome of one run of a job (`export`, `media copy`, ...). */
  recordJob(run: JobRun): void {
    this.db.prepare(`INSERT INTO job_runs (job, site, time, outcome, code, message) VALUES (@job, @site, @time, @outcome, @code, @message)`).run(run);
  }

  /** The runs of `job` (of `site`, when given), newest first. */
  jobRuns(job: string, site?: string, limit = 20): JobRun[] {
    return (
      site === undefined
        ? this.db.prepare(`SELECT job, site, time, outcome, code, message FROM job_runs WHERE job = ? ORDER BY id DESC LIMIT ?`).all(job, limit)
        : this.db
            .prepare(`SELECT job, site, time, outcome, code, message FROM job_runs WHERE job = ? AND site = ? ORDER BY id DESC LIMIT ?`)
            .all(job, site, limit)
    ) as JobRun[];
  }

  /** Records a bundle found on a medium (reconciled or --continue-from) as done. */
  importDone(site: string, seq: number, where: string, sumsSha256: string, size: number, now: Date): void {
    this.db
      .prepare(
        `INSERT INTO bundles (site, seq, state, path, sums_sha256, size, started, finished, imported) VALUES (?, ?, 'done', ?, ?, ?, ?, ?, 1)
         ON CONFLICT (site, seq) DO UPDATE SET state = 'done', path = excluded.path, sums_sha256 = excluded.sums_sha256, size = excluded.size, finished = excluded.finished`,
      )
      .run(site, seq, where, sumsSha256, size, now.toISOString(), now.toISOString());
  }
}
