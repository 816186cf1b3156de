/*
 * Issue 3 (PostgreSQL): base backup export and point-in-time restore of a real PostgreSQL 15 cluster
 * (test/pg.ts) holding BENCH_SIZE_MB MiB of incompressible rows, against pgBackRest on the same
 * cluster in the same run.
 *
 * The rows are random bytea with storage EXTERNAL, so TOAST stores them out of line and never
 * compresses them; airlock exports with `--compress none` and pgBackRest with `compress-type=none`,
 * both encrypting (age / aes-256-cbc). One archive_command feeds both tools (wal-push into the
 * spool, then archive-push into the pgBackRest repo), so each backup waits for its own WAL to be
 * archived, as a backup that restores must, and each restore recovers from its own tool's WAL.
 *
 *   export:  `airlock export --pg-base` against `pgbackrest backup --type=full`, as throughput of
 *            the database size; target >= 1.5x as it runs by default (then reading the bundle back
 *            from the medium), >= 2.0x with --no-read-back; pg_basebackup alone into /dev/null is
 *            timed too, as the floor of an export built on it.
 *   restore: `airlock restore pg --latest --stop` (verify, decrypt, unpack, recover until promoted,
 *            stop) against `pgbackrest restore --type=immediate --target-action=promote`, then the
 *            server started, waited for until promoted, and stopped; target <= 0.8x the time, and at
 *            least 150 MB/s of the database size end to end.
 *
 * Before each airlock export the spool and the state folder are emptied, so the bundle carries the
 * base backup and the WAL of its own window, not the WAL of loading the rows. Before each side runs,
 * every dirty page is written back, so neither pays for the other's writes. BENCH_PGBR_PROCESS_MAX
 * (default 1) sets pgBackRest's process-max. BENCH_PG=0 skips all of it.
 */
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AIRLOCK, exportArgs, makeKeys, type Keys } from '../test/helpers.js';
import { PG_BIN, alive, cluster, clusterDir, freePort, poll, psql, shellSafe, stopServer, type Cluster } from '../test/pg.js';
import { compare, cpuLine, line, scratch, settle, timed, type Timed } from './lib.js';

/**
 * Writes a pgBackRest config for the cluster `c` as stanza `bench` into `dir` (with its lock, log
 * and spool folders) and returns its path. `global` adds options to [global].
 */
