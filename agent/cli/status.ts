/*
 * airlock status: backup health with Nagios exit codes (0 ok, 1 warning, 2 critical, 3 unknown),
 * optionally written as a Prometheus text file for node_exporter's textfile collector.
 */
import type { Command } from 'commander';
import { AirlockError, exitCodeOf } from '../../manifests/errors.js';
import { writeFileAtomic } from '../../manifests/atomic.js';
import { escapeText } from '../../manifests/escape.js';
import { Catalog, resolveStateDir } from '../catalog.js';
import { now } from '../clock.js';
import { queryJson } from '../sources/postgres/server.js';
import { LEVEL_EXIT, collectStatus, nagiosUnknown, prometheusDown, prometheusText, statusText, type ServerWal, type Status } from '../status.js';
import { command, resolveOptions, type Flags } from './options.js';

/** The thresholds come from the config file only (seconds, and shares of the spool's size). */
interface StatusFlags {
  site: string;
  stateDir?: string;
  walSpool?: string;
  pg?: string;
  prometheus?: string;
  json?: boolean;
  walAgeWarning: number;
  walAgeCritical: number;
  offsiteRpoWarning: number;
  offsiteRpoCritical: number;
  spoolFreeWarning: number;
  spoolFreeCritical: number;
}

async function statusCommand(flags: StatusFlags): Promise<number> {
  const { site, walSpool: spool, pg } = flags;
  let archiver: Status['archiver'];
  let archiverError: string | undefined;
  let server: ServerWal | undefined;
  if (pg !== undefined) {
    try {
      const row = await queryJson<{
        failed: number;
        lastFailedWal: string | null;
        failing: boolean;
        lastWal: string | null;
        lastTime: string | null;
        insertLsn: string;
        segmentSize: number;
      } | null>(
        { conninfo: pg },
        `SELECT json_build_object('failed', failed_count, 'lastFailedWal', last_failed_wal, 'failing', coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false),
          'lastWal', last_archived_wal, 'lastTime', to_char(last_archived_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
          'insertLsn', pg_current_wal_insert_lsn(), 'segmentSize', (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')::bigint)
        FROM pg_stat_archiver`,
      );
      archiver = { failedCount: row?.failed ?? 0, lastFailedWal: row?.lastFailedWal ?? null, failingNow: row?.failing === true };
      const { lastWal, lastTime, insertLsn = '', segmentSize = 0 } = row ?? {};
      if (/^[0-9A-F]+\/[0-9A-F]+$/.test(insertLsn) && segmentSize > 0)
        server = { insertLsn, segmentSize, lastArchived: lastWal && lastTime ? { name: lastWal, time: lastTime } : null };
    } catch (e) {
      archiverError = (e as Error).message;
    }
  }
  const catalog = Catalog.open(resolveStateDir(flags.stateDir));
  const thresholds = {
    walAgeWarning: flags.walAgeWarning,
    walAgeCritical: flags.walAgeCritical,
    offsiteWarning: flags.offsiteRpoWarning,
    offsiteCritical: flags.offsiteRpoCritical,
    spoolFreeWarning: flags.spoolFreeWarning,
    spoolFreeCritical: flags.spoolFreeCritical,
  };
  let status: Status;
  try {
    status = collectStatus({
      catalog,
      site,
      spool,
      now: now(),
      thresholds,
      ...(archiver ? { archiver } : {}),
      ...(server ? { server } : {}),
      ...(archiverError !== undefined ? { archiverError } : {}),
    });
  } finally {
    catalog.close();
  }
  if (flags.prometheus !== undefined) await writeFileAtomic(flags.prometheus, prometheusText(status));
  process.stdout.write(flags.json ? `${JSON.stringify(status)}\n` : statusText(status, thresholds));
  return LEVEL_EXIT[status.level];
}

export function register(program: Command): void {
  command(program, 'status', 'backup health: job results, WAL age and spool space, unexported data, verified media, both RPOs; Nagios exit codes')
    .addHelpText('after', '\nExit status (Nagios): 0 ok, 1 warning, 2 critical, 3 unknown (also for a usage error).')
    .action(async (raw: Flags) => {
      let code: number;
      let flags: StatusFlags | undefined;
      try {
        flags = resolveOptions<StatusFlags>('status', raw);
        code = await statusCommand(flags);
      } catch (e) {
        // a status that cannot be taken is "unknown" to a monitoring system
        const { printError } = await import('./common.js');
        printError(e, raw.json === true);
        code = e instanceof AirlockError && exitCodeOf(e) === 130 ? 130 : LEVEL_EXIT.unknown;
        // the monitoring system still gets an answer: a plugin line, and a file that says "down"
        // (the site for its file: the flag or the config's, else the flag alone when the config is unreadable)
        if (raw.json !== true) process.stdout.write(`${escapeText(nagiosUnknown(e instanceof Error ? e.message : String(e)))}\n`);
        const site = flags?.site ?? (typeof raw.site === 'string' ? raw.site : undefined);
        if (typeof raw.prometheus === 'string') await writeFileAtomic(raw.prometheus, prometheusDown(site)).catch((w: unknown) => printError(w));
      }
      process.exitCode = code;
    });
}
