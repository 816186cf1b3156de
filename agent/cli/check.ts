/*
 * airlock check: a pre-flight of the PostgreSQL side before the first export. It reads the server's
 * settings and the role's rights, asks the client programs for their versions and looks at the
 * spool, then prints one line per check (ok, warning, problem) and exits 1 when any check failed: a
 * server major airlock does not support, or client programs older than the server, are problems.
 */
import { accessSync, constants, statfsSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { runChild } from '../../manifests/child.js';
import { AirlockError } from '../../manifests/errors.js';
import { clientBin, program as pgProgram, queryJson, type Connection } from '../sources/postgres/server.js';
import { SUPPORTED_MAJORS, SUPPORTED_TEXT } from '../postgres/wal.js';
import { human } from './common.js';
import { command, resolveOptions, type Flags } from './options.js';

interface CheckFlags {
  pg: string;
  walSpool?: string;
  pgBin?: string;
  maxArchiveTimeout: number;
  json?: boolean;
}

export interface CheckLine {
  check: string;
  result: 'ok' | 'warning' | 'problem';
  message: string;
}

/** The major version a PostgreSQL program says it is, or undefined when it is missing or does not say. */
async function clientMajor(file: string): Promise<number | undefined> {
  const r = await runChild(file, ['--version'], { capture: true }).catch(() => undefined);
  const m = r?.code === 0 ? /\(PostgreSQL\) (\d+)/.exec(r.stdout.toString('utf8')) : null;
  return m ? Number(m[1]) : undefined;
}

/** Runs every check against the server and spool; never throws for a failed check, only for bad usage. */
export async function runChecks(conn: Connection, spool: string | undefined, maxArchiveTimeout: number): Promise<CheckLine[]> {
  const out: CheckLine[] = [];
  const add = (check: string, ok: boolean | 'warning', message: string) =>
    out.push({ check, result: ok === true ? 'ok' : ok === false ? 'problem' : 'warning', message });
  interface Row {
    num: number;
    version: string;
    walLevel: string;
    archiveMode: string;
    archiveCommand: string;
    archiveTimeout: number;
    senders: number;
    superuser: boolean;
    replication: boolean;
    readSettings: boolean;
    canPoint: boolean;
    canSwitch: boolean;
    failed: number;
    lastFailedWal: string | null;
    failing: boolean;
  }
  let row: Row | null;
  try {
    row = await queryJson<Row | null>(
      conn,
      `SELECT json_build_object('num', current_setting('server_version_num')::int, 'version', version(), 'walLevel', current_setting('wal_level'),
              'archiveMode', current_setting('archive_mode'), 'archiveCommand', current_setting('archive_command'),
              'archiveTimeout', (SELECT setting FROM pg_settings WHERE name = 'archive_timeout')::int, 'senders', current_setting('max_wal_senders')::int,
              'superuser', r.rolsuper, 'replication', r.rolreplication, 'readSettings', pg_has_role('pg_read_all_settings', 'member'),
              'canPoint', has_function_privilege('pg_create_restore_point(text)', 'execute'), 'canSwitch', has_function_privilege('pg_switch_wal()', 'execute'),
              'failed', a.failed_count, 'lastFailedWal', a.last_failed_wal, 'failing', coalesce(a.last_failed_time > coalesce(a.last_archived_time, '-infinity'), false))
         FROM pg_roles r, pg_stat_archiver a WHERE r.rolname = current_user`,
    );
  } catch (e) {
    add('connection', false, (e as Error).message);
    return out;
  }
  if (!row || typeof row.num !== 'number' || typeof row.archiveCommand !== 'string') {
    add('connection', false, 'unexpected answer from the server');
    return out;
  }
  const {
    walLevel,
    archiveMode,
    archiveCommand,
    archiveTimeout,
    senders,
    superuser: su,
    replication,
    readSettings,
    canPoint,
    canSwitch,
    failed,
    lastFailedWal,
    failing,
  } = row;
  const major = Math.floor(row.num / 10000);
  add('connection', true, `PostgreSQL ${major} answers (${row.version})`);
  const supported = SUPPORTED_MAJORS.includes(major);
  add(
    'version',
    supported,
    supported
      ? `PostgreSQL ${major} is supported (${SUPPORTED_TEXT.replace('postgresql', 'PostgreSQL')})`
      : `PostgreSQL ${major} is not supported: airlock archives, exports and restores ${SUPPORTED_TEXT.replace('postgresql', 'PostgreSQL')} only`,
  );
  add('wal_level', walLevel !== 'minimal', `wal_level = ${walLevel}${walLevel === 'minimal' ? ': set replica' : ''}`);
  add('archive_mode', archiveMode === 'on' || archiveMode === 'always', `archive_mode = ${archiveMode}${archiveMode === 'off' ? ': set on and restart' : ''}`);
  const helper = archiveCommand.includes('airlock-wal-push');
  const walPush = helper
    ? 'archive_command runs airlock-wal-push'
    : 'archive_command runs airlock wal-push (node starts for every segment; dist/native/airlock-wal-push does the same work about 3x faster)';
  add(
    'archive_command',
    archiveCommand.includes('wal-push'),
    archiveCommand.includes('wal-push')
      ? walPush
      : `archive_command = '${archiveCommand}': set it to '/path/to/airlock/dist/native/airlock-wal-push %p --spool DIR' (or 'airlock wal-push %p --spool DIR')`,
  );
  const timeout = archiveTimeout;
  add(
    'archive_timeout',
    timeout > 0 && timeout <= maxArchiveTimeout,
    `archive_timeout = ${timeout} s${timeout === 0 || timeout > maxArchiveTimeout ? `: set at most ${maxArchiveTimeout} s, or an idle server keeps its last changes out of the spool (the on-appliance RPO)` : ''}`,
  );
  add('max_wal_senders', senders > 0, `max_wal_senders = ${senders}${senders > 0 ? '' : ': pg_basebackup needs at least 1'}`);
  add(
    'role: replication',
    su || replication,
    su ? 'superuser' : replication ? 'the role may stream base backups' : 'the role lacks REPLICATION: ALTER ROLE ... REPLICATION for --pg-base',
  );
  add(
    'role: settings',
    su || readSettings,
    su || readSettings
      ? 'the role reads the data folder and config file paths'
      : 'grant pg_read_all_settings so config files outside the data folder are carried',
  );
  add(
    'role: restore point',
    canPoint && canSwitch,
    canPoint && canSwitch
      ? 'the role may create restore points and switch WAL'
      : 'GRANT EXECUTE ON FUNCTION pg_create_restore_point(text), pg_switch_wal() TO the role',
  );
  add(
    'role: globals',
    su ? true : 'warning',
    su ? 'pg_dumpall --globals-only includes role passwords' : 'not a superuser: the globals dump leaves role passwords out (--no-role-passwords)',
  );
  add(
    'pg_stat_archiver',
    failing ? false : failed > 0 ? 'warning' : true,
    failing ? `archiving fails now (last failed ${lastFailedWal}); read the server log` : `${failed} failure(s) since the statistics were reset`,
  );

  const bin = conn.bin ?? clientBin(major);
  for (const tool of ['pg_basebackup', 'pg_dump', 'pg_dumpall', 'psql']) {
    const file = bin === undefined ? pgProgram(conn, tool) : `${bin}/${tool}`;
    const v = await clientMajor(file);
    add(
      `tool: ${tool}`,
      v !== undefined && v >= major,
      v === undefined
        ? `${file} not found`
        : `${file} is version ${v}${v < major ? `, older than the server's ${major}: install postgresql-client-${major}` : ''}`,
    );
  }
  if (spool !== undefined) {
    try {
      if (!statSync(spool).isDirectory()) throw new Error('not a folder');
      accessSync(spool, constants.R_OK | constants.W_OK);
      const fs = statfsSync(spool);
      const free = fs.bavail * fs.bsize;
      add(
        'spool',
        free > 1024 ** 3 ? true : 'warning',
        `${spool}: ${human(free)} free${free > 1024 ** 3 ? '' : '; when it is full archiving stops and pg_wal grows'}`,
      );
    } catch (e) {
      add('spool', false, `${spool}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  return out;
}

async function checkCommand(flags: CheckFlags): Promise<void> {
  const bin = flags.pgBin;
  const lines = await runChecks({ conninfo: flags.pg, ...(bin !== undefined ? { bin } : {}) }, flags.walSpool, flags.maxArchiveTimeout);
  const problems = lines.filter((l) => l.result === 'problem').length;
  if (flags.json) process.stdout.write(`${JSON.stringify({ status: problems > 0 ? 'problem' : 'ok', checks: lines })}\n`);
  else {
    for (const l of lines) process.stdout.write(`${l.result}: ${l.check}: ${l.message}\n`);
    process.stdout.write(`${lines.length} check(s), ${problems} problem(s), ${lines.filter((l) => l.result === 'warning').length} warning(s)\n`);
  }
  if (problems > 0)
    throw new AirlockError('check-failed', `${problems} pre-flight check(s) failed`, { hint: 'fix the lines marked problem, then run airlock check again' });
}

export function register(program: Command): void {
  command(program, 'check', 'pre-flight: are the server, the role, the client programs and the spool ready for exports').action((flags: Flags) =>
    checkCommand(resolveOptions<CheckFlags>('check', flags)),
  );
}
