/*
 * Issue 3 (WAL archiving): the archive_command against `pgbackrest archive-push`, each run once per
 * segment as PostgreSQL runs them, on the same real 16 MiB segments from a throwaway PostgreSQL 15
 * cluster (test/pg.ts). pgBackRest gets a local repo, no compression and no archive check, so both
 * sides do the same work: read, hash, write durably. Two airlock lines: the native helper
 * (dist/native/airlock-wal-push, the documented archive_command) and `airlock wal-push` in Node,
 * whose startup is most of its cost; the report adds bare `node -e 0` per segment as the floor any
 * Node CLI has against a C binary.
 * BENCH_WAL_SEGMENTS (default 16) and BENCH_ROUNDS (default 2) scale it.
 */
import { copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { cluster, switchWal } from '../test/pg.js';
import { ROOT, compare, line, scratch, timed } from './lib.js';
import { pgbackrestConf } from './pg.js';

const SEGMENT = 16 * 1024 * 1024;

export function benchWalPush(): string[] {
  const n = Number(process.env.BENCH_WAL_SEGMENTS ?? 16);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
  const c = cluster();
  const dir = scratch();
  const src = path.join(dir, 'src');
  mkdirSync(src);
  const names: string[] = [];
  for (let i = 0; i < n; i++) names.push(switchWal());
  for (const name of names) copyFileSync(path.join(c.spool, name), path.join(src, name));
  const files = names.map((name) => path.join(src, name));

  const spool = path.join(dir, 'spool');
  const repo = path.join(dir, 'repo');
  const conf = pgbackrestConf(dir, c, ['archive-check=n']);
  const pgbr = (...args: string[]) => timed('pgbackrest', [`--config=${conf}`, '--stanza=bench', ...args]);
  pgbr('stanza-create');

  const cli = path.join(ROOT, 'dist/agent/cli/main.js');
  const reset = () => {
    rmSync(spool, { recursive: true, force: true });
    mkdirSync(spool);
    // keep archive.info (made by stanza-create), drop the segments of the last round
    const archive = path.join(repo, 'archive', 'bench');
    for (const v of readdirSync(archive)) {
      if (v.startsWith('archive.info')) continue;
      for (const d of readdirSync(path.join(archive, v))) if (!d.startsWith('archive.info')) rmSync(path.join(archive, v, d), { recursive: true, force: true });
    }
  };
  // one process per segment, as PostgreSQL runs archive_command; arguments passed, never spliced
  const perSegment =
    'set -e; cmd=$1; shift; while [ "$1" != "--" ]; do pre+=("$1"); shift; done; shift; for f in "$@"; do "$cmd" "${pre[@]}" "$f" "${post[@]}"; done';
  const pushEach =
    (...cmd: string[]) =>
    () =>
      timed('bash', ['-c', `post=(--spool "$SPOOL"); ${perSegment}`, 'x', ...cmd, '--', ...files], { env: { ...process.env, SPOOL: spool } });
  const peer = () => timed('bash', ['-c', `post=(); ${perSegment}`, 'x', 'pgbackrest', `--config=${conf}`, '--stanza=bench', 'archive-push', '--', ...files]);
  const helper = compare(rounds, reset, pushEach(c.walPush), peer);
  const node = compare(rounds, reset, pushEach(process.execPath, cli, 'wal-push'), peer);
  const out = [
    line(`wal-push ${n} x 16 MiB segments, one process each (airlock-wal-push)`, helper, 'pgbackrest archive-push', n * SEGMENT, '>= 1.0x', 'higher', 100),
    line(`wal-push ${n} x 16 MiB segments, one process each (airlock wal-push, node)`, node, 'pgbackrest archive-push', n * SEGMENT, 'none', 'higher', 100),
  ];
  // the floor for any Node CLI: starting node itself, n times, with nothing to do
  let floor = Infinity;
  for (let i = 0; i < rounds; i++)
    floor = Math.min(floor, timed('bash', ['-c', 'for i in $(seq "$1"); do "$2" -e 0; done', 'x', String(n), process.execPath]).seconds);
  const perSeg = (s: number) => `${((s / n) * 1000).toFixed(0)} ms`;
  out.push(
    `wal-push per segment: airlock-wal-push ${perSeg(helper.ours.seconds)}, airlock wal-push ${perSeg(node.ours.seconds)}, pgbackrest archive-push ${perSeg(Math.min(helper.peer.seconds, node.peer.seconds))}, bare node startup ${perSeg(floor)}`,
  );
  return out;
}
