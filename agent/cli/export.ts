/*
 * airlock export: writes the next bundle of a site onto a medium and prints its path.
 */
import type { Command } from 'commander';
import { AirlockError } from '../../manifests/errors.js';
import { FAT32_MAX_FILE, type Compression } from '../../manifests/manifest.js';
import { resolveStateDir } from '../catalog.js';
import { parseSize } from '../config.js';
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
import { Settings, human, interruptible, progressReporter } from './common.js';

interface ExportFlags {
  to?: string;
  site?: string;
  signingKey?: string;
  recipient?: string[];
  files?: string[];
  recoveryPercent?: string;
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
  walTimeout?: string;
  compress?: string;
  volumeSize?: string;
  notFat32?: boolean;
  continueFrom?: string;
  abandonUnfinished?: boolean;
  stateDir?: string;
  config?: string;
  json?: boolean;
  /** false with --no-read-back */
  readBack?: boolean;
}

export const DEFAULT_VOLUME_SIZE = 1024 ** 3;

async function exportCommand(flags: ExportFlags): Promise<void> {
  const s = new Settings(flags.config);
  const medium = s.required(flags.to, 'medium', 'give --to MEDIUM (the mount point of the medium)');
  const site = s.required(flags.site, 'site', 'give --site SITE');
  const keyFile = s.required(flags.signingKey, 'signing-key', 'give --signing-key FILE (made by airlock keygen)');
  const recipients = s.list(flags.recipient, 'recipient');
  const files = s.list(flags.files, 'files');
  const compress = s.one(flags.compress, 'compress') ?? 'zstd';
  if (compress !== 'zstd' && compress !== 'none') throw new AirlockError('usage', `--compress ${compress}: must be zstd or none`);
  const sizeText = s.one(flags.volumeSize, 'volume-size');
  const volumeSize = sizeText === undefined ? DEFAULT_VOLUME_SIZE : parseSize(sizeText);
  if (volumeSize === undefined || volumeSize < 1024 * 1024) throw new AirlockError('usage', `--volume-size ${sizeText}: must be a size of at least 1M`);
  const notFat32 = flags.notFat32 === true || s.one(undefined, 'not-fat32') === 'true';
  if (volumeSize > FAT32_MAX_FILE && !notFat32) {
    throw new AirlockError('volume-too-large', `--volume-size ${sizeText} is over 4 GiB - 1, which FAT32 media cannot hold`, { hint: 'use a smaller --volume-size, or --not-fat32 if the medium has another file system' });
  }
  // byte order of bucket and prefix: a bucket's records then come in S3 key order, which the
  // restore's merge of incremental chains relies on
  const bytes = (x: string) => Buffer.from(x, 'utf8');
  const buckets = s.list(flags.bucket, 'bucket').map(parseBucketSpec).sort((a, b) => Buffer.compare(bytes(a.bucket), bytes(b.bucket)) || Buffer.compare(bytes(a.prefix), bytes(b.prefix)));
  checkTargets(buckets);
  const endpoint = s.one(flags.s3Endpoint, 's3-endpoint');
  const pgConn = s.one(flags.pg, 'pg');
  const walSpool = s.one(flags.walSpool, 'spool');
  const pgBase = flags.pgBase === true || s.one(undefined, 'pg-base') === 'true';
  const pgDump = flags.pgDump === true || s.one(undefined, 'pg-dump') === 'true';
  if (pgConn === undefined && (pgBase || pgDump || walSpool !== undefined)) throw new AirlockError('usage', '--pg-base, --pg-dump and --wal-spool need --pg', { hint: 'give --pg CONNINFO, the connection to the server (e.g. "host=/run/postgresql user=airlock dbname=postgres")' });
  if (pgConn !== undefined && walSpool === undefined) throw new AirlockError('usage', '--pg needs --wal-spool', { hint: 'give --wal-spool DIR, the folder archive_command (airlock wal-push) writes into' });
  const walTimeoutText = s.one(flags.walTimeout, 'wal-timeout') ?? '120';
  const walTimeout = Number(walTimeoutText);
  if (!Number.isFinite(walTimeout) || walTimeout <= 0) throw new AirlockError('usage', `--wal-timeout ${walTimeoutText}: must be a number of seconds`);
  if (files.length === 0 && buckets.length === 0 && pgConn === undefined) throw new AirlockError('usage', 'nothing to export', { hint: 'give --files PATH... (config files and secrets to carry), --s3-endpoint URL --bucket NAME, and/or --pg CONNINFO --wal-spool DIR' });
  if (buckets.length > 0 && endpoint === undefined) throw new AirlockError('usage', '--bucket needs --s3-endpoint', { hint: 'give --s3-endpoint http(s)://host:port of the S3 server' });
  if (buckets.length === 0 && endpoint !== undefined) throw new AirlockError('usage', '--s3-endpoint without --bucket', { hint: 'name the buckets to export with --bucket NAME[/prefix]' });
  const recoveryText = s.one(flags.recoveryPercent, 'recovery-percent');
  const recoveryPercent = recoveryText === undefined ? 0 : /^(100|[1-9]\d?)$/.test(recoveryText) ? Number(recoveryText) : undefined;
  if (recoveryPercent === undefined) throw new AirlockError('usage', `--recovery-percent ${recoveryText}: must be a whole number from 1 to 100`);
  checkRecipients(recipients);
  const signingKey = await loadSigningKey(keyFile);
  let client: S3Client | undefined;
  if (endpoint !== undefined) {
    client = await connectS3({ endpoint, credentials: s.one(flags.s3Credentials, 's3-credentials'), region: s.one(flags.s3Region, 's3-region'), caFile: s.one(flags.s3CaFile, 's3-ca-file'), addressing: s.one(flags.s3Addressing, 's3-addressing') });
    // a missing bucket, bad credentials or a dead endpoint end the export before a bundle is begun
    try {
      await preflight(client, buckets);
    } catch (e) {
      client.close();
      throw e;
    }
  }
  const stateDir = resolveStateDir(flags.stateDir ?? s.one(undefined, 'state-dir'));
  const say = (line: string) => void (process.stderr.isTTY && !flags.json ? process.stderr.write(`airlock: ${line}\n`) : undefined);
  const bin = s.one(flags.pgBin, 'pg-bin');
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
              tableChecks: flags.pgTableChecks === true || s.one(undefined, 'pg-table-checks') === 'true',
              walTimeoutMs: walTimeout * 1000,
            },
          }
        : {}),
      ...(client ? { objects: { client, targets: buckets, incremental: flags.incremental === true } } : {}),
    },
    say,
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
          compression: compress as Compression,
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
    if (flags.readBack === false) process.stderr.write(`airlock: note: not read back from the medium (--no-read-back), so this copy does not count for retention\n`);
    else await confirmExport({ path: written.path, sumsSha256: written.sumsSha256, site, seq: m.seq }, label, signingKey, stateDir);
    if (client) {
      try {
        await assembly.rememberExported(m.seq);
      } catch (e) {
        // the bundle is written and committed; only the next --incremental export grows
        process.stderr.write(`airlock: warning: could not record the exported versions in the catalog (${(e as Error).message}); the next --incremental export will carry them again\n`);
      }
    }
    if (flags.json) {
      process.stdout.write(`${JSON.stringify({ path: written.path, site: m.site, seq: m.seq, sums: written.sumsSha256, size: m.payload.size, volumes: m.payload.volumes.length, contents: m.contents, ...(client ? { objects: assembly.objectStats } : {}), ...(m.coverage ? { coverage: m.coverage } : {}) })}\n`);
    } else {
      const objects = client ? `${assembly.objectStats.versions} object version(s), ${assembly.objectStats.deleteMarkers} delete marker(s), ` : '';
      const pg = m.coverage?.postgres;
      const db = pg ? `${pg.base ? 'a base backup, ' : ''}${pg.dumps > 0 ? `${pg.dumps} dump(s), ` : ''}${pg.wal.length} WAL range(s) to restore point ${pg.restorePoint?.name ?? '?'}, ` : '';
      process.stderr.write(`airlock: wrote ${m.site} seq ${m.seq}: ${m.contents.files} file(s), ${db}${objects}${m.contents.metadata} metadata record(s), ${human(m.payload.size)} in ${m.payload.volumes.length} volume(s)\n`);
      process.stdout.write(`${written.path}\n`);
    }
    recordRun(stateDir, 'export', site, undefined, clockNow());
    if (pgBase) recordRun(stateDir, 'base-backup', site, undefined, clockNow());
  } finally {
    assembly.close();
    client?.close();
  }
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function register(program: Command): void {
  program
    .command('export')
    .description('write the next bundle of a site onto a medium and print its path')
    .option('--to <medium>', 'the medium: a mounted folder; the bundle goes to MEDIUM/SITE/SITE-SEQ')
    .option('--site <site>', 'the site id (lowercase letters, digits, ".", "_", "-")')
    .option('--signing-key <file>', 'the appliance Ed25519 signing key (OpenSSH format, mode 0600)')
    .option('--recipient <age1...>', 'an age recipient; give two: the recovery site and an escrow key', collect)
    .option('--files <path...>', 'config and secret files or folders to carry')
    .option('--s3-endpoint <url>', 'the S3 server holding the buckets to export: http(s)://host:port')
    .option('--bucket <bucket...>', 'a bucket to export (every version when versioned), or the keys under a prefix')
    .option('--s3-credentials <file>', 'S3 keys in AWS credentials syntax, mode 0600 (default: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN)')
    .option('--s3-region <region>', 'the region the S3 server expects in signatures (default us-east-1)')
    .option('--s3-ca-file <file>', 'trust the CA certificates in this PEM file for an https endpoint (a private CA)')
    .option('--s3-addressing <path|virtual>', 'path: http://host/bucket/key (default); virtual: http://bucket.host/key')
    .option('--pg <conninfo>', 'PostgreSQL: the connection (libpq string or URL; the password from PGPASSFILE or PGPASSWORD, never here)')
    .option('--wal-spool <dir>', 'PostgreSQL: the folder archive_command (airlock wal-push) writes into')
    .option('--pg-base', 'PostgreSQL: take a physical base backup (pg_basebackup) into the bundle')
    .option('--pg-dump', 'PostgreSQL: take pg_dump -Fc of every database and pg_dumpall --globals-only')
    .option('--pg-table-checks', 'PostgreSQL: record row counts and checksums of every table at the restore point, for drills (holds writers while it reads)')
    .option('--pg-bin <dir>', 'PostgreSQL: the folder of pg_basebackup, pg_dump and psql (default: the server version\'s)')
    .option('--wal-timeout <seconds>', 'PostgreSQL: how long to wait for the restore point\'s WAL to be archived (default 120)')
    .option('--incremental', 'buckets: leave out the versions that earlier bundles of this site already hold')
    .option('--compress <zstd|none>', 'compress the tar with zstd before encryption (default zstd)')
    .option('--recovery-percent <n>', 'also write par2 recovery data able to rebuild N% of the volumes (1-100)')
    .option('--volume-size <size>', 'size of each payload volume (default 1G; at most 4G-1 on FAT32)')
    .option('--not-fat32', 'the medium is not FAT32: allow volumes of 4 GiB and more')
    .option('--continue-from <bundle>', 'the state folder was lost: continue the chain after this bundle')
    .option('--abandon-unfinished', 'forget an interrupted export whose medium is lost (only if it never held a finished bundle)')
    .option('--state-dir <dir>', 'the state folder (default $AIRLOCK_STATE_DIR or /var/lib/airlock)')
    .option('--config <file>', 'read settings from this config file (flags win)')
    .option('--no-read-back', 'do not read the bundle back from the medium afterwards (then this copy does not count for retention)')
    .option('--json', 'print the result as JSON')
    .action(async (flags: ExportFlags) => {
      try {
        await exportCommand(flags);
      } catch (e) {
        // every failure is recorded for status and the scheduler, the early ones (bad source,
        // endpoint down, no space) too; without a site the run cannot be attributed
        let where: { site: string | undefined; stateDir: string } | undefined;
        try {
          const s = new Settings(flags.config);
          where = { site: s.one(flags.site, 'site'), stateDir: resolveStateDir(flags.stateDir ?? s.one(undefined, 'state-dir')) };
        } catch {
          where = undefined;
        }
        const usage = e instanceof AirlockError && (e.code === 'usage' || e.code === 'config-invalid');
        if (where?.site !== undefined && !usage) recordRun(where.stateDir, 'export', where.site, e, clockNow());
        throw e;
      }
    });
}