export function pgbackrestConf(dir: string, c: Cluster, global: readonly string[]): string {
  for (const d of ['log', 'lock', 'pgbr-spool']) mkdirSync(path.join(dir, d), { recursive: true });
  const conf = path.join(dir, 'pgbackrest.conf');
  writeFileSync(
    conf,
    [
      '[global]',
      `repo1-path=${path.join(dir, 'repo')}`,
      'compress-type=none',
      'log-level-console=warn',
      'log-level-file=off',
      `log-path=${path.join(dir, 'log')}`,
      `lock-path=${path.join(dir, 'lock')}`,
      `spool-path=${path.join(dir, 'pgbr-spool')}`,
      ...global,
      '',
      '[bench]',
      `pg1-path=${c.data}`,
      `pg1-socket-path=${c.socketDir}`,
      `pg1-port=${c.port}`,
      'pg1-user=postgres',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  return conf;
}

/** Options that run a child as the cluster's OS user, with a plain environment. */
function asClusterUser(c: Cluster): { uid?: number; gid?: number; env: NodeJS.ProcessEnv } {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', TZ: 'UTC', HOME: c.base };
  return process.getuid?.() === 0 ? { uid: c.user.uid, gid: c.user.gid, env } : { env };
}

/** Changes the owner of `p` and everything in it to the cluster's user. */
function chownTree(p: string, c: Cluster): void {
  if (process.getuid?.() !== 0) return;
  chownSync(p, c.user.uid, c.user.gid);
  for (const e of readdirSync(p, { withFileTypes: true })) {
    const q = path.join(p, e.name);
    if (e.isDirectory()) chownTree(q, c);
    else chownSync(q, c.user.uid, c.user.gid);
  }
}

/** Stops the server whose postmaster.pid is in `data`, if one runs (a restore that failed half-way). */
function stopLeftover(data: string): void {
  let text = '';
  try {
    text = readFileSync(path.join(data, 'postmaster.pid'), 'utf8');
  } catch {
    return;
  }
  const pid = Number(text.split('\n')[0]);
  if (Number.isInteger(pid) && pid > 0 && alive(pid)) stopServer({ data, pid, port: 0, socketDir: data, log: '' });
}

/**
 * Waits until the archiver has handed over every finished segment (a switch first closes the current
 * one) and has nothing left to archive, backup history files included: emptying the spool while
 * wal-push still writes a file into it would fail that push. The archiver may take a backup history
 * file after the segment that follows it, so pg_stat_archiver's last file can name the history file
 * (which sorts before the segment) although the segment is done: its .done status counts too.
 */
function drainArchive(c: Cluster): void {
  const name = psql('SELECT pg_walfile_name(pg_switch_wal())');
  const status = path.join(c.data, 'pg_wal', 'archive_status');
  poll(
    `${name} and every file before it to be archived`,
    120_000,
    () => {
      const names = readdirSync(status);
      const done = psql('SELECT last_archived_wal FROM pg_stat_archiver') >= name || names.includes(`${name}.done`);
      return done && !names.some((n) => n.endsWith('.ready')) ? true : undefined;
    },
    100,
  );
}

/** Loads `sizeMb` MiB of random 4 KiB bytea values, stored out of line and uncompressed. */
function loadRows(sizeMb: number): void {
  psql('CREATE EXTENSION IF NOT EXISTS pgcrypto');
  psql('DROP TABLE IF EXISTS bench_rows');
  psql('CREATE TABLE bench_rows (id int PRIMARY KEY, payload bytea NOT NULL)');
  psql('ALTER TABLE bench_rows ALTER COLUMN payload SET STORAGE EXTERNAL');
  const rows = (sizeMb * 1024 * 1024) / 4096;
  const batch = 16_384; // 64 MiB a statement
  const value = Array.from({ length: 4 }, () => 'gen_random_bytes(1024)').join(' || ');
  for (let from = 1; from <= rows; from += batch) {
    const to = Math.min(rows, from + batch - 1);
    psql(`INSERT INTO bench_rows SELECT g, ${value} FROM generate_series(${from}, ${to}) g`);
  }
  psql('VACUUM ANALYZE bench_rows');
  psql('CHECKPOINT');
}

export function benchPg(sizeMb: number, rounds: number): string[] {
  const c = cluster();
  const processMax = Number(process.env.BENCH_PGBR_PROCESS_MAX ?? 1);
  loadRows(sizeMb);
  const bytes = Number(psql('SELECT sum(pg_database_size(datname)) FROM pg_database'));
  const payload = Number(psql("SELECT pg_total_relation_size('bench_rows')"));
  const compressed = psql('SELECT count(*) FROM (SELECT pg_column_compression(payload) AS m FROM bench_rows) x WHERE m IS NOT NULL');
  if (compressed !== '0') throw new Error(`${compressed} rows of bench_rows are compressed; the benchmark needs incompressible data`);

  // pgBackRest runs as the cluster's user (archive-push does), with its repo beside the cluster
  const pgbrDir = clusterDir('pgbackrest');
  const conf = pgbackrestConf(pgbrDir, c, [
    `repo1-cipher-type=aes-256-cbc`,
    `repo1-cipher-pass=${randomBytes(24).toString('hex')}`,
    `process-max=${processMax}`,
    'repo1-retention-full=9999',
    'start-fast=y',
  ]);
  chownTree(pgbrDir, c);
  const user = asClusterUser(c);
  const pgbr = (...args: string[]) => timed('pgbackrest', [`--config=${conf}`, '--stanza=bench', ...args], user);
  pgbr('stanza-create');
  const walPush = `${shellSafe(c.walPush)} %p --spool ${shellSafe(c.spool)}`;
  const archivePush = `pgbackrest --config=${shellSafe(conf)} --stanza=bench archive-push %p`;
  psql(`ALTER SYSTEM SET archive_command = '${walPush} && ${archivePush}'`);
  // segments only when a backup switches, so emptying the spool never races the archiver
  psql('ALTER SYSTEM SET archive_timeout = 0');
  psql('SELECT pg_reload_conf()');
  pgbr('check');

  const keys = makeKeys('bench');
  const dir = scratch();
  const medium = path.join(dir, 'medium');
  const state = path.join(dir, 'state');
  const conninfo = `host=${c.socketDir} port=${c.port} user=postgres dbname=postgres`;
  const resetExport = () => {
    drainArchive(c);
    for (const d of [medium, state]) rmSync(d, { recursive: true, force: true });
    mkdirSync(medium);
    for (const n of readdirSync(c.spool)) rmSync(path.join(c.spool, n), { force: true });
    settle();
  };
  const baseArgs = [
    ...profiled(),
    ...AIRLOCK,
    ...exportArgs(keys, medium, state, ['--pg', conninfo, '--wal-spool', c.spool, '--pg-base', '--compress', 'none']),
  ];
  const peer = () => pgbr('backup', '--type=full');
  const exp = compare(rounds, resetExport, () => timed(process.execPath, baseArgs), peer);
  const written = compare(rounds, resetExport, () => timed(process.execPath, [...baseArgs, '--no-read-back']), peer);
  // the floor: pg_basebackup alone, its tar thrown away
  settle();
  const bare = timed('bash', [
    '-c',
    '"$1/pg_basebackup" -h "$2" -p "$3" -U postgres -Ft -D - -X none --checkpoint=fast > /dev/null',
    'x',
    PG_BIN,
    c.socketDir,
    String(c.port),
  ]);
  const mib = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MiB`;
  // the export runs pg_basebackup as its child, so the child's CPU is part of its floor
  const basebackupCpu = { name: 'pg_basebackup alone', perGiB: bare.cpuSeconds / (bytes / 1024 ** 3) };
  const peerBest = Math.min(exp.peer.seconds, written.peer.seconds);
  const out = [
    `pg: database ${mib(bytes)} (bench_rows ${mib(payload)} of random bytea, storage EXTERNAL, none compressed); airlock --compress none; pgbackrest repo1-cipher-type=aes-256-cbc compress-type=none process-max=${processMax}; ${os.availableParallelism()} CPU(s)`,
    line(`pg base backup export ${mib(bytes)}, read back from the medium (default)`, exp, 'pgbackrest backup', bytes, '>= 1.5x', 'higher'),
    cpuLine('  its CPU', exp.ours, bytes, 3, 1, basebackupCpu),
    line(`pg base backup export ${mib(bytes)}, --no-read-back`, written, 'pgbackrest backup', bytes, '>= 2.0x', 'higher'),
    cpuLine('  its CPU', written.ours, bytes, 2, 1, basebackupCpu),
    `pg_basebackup alone into /dev/null (the export's floor): ${bare.seconds.toFixed(2)} s = ${(bytes / 1024 / 1024 / bare.seconds).toFixed(0)} MB/s, ${(peerBest / bare.seconds).toFixed(2)}x the speed of pgbackrest backup (${peerBest.toFixed(2)} s)`,
  ];

  // restore the last bundle and the last pgBackRest backup into fresh data folders
  let n = 0;
  const targets: string[] = [];
  const fresh = (name: string) => {
    const d = path.join(clusterDir(`${name}-${++n}`), 'data');
    targets.push(d);
    return d;
  };
  const resetRestore = () => {
    for (const d of targets.splice(0)) {
      stopLeftover(d);
      rmSync(path.dirname(d), { recursive: true, force: true });
    }
    settle();
  };
  const peerScript = [
    'set -euo pipefail',
    'conf=$1 data=$2 port=$3 bin=$4',
    'pgbackrest --config="$conf" --stanza=bench --pg1-path="$data" --type=immediate --target-action=promote restore',
    // what airlock writes into a restored cluster: no archiving, localhost, its own port and socket
    `printf '%s\\n' "port = $port" "listen_addresses = '127.0.0.1'" "unix_socket_directories = '$data'" "archive_mode = off" >> "$data/postgresql.auto.conf"`,
    '"$bin/pg_ctl" -D "$data" -l "$data/restore.log" -w -t 3600 start > /dev/null',
    'until [ "$("$bin/psql" -X -A -t -h "$data" -p "$port" -U postgres -d postgres -c "SELECT pg_is_in_recovery()" 2> /dev/null)" = f ]; do sleep 0.1; done',
    '"$bin/pg_ctl" -D "$data" -m fast -w stop > /dev/null',
  ].join('\n');
  try {
    const res = compare(
      rounds,
      resetRestore,
      () => restoreAirlock(c, medium, keys, fresh('airlock-restore')),
      () => {
        const data = fresh('pgbr-restore');
        mkdirSync(data, { mode: 0o700 });
        chownTree(data, c);
        return timed('bash', ['-c', peerScript, 'x', conf, shellSafe(data), String(freePort()), PG_BIN], user);
      },
    );
    out.push(line(`pg restore ${mib(bytes)} to a promoted cluster`, res, 'pgbackrest restore + recovery', bytes, '<= 0.8x and >= 150 MB/s', 'lower'));
    const recoveryMs = (JSON.parse(res.ours.stdout) as { recovered?: { recoveryMs?: number } }).recovered?.recoveryMs;
    if (recoveryMs !== undefined)
      out.push(
        `pg restore, airlock's part: ${(res.ours.seconds - recoveryMs / 1000).toFixed(2)} s verify, decrypt and unpack, ${(recoveryMs / 1000).toFixed(2)} s from server start to promoted (then stopped)`,
      );
    resetRestore();
    out.push(...standbyTakeover(c, keys, { medium, state, dir, conninfo }, sizeMb, bytes, fresh));
  } finally {
    resetRestore();
  }
  return out;
}

/** node's options that write a CPU profile into BENCH_PROFILE, when it is set. */
function profiled(): string[] {
  return process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
}

function restoreAirlock(c: Cluster, medium: string | readonly string[], keys: { identity: string; allowedSigners: string }, data: string): Timed {
  const args = [
    ...profiled(),
    ...AIRLOCK,
    'restore',
    'pg',
    ...(typeof medium === 'string' ? [medium] : medium).flatMap((m) => ['--from', m]),
    '--identity',
    keys.identity,
    '--allowed-signers',
    keys.allowedSigners,
    '--pgdata',
    data,
    '--latest',
    '--port',
    String(freePort()),
    '--stop',
    '--airlock-cli',
    c.cli,
    '--json',
  ];
  const t = timed(process.execPath, args);
  if (!existsSync(path.join(data, 'PG_VERSION'))) throw new Error(`airlock restore pg left no cluster in ${data}`);
  return t;
}

/**
 * Issue 20 (warm standby): a standby made from the base backup's bundle (`standby init`, not timed as
 * takeover), then a day's writes (a sixteenth of the database, at least 16 MiB) exported as the next
 * bundle onto a second medium. Timed: that medium arriving to the standby caught up (`standby
 * apply`, the daily routine), and `standby promote --latest` to a writable server (the takeover),
 * against `restore pg --latest` of the same set (both media) to a promoted cluster; target: the
 * takeover at least 10x faster. The line also gives the ratio with the last apply counted in, for a
 * takeover that must first apply media that arrive with the disaster.
 */
function standbyTakeover(
  c: Cluster,
  keys: Keys,
  at: { medium: string; state: string; dir: string; conninfo: string },
  sizeMb: number,
  bytes: number,
  fresh: (name: string) => string,
): string[] {
  const keyArgs = ['--identity', keys.identity, '--allowed-signers', keys.allowedSigners];
  const data = fresh('standby');
  const standby = `${data}.standby`;
  const init = timed(process.execPath, [
    ...AIRLOCK,
    'standby',
    'init',
    '--from',
    at.medium,
    ...keyArgs,
    '--pgdata',
    data,
    '--port',
    String(freePort()),
    '--airlock-cli',
    c.cli,
    '--json',
  ]);
  const dayMb = Math.max(16, Math.round(sizeMb / 16));
  psql('DROP TABLE IF EXISTS bench_day');
  psql('CREATE TABLE bench_day (id int PRIMARY KEY, payload bytea NOT NULL)');
  psql('ALTER TABLE bench_day ALTER COLUMN payload SET STORAGE EXTERNAL');
  psql(
    `INSERT INTO bench_day SELECT g, gen_random_bytes(1024) || gen_random_bytes(1024) || gen_random_bytes(1024) || gen_random_bytes(1024) FROM generate_series(1, ${(dayMb * 1024 * 1024) / 4096}) g`,
  );
  const next = path.join(at.dir, 'medium-next');
  mkdirSync(next, { recursive: true });
  timed(process.execPath, [...AIRLOCK, ...exportArgs(keys, next, at.state, ['--pg', at.conninfo, '--wal-spool', c.spool, '--compress', 'none'])]);
  try {
    settle();
    const apply = timed(process.execPath, [...profiled(), ...AIRLOCK, 'standby', 'apply', '--standby', standby, '--from', next, ...keyArgs, '--json']);
    const promote = timed(process.execPath, [...profiled(), ...AIRLOCK, 'standby', 'promote', '--standby', standby, '--latest', '--json']);
    if (
      psql('SELECT count(*) FROM bench_day', {
        server: { data, port: (JSON.parse(readFileSync(path.join(standby, 'state.json'), 'utf8')) as { port: number }).port, pid: 0, socketDir: data, log: '' },
      }) === '0'
    )
      throw new Error('the promoted standby does not hold the day of writes');
    settle();
    const full = restoreAirlock(c, [at.medium, next], keys, fresh('restore-full'));
    const takeover = apply.seconds + promote.seconds;
    const mib = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MiB`;
    return [
      `pg standby takeover (database ${mib(bytes)}, then ${dayMb} MiB written and exported as the next bundle): promote -> writable ${promote.seconds.toFixed(2)} s, ${(full.seconds / promote.seconds).toFixed(2)}x faster than restore pg --latest of the same set (target >= 10x, ${full.seconds.toFixed(2)} s); with the last medium's apply (medium arrives -> standby caught up ${apply.seconds.toFixed(2)} s) ${takeover.toFixed(2)} s, ${(full.seconds / takeover).toFixed(2)}x; standby init (once) ${init.seconds.toFixed(2)} s`,
    ];
  } finally {
    psql('DROP TABLE IF EXISTS bench_day');
  }
}
