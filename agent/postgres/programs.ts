/*
 * Running PostgreSQL's own programs, for both sides: the source runs psql, pg_basebackup and
 * pg_dump, a restore runs pg_ctl, psql and pg_restore. Debian keeps one folder of them per major
 * version, and a dump or a data folder goes with the programs of its own version.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

/** The Debian folder of a major version's programs, when it is installed. */
export function versionBin(major: number): string | undefined {
  const dir = `/usr/lib/postgresql/${major}/bin`;
  return existsSync(path.join(dir, 'pg_basebackup')) ? dir : undefined;
}

/** Child environment: the caller's, with the client's prompts and user-level files kept out of it. */
export function clientEnv(): NodeJS.ProcessEnv {
  return { ...process.env, PGCONNECT_TIMEOUT: process.env.PGCONNECT_TIMEOUT ?? '30', PSQLRC: '/dev/null' };
}
