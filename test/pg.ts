/*
 * A throwaway PostgreSQL 15 cluster for tests: one per test process, started on first use and
 * stopped (by its PID) when the process exits.
 *
 * It runs as an unprivileged OS user (`postgres` when the tests run as root, the current user
 * otherwise) in a temp folder that user owns, listens on 127.0.0.1 on a free port (TCP logins are
 * refused: tests connect through a socket in that folder), and archives through the built
 * `airlock wal-push` into a spool in that folder, as production does. The archive_command runs as
 * the cluster's user, so the built CLI must be readable by it: when the checkout is not (a 0700
 * home), dist/ is copied to a folder it can read.
 *
 * Waiting is always bounded polling: a server that does not start or a segment that never arrives
 * fails the test with the server log's tail, never hangs it.
 */
import { spawn, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, appendFileSync, closeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, run, type Ran } from './helpers.js';

export const PG_BIN = '/usr/lib/postgresql/15/bin';

export interface Cluster {
  /** the temp folder holding everything, owned by the cluster's user */
  base: string;
  data: string;
  /** where archive_command (airlock wal-push) puts WAL files */
  spool: string;
  /** the folder of the unix socket */
  socketDir: string;
  port: number;
  pid: number;
  log: string;
  /** the OS user the server and its archive_command run as */
  user: { name: string; uid: number; gid: number };
  /** the airlock CLI as that user runs it */
  cli: string;
}

