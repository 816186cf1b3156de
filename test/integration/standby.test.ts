/*
 * A warm standby fed by media, against the real PostgreSQL 15 cluster: five media sets exported by
 * the running source with writes between them; a standby made from the first and fed the others,
 * whose read-only view after each apply equals the source at that bundle's restore point; tampered,
 * out-of-order and forked media refused with nothing applied; apply run twice, and twice at once;
 * status and its exit codes; a drill on the standby; promotion to the newest data, to a time inside
 * media that just arrived, and refused for a time replay already passed.
 */
import { cpSync, openSync, readdirSync, readFileSync, closeSync, writeSync, fstatSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EXIT } from '../../manifests/errors.js';
import { airlock, airlockAsync, exportArgs, tmp } from '../helpers.js';
import { cluster, clusterDir, freePort, pgSite, psql, sleepMs, stopServer, type Server } from '../pg.js';
import { resignManifest } from '../resign.js';

const site = pgSite('site-standby');
/** one medium per set, set 1 first */
const media: string[] = [];
/** the table's content at each set's restore point, as the source had it: `count:sum` */
const expected: string[] = [];
const view = (s?: Server) => psql("SELECT count(*) || ':' || coalesce(sum(id), 0) FROM standby_rows", s ? { server: s } : {});

function exportSet(extra: readonly string[] = []): string {
  const c = cluster();
  const medium = tmp('airlock-standby-medium-');
  const r = airlock(
    exportArgs(site.keys(), medium, site.stateDir, ['--pg', site.conninfo(), '--wal-spool', c.spool, '--wal-timeout', '60', '--pg-table-checks', ...extra]),
  );
  if (r.code !== EXIT.ok) throw new Error(`export failed (${r.code}): ${r.stderr}`);
  media.push(medium);
  expected.push(view());
  return r.stdout.trim();
}

const keyArgs = () => ['--identity', site.keys().identity, '--allowed-signers', site.keys().allowedSigners];

interface Standby {
  dir: string;
  server: Server;
}
const standbys: Standby[] = [];

/** A standby made by standby init from `from` in a new folder the cluster's user owns. */
function initStandby(from: readonly string[]): Standby {
  const data = path.join(clusterDir(`standby-${Math.random().toString(36).slice(2, 8)}`), 'data');
  const port = freePort();
  const r = airlock([
    'standby',
    'init',
    ...from.flatMap((m) => ['--from', m]),
    ...keyArgs(),
    '--pgdata',
    data,
    '--port',
    String(port),
    '--airlock-cli',
    cluster().cli,
    '--timeout',
    '120',
    '--json',
  ]);
  assert.is(r.code, EXIT.ok, r.stderr);
  const out = JSON.parse(r.stdout) as { standby: string; state: { port: number } };
  assert.is(out.standby, `${data}.standby`, 'the standby folder is beside the data folder by default');
  const s: Standby = { dir: out.standby, server: { data, port, pid: 0, socketDir: data, log: path.join(out.standby, 'postgresql.log') } };
  s.server.pid = pidOf(s);
  standbys.push(s);
  return s;
}

const apply = (s: Standby, from: readonly string[], extra: readonly string[] = []) =>
  airlock(['standby', 'apply', '--standby', s.dir, ...from.flatMap((m) => ['--from', m]), ...keyArgs(), '--timeout', '120', ...extra]);

/** What apply may change: the WAL folder's listing and the state file. */
const snapshot = (s: Standby) => JSON.stringify([readdirSync(path.join(s.dir, 'wal')).sort(), readFileSync(path.join(s.dir, 'state.json'), 'utf8')]);

/** A copy of set `i`'s bundle on a medium of its own. */
function copyOfSet(i: number): string {
  const medium = tmp('airlock-standby-copy-');
  cpSync(media[i] as string, medium, { recursive: true });
  const siteDir = path.join(medium, site.keys().site);
  return path.join(siteDir, readdirSync(siteDir)[0] as string);
}

let a: Standby | undefined;
/** a time inside set 5, between its two batches of rows, and the rows committed by then */
let inside: { time: string; rows: string } | undefined;

