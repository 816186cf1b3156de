/*
 * Talking to the PostgreSQL server through its own client programs (psql, pg_basebackup, pg_dump),
 * each spawned with an argument list, never a shell string. The connection is a libpq connection
 * string or URL given as the `-d` argument; a password comes from a pgpass file (PGPASSFILE) or the
 * environment (PGPASSWORD), never from argv, and `-w` makes every program fail instead of prompting.
 *
 * Design: psql is airlock's one way to send SQL, not a driver of its own. Every program airlock runs
 * is then the same libpq reading the same connection string, so keyword/value strings and URLs,
 * service files (PGSERVICEFILE), sslmode and its certificates, and pgpass mean exactly the same to
 * the queries as to pg_basebackup and pg_dump: a connection that works for one works for all. The
 * cost is psql's text output, which is made unambiguous by asking every query for one JSON value
 * (json_build_object, json_agg), printed alone: names with newlines, separators or any other
 * character come back intact, and NULL is null, not an empty string.
 *
 * The programs are taken from the server's own major version folder when it exists (Debian keeps one
 * per version in /usr/lib/postgresql/N/bin), else a newer one, so pg_dump is never older than the
 * server.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { runChild } from '../../../manifests/child.js';
import { AirlockError } from '../../../manifests/errors.js';
import { clientEnv, psqlFailure, versionBin } from '../../postgres/programs.js';
import { SUPPORTED_MAJORS, SUPPORTED_TEXT } from '../../postgres/wal.js';

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

const DEBIAN_LIB = '/usr/lib/postgresql';

/**
 * The client programs for a server of `major`: its own version's folder, else the oldest installed
 * newer one (pg_dump and pg_basebackup read older servers, never newer ones); undefined when neither
 * is installed (PATH then).
 */
export function clientBin(major: number): string | undefined {
  let installed: number[] = [];
  try {
    installed = readdirSync(DEBIAN_LIB)
      .filter((d) => /^\d+$/.test(d))
      .map(Number);
  } catch {
    // not the Debian layout
  }
  const candidates = installed.filter((m) => m >= major).sort((a, b) => a - b);
  for (const m of candidates) {
    const dir = versionBin(m);
    if (dir !== undefined) return dir;
  }
  return undefined;
}

/** Throws `pg-unsupported` for a server major airlock does not support. */
export function assertSupportedMajor(major: number, version: string): void {
  if (!SUPPORTED_MAJORS.includes(major)) {
    throw new AirlockError('pg-unsupported', `the server is postgresql ${major} (${version}), which airlock does not support (${SUPPORTED_TEXT})`, {
      hint: 'airlock reads and checks the wal of the versions it knows only; run a supported version, or an airlock release that supports this one',
    });
  }
}