/** Sleeps synchronously (for short, bounded polling only). */
export function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Polls `check` every `everyMs` until it returns a value other than undefined; throws `what` after `timeoutMs`. */
export function poll<T>(what: string, timeoutMs: number, check: () => T | undefined, everyMs = 50): T {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${current ? `\n--- server log tail ---\n${logTail(current)}` : ''}`);
    sleepMs(everyMs);
  }
}

function logTail(c: Cluster, lines = 30): string {
  try {
    return readFileSync(c.log, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** The user to run PostgreSQL as: `postgres` when we are root (initdb refuses root), else ourselves. */
function clusterUser(): Cluster['user'] {
  if (process.getuid?.() !== 0) {
    const me = os.userInfo();
    return { name: me.username, uid: me.uid, gid: me.gid };
  }
  const r = run('id', ['-u', 'postgres']);
  const g = run('id', ['-g', 'postgres']);
  if (r.code !== 0 || g.code !== 0) throw new Error('tests run as root need a postgres OS user to run the cluster as');
  return { name: 'postgres', uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/** Runs a program as the cluster's user, with an argument list. */
export function runAs(user: Cluster['user'], cmd: string, args: readonly string[], opts: SpawnSyncOptions = {}): Ran {
  const asUser = process.getuid?.() === 0 ? { uid: user.uid, gid: user.gid } : {};
  return run(cmd, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', TZ: 'UTC', HOME: os.tmpdir() }, ...asUser, ...opts });
}

/** A free TCP port on 127.0.0.1 (asked from the kernel, then released). */
function freePort(): number {
  const script = "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{process.stdout.write(String(s.address().port));s.close()})";
  const r = run(process.execPath, ['-e', script]);
  const port = Number(r.stdout);
  if (r.code !== 0 || !Number.isInteger(port) || port <= 0) throw new Error(`cannot find a free port: ${r.stderr}`);
  return port;
}

/** True when `user` can run wal-push from `main`: a call without arguments loads it and fails as usage. */
function canRunWalPush(user: Cluster['user'], main: string): Ran {
  return runAs(user, process.execPath, [main, 'wal-push']);
}

/**
 * The built CLI as `user` can run it: the checkout's dist/ when that user can read it, otherwise a
 * copy of dist/ and package.json (for "type": "module") in `base`. wal-push loads Node built-ins only
 * (main.ts dispatches it before commander), so no node_modules are needed for archiving.
 * AIRLOCK_TEST_COPY_CLI=1 forces the copy.
 */
function reachableCli(user: Cluster['user'], base: string): string {
  const main = path.join(ROOT, 'dist/agent/cli/main.js');
  if (!existsSync(main)) throw new Error('dist/ is missing: run npm run build first');
  const works = (r: Ran) => r.code === 2 && r.stderr.includes('wal-push takes 1 argument');
  if (!process.env.AIRLOCK_TEST_COPY_CLI && works(canRunWalPush(user, main))) return main;
  const dir = path.join(base, 'cli');
  cpSync(path.join(ROOT, 'dist'), path.join(dir, 'dist'), { recursive: true });
  cpSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'));
  const chmod = run('chmod', ['-R', 'a+rX', dir]);
  if (chmod.code !== 0) throw new Error(`chmod failed: ${chmod.stderr}`);
  const copy = path.join(dir, 'dist/agent/cli/main.js');
  const check = canRunWalPush(user, copy);
  if (!works(check)) throw new Error(`${user.name} cannot run wal-push from the copied CLI (${process.execPath} ${copy}): ${check.stderr}`);
  return copy;
}

/** A path safe to put into archive_command unquoted (PostgreSQL runs it through /bin/sh). */
function shellSafe(p: string): string {
  if (!/^[A-Za-z0-9_./-]+$/.test(p)) throw new Error(`path ${p} has characters the test archive_command does not quote`);
  return p;
}

let current: Cluster | undefined;

function stop(c: Cluster): void {
  try {
    process.kill(c.pid, 'SIGINT'); // fast shutdown: abort sessions, checkpoint, exit
  } catch {
    return; // already gone
  }
  // our own child is only reaped by the event loop, which no longer runs at exit, so watch the pid file
  const pidFile = path.join(c.data, 'postmaster.pid');
  const deadline = Date.now() + 20_000;
  while (existsSync(pidFile) && Date.now() < deadline) sleepMs(50);
  if (existsSync(pidFile)) {
    try {
      process.kill(c.pid, 'SIGQUIT'); // immediate shutdown
    } catch {
      // gone meanwhile
    }
  }
}

process.prependListener('exit', () => {
  if (!current) return;
  stop(current);
  if (!process.env.AIRLOCK_KEEP_TEST_FILES) rmSync(current.base, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));

/**
 * The cluster of this test process, started on first call (initdb, configure, start, wait until it
 * accepts connections). Throws with the server log when it does not come up within 60 s.
 */
export function cluster(): Cluster {
  if (current) return current;
  const user = clusterUser();
  const base = mkdtempSync(path.join(os.tmpdir(), 'airlock-pg-'));
  chmodSync(base, 0o700);
  chownSync(base, user.uid, user.gid);
  const cli = reachableCli(user, base);
  const data = path.join(base, 'data');
  const spool = path.join(base, 'spool');
  const socketDir = path.join(base, 'sock');
  for (const d of [spool, socketDir]) {
    mkdirSync(d, { mode: 0o750 });
    chownSync(d, user.uid, user.gid);
  }
  const log = path.join(base, 'server.log');
  writeFileSync(log, '');
  chownSync(log, user.uid, user.gid);

  const init = runAs(user, path.join(PG_BIN, 'initdb'), ['-D', data, '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--auth-local=trust', '--auth-host=scram-sha-256', '--no-sync']);
  if (init.code !== 0) throw new Error(`initdb failed: ${init.stderr}`);
  const port = freePort();
  const archive = `${shellSafe(process.execPath)} ${shellSafe(cli)} wal-push %p --spool ${shellSafe(spool)}`;
  appendFileSync(
    path.join(data, 'postgresql.conf'),
    [
      '',
      '# airlock test cluster',
      "listen_addresses = '127.0.0.1'",
      `port = ${port}`,
      `unix_socket_directories = '${shellSafe(socketDir)}'`,
      'wal_level = replica',
      'archive_mode = on',
      `archive_command = '${archive}'`,
      // short enough that an idle test never waits long for a segment, long enough not to flood the spool
      'archive_timeout = 10',
      'track_commit_timestamp = on',
      'max_connections = 20',
      'shared_buffers = 32MB',
      "log_line_prefix = '%m [%p] '",
      '',
    ].join('\n'),
  );
  const logFd = openSync(log, 'a');
  const asUser = process.getuid?.() === 0 ? { uid: user.uid, gid: user.gid } : {};
  const child = spawn(path.join(PG_BIN, 'postgres'), ['-D', data], {
    stdio: ['ignore', logFd, logFd],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', TZ: 'UTC', HOME: base },
    ...asUser,
  });
  closeSync(logFd);
  child.unref();
  if (child.pid === undefined) throw new Error('postgres did not start');
  const c: Cluster = { base, data, spool, socketDir, port, pid: child.pid, log, user, cli };
  current = c;
  poll('the server to accept connections', 60_000, () => {
    if (child.exitCode !== null) throw new Error(`postgres exited with ${child.exitCode}:\n${logTail(c)}`);
    return run(path.join(PG_BIN, 'pg_isready'), ['-q', '-h', socketDir, '-p', String(port)]).code === 0 ? true : undefined;
  });
  return c;
}

/**
 * Runs SQL through psql (an argument list, never a shell) as the postgres role; returns the
 * unaligned, tuples-only output, trimmed. `input` is sent on stdin instead (several statements in
 * one session). Throws with psql's stderr when it fails.
 */
export function psql(sql: string, opts: { db?: string; input?: boolean } = {}): string {
  const c = cluster();
  const args = ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', c.socketDir, '-p', String(c.port), '-U', 'postgres', '-d', opts.db ?? 'postgres'];
  const r = run(path.join(PG_BIN, 'psql'), opts.input ? args : [...args, '-c', sql], opts.input ? { input: sql } : {});
  if (r.code !== 0) throw new Error(`psql failed (${r.code}): ${r.stderr.trim()}\nsql: ${sql}`);
  return r.stdout.trim();
}

/** Waits until `name` (a WAL file name) and its sidecar are in the spool; returns the file's path. */
export function waitSpooled(name: string, timeoutMs = 30_000): string {
  const c = cluster();
  const file = path.join(c.spool, name);
  return poll(`${name} in the spool`, timeoutMs, () => (existsSync(`${file}.sha256`) ? file : undefined));
}

/**
 * Writes a little WAL, forces a segment switch and waits until the finished segment is spooled.
 * Returns the segment's name.
 */
export function switchWal(): string {
  psql('CREATE TABLE IF NOT EXISTS airlock_tick (at timestamptz DEFAULT now()); INSERT INTO airlock_tick DEFAULT VALUES');
  const name = psql('SELECT pg_walfile_name(pg_switch_wal())');
  if (!/^[0-9A-F]{24}$/.test(name)) throw new Error(`unexpected segment name ${JSON.stringify(name)}`);
  waitSpooled(name);
  return name;
}

/** The cluster's system identifier, as a decimal string. */
export function systemIdentifier(): string {
  return psql('SELECT system_identifier FROM pg_control_system()');
}
