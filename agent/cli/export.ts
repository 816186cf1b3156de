/*
 * airlock export: writes the next bundle of a site onto a medium and prints its path.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, createReadStream, openSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { AirlockError } from '../../manifests/errors.js';
import { FAT32_MAX_FILE, type Compression } from '../../manifests/manifest.js';
import { Catalog, resolveStateDir, type ExportedVersion } from '../catalog.js';
import { runExport } from '../export.js';
import { checkRecipients, loadSigningKey } from '../keys.js';
import { S3Client } from '../s3/client.js';
import { connectS3 } from '../s3/credentials.js';
import { fileItems } from '../sources/files.js';
import { checkTargets, objectItems, parseBucketSpec, preflight, type BucketTarget, type ObjectStats } from '../sources/objects.js';
import type { SourceItem } from '../bundle/writer.js';
import { recordRun } from '../jobs.js';
import { now as clockNow } from '../clock.js';
import { bundleNeeds, estimateFiles, prepareMedium } from '../media.js';
import { confirmExport } from './media.js';
import { clientBin, type Connection } from '../sources/postgres/server.js';
import { PostgresSnapshot } from '../sources/postgres/snapshot.js';
import { human, interruptible, note, progressReporter } from './common.js';
import { command, resolveOptions, type Flags } from './options.js';

interface ExportFlags {
  to: string;
  site: string;
  signingKey: string;
  recipient?: string[];
  files?: string[];
  recoveryPercent?: number;
  s3Endpoint?: string;
  bucket?: string[];
  s3Credentials?: string;
  s3Region?: string;
  s3CaFile?: string;
  s3Addressing?: string;
  incremental?: boolean;
  pg?: string;
  pgBin?: string;
  walSpool?: string;
  pgBase?: boolean;
  pgDump?: boolean;
  pgTableChecks?: boolean;
  walTimeout: number;
  compress: Compression;
  volumeSize: number;
  notFat32?: boolean;
  continueFrom?: string;
  abandonUnfinished?: boolean;
  stateDir?: string;
  json?: boolean;
  /** false with --no-read-back */
  readBack: boolean;
}

/** Lines appended to a file in batches of 64 KiB (one write per object would cost a system call each). */
class LineBatches {
  private lines: string[] = [];
  private bytes = 0;

  constructor(private readonly fd: number | undefined) {}

  add(line: string): void {
    this.lines.push(line);
    this.bytes += line.length;
    if (this.bytes >= 64 * 1024) this.flush();
  }

  flush(): void {
    if (this.fd === undefined || this.lines.length === 0) return;
    writeSync(this.fd, this.lines.join(''));
    this.lines = [];
    this.bytes = 0;
  }
}

