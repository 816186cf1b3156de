/*
 * airlock status: backup health with Nagios exit codes (0 ok, 1 warning, 2 critical, 3 unknown),
 * optionally written as a Prometheus text file for node_exporter's textfile collector.
 */
import type { Command } from 'commander';
import { AirlockError, exitCodeOf } from '../../manifests/errors.js';
import { escapeText } from '../../manifests/escape.js';
import { writeFileAtomic } from '../../verifier/atomic.js';
import { Catalog, resolveStateDir } from '../catalog.js';
import { now } from '../clock.js';
import { parseDuration } from '../config.js';
import { queryJson } from '../sources/postgres/server.js';
import { DEFAULT_THRESHOLDS, LEVEL_EXIT, collectStatus, nagiosUnknown, prometheusDown, prometheusText, statusText, type ServerWal, type Status, type Thresholds } from '../status.js';
import { Settings } from './common.js';

/** The site for a "down" metrics file: the flag, else the config's, else none when the config is unreadable. */
function siteOf(flags: StatusFlags): string | undefined {
  try {
    return flags.site ?? new Settings(flags.config).one(undefined, 'site');
  } catch {
    return undefined;
  }
}

interface StatusFlags {
  site?: string;
  stateDir?: string;
  walSpool?: string;
  pg?: string;
  prometheus?: string;
  config?: string;
  json?: boolean;
}

function thresholds(s: Settings): Thresholds {
  const t = { ...DEFAULT_THRESHOLDS };
  const seconds = (key: string, field: 'walAgeWarning' | 'walAgeCritical' | 'offsiteWarning' | 'offsiteCritical') => {
    const v = s.one(undefined, key);
    if (v !== undefined) t[field] = parseDuration(v) as number;
  };
  seconds('wal-age-warning', 'walAgeWarning');
  seconds('wal-age-critical', 'walAgeCritical');
  seconds('offsite-rpo-warning', 'offsiteWarning');
  seconds('offsite-rpo-critical', 'offsiteCritical');
  const pct = (key: string, field: 'spoolFreeWarning' | 'spoolFreeCritical') => {
    const v = s.one(undefined, key);
    if (v !== undefined) t[field] = Number(v.replace(/%$/, '')) / 100;
  };
  pct('spool-free-warning', 'spoolFreeWarning');
  pct('spool-free-critical', 'spoolFreeCritical');
  return t;
}

async function statusCommand(flags: StatusFlags): Promise<number> {
  const s = new Settings(flags.config);
  const site = s.required(flags.site, 'site', 'give --site SITE');
  const spool = s.one(flags.walSpool, 'spool');
  const pg = s.one(flags.pg, 'pg');
  let archiver: Status['archiver'];
  let archiverError: string | undefined;
  let server: ServerWal | undefined;
  if (pg !== undefined) {
    try {
      const row = await queryJson<{ failed: number; lastFailedWal: string | null; failing: boolean; lastWal: string | null; lastTime: string | null; insertLsn: string; segmentSize: number } | null>(
        { conninfo: pg },
        `SELECT json_build_object('failed', failed_count, 'lastFailedWal', last_failed_wal, 'failing', coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false),
          'lastWal', last_archived_wal, 'lastTime', to_char(last_archived_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
          'insertLsn', pg_current_wal_insert_lsn(), 'segmentSize', (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')::bigint)
        FROM pg_stat_archiver`,
      );
      archiver = { failedCount: row?.failed ?? 0, lastFailedWal: row?.lastFailedWal ?? null, failingNow: row?.failing === true };
      const { lastWal, lastTime, insertLsn = '', segmentSize = 0 } = row ?? {};
      if (/^[0-9A-F]+\/[0-9A-F]+$/.test(insertLsn) && segmentSize > 0) server = { insertLsn, segmentSize, lastArchived: lastWal && lastTime ? { name: lastWal, time: lastTime } : null };
    } catch (e) {
      archiverError = (e as Error).message;
    }
  }
  const limits = thresholds(s);
  const catalog = Catalog.open(resolveStateDir(flags.stateDir ?? s.one(undefined, 'state-dir')));
  let status: Status;
  try {
    status = collectStatus({ catalog, site, spool, now: now(), thresholds: limits, ...(archiver ? { archiver } : {}), ...(server ? { server } : {}), ...(archiverError !== undefined ? { archiverError } : {}) });
  } finally {
    catalog.close();
  }
  if (flags.prometheus !== undefined) await writeFileAtomic(flags.prometheus, prometheusText(status));
  process.stdout.write(flags.json ? `${JSON.stringify(status)}\n` : statusText(status, limits));
  return LEVEL_EXIT[status.level];
}

export function register(program: Command): void {
  program
    .command('status')
    .description('backup health: job results, WAL age and spool space, unexported data, verified media, both RPOs; Nagios exit codes')
    .option('--site <site>', 'the site id')
    .option('--state-dir <dir>', 'the state folder (default $AIRLOCK_STATE_DIR or /var/lib/airlock)')
    .option('--wal-spool <dir>', 'the WAL spool')
    .option('--pg <conninfo>', 'ask the server too: pg_stat_archiver, and whether it wrote WAL that is not in the spool yet (the exact on-appliance RPO)')
    .option('--prometheus <file>', 'also write the figures as a Prometheus text file (atomically)')
    .option('--config <file>', 'read settings and thresholds from this config file (flags win)')
    .option('--json', 'print the status as JSON')
    .addHelpText('after', '\nExit status (Nagios): 0 ok, 1 warning, 2 critical, 3 unknown (also for a usage error).')
    .action(async (flags: StatusFlags) => {
      let code: number;
      try {
        code = await statusCommand(flags);
      } catch (e) {
        // a status that cannot be taken is "unknown" to a monitoring system
        const { printError } = await import('./common.js');
        printError(e);
        code = e instanceof AirlockError && exitCodeOf(e) === 130 ? 130 : LEVEL_EXIT.unknown;
        // the monitoring system still gets an answer: a plugin line, and a file that says "down"
        if (!flags.json) process.stdout.write(`${escapeText(nagiosUnknown(e instanceof Error ? e.message : String(e)))}\n`);
        if (flags.prometheus !== undefined) await writeFileAtomic(flags.prometheus, prometheusDown(siteOf(flags))).catch((w: unknown) => printError(w));
      }
      process.exitCode = code;
    });
}
