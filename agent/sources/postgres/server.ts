/*
 * Talking to the PostgreSQL server through its own client programs (psql, pg_basebackup, pg_dump),
 * each spawned with an argument list, never a shell string. The connection is a libpq connection
 * string or URL given as the `-d` argument; a password comes from a pgpass file (PGPASSFILE) or the
 * environment (PGPASSWORD), never from argv, and `-w` makes every program fail instead of prompting.
 *
 * The programs are taken from the server's own major version folder when it exists (Debian keeps one
 * per version in /usr/lib/postgresql/N/bin), so pg_dump is never older than the server.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { AirlockError } from '../../../manifests/errors.js';
import { clientEnv } from '../../postgres/programs.js';

export interface Connection {
  /** a libpq connection string ("host=/run/postgresql dbname=postgres") or URL */
  conninfo: string;
  /** the folder of the client programs; undefined: the server's version folder, else PATH */
  bin?: string;
}

/** The client program `name` for `conn`. */
export function program(conn: Connection, name: string): string {
  return conn.bin === undefined ? name : path.join(conn.bin, name);
}

/** The connection string for another database on the same server. */
export function withDatabase(conninfo: string, dbname: string): string {
  // a later keyword wins in libpq; a URL takes the database as a parameter the same way
  const quoted = `'${dbname.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  if (/^postgres(ql)?:\/\//.test(conninfo)) return `${conninfo}${conninfo.includes('?') ? '&' : '?'}dbname=${encodeURIComponent(dbname)}`;
  return `${conninfo} dbname=${quoted}`;
}

const FIELD = '\x1f';

/**
 * Refuses a connection string that carries a password: it would sit in argv (visible in ps) or in
 * the config file. Throws `usage`.
 */
export function assertNoPassword(conninfo: string): void {
  if (/(^|\s)password\s*=/i.test(conninfo) || /^postgres(ql)?:\/\/[^/@]*:[^/@]*@/i.test(conninfo) || /[?&]password=/i.test(conninfo)) {
    throw new AirlockError('usage', 'the PostgreSQL connection string carries a password', { hint: 'leave it out and put it in a pgpass file named by PGPASSFILE (mode 0600), or in PGPASSWORD' });
  }
}

/**
 * Runs one SQL text through psql and returns its rows (fields split, no header). Throws `pg-failed`
 * with psql's message when the server refuses or the connection fails, `not-found` without psql.
 */
export function query(conn: Connection, sql: string, signal?: AbortSignal): Promise<string[][]> {
  assertNoPassword(conn.conninfo);
  const args = ['-X', '-w', '-q', '-A', '-t', '-0', '-F', FIELD, '-v', 'ON_ERROR_STOP=1', '-d', conn.conninfo, '-c', sql];
  return new Promise((resolve, reject) => {
    const child = spawn(program(conn, 'psql'), args, { stdio: ['ignore', 'pipe', 'pipe'], env: clientEnv(), ...(signal ? { signal } : {}) });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      err = (err + d).slice(-4096);
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      reject(e.code === 'ENOENT' ? new AirlockError('not-found', `${program(conn, 'psql')}: command not found`, { hint: 'install the PostgreSQL client (Debian: postgresql-client-15), or give --pg-bin' }) : e);
    });
    child.on('close', (code) => {
      if (code !== 0) {
        const line = err.trim().split('\n').filter((l) => l.trim() !== '').at(-1) ?? `psql exited with status ${code}`;
        reject(new AirlockError('pg-failed', `postgresql: ${line.replace(/^psql: (error: )?/, '')}`, { hint: 'check --pg (the connection), that the server runs, and the role\'s rights (airlock check lists what is needed)' }));
        return;
      }
      const text = Buffer.concat(out).toString('utf8');
      resolve(text.split('\0').filter((r) => r !== '' && r !== '\n').map((r) => r.replace(/^\n/, '').split(FIELD)));
    });
  });
}

/** The first field of the first row, or throws `pg-failed` when the query returned nothing. */
export async function scalar(conn: Connection, sql: string, signal?: AbortSignal): Promise<string> {
  const rows = await query(conn, sql, signal);
  const v = rows[0]?.[0];
  if (v === undefined) throw new AirlockError('pg-failed', `postgresql returned no row for: ${sql}`);
  return v;
}

/** What the export records about the server, and what it needs to decide. */
export interface ServerInfo {
  versionNum: number;
  major: number;
  version: string;
  systemIdentifier: string;
  segmentSize: number;
  dataChecksums: boolean;
  timeline: number;
  superuser: boolean;
  dataDirectory: string | undefined;
  /** postgresql.conf, pg_hba.conf and pg_ident.conf when they live outside the data folder */
  configFiles: string[];
  /** tablespaces besides pg_default and pg_global */
  tablespaces: string[];
  /** databases that accept connections, templates left out */
  databases: string[];
  collation: { provider: string; collate: string; ctype: string; version: string | null }[];
  archiveMode: string;
  walLevel: string;
  currentDatabase: string;
}

/** Reads what the export needs to know about the server in one round trip. */
export async function serverInfo(conn: Connection, signal?: AbortSignal): Promise<ServerInfo> {
  const row = (
    await query(
      conn,
      `SELECT current_setting('server_version_num'), version(), (SELECT system_identifier FROM pg_control_system()),
              (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'), current_setting('data_checksums'),
              ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint,
              (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
              CASE WHEN pg_has_role('pg_read_all_settings', 'member') THEN current_setting('data_directory') END,
              CASE WHEN pg_has_role('pg_read_all_settings', 'member') THEN concat_ws(chr(10), current_setting('config_file'), current_setting('hba_file'), current_setting('ident_file')) END,
              (SELECT string_agg(spcname, chr(10) ORDER BY spcname) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')),
              (SELECT string_agg(datname, chr(10) ORDER BY datname) FROM pg_database WHERE datallowconn AND NOT datistemplate),
              (SELECT string_agg(concat_ws(chr(9), datname, datlocprovider, datcollate, datctype, coalesce(datcollversion, '')), chr(10) ORDER BY datname) FROM pg_database WHERE datallowconn),
              current_setting('archive_mode'), current_setting('wal_level'), current_database()`,
      signal,
    )
  )[0];
  if (!row || row.length !== 15) throw new AirlockError('pg-failed', 'postgresql: unexpected answer to the server information query');
  const [num, version, sysid, segsize, checksums, tli, superuser, datadir, configs, spaces, dbs, colls, archiveMode, walLevel, currentDatabase] = row as [string, string, string, string, string, string, string, string, string, string, string, string, string, string, string];
  const versionNum = Number(num);
  const lines = (s: string) => (s === '' ? [] : s.split('\n'));
  const dataDirectory = datadir === '' ? undefined : datadir;
  return {
    versionNum,
    major: Math.floor(versionNum / 10000),
    version,
    systemIdentifier: sysid,
    segmentSize: Number(segsize),
    dataChecksums: checksums === 'on',
    timeline: Number(tli),
    superuser: superuser === 't',
    dataDirectory,
    configFiles: dataDirectory === undefined ? [] : lines(configs).filter((f) => !f.startsWith(`${dataDirectory}/`)),
    tablespaces: lines(spaces),
    databases: lines(dbs),
    collation: lines(colls).map((l) => {
      const [, provider = '', collate = '', ctype = '', v = ''] = l.split('\t');
      return { provider: provider === 'i' ? 'icu' : 'libc', collate, ctype, version: v === '' ? null : v };
    }),
    archiveMode,
    walLevel,
    currentDatabase,
  };
}