/** The PID the standby's server runs as now (promotion to a target restarts it). */
const pidOf = (s: Standby) => Number(readFileSync(path.join(s.server.data, 'postmaster.pid'), 'utf8').split('\n')[0]);

test.after(() => {
  for (const s of standbys) {
    try {
      stopServer({ ...s.server, pid: pidOf(s) });
    } catch {
      // not running
    }
  }
  psql('DROP TABLE IF EXISTS standby_rows; DROP EXTENSION IF EXISTS amcheck', { input: true });
});

test('five media sets from a running source: the standby made from the first replays each of the others to its restore point', () => {
  psql(
    'CREATE EXTENSION IF NOT EXISTS amcheck; CREATE TABLE standby_rows (id serial PRIMARY KEY, v text); INSERT INTO standby_rows (v) SELECT md5(g::text) FROM generate_series(1, 100) g',
    {
      input: true,
    },
  );
  exportSet(['--pg-base']);
  for (const n of [50, 70, 90]) {
    psql(`INSERT INTO standby_rows (v) SELECT md5(g::text) FROM generate_series(1, ${n}) g`);
    exportSet();
  }
  // set 5: two batches, and a time between them that promotion can stop at
  psql('INSERT INTO standby_rows (v) SELECT md5(g::text) FROM generate_series(1, 30) g');
  const rows = view();
  sleepMs(1100);
  const time = new Date().toISOString();
  sleepMs(1100);
  psql('INSERT INTO standby_rows (v) SELECT md5(g::text) FROM generate_series(1, 40) g');
  exportSet();
  inside = { time, rows };
  assert.is(new Set(expected).size, 5, 'each set holds other rows');

  a = initStandby([media[0] as string]);
  assert.is(view(a.server), expected[0]);
  assert.is(psql('SELECT pg_is_in_recovery()', { server: a.server }), 't', 'a standby, not a promoted server');
  const conf = readFileSync(path.join(a.server.data, 'postgresql.conf'), 'utf8');
  assert.match(conf, 'archive_mode = off');
  assert.match(conf, "listen_addresses = 'localhost'");
  assert.match(conf, /restore_command = '.* wal-fetch %f %p --from \S*\/wal\S* --standby'/);
  assert.not.match(conf, 'recovery_target_action', 'it never promotes by itself');

  for (const i of [1, 2]) {
    const r = apply(a, [media[i] as string], ['--json']);
    assert.is(r.code, EXIT.ok, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { applied: number[] }).applied, [i + 1]);
    assert.is(view(a.server), expected[i], `after set ${i + 1}: the source at its restore point`);
  }
  // again: nothing new, nothing changed
  const before = snapshot(a);
  const again = apply(a, [media[2] as string]);
  assert.is(again.code, EXIT.ok, again.stderr);
  assert.match(again.stderr, 'nothing new');
  assert.is(snapshot(a), before);
});

test('tampered, out-of-order and forked media are refused with nothing applied', () => {
  const s = a as Standby;
  const before = snapshot(s);
  // a byte flipped in a volume of set 4: found as it is decrypted, before any WAL moves
  const tampered = copyOfSet(3);
  const fd = openSync(path.join(tampered, 'payload.000'), 'r+');
  const at = Math.floor(fstatSync(fd).size / 2);
  writeSync(fd, Buffer.from([0x5a]), 0, 1, at);
  closeSync(fd);
  const t = apply(s, [path.dirname(path.dirname(tampered))]);
  assert.is(t.code, EXIT.failed, t.stderr);
  assert.is(snapshot(s), before, 'a tampered bundle changes nothing');

  // set 5 while set 4 is missing
  const gap = apply(s, [media[4] as string], ['--json']);
  assert.is(gap.code, EXIT.conflict, gap.stderr);
  assert.is((JSON.parse(gap.stderr) as { code: string }).code, 'standby-gap');
  assert.is(snapshot(s), before);

  // a seq 4 of another chain (re-signed with the site key, prev pointing elsewhere)
  const forked = copyOfSet(3);
  resignManifest(forked, site.keys().signingKey, (m) => {
    m.prev = 'f'.repeat(64);
  });
  const fork = apply(s, [path.dirname(path.dirname(forked))], ['--json']);
  assert.is(fork.code, EXIT.conflict, fork.stderr);
  assert.is((JSON.parse(fork.stderr) as { code: string }).code, 'standby-fork');
  assert.is(snapshot(s), before);
  assert.is(view(s.server), expected[2], 'the standby still shows set 3');
});