async function exportCommand(flags: ExportFlags): Promise<void> {
  const { to: medium, site, signingKey: keyFile, compress, volumeSize } = flags;
  const recipients = flags.recipient ?? [];
  const files = flags.files ?? [];
  if (volumeSize > FAT32_MAX_FILE && flags.notFat32 !== true) {
    throw new AirlockError('volume-too-large', `--volume-size ${human(volumeSize)} is over 4 GiB - 1, which FAT32 media cannot hold`, { hint: 'use a smaller --volume-size, or --not-fat32 if the medium has another file system' });
  }
  // byte order of bucket and prefix: a bucket's records then come in S3 key order, which the
  // restore's merge of incremental chains relies on
  const bytes = (x: string) => Buffer.from(x, 'utf8');
  const buckets = (flags.bucket ?? []).map(parseBucketSpec).sort((a, b) => Buffer.compare(bytes(a.bucket), bytes(b.bucket)) || Buffer.compare(bytes(a.prefix), bytes(b.prefix)));
  checkTargets(buckets);
  const { s3Endpoint: endpoint, pg: pgConn, walSpool } = flags;
  const pgBase = flags.pgBase === true;
  const pgDump = flags.pgDump === true;
  if (pgConn === undefined && (pgBase || pgDump || walSpool !== undefined)) throw new AirlockError('usage', '--pg-base, --pg-dump and --wal-spool need --pg', { hint: 'give --pg CONNINFO, the connection to the server (e.g. "host=/run/postgresql user=airlock dbname=postgres")' });
  if (pgConn !== undefined && walSpool === undefined) throw new AirlockError('usage', '--pg needs --wal-spool', { hint: 'give --wal-spool DIR, the folder archive_command (airlock wal-push) writes into' });
  if (files.length === 0 && buckets.length === 0 && pgConn === undefined) throw new AirlockError('usage', 'nothing to export', { hint: 'give --files PATH... (config files and secrets to carry), --s3-endpoint URL --bucket NAME, and/or --pg CONNINFO --wal-spool DIR' });
  if (buckets.length > 0 && endpoint === undefined) throw new AirlockError('usage', '--bucket needs --s3-endpoint', { hint: 'give --s3-endpoint http(s)://host:port of the S3 server' });
  if (buckets.length === 0 && endpoint !== undefined) throw new AirlockError('usage', '--s3-endpoint without --bucket', { hint: 'name the buckets to export with --bucket NAME[/prefix]' });
  const recoveryPercent = flags.recoveryPercent ?? 0;
  checkRecipients(recipients);
  const signingKey = await loadSigningKey(keyFile);
  let client: S3Client | undefined;
  if (endpoint !== undefined) {
    client = await connectS3({ endpoint, credentials: flags.s3Credentials, region: flags.s3Region, caFile: flags.s3CaFile, addressing: flags.s3Addressing });
    // a missing bucket, bad credentials or a dead endpoint end the export before a bundle is begun
    try {
      await preflight(client, buckets);
    } catch (e) {
      client.close();
      throw e;
    }
  }
  let abortSignal: AbortSignal | undefined;
  const stateDir = resolveStateDir(flags.stateDir);
  const objectStats: ObjectStats = { versions: 0, deleteMarkers: 0, bytes: 0 };
  // every version written is remembered (after the bundle is committed), so a later --incremental
  // export can leave it out; the list is written to a file because a bucket may hold millions
  // in the state folder (the agent's own, 0700): the list names keys, which may be confidential
  const exportedFile = path.join(stateDir, `.exported-${process.pid}-${randomBytes(4).toString('hex')}.jsonl`);
  let exportedFd: number | undefined;
  let exported = new LineBatches(undefined);
  let catalog: Catalog | undefined;
  let pgCatalog: Catalog | undefined;
  let snapshot: PostgresSnapshot | undefined;
  const origin = client?.endpoint.origin ?? '';
  const say = (line: string) => void (process.stderr.isTTY && !flags.json ? process.stderr.write(`airlock: ${line}\n`) : undefined);
  async function* items(seq: number): AsyncGenerator<SourceItem> {
    if (files.length > 0) yield* fileItems(files);
    if (pgConn !== undefined && walSpool !== undefined) {
      pgCatalog = Catalog.open(stateDir);
      const bin = flags.pgBin;
      const conn: Connection = { conninfo: pgConn, ...(bin !== undefined ? { bin } : {}) };
      snapshot = new PostgresSnapshot({ conn, spool: walSpool, catalog: pgCatalog, site, seq, base: pgBase, dumps: pgDump, tableChecks: flags.pgTableChecks === true, walTimeoutMs: flags.walTimeout * 1000, now: () => new Date(), say, warn: note, scratch: stateDir, ...(abortSignal ? { signal: abortSignal } : {}) });
      const info = await snapshot.prepare();
      const own = bin === undefined ? clientBin(info.major) : undefined;
      if (own !== undefined) conn.bin = own;
      yield* snapshot.items();
    }
    if (!client) return;
    if (flags.incremental) catalog = Catalog.open(stateDir);
    exportedFd = openSync(exportedFile, 'wx', 0o600);
    exported = new LineBatches(exportedFd);
    yield* objectItems({
      client,
      targets: buckets,
      stats: objectStats,
      ...(abortSignal ? { signal: abortSignal } : {}),
      ...(catalog ? {
        incremental: (t: BucketTarget) => {
          const key = { endpoint: origin, ...t };
          const since = catalog?.lastObjectExport(site, key);
          const c = catalog;
          return since === undefined || !c ? undefined : { since, has: c.objectVersionChecker(site, key), page: (after, limit) => c.exportedVersions(site, key, after, limit) };
        },
      } : {}),
      onExported: (t, key, version, tags, removed) => exported.add(`${JSON.stringify([t.bucket, t.prefix, key, version, tags, ...(removed ? [true] : [])])}\n`),
    });
  }

  const progress = progressReporter('airlock: export');
  try {
    // buckets and databases are read only while they are exported: for them only the floor is checked up front
    const label = await prepareMedium(medium, bundleNeeds(await estimateFiles(files), recoveryPercent), site);
    const written = await interruptible((signal) => {
      abortSignal = signal;
      return runExport(
      {
        stateDir,
        medium,
        site,
        signingKey,
        recipients,
        compression: compress,
        volumeSize,
        ...(flags.continueFrom !== undefined ? { continueFrom: flags.continueFrom } : {}),
        abandonUnfinished: flags.abandonUnfinished === true,
        now: () => new Date(),
        signal,
        progress: progress.update,
        ...(recoveryPercent > 0 ? { recoveryPercent } : {}),
        coverage: () => (snapshot?.coverage ? { postgres: snapshot.coverage } : undefined),
        walNames: () => snapshot?.walNames ?? [],
      },
      items,
      );
    });
    progress.done();
    const m = written.manifest;
    if (!flags.readBack) process.stderr.write(`airlock: note: not read back from the medium (--no-read-back), so this copy does not count for retention\n`);
    else await confirmExport({ path: written.path, sumsSha256: written.sumsSha256, site, seq: m.seq }, label, signingKey, stateDir);
    if (client && exportedFd !== undefined) {
      try {
        exported.flush();
        await rememberExported(stateDir, site, m.seq, origin, buckets, exportedFile);
      } catch (e) {
        // the bundle is written and committed; only the next --incremental export grows
        process.stderr.write(`airlock: warning: could not record the exported versions in the catalog (${(e as Error).message}); the next --incremental export will carry them again\n`);
      }
    }
    if (flags.json) {
      process.stdout.write(`${JSON.stringify({ path: written.path, site: m.site, seq: m.seq, sums: written.sumsSha256, size: m.payload.size, volumes: m.payload.volumes.length, contents: m.contents, ...(client ? { objects: objectStats } : {}), ...(m.coverage ? { coverage: m.coverage } : {}) })}\n`);
    } else {
      const objects = client ? `${objectStats.versions} object version(s), ${objectStats.deleteMarkers} delete marker(s), ` : '';
      const pg = m.coverage?.postgres;
      const db = pg ? `${pg.base ? 'a base backup, ' : ''}${pg.dumps > 0 ? `${pg.dumps} dump(s), ` : ''}${pg.wal.length} WAL range(s) to restore point ${pg.restorePoint?.name ?? '?'}, ` : '';
      process.stderr.write(`airlock: wrote ${m.site} seq ${m.seq}: ${m.contents.files} file(s), ${db}${objects}${m.contents.metadata} metadata record(s), ${human(m.payload.size)} in ${m.payload.volumes.length} volume(s)\n`);
      process.stdout.write(`${written.path}\n`);
    }
    recordRun(stateDir, 'export', site, undefined, clockNow(), note);
    if (pgBase) recordRun(stateDir, 'base-backup', site, undefined, clockNow(), note);
  } finally {
    catalog?.close();
    pgCatalog?.close();
    if (exportedFd !== undefined) closeSync(exportedFd);
    rmSync(exportedFile, { force: true });
    client?.close();
  }
}

