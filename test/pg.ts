/*
 * Throwaway PostgreSQL clusters for tests: one per test process, configuration layout (in the data
 * folder, or outside it as Debian keeps it) and major version (15, the machine's own, or 17 from a
 * Debian 13 root), started on first use and stopped (by its PID) when the process exits.
 *
 * It runs as an unprivileged OS user (`postgres` when the tests run as root, the current user
 * otherwise) in a temp folder that user owns, listens on 127.0.0.1 on a free port (TCP logins are
 * refused: tests connect through a socket in that folder), and archives through the built
 * `airlock-wal-push` into a spool in that folder, as production does. The archive_command runs as
 * the cluster's user, so the built CLI must be readable by it: when the checkout is not (a 0700
 * home), dist/ is copied to a folder it can read. The archive_command is the native helper
 * (dist/native/airlock-wal-push), which hands anything but a new push to that CLI.
 *
 * PostgreSQL 17 runs from the root folder scripts/setup.sh builds (AIRLOCK_PG17_ROOT overrides
 * /var/cache/airlock-test/trixie-pg17) through wrappers (scripts/pg-chroot.sh) in a folder this
 * process makes, which airlock takes as --pg-bin. Inside the root the server sees the temp folder
 * (data folders, sockets, spool, the copied CLI) and node at their host paths, bind-mounted, and runs
 * as the root's own postgres uid; that needs root, as the tests have.
 *
 * Waiting is always bounded polling: a server that does not start or a segment that never arrives
 * fails the test with the server log's tail, never hangs it.
 */
import { spawn, type SpawnSyncOptions } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  appendFileSync,
  closeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Manifest } from '../manifests/manifest.js';
import { ROOT, airlock, exportArgs, makeKeys, run, tmp, type Keys, type Ran } from './helpers.js';
import { EXIT } from '../manifests/errors.js';

export const PG_BIN = '/usr/lib/postgresql/15/bin';

/** The major versions the tests run a server of. */
export type Major = 15 | 17;
export const MAJORS: readonly Major[] = [15, 17];

/** The Debian 13 root with PostgreSQL 17. */
export const PG17_ROOT = process.env.AIRLOCK_PG17_ROOT ?? '/var/cache/airlock-test/trixie-pg17';

let wrappers: string | undefined;

/**
 * The folder of `major`'s programs: the installed 15's, or for 17 a folder of wrappers that run the
 * root's programs (made once per process: scripts/pg-chroot.sh, its conf and one link per program).
 */