test('status: what was applied, the replay position, and how far behind the media, with Nagios exit codes', () => {
  const s = a as Standby;
  const ok = airlock(['standby', 'apply', '--standby', s.dir, '--from', media[3] as string, ...keyArgs()]);
  assert.is(ok.code, EXIT.ok, ok.stderr);
  assert.is(view(s.server), expected[3]);

  const prom = path.join(tmp(), 'standby.prom');
  const st = airlock(['standby', 'status', '--standby', s.dir, '--prometheus', prom]);
  assert.is(st.code, 0, st.stdout + st.stderr);
  assert.match(st.stdout, /^AIRLOCK STANDBY OK - /);
  assert.match(readFileSync(prom, 'utf8'), 'airlock_standby_applied_seq{site="site-standby"} 4');
  const behind = airlock(['standby', 'status', '--standby', s.dir, '--from', media[4] as string, '--allowed-signers', site.keys().allowedSigners, '--json']);
  assert.is(behind.code, 1, behind.stderr);
  const j = JSON.parse(behind.stdout) as {
    level: string;
    applied: { seq: number };
    media: { newestSeq: number; behind: number };
    server: { inRecovery: boolean; lastCommit: string };
  };
  assert.equal([j.level, j.applied.seq, j.media.newestSeq, j.media.behind, j.server.inRecovery], ['warning', 4, 5, 1, true]);
  assert.match(j.server.lastCommit, /^\d{4}-\d{2}-\d{2}T/);
  const gone = airlock(['standby', 'status', '--standby', tmp()]);
  assert.is(gone.code, 3, 'no standby there: unknown');
  assert.match(gone.stdout, /^AIRLOCK UNKNOWN - /);
});

test('drill --standby checks the running standby read-only: replay, the table checks of the export, pg_amcheck', () => {
  const s = a as Standby;
  const lsn = psql('SELECT pg_last_wal_replay_lsn()', { server: s.server });
  const r = airlock(['drill', '--standby', s.dir, '--json']);
  assert.is(r.code, EXIT.ok, r.stdout + r.stderr);
  const report = JSON.parse(r.stdout) as { result: string; checks: { name: string; result: string }[] };
  assert.equal(
    report.checks.map((c) => [c.name, c.result]),
    [
      ['standby', 'pass'],
      ['table checks', 'pass'],
      ['pg_amcheck', 'pass'],
    ],
  );
  assert.is(psql('SELECT pg_is_in_recovery()', { server: s.server }), 't', 'still a standby');
  assert.is(psql('SELECT pg_last_wal_replay_lsn()', { server: s.server }), lsn, 'nothing replayed or written by the drill');
});

