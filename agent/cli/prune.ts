/*
 * airlock prune: frees the WAL spool of files that enough verified media already hold.
 *
 * A spooled WAL file goes only when a finished bundle of the site carries it and that bundle was
 * read back and verified on at least --min-copies distinct media (counted by medium UUID, so the
 * same medium mounted at two paths counts once). Anything else stays, whatever its age: the spool
 * may be the only copy. --dry-run lists what would go.
 */
import { unlinkSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import { Catalog, resolveStateDir } from '../catalog.js';
import { now } from '../clock.js';
import { fsyncDir } from '../fsutil.js';
import { recordRun } from '../jobs.js';
import { SIDECAR_SUFFIX } from '../spool.js';
import { parseDuration } from '../config.js';
import { Settings, note } from './common.js';

interface PruneFlags {
  site?: string;
  stateDir?: string;
  walSpool?: string;
  minCopies?: string;
  retention?: string;
  dryRun?: boolean;
  config?: string;
  json?: boolean;
}

export const DEFAULT_MIN_COPIES = 2;
/** How long the catalog remembers pruned WAL files and job runs. */
export const DEFAULT_RETENTION = '400d';

async function pruneCommand(flags: PruneFlags): Promise<void> {
  const s = new Settings(flags.config);
  const site = s.required(flags.site, 'site', 'give --site SITE');
  const spool = path.resolve(s.required(flags.walSpool, 'spool', 'give --wal-spool DIR'));
  const text = s.one(flags.minCopies, 'min-copies') ?? String(DEFAULT_MIN_COPIES);
  const minCopies = Number(text);
  if (!Number.isInteger(minCopies) || minCopies < 1) throw new AirlockError('usage', `--min-copies ${text}: not a number of media`);
  const retentionText = s.one(flags.retention, 'retention') ?? DEFAULT_RETENTION;
  const retention = parseDuration(retentionText);
  if (retention === undefined || retention <= 0) throw new AirlockError('usage', `--retention ${retentionText}: not a duration like 400d`);
  const stateDir = resolveStateDir(flags.stateDir ?? s.one(undefined, 'state-dir'));
  const catalog = Catalog.open(stateDir);
  const removed: string[] = [];
  let bytes = 0;
  let forgotten = { wal: 0, jobs: 0 };
  try {
    const rows = catalog.prunableWal(site, minCopies);
    for (const row of rows) {
      // only what the catalog took from this spool, under its own name
      if (path.dirname(row.spooled_path) !== spool || path.basename(row.spooled_path) !== row.name) continue;
      if (!flags.dryRun) {
        for (const f of [row.spooled_path, `${row.spooled_path}${SIDECAR_SUFFIX}`]) {
          try {
            unlinkSync(f);
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(e, f, 'io');
          }
        }
        catalog.markPruned(row.name, now());
      }
      removed.push(row.name);
      bytes += row.size;
    }
    if (!flags.dryRun && removed.length > 0) await fsyncDir(spool);
    if (!flags.dryRun) forgotten = catalog.expire(new Date(now().getTime() - retention * 1000));
    if (!flags.dryRun) recordRun(stateDir, 'prune', site, undefined, now(), note);
  } catch (e) {
    if (!flags.dryRun) recordRun(stateDir, 'prune', site, e, now(), note);
    throw e;
  } finally {
    catalog.close();
  }
  if (flags.json) process.stdout.write(`${JSON.stringify({ site, minCopies, dryRun: flags.dryRun === true, removed, bytes, forgotten })}\n`);
  else {
    for (const n of removed) process.stdout.write(`${flags.dryRun ? 'would remove' : 'removed'}: ${n}\n`);
    process.stderr.write(`airlock: ${removed.length} WAL file(s), ${bytes} bytes ${flags.dryRun ? 'would be' : 'were'} removed from the spool; only files on at least ${minCopies} verified media go\n`);
    if (forgotten.wal + forgotten.jobs > 0) process.stderr.write(`airlock: the catalog forgot ${forgotten.wal} pruned WAL record(s) and ${forgotten.jobs} job run(s) older than ${retentionText}\n`);
  }
}

export function register(program: Command): void {
  program
    .command('prune')
    .description('remove spooled WAL that bundles verified on enough media (by UUID) already hold; never the only copy')
    .option('--site <site>', 'the site id')
    .option('--wal-spool <dir>', 'the WAL spool')
    .option('--min-copies <n>', `verified media a bundle must be on before its WAL leaves the spool (default ${DEFAULT_MIN_COPIES})`)
    .option('--retention <duration>', `the catalog's window: pruned WAL records and job runs older than this are forgotten (default ${DEFAULT_RETENTION})`)
    .option('--dry-run', 'list what would be removed, remove nothing')
    .option('--state-dir <dir>', 'the state folder (default $AIRLOCK_STATE_DIR or /var/lib/airlock)')
    .option('--config <file>', 'read settings from this config file (flags win)')
    .option('--json', 'print the result as JSON')
    .action(pruneCommand);
}
