/*
 * What one export carries: its sources (files, PostgreSQL, buckets) as the one stream of items the
 * bundle writer takes, in that order, and afterwards what the bundle holds of them (the PostgreSQL
 * coverage and WAL names for the manifest and the commit, the object versions for --incremental).
 *
 * Every object version written is remembered, after the bundle is committed, so a later incremental
 * export can leave it out. A bucket may hold millions, so the list is written to a file in the state
 * folder (the agent's own, 0700: the list names keys, which may be confidential) and recorded in the
 * catalog in batches.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, createReadStream, openSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Coverage } from '../../manifests/coverage.js';
import type { SourceItem } from '../bundle/writer.js';
import { Catalog, type ExportedVersion } from '../catalog.js';
import type { S3Client } from '../s3/client.js';
import { fileItems } from './files.js';
import { objectItems, type BucketTarget, type ObjectStats } from './objects.js';
import { clientBin, type Connection } from './postgres/server.js';
import { PostgresSnapshot } from './postgres/snapshot.js';

export interface ExportSources {
  /** config and secret files or folders */
  files: readonly string[];
  pg?: {
    conn: Connection;
    /** the WAL spool archive_command writes into */
    spool: string;
    base: boolean;
    dumps: boolean;
    tableChecks: boolean;
    walTimeoutMs: number;
  };
  objects?: {
    client: S3Client;
    /** in byte order of bucket and prefix, so a bucket's records come in S3 key order */
    targets: readonly BucketTarget[];
    /** leave out the versions earlier bundles of the site hold */
    incremental: boolean;
  };
}

/** Lines appended to a file in batches of 64 KiB (one write per object would cost a system call each). */
class LineBatches {
  private lines: string[] = [];
  private bytes = 0;

  constructor(private readonly fd: number) {}

  add(line: string): void {
    this.lines.push(line);
    this.bytes += line.length;
    if (this.bytes >= 64 * 1024) this.flush();
  }

  flush(): void {
    if (this.lines.length === 0) return;
    writeSync(this.fd, this.lines.join(''));
    this.lines = [];
    this.bytes = 0;
  }
}

/** The sources of one export of `site`; close() it however the export ends. */
export class ExportAssembly {
  readonly objectStats: ObjectStats = { versions: 0, deleteMarkers: 0, bytes: 0 };
  private readonly exportedFile: string;
  private exportedFd: number | undefined;
  private exported: LineBatches | undefined;
  private catalog: Catalog | undefined;
  private pgCatalog: Catalog | undefined;
  private snapshot: PostgresSnapshot | undefined;

  constructor(
    private readonly stateDir: string,
    private readonly site: string,
    private readonly sources: ExportSources,
    private readonly say: (line: string) => void = () => {},
    /** warnings for people, shown whatever the output is (a refused spool file may leave a hole) */
    private readonly warn: (line: string) => void = () => {},
  ) {
    this.exportedFile = path.join(stateDir, `.exported-${process.pid}-${randomBytes(4).toString('hex')}.jsonl`);
  }

  /** The items of bundle `seq`: files, then PostgreSQL, then buckets. Throws what the sources throw. */
  async *items(seq: number, signal?: AbortSignal): AsyncGenerator<SourceItem> {
    const { files, pg, objects } = this.sources;
    if (files.length > 0) yield* fileItems(files);
    if (pg) {
      this.pgCatalog = Catalog.open(this.stateDir);
      const conn: Connection = { ...pg.conn };
      this.snapshot = new PostgresSnapshot({
        conn,
        spool: pg.spool,
        catalog: this.pgCatalog,
        site: this.site,
        seq,
        base: pg.base,
        dumps: pg.dumps,
        tableChecks: pg.tableChecks,
        walTimeoutMs: pg.walTimeoutMs,
        now: () => new Date(),
        say: this.say,
        warn: this.warn,
        // tablespace archives wait in the state folder (the agent's own) until they are read
        scratch: this.stateDir,
        ...(signal ? { signal } : {}),
      });
      const info = await this.snapshot.prepare();
      // the programs of the server's own version, unless the operator named a folder
      const own = pg.conn.bin === undefined ? clientBin(info.major) : undefined;
      if (own !== undefined) conn.bin = own;
      yield* this.snapshot.items();
    }
    if (!objects) return;
    const catalog = objects.incremental ? (this.catalog = Catalog.open(this.stateDir)) : undefined;
    this.exportedFd = openSync(this.exportedFile, 'wx', 0o600);
    const exported = (this.exported = new LineBatches(this.exportedFd));
    const origin = objects.client.endpoint.origin;
    yield* objectItems({
      client: objects.client,
      targets: objects.targets,
      stats: this.objectStats,
      ...(signal ? { signal } : {}),
      ...(catalog
        ? {
            incremental: (t: BucketTarget) => {
              const key = { endpoint: origin, ...t };
              const since = catalog.lastObjectExport(this.site, key);
              return since === undefined
                ? undefined
                : { since, has: catalog.objectVersionChecker(this.site, key), page: (after, limit) => catalog.exportedVersions(this.site, key, after, limit) };
            },
          }
        : {}),
      onExported: (t, key, version, tags, removed) => exported.add(`${JSON.stringify([t.bucket, t.prefix, key, version, tags, ...(removed ? [true] : [])])}\n`),
    });
  }

  /** The manifest's coverage, once every item was written. */
  coverage(): Coverage | undefined {
    return this.snapshot?.coverage ? { postgres: this.snapshot.coverage } : undefined;
  }

  /** The WAL files the bundle carries, recorded with the commit. */
  walNames(): readonly string[] {
    return this.snapshot?.walNames ?? [];
  }

  /**
   * Records the object versions bundle `seq` carries in the catalog, in batches, once it is
   * committed; a no-op for an export without buckets. Throws catalog and system errors: the bundle
   * stands, only the next --incremental export grows.
   */
  async rememberExported(seq: number): Promise<void> {
    const objects = this.sources.objects;
    if (!objects || !this.exported) return;
    this.exported.flush();
    const catalog = Catalog.open(this.stateDir);
    try {
      const endpoint = objects.client.endpoint.origin;
      const batches = new Map<string, ExportedVersion[]>();
      const flush = (id: string) => {
        const [bucket, prefix] = JSON.parse(id) as [string, string];
        catalog.recordObjectExport(this.site, seq, { endpoint, bucket, prefix }, batches.get(id) ?? []);
        batches.set(id, []);
      };
      for (const t of objects.targets) batches.set(JSON.stringify([t.bucket, t.prefix]), []);
      for (const id of batches.keys()) flush(id); // a target with nothing in it was exported too
      const rl = createInterface({ input: createReadStream(this.exportedFile, 'utf8'), crlfDelay: Infinity });
      for await (const line of rl) {
        if (line === '') continue;
        const [bucket, prefix, key, version, tags, removed] = JSON.parse(line) as [string, string, string, string, string, boolean | undefined];
        const id = JSON.stringify([bucket, prefix]);
        const batch = batches.get(id) ?? [];
        batch.push({ key, version, tags, ...(removed ? { removed } : {}) });
        batches.set(id, batch);
        if (batch.length >= 10_000) flush(id);
      }
      for (const id of batches.keys()) flush(id);
    } finally {
      catalog.close();
    }
  }

  /** Closes the catalogs and removes the list of exported versions; the S3 client is the caller's. */
  close(): void {
    this.catalog?.close();
    this.pgCatalog?.close();
    if (this.exportedFd !== undefined) closeSync(this.exportedFd);
    this.exportedFd = undefined;
    rmSync(this.exportedFile, { force: true });
  }
}