/** Records the versions of bundle `seq` listed in `file` in the catalog, in batches. */
async function rememberExported(stateDir: string, site: string, seq: number, endpoint: string, targets: readonly BucketTarget[], file: string): Promise<void> {
  const catalog = Catalog.open(stateDir);
  try {
    const batches = new Map<string, ExportedVersion[]>();
    const flush = (id: string) => {
      const [bucket, prefix] = JSON.parse(id) as [string, string];
      catalog.recordObjectExport(site, seq, { endpoint, bucket, prefix }, batches.get(id) ?? []);
      batches.set(id, []);
    };
    for (const t of targets) batches.set(JSON.stringify([t.bucket, t.prefix]), []);
    for (const id of batches.keys()) flush(id); // a target with nothing in it was exported too
    const rl = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
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

export function register(program: Command): void {
  command(program, 'export', 'write the next bundle of a site onto a medium and print its path')
    .action(async (raw: Flags) => {
      const flags = resolveOptions<ExportFlags>('export', raw);
      try {
        await exportCommand(flags);
      } catch (e) {
        // every failure is recorded for status and the scheduler, the early ones (bad source,
        // endpoint down, no space) too
        const usage = e instanceof AirlockError && (e.code === 'usage' || e.code === 'config-invalid');
        if (!usage) recordRun(resolveStateDir(flags.stateDir), 'export', flags.site, e, clockNow(), note);
        throw e;
      }
    });
}