test('two applies at once: one applies, the other is refused by the lock; a rebase on a newer base backup; then promote to the newest data', async () => {
  const s = a as Standby;
  const both = await Promise.all(
    [0, 1].map(() => airlockAsync(['standby', 'apply', '--standby', s.dir, '--from', media[4] as string, ...keyArgs(), '--json'])),
  );
  // never both at once: the second is refused by the lock, or (when the first ended within the
  // lock's short wait for a starter at the same moment) runs after it and finds nothing new
  const outcomes = both
    .map((r) => {
      if (r.code === EXIT.conflict) return (JSON.parse(r.stderr) as { code: string }).code;
      assert.is(r.code, EXIT.ok, r.stderr);
      return (JSON.parse(r.stdout) as { applied: number[] }).applied.join(',') || 'nothing new';
    })
    .sort();
  assert.ok(
    [
      ['5', 'locked'],
      ['5', 'nothing new'],
    ].some((o) => o.join() === outcomes.join()),
    `one applies set 5, the other is refused or finds nothing new: ${outcomes.join(' / ')}`,
  );
  assert.is(view(s.server), expected[4], 'after set 5: the source at its restore point');

  // a sixth set with a new base backup: with --rebase, the standby is laid down again from it
  psql('INSERT INTO standby_rows (v) SELECT md5(g::text) FROM generate_series(1, 25) g');
  exportSet(['--pg-base']);
  const rebased = apply(s, [media[5] as string], ['--rebase']);
  assert.is(rebased.code, EXIT.ok, rebased.stderr);
  assert.match(rebased.stderr, 'rebasing the standby on the base backup of seq 6');
  const state = JSON.parse(readFileSync(path.join(s.dir, 'state.json'), 'utf8')) as { baseSeq: number; applied: { seq: number } };
  assert.equal([state.baseSeq, state.applied.seq], [6, 6]);
  assert.is(view(s.server), expected[5], 'after the rebase: the source at the restore point of set 6');
  assert.is(psql('SELECT pg_is_in_recovery()', { server: s.server }), 't');
  for (const d of [path.dirname(s.server.data), s.dir])
    assert.not.ok(
      readdirSync(d).some((n) => n.includes('airlock-old')),
      `the old copy is gone from ${d}`,
    );

  // a time inside set 4, which replay passed: the standby cannot rewind
  const passed = airlock(['standby', 'promote', '--standby', s.dir, '--target-time', (inside as { time: string }).time, '--json']);
  assert.is(passed.code, EXIT.conflict, passed.stderr);
  assert.is((JSON.parse(passed.stderr) as { code: string }).code, 'standby-passed');
  assert.is(psql('SELECT pg_is_in_recovery()', { server: s.server }), 't');

  const p = airlock(['standby', 'promote', '--standby', s.dir, '--latest']);
  assert.is(p.code, EXIT.ok, p.stderr);
  assert.match(p.stderr, /promoted to timeline \d+ after \d+\.\d s/);
  assert.is(psql('SELECT pg_is_in_recovery()', { server: s.server }), 'f');
  psql("INSERT INTO standby_rows (v) VALUES ('written after the takeover')", { server: s.server });
  const after = apply(s, [media[5] as string], ['--json']);
  assert.is(after.code, EXIT.conflict);
  assert.is((JSON.parse(after.stderr) as { code: string }).code, 'standby-promoted');
});

test('promote to a time inside media that just arrived: exactly the rows committed by then', () => {
  // a second standby, made from the first four sets at once, and handed set 5 only at promotion
  const b = initStandby(media.slice(0, 4));
  assert.is(view(b.server), expected[3]);
  // set 5 with a byte flipped: refused, and the standby (stopped to set the target) goes on as it was
  const tampered = copyOfSet(4);
  const fd = openSync(path.join(tampered, 'payload.000'), 'r+');
  writeSync(fd, Buffer.from([0xa5]), 0, 1, Math.floor(fstatSync(fd).size / 3));
  closeSync(fd);
  const bad = airlock([
    'standby',
    'promote',
    '--standby',
    b.dir,
    '--from',
    path.dirname(path.dirname(tampered)),
    ...keyArgs(),
    '--target-time',
    (inside as { time: string }).time,
  ]);
  assert.is(bad.code, EXIT.failed, bad.stderr);
  assert.is(psql('SELECT pg_is_in_recovery()', { server: b.server }), 't', 'still a standby');
  assert.is(view(b.server), expected[3]);
  const r = airlock([
    'standby',
    'promote',
    '--standby',
    b.dir,
    '--from',
    media[4] as string,
    ...keyArgs(),
    '--target-time',
    (inside as { time: string }).time,
    '--json',
  ]);
  assert.is(r.code, EXIT.ok, r.stderr);
  const out = JSON.parse(r.stdout) as { how: string; seconds: number };
  assert.is(out.how, 'target');
  assert.is(view(b.server), (inside as { rows: string }).rows, 'the first batch of set 5, not the second');
  assert.is(psql('SELECT pg_is_in_recovery()', { server: b.server }), 'f');
});

test.run();
