/*
 * Running PostgreSQL's own programs, for both sides: the source runs psql, pg_basebackup and
 * pg_dump, a restore runs pg_ctl, psql and pg_restore, and both read why psql failed the same way. Debian keeps one folder of them per major
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

/**
 * The line of psql's stderr that says why it failed: the server's ERROR (or FATAL, PANIC) line when
 * there is one (VERBOSITY=terse leaves out the statement and caret lines), else the first line, which
 * for a connection that failed names the server and the cause; without psql's own prefixes.
 */
export function psqlFailure(stderr: string, code: number | null): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const line = lines.find((l) => /\b(ERROR|FATAL|PANIC):/.test(l)) ?? lines[0] ?? `psql exited with status ${code}`;
  return line.replace(/^psql:(?:[^:]*:\d+: )?\s*(error: )?/, '').replace(/\b(ERROR|FATAL|PANIC): +/, '$1: ');
}