export function pgBin(major: Major = 15): string {
  if (major === 15) return PG_BIN;
  if (wrappers) return wrappers;
  const inRoot = path.join(PG17_ROOT, 'usr/lib/postgresql/17/bin');
  if (!existsSync(path.join(inRoot, 'postgres'))) throw new Error(`${PG17_ROOT} holds no PostgreSQL 17: run bash scripts/setup.sh (it builds the root once)`);
  if (process.getuid?.() !== 0) throw new Error('the PostgreSQL 17 tests run its root through chroot, which needs root');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-pg17-bin-'));
  baseDirs.push(dir);
  chmodSync(dir, 0o755);
  // what the server inside needs at the same paths: the temp folder everything of the tests lives
  // in, and node (wal-push hands over to it, restore_command is node running wal-fetch)
  const binds = [os.tmpdir(), process.execPath];
  for (const b of binds) {
    shellSafe(b);
    const at = path.join(PG17_ROOT, b);
    if (existsSync(at)) continue;
    if (statSync(b).isDirectory()) mkdirSync(at, { recursive: true });
    else {
      mkdirSync(path.dirname(at), { recursive: true });
      writeFileSync(at, '');
    }
  }
  cpSync(path.join(ROOT, 'scripts/pg-chroot.sh'), path.join(dir, 'pg-chroot.sh'));
  chmodSync(path.join(dir, 'pg-chroot.sh'), 0o755);
  writeFileSync(path.join(dir, 'pg-chroot.conf'), `root=${shellSafe(PG17_ROOT)}\nmajor=17\nbinds='${binds.join(' ')}'\n`, { mode: 0o644 });
  for (const prog of readdirSync(inRoot)) symlinkSync('pg-chroot.sh', path.join(dir, prog));
  wrappers = dir;
  return dir;
}

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
  /** the archive_command helper beside that CLI (dist/native/airlock-wal-push), as production runs it */
  walPush: string;
  major: Major;
  /** the folder of its programs (pgBin) */
  bin: string;
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
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${current ? `\n--- server log tail ---\n${logTail(current.log)}` : ''}`);
    sleepMs(everyMs);
  }
}

export function logTail(log: string, lines = 30): string {
  try {
    return readFileSync(log, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * The user to run PostgreSQL as: `postgres` when we are root (initdb refuses root), else ourselves;
 * for 17 the root folder's own postgres (initdb looks its uid up there).
 */
function clusterUser(major: Major): Cluster['user'] {
  if (major === 17) {
    const line = readFileSync(path.join(PG17_ROOT, 'etc/passwd'), 'utf8')
      .split('\n')
      .find((l) => l.startsWith('postgres:'));
    const [, , uid, gid] = line?.split(':') ?? [];
    if (uid === undefined || gid === undefined) throw new Error(`${PG17_ROOT}/etc/passwd has no postgres user`);
    return { name: 'postgres', uid: Number(uid), gid: Number(gid) };
  }
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
export function freePort(): number {
  // the agent's own freePort, run in a child so that synchronous test code can wait for it
  const script = `import { freePort } from ${JSON.stringify(path.join(ROOT, 'dist/agent/port.js'))}; process.stdout.write(String(await freePort()))`;
  const r = run(process.execPath, ['--input-type=module', '-e', script]);
  const port = Number(r.stdout);
  if (r.code !== 0 || !Number.isInteger(port) || port <= 0) throw new Error(`cannot find a free port: ${r.stderr}`);
  return port;
}

/** True when `user` can run wal-push from `main`: a call without arguments loads it and fails as usage. */
function canRunWalPush(user: Cluster['user'], main: string): Ran {
  return runAs(user, process.execPath, [main, 'wal-push']);
}

/**
 * The built CLI as `user` can run it: the checkout's dist/ when that user can read it, otherwise (or
 * with `forceCopy`: a server in a root folder sees only `base`) a copy of dist/ and package.json (for
 * "type": "module") in `base`. wal-push loads Node built-ins only
 * (main.ts dispatches it before commander), so no node_modules are needed for archiving.
 * AIRLOCK_TEST_COPY_CLI=1 forces the copy.
 */
function reachableCli(user: Cluster['user'], base: string, forceCopy: boolean): string {
  const main = path.join(ROOT, 'dist/agent/cli/main.js');
  if (!existsSync(main)) throw new Error('dist/ is missing: run npm run build first');
  const works = (r: Ran) => r.code === EXIT.usage && r.stderr.includes('wal-push takes 1 argument');
  if (!forceCopy && !process.env.AIRLOCK_TEST_COPY_CLI && works(canRunWalPush(user, main))) return main;
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
export function shellSafe(p: string): string {
  if (!/^[A-Za-z0-9_./-]+$/.test(p)) throw new Error(`path ${p} has characters the test archive_command does not quote`);
  return p;
}

let current: Cluster | undefined;

/** A running postgres started by this process. */
export interface Server {
  data: string;
  port: number;
  pid: number;
  socketDir: string;
  log: string;
  /** the major version, for the matching psql (15 when absent) */
  major?: Major;
}
const servers = new Set<Server>();

/** True while `pid` runs (a zombie, exited but not yet reaped by the event loop, counts as gone). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Stops a server by its PID: fast shutdown, then immediate after 20 s. Waits (bounded) until it is gone. */
export function stopServer(s: Server): void {
  servers.delete(s);
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(s.pid, sig);
    } catch {
      // already gone
    }
  };
  signal('SIGINT'); // fast shutdown: abort sessions, checkpoint, exit
  const deadline = Date.now() + 20_000;
  while (alive(s.pid) && Date.now() < deadline) sleepMs(50);
  if (alive(s.pid)) {
    signal('SIGQUIT'); // immediate shutdown
    const hard = Date.now() + 5_000;
    while (alive(s.pid) && Date.now() < hard) sleepMs(50);
  }
}

/** the clusters' base folders, removed at exit even when a cluster failed to start */
const baseDirs: string[] = [];

process.prependListener('exit', () => {
  for (const s of [...servers]) stopServer(s);
  if (!process.env.AIRLOCK_KEEP_TEST_FILES) for (const d of baseDirs) rmSync(d, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));

/**
 * Appends `conf` to the data folder's postgresql.conf (with a free port on 127.0.0.1 and the socket
 * folder) and starts postgres as `user`. With `waitReady`, waits up to 60 s for connections and
 * throws with the log's tail if the server exits or does not come up.
 */
export function startServer(
  user: Cluster['user'],
  data: string,
  socketDir: string,
  log: string,
  conf: readonly string[],
  waitReady = true,
  configFile = path.join(data, 'postgresql.conf'),
  major: Major = 15,
): Server {
  const bin = pgBin(major);
  const port = freePort();
  appendFileSync(
    configFile,
    [
      '',
      '# airlock test server',
      "listen_addresses = '127.0.0.1'",
      `port = ${port}`,
      `unix_socket_directories = '${shellSafe(socketDir)}'`,
      "log_line_prefix = '%m [%p] '",
      ...conf,
      '',
    ].join('\n'),
  );
  if (!existsSync(log)) {
    writeFileSync(log, '');
    chownSync(log, user.uid, user.gid);
  }
  const logFd = openSync(log, 'a');
  const asUser = process.getuid?.() === 0 ? { uid: user.uid, gid: user.gid } : {};
  const child = spawn(
    path.join(bin, 'postgres'),
    ['-D', data, ...(configFile === path.join(data, 'postgresql.conf') ? [] : ['-c', `config_file=${configFile}`])],
    {
      stdio: ['ignore', logFd, logFd],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', TZ: 'UTC', HOME: path.dirname(data) },
      ...asUser,
    },
  );
  closeSync(logFd);
  child.unref();
  if (child.pid === undefined) throw new Error('postgres did not start');
  const s: Server = { data, port, pid: child.pid, socketDir, log, major };
  servers.add(s);
  if (waitReady) {
    poll(`the server on port ${port} to accept connections`, 60_000, () => {
      if (!alive(s.pid)) throw new Error(`postgres exited:\n${logTail(log)}`);
      return run(path.join(bin, 'pg_isready'), ['-q', '-h', socketDir, '-p', String(port)]).code === 0 ? true : undefined;
    });
  }
  return s;
}

/**
 * Where a cluster keeps its configuration: in its data folder (initdb's layout), or outside it as
 * Debian does (/etc/postgresql/N/main), so that a base backup carries no postgresql.conf.
 */
export type Layout = 'in-folder' | 'debian';

const started = new Map<string, Cluster>();
const failures = new Map<string, unknown>();

/**
 * The cluster of this test process in `layout` and `major`, started on first call (initdb, configure,
 * start, wait until it accepts connections). Throws with the server log when it does not come up
 * within 60 s.
 */
export function cluster(layout: Layout = 'in-folder', major: Major = 15): Cluster {
  const key = `${layout}/${major}`;
  const known = started.get(key);
  if (known) return known;
  if (failures.has(key)) throw failures.get(key);
  try {
    const c = startCluster(layout, major);
    started.set(key, c);
    if (layout === 'in-folder') current = c;
    return c;
  } catch (e) {
    failures.set(key, e);
    throw e;
  }
}

function startCluster(layout: Layout, major: Major): Cluster {
  const bin = pgBin(major);
  const user = clusterUser(major);
  const base = mkdtempSync(path.join(os.tmpdir(), 'airlock-pg-'));
  baseDirs.push(base);
  chmodSync(base, 0o700);
  chownSync(base, user.uid, user.gid);
  const cli = reachableCli(user, base, major !== 15);
  const data = path.join(base, 'data');
  const spool = path.join(base, 'spool');
  const socketDir = path.join(base, 'sock');
  for (const d of [spool, socketDir]) {
    mkdirSync(d, { mode: 0o750 });
    chownSync(d, user.uid, user.gid);
  }
  const log = path.join(base, 'server.log');
  const init = runAs(user, path.join(bin, 'initdb'), [
    '-D',
    data,
    '-U',
    'postgres',
    '-E',
    'UTF8',
    '--locale=C',
    '--auth-local=trust',
    '--auth-host=scram-sha-256',
    '--no-sync',
  ]);
  if (init.code !== 0) throw new Error(`initdb failed: ${init.stderr}`);
  let configFile = path.join(data, 'postgresql.conf');
  if (layout === 'debian') {
    const etc = path.join(base, 'etc');
    mkdirSync(etc, { mode: 0o755 });
    for (const f of ['postgresql.conf', 'pg_hba.conf', 'pg_ident.conf']) {
      cpSync(path.join(data, f), path.join(etc, f));
      rmSync(path.join(data, f));
      chownSync(path.join(etc, f), user.uid, user.gid);
    }
    configFile = path.join(etc, 'postgresql.conf');
    appendFileSync(configFile, `\nhba_file = '${shellSafe(path.join(etc, 'pg_hba.conf'))}'\nident_file = '${shellSafe(path.join(etc, 'pg_ident.conf'))}'\n`);
  }
  const walPush = path.join(path.dirname(cli), '../../native/airlock-wal-push');
  if (!existsSync(walPush)) throw new Error(`${walPush} is missing: it needs gcc and libssl-dev (bash scripts/setup.sh), then npm run build`);
  const archive = `${shellSafe(walPush)} %p --spool ${shellSafe(spool)}`;
  const server = startServer(
    user,
    data,
    socketDir,
    log,
    [
      'wal_level = replica',
      'archive_mode = on',
      `archive_command = '${archive}'`,
      // short enough that an idle test never waits long for a segment, long enough not to flood the spool
      'archive_timeout = 10',
      'track_commit_timestamp = on',
      'max_connections = 20',
      'shared_buffers = 32MB',
    ],
    true,
    configFile,
    major,
  );
  return { base, data, spool, socketDir, port: server.port, pid: server.pid, log, user, cli, walPush, major, bin };
}

/**
 * A folder inside the cluster's base folder, owned by the cluster's user: for base backups,
 * restored clusters and WAL folders that server must read.
 */
export function clusterDir(name: string, major: Major = 15): string {
  const c = cluster('in-folder', major);
  const d = path.join(c.base, name);
  mkdirSync(d, { mode: 0o700 });
  chownSync(d, c.user.uid, c.user.gid);
  return d;
}

/**
 * Runs SQL through psql (an argument list, never a shell) as the postgres role; returns the
 * unaligned, tuples-only output, trimmed. `input` is sent on stdin instead (several statements in
 * one session). Throws with psql's stderr when it fails.
 */
export function psql(sql: string, opts: { db?: string; input?: boolean; server?: Server; major?: Major } = {}): string {
  const c = opts.server ?? cluster('in-folder', opts.major);
  const args = ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', c.socketDir, '-p', String(c.port), '-U', 'postgres', '-d', opts.db ?? 'postgres'];
  const r = run(path.join(pgBin(opts.server?.major ?? opts.major), 'psql'), opts.input ? args : [...args, '-c', sql], opts.input ? { input: sql } : {});
  if (r.code !== 0) throw new Error(`psql failed (${r.code}): ${r.stderr.trim()}\nsql: ${sql}`);
  return r.stdout.trim();
}

/** Waits until `name` (a WAL file name) and its sidecar are in the spool; returns the file's path. */
export function waitSpooled(name: string, timeoutMs = 30_000, major: Major = 15): string {
  const c = cluster('in-folder', major);
  const file = path.join(c.spool, name);
  return poll(`${name} in the spool`, timeoutMs, () => (existsSync(`${file}.sha256`) ? file : undefined));
}

/**
 * Writes a little WAL, forces a segment switch and waits until the finished segment is spooled.
 * Returns the segment's name.
 */
export function switchWal(major: Major = 15): string {
  psql('CREATE TABLE IF NOT EXISTS airlock_tick (at timestamptz DEFAULT now()); INSERT INTO airlock_tick DEFAULT VALUES', { major });
  const name = psql('SELECT pg_walfile_name(pg_switch_wal())', { major });
  if (!/^[0-9A-F]{24}$/.test(name)) throw new Error(`unexpected segment name ${JSON.stringify(name)}`);
  waitSpooled(name, 30_000, major);
  return name;
}

/** The cluster's system identifier, as a decimal string. */
export function systemIdentifier(major: Major = 15): string {
  return psql('SELECT system_identifier FROM pg_control_system()', { major });
}

/** A restored server started by `airlock restore pg --start`, and what the command printed as JSON. */
export interface Restored {
  server: Server;
  result: { baseSeq: number; bundles: number[]; recovered: { pid: number; replayLsn: string; lastCommit?: string; log: string } };
  stderr: string;
}

/**
 * One site's exports of the test cluster onto its own medium, with its own keys and state folder,
 * and restores from that medium into new data folders inside the cluster's base folder.
 */
export function pgSite(
  site: string,
  layout: Layout = 'in-folder',
  major: Major = 15,
): {
  keys: () => Keys;
  medium: string;
  stateDir: string;
  conninfo: () => string;
  exportPg: (extra: readonly string[]) => { path: string; manifest: Manifest };
  restoreArgs: (data: string, from?: string) => string[];
  restorePg: (target: readonly string[], from?: string) => Restored;
} {
  let keys: Keys | undefined;
  const k = () => (keys ??= makeKeys(site));
  const stateDir = tmp('airlock-state-');
  const medium = tmp('airlock-medium-');
  const c = () => cluster(layout, major);
  const conninfo = () => `host=${c().socketDir} port=${c().port} user=postgres dbname=postgres`;
  // 15's programs are where airlock looks by itself (/usr/lib/postgresql/15/bin); 17's are the wrappers
  const pgBinArgs = major === 15 ? [] : ['--pg-bin', pgBin(major)];
  const restoreArgs = (data: string, from = medium) => [
    'restore',
    'pg',
    '--from',
    from,
    '--identity',
    k().identity,
    '--allowed-signers',
    k().allowedSigners,
    '--pgdata',
    data,
    ...pgBinArgs,
  ];
  return {
    keys: k,
    medium,
    stateDir,
    conninfo,
    exportPg(extra) {
      const r = airlock(exportArgs(k(), medium, stateDir, ['--pg', conninfo(), '--wal-spool', c().spool, '--wal-timeout', '60', ...pgBinArgs, ...extra]));
      if (r.code !== EXIT.ok) throw new Error(`export failed (${r.code}): ${r.stderr}`);
      const dir = r.stdout.trim();
      return { path: dir, manifest: JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Manifest };
    },
    restoreArgs,
    restorePg(target, from = medium) {
      const data = path.join(clusterDir(`restored-${Math.random().toString(36).slice(2, 8)}`, major), 'data');
      const port = freePort();
      const r = airlock([...restoreArgs(data, from), '--port', String(port), '--start', '--airlock-cli', c().cli, '--timeout', '120', '--json', ...target]);
      if (r.code !== EXIT.ok) throw new Error(`restore pg ${target.join(' ')} failed (${r.code}): ${r.stderr}`);
      const result = JSON.parse(r.stdout) as Restored['result'];
      return { server: { data, port, pid: result.recovered.pid, socketDir: data, log: result.recovered.log, major }, result, stderr: r.stderr };
    },
  };
}

/** A steady write load in the background: one committed row per transaction, a few ms apart. */
export function writeLoad(table: string, rows: number, major: Major = 15): Promise<void> {
  const c = cluster('in-folder', major);
  const sql = `DO $$ BEGIN FOR i IN 1..${rows} LOOP INSERT INTO ${table} (v) VALUES (md5(random()::text)); COMMIT; PERFORM pg_sleep(0.004); END LOOP; END $$`;
  const child = spawn(
    path.join(c.bin, 'psql'),
    ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', c.socketDir, '-p', String(c.port), '-U', 'postgres', '-d', 'postgres', '-c', sql],
    { stdio: 'ignore' },
  );
  return new Promise((resolve, reject) => child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`write load exited ${code}`)))));
}