/** The connection string for another database on the same server. */
export function withDatabase(conninfo: string, dbname: string): string {
  // a later keyword wins in libpq; a URL takes the database as a parameter the same way
  const quoted = `'${dbname.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  if (/^postgres(ql)?:\/\//.test(conninfo)) return `${conninfo}${conninfo.includes('?') ? '&' : '?'}dbname=${encodeURIComponent(dbname)}`;
  return `${conninfo} dbname=${quoted}`;
}

/**
 * Refuses a connection string that carries a password: it would sit in argv (visible in ps) or in
 * the config file. Throws `usage`.
 */
export function assertNoPassword(conninfo: string): void {
  if (/(^|\s)password\s*=/i.test(conninfo) || /^postgres(ql)?:\/\/[^/@]*:[^/@]*@/i.test(conninfo) || /[?&]password=/i.test(conninfo)) {
    throw new AirlockError('usage', 'the PostgreSQL connection string carries a password', {
      hint: 'leave it out and put it in a pgpass file named by PGPASSFILE (mode 0600), or in PGPASSWORD',
    });
  }
}

/**
 * Runs SQL through psql whose (last) statement returns one row of one JSON value, and returns it
 * parsed. Throws `pg-failed` with the server's error line when the server refuses or the connection
 * fails (psql stops at the first error), or when the answer is not one JSON value; `not-found`
 * without psql.
 */
export async function queryJson<T>(conn: Connection, sql: string, signal?: AbortSignal): Promise<T> {
  assertNoPassword(conn.conninfo);
  const args = ['-X', '-w', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=terse', '-d', conn.conninfo, '-c', sql];
  // the answer in UTF-8 whatever the locale or the server's encoding, so JSON.parse reads it as sent
  const r = await runChild(program(conn, 'psql'), args, {
    env: { ...clientEnv(), PGCLIENTENCODING: 'UTF8' },
    capture: true,
    install: "install the PostgreSQL client of the server's major version (Debian: postgresql-client-N), or give --pg-bin",
    ...(signal ? { signal } : {}),
  });
  if (r.code !== 0) {
    throw new AirlockError('pg-failed', `postgresql: ${psqlFailure(r.stderr, r.code)}`, {
      hint: "check --pg (the connection), that the server runs, and the role's rights (airlock check lists what is needed)",
    });
  }
  const text = r.stdout.toString('utf8').trim();
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new AirlockError('pg-failed', `postgresql: the answer to a query is not one json value: ${JSON.stringify(text.slice(0, 200))}`, {
      hint: 'check that --pg reaches a postgresql server and that psql is its client',
    });
  }
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

const PROVIDERS: Readonly<Record<string, string>> = { c: 'libc', i: 'icu', b: 'builtin' };

/**
 * Reads what the export needs to know about the server in one round trip. The same SQL runs on every
 * supported major: the columns only some have (datlocprovider, datcollversion: 15 on) are read from
 * the row as JSON, where an absent column is null.
 */
export async function serverInfo(conn: Connection, signal?: AbortSignal): Promise<ServerInfo> {
  const settings = "pg_has_role('pg_read_all_settings', 'member')";
  const r = await queryJson<Record<string, unknown> | null>(
    conn,
    `SELECT json_build_object(
        'versionNum', current_setting('server_version_num')::int, 'version', version(),
        'systemIdentifier', (SELECT system_identifier FROM pg_control_system())::text,
        'segmentSize', (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')::bigint,
        'dataChecksums', current_setting('data_checksums') = 'on',
        'timeline', ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint,
        'superuser', (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
        'dataDirectory', CASE WHEN ${settings} THEN current_setting('data_directory') END,
        'configFiles', CASE WHEN ${settings} THEN json_build_array(current_setting('config_file'), current_setting('hba_file'), current_setting('ident_file')) END,
        'tablespaces', (SELECT coalesce(json_agg(spcname ORDER BY spcname), '[]') FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')),
        'databases', (SELECT coalesce(json_agg(datname ORDER BY datname), '[]') FROM pg_database WHERE datallowconn AND NOT datistemplate),
        'collation', (SELECT coalesce(json_agg(json_build_object('provider', coalesce(to_jsonb(d) ->> 'datlocprovider', 'c'), 'collate', d.datcollate, 'ctype', d.datctype, 'version', to_jsonb(d) ->> 'datcollversion') ORDER BY d.datname), '[]') FROM pg_database d WHERE d.datallowconn),
        'archiveMode', current_setting('archive_mode'), 'walLevel', current_setting('wal_level'), 'currentDatabase', current_database())`,
    signal,
  );
  const str = (v: unknown): v is string => typeof v === 'string';
  const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every(str);
  interface Collation {
    provider: string;
    collate: string;
    ctype: string;
    version: string | null;
  }
  const collation = (c: unknown): c is Collation => {
    const o = c as Partial<Record<keyof Collation, unknown>> | null;
    return typeof o === 'object' && o !== null && str(o.provider) && str(o.collate) && str(o.ctype) && (o.version === null || str(o.version));
  };
  const colls = r?.collation;
  if (
    !r ||
    typeof r.versionNum !== 'number' ||
    !str(r.version) ||
    !str(r.systemIdentifier) ||
    typeof r.segmentSize !== 'number' ||
    typeof r.timeline !== 'number' ||
    !strings(r.tablespaces) ||
    !strings(r.databases) ||
    !Array.isArray(colls) ||
    !colls.every(collation) ||
    !(r.dataDirectory === null || str(r.dataDirectory)) ||
    !(r.configFiles === null || strings(r.configFiles)) ||
    !str(r.archiveMode) ||
    !str(r.walLevel) ||
    !str(r.currentDatabase)
  ) {
    throw new AirlockError('pg-failed', 'postgresql: unexpected answer to the server information query');
  }
  const dataDirectory = r.dataDirectory ?? undefined;
  const configFiles = r.configFiles ?? [];
  return {
    versionNum: r.versionNum,
    major: Math.floor(r.versionNum / 10000),
    version: r.version,
    systemIdentifier: r.systemIdentifier,
    segmentSize: r.segmentSize,
    dataChecksums: r.dataChecksums === true,
    timeline: r.timeline,
    superuser: r.superuser === true,
    dataDirectory,
    configFiles: dataDirectory === undefined ? [] : configFiles.filter((f) => !f.startsWith(`${dataDirectory}/`)),
    tablespaces: r.tablespaces,
    databases: r.databases,
    collation: colls.map((c) => ({ provider: PROVIDERS[c.provider] ?? c.provider, collate: c.collate, ctype: c.ctype, version: c.version })),
    archiveMode: r.archiveMode,
    walLevel: r.walLevel,
    currentDatabase: r.currentDatabase,
  };
}
