/*
 * airlock export: writes the next bundle of a site onto a medium and prints its path.
 */
import type { Command } from 'commander';
import { AirlockError } from '../../manifests/errors.js';
import { FAT32_MAX_FILE, type Compression } from '../../manifests/manifest.js';
import { resolveStateDir } from '../catalog.js';
import { runExport } from '../export.js';
import { checkRecipients, loadSigningKey } from '../keys.js';
import { S3Client } from '../s3/client.js';
import { connectS3 } from '../s3/credentials.js';
import { ExportAssembly } from '../sources/assembly.js';
import { checkTargets, parseBucketSpec, preflight } from '../sources/objects.js';
import { recordRun } from '../jobs.js';
import { now as clockNow } from '../clock.js';
import { bundleNeeds, estimateFiles, prepareMedium } from '../media.js';
import { confirmExport } from './media.js';
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

async function exportCommand(flags: ExportFlags): Promise<void> {
  const { to: medium, site, signingKey: keyFile, compress, volumeSize } = flags;
  const recipients = flags.recipient ?? [];
  const files = flags.files ?? [];
  if (volumeSize > FAT32_MAX_FILE && flags.notFat32 !== true) {
    throw new AirlockError('volume-too-large', `--volume-size ${human(volumeSize)} is over 4 GiB - 1, which FAT32 media cannot hold`, {
      hint: 'use a smaller --volume-size, or --not-fat32 if the medium has another file system',
    });
  }
  // byte order of bucket and prefix: a bucket's records then come in S3 key order, which the
  // restore's merge of incremental chains relies on
  const bytes = (x: string) => Buffer.from(x, 'utf8');
  const buckets = (flags.bucket ?? [])
    .map(parseBucketSpec)
    .sort((a, b) => Buffer.compare(bytes(a.bucket), bytes(b.bucket)) || Buffer.compare(bytes(a.prefix), bytes(b.prefix)));
  checkTargets(buckets);
  const { s3Endpoint: endpoint, pg: pgConn, walSpool } = flags;
  const pgBase = flags.pgBase === true;
  const pgDump = flags.pgDump === true;
  if (pgConn === undefined && (pgBase || pgDump || walSpool !== undefined))
    throw new AirlockError('usage', '--pg-base, --pg-dump and --wal-spool need --pg', {
      hint: 'give --pg CONNINFO, the connection to the server (e.g. "host=/run/postgresql user=airlock dbname=postgres")',
    });
  if (pgConn !== undefined && walSpool === undefined)
    throw new AirlockError('usage', '--pg needs --wal-spool', { hint: 'give --wal-spool DIR, the folder archive_command (airlock wal-push) writes into' });
  if (files.length === 0 && buckets.length === 0 && pgConn === undefined)
    throw new AirlockError('usage', 'nothing to export', {
      hint: 'give --files PATH... (config files and secrets to carry), --s3-endpoint URL --bucket NAME, and/or --pg CONNINFO --wal-spool DIR',
    });
  if (buckets.length > 0 && endpoint === undefined)
    throw new AirlockError('usage', '--bucket needs --s3-endpoint', { hint: 'give --s3-endpoint http(s)://host:port of the S3 server' });
  if (buckets.length === 0 && endpoint !== undefined)
    throw new AirlockError('usage', '--s3-endpoint without --bucket', { hint: 'name the buckets to export with --bucket NAME[/prefix]' });
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
  const stateDir = resolveStateDir(flags.stateDir);
  const say = (line: string): void => {
    if (process.stderr.isTTY && !flags.json) process.stderr.write(`airlock: ${line}\n`);
  };
  const bin = flags.pgBin;
  const assembly = new ExportAssembly(
    stateDir,
    site,
    {
      files,
      ...(pgConn !== undefined && walSpool !== undefined
        ? {
            pg: {
              conn: { conninfo: pgConn, ...(bin !== undefined ? { bin } : {}) },
              spool: walSpool,
              base: pgBase,
              dumps: pgDump,
              tableChecks: flags.pgTableChecks === true,
              walTimeoutMs: flags.walTimeout * 1000,
            },
          }
        : {}),
      ...(client ? { objects: { client, targets: buckets, incremental: flags.incremental === true } } : {}),
    },
    say,
    note,
  );
  const progress = progressReporter('airlock: export');
  try {
    // buckets and databases are read only while they are exported: for them only the floor is checked up front
    const label = await prepareMedium(medium, bundleNeeds(await estimateFiles(files), recoveryPercent), site);
    const written = await interruptible((signal) =>
      runExport(
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
          coverage: () => assembly.coverage(),
          walNames: () => assembly.walNames(),
        },
        (seq) => assembly.items(seq, signal),
      ),
    );
    progress.done();
    const m = written.manifest;
    if (!flags.readBack) process.stderr.write(`airlock: note: not read back from the medium (--no-read-back), so this copy does not count for retention\n`);
    else await confirmExport({ path: written.path, sumsSha256: written.sumsSha256, site, seq: m.seq }, label, signingKey, stateDir);
    if (client) {
      try {
        await assembly.rememberExported(m.seq);
      } catch (e) {
        // the bundle is written and committed; only the next --incremental export grows
        process.stderr.write(
          `airlock: warning: could not record the exported versions in the catalog (${(e as Error).message}); the next --incremental export will carry them again\n`,
        );
      }
    }
    if (flags.json) {
      process.stdout.write(
        `${JSON.stringify({ path: written.path, site: m.site, seq: m.seq, sums: written.sumsSha256, size: m.payload.size, volumes: m.payload.volumes.length, contents: m.contents, ...(client ? { objects: assembly.objectStats } : {}), ...(m.coverage ? { coverage: m.coverage } : {}) })}\n`,
      );
    } else {
      const objects = client ? `${assembly.objectStats.versions} object version(s), ${assembly.objectStats.deleteMarkers} delete marker(s), ` : '';
      const pg = m.coverage?.postgres;
      const db = pg
        ? `${pg.base ? 'a base backup, ' : ''}${pg.dumps > 0 ? `${pg.dumps} dump(s), ` : ''}${pg.wal.length} WAL range(s) to restore point ${pg.restorePoint?.name ?? '?'}, `
        : '';
      process.stderr.write(
        `airlock: wrote ${m.site} seq ${m.seq}: ${m.contents.files} file(s), ${db}${objects}${m.contents.metadata} metadata record(s), ${human(m.payload.size)} in ${m.payload.volumes.length} volume(s)\n`,
      );
      process.stdout.write(`${written.path}\n`);
    }
    recordRun(stateDir, 'export', site, undefined, clockNow(), note);
    if (pgBase) recordRun(stateDir, 'base-backup', site, undefined, clockNow(), note);
  } finally {
    assembly.close();
    client?.close();
  }
}

export function register(program: Command): void {
  command(program, 'export', 'write the next bundle of a site onto a medium and print its path').action(async (raw: Flags) => {
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
