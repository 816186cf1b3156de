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
import { fromSystemError } from '../../manifests/errors.js';
import { Catalog, resolveStateDir } from '../catalog.js';
import { now } from '../clock.js';
import { fsyncDir } from '../fsutil.js';
import { recordRun } from '../jobs.js';
import { SIDECAR_SUFFIX } from '../spool.js';
import { formatDuration } from '../options.js';
import { note } from './common.js';
import { command, resolveOptions, type Flags } from './options.js';

interface PruneFlags {
  site: string;
  stateDir?: string;
  walSpool: string;
  minCopies: number;
  /** how long the catalog remembers pruned WAL files and job runs, in seconds */
  retention: number;
  dryRun?: boolean;
  json?: boolean;
}

async function pruneCommand(flags: PruneFlags): Promise<void> {
  const { site, minCopies, retention } = flags;
  const spool = path.resolve(flags.walSpool);
  const stateDir = resolveStateDir(flags.stateDir);
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
    process.stderr.write(
      `airlock: ${removed.length} WAL file(s), ${bytes} bytes ${flags.dryRun ? 'would be' : 'were'} removed from the spool; only files on at least ${minCopies} verified media go\n`,
    );
    if (forgotten.wal + forgotten.jobs > 0)
      process.stderr.write(
        `airlock: the catalog forgot ${forgotten.wal} pruned WAL record(s) and ${forgotten.jobs} job run(s) older than ${formatDuration(retention)}\n`,
      );
  }
}

export function register(program: Command): void {
  command(program, 'prune', 'remove spooled WAL that bundles verified on enough media (by UUID) already hold; never the only copy').action((flags: Flags) =>
    pruneCommand(resolveOptions<PruneFlags>('prune', flags)),
  );
}
