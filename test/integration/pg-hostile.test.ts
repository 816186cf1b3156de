/*
 * A PostgreSQL bundle re-sealed by the holder of the site's signing key with WAL whose contents do not
 * match their names: every check of the bundle passes (it is signed and its hashes are right), so
 * only the check of what the WAL says against its name stands between it and a recovery that
 * replays the wrong WAL. `restore pg --start` and `drill` must stop and say so.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { lsnValue } from '../../manifests/coverage.js';
import type { Manifest } from '../../manifests/manifest.js';
import { segmentName } from '../../agent/postgres/wal.js';
import { airlock, airlockVerify, exportArgs, makeKeys, run, tmp } from '../helpers.js';
import { PG_BIN, cluster, clusterDir, freePort, psql } from '../pg.js';
import { resealBundle } from '../reseal.js';
import { EXIT } from '../../manifests/errors.js';

const keys = makeKeys('site-ph');

test("restore pg and drill from a re-signed bundle whose first WAL segment holds the next segment: recovery stops with wal-fetch's refusal, nothing reports success", async () => {
  const c = cluster();
  psql('CREATE TABLE IF NOT EXISTS hostile (id serial PRIMARY KEY, v text); INSERT INTO hostile (v) SELECT md5(g::text) FROM generate_series(1, 500) g');
  const medium = tmp('airlock-medium-');
  const e = airlock(
    exportArgs(keys, medium, tmp('airlock-state-'), [
      '--pg',
      `host=${c.socketDir} port=${c.port} user=postgres dbname=postgres`,
      '--wal-spool',
      c.spool,
      '--wal-timeout',
      '60',
      '--pg-base',
    ]),
  );
  assert.is(e.code, EXIT.ok, e.stderr);
  const bundle = e.stdout.trim();

  // the segment the base backup starts in, which recovery must read first
  const base = (JSON.parse(readFileSync(path.join(bundle, 'manifest.json'), 'utf8')) as Manifest).coverage?.postgres?.base;
  assert.ok(base, 'a base backup');
  const startSegno = lsnValue(base.startLsn) / BigInt(16 * 1024 * 1024);
  const swapped = segmentName(base.timeline, startSegno, 16 * 1024 * 1024);
  const hostile = tmp('airlock-medium-');
  await resealBundle(bundle, hostile, keys, (entries) => {
    const next = [...entries.keys()].filter((n) => /^pg\/wal\/[0-9A-F]{24}$/.test(n) && path.basename(n) > swapped).sort()[0];
    assert.ok(
      entries.has(`pg/wal/${swapped}`) && next,
      `the start segment and one after it in the bundle: ${[...entries.keys()].filter((n) => n.startsWith('pg/wal/')).join(' ')}`,
    );
    entries.set(`pg/wal/${swapped}`, entries.get(next) as Buffer);
  });
  // the bundle checks out, with the key too: its signature, hashes and inner manifest are right
  const v = airlockVerify(['--allowed-signers', keys.allowedSigners, '--identity', keys.identity, hostile]);
  assert.is(v.code, EXIT.ok, v.stdout);

  const data = path.join(clusterDir(`hostile-${Math.random().toString(36).slice(2, 8)}`), 'data');
  const r = airlock([
    'restore',
    'pg',
    '--from',
    hostile,
    '--identity',
    keys.identity,
    '--allowed-signers',
    keys.allowedSigners,
    '--pgdata',
    data,
    '--port',
    String(freePort()),
    '--start',
    '--airlock-cli',
    c.cli,
    '--timeout',
    '120',
    '--latest',
  ]);
  const pid = /\(pid (\d+)\)/.exec(r.stderr)?.[1];
  if (pid) process.kill(Number(pid)); // a server that should never have come up
  assert.ok(r.code !== 0, `restore pg must fail: ${r.stderr}`);
  assert.match(r.stderr, /^airlock: error: [^\n]+\nairlock: hint: [^\n]+\n$/m);
  // the error quotes wal-fetch's refusal from the server's log, not only PostgreSQL's FATAL line
  assert.match(r.stderr, `airlock: error: recovery failed after the restored server started: airlock: error: ${swapped}: not a valid postgresql wal segment`);
  const log = readFileSync(path.join(data, readdirSync(data).find((n) => n.endsWith('.log')) ?? 'log'), 'utf8');
  assert.match(log, `airlock: error: ${swapped}: not a valid postgresql wal segment: page address`);
  assert.not.match(log, 'archive recovery complete');

  const prefix = path.join(tmp(), 'drill');
  const d = airlock([
    'drill',
    '--from',
    hostile,
    '--identity',
    keys.identity,
    '--allowed-signers',
    keys.allowedSigners,
    '--airlock-cli',
    c.cli,
    '--timeout',
    '120',
    '--report',
    prefix,
  ]);
  assert.is(d.code, EXIT.failed, d.stderr);
  const report = JSON.parse(readFileSync(`${prefix}.json`, 'utf8')) as { result: string; checks: { name: string; result: string; detail?: string }[] };
  assert.is(report.result, 'fail');
  assert.is(report.checks.find((x) => x.name === 'postgresql recovery')?.result, 'fail', JSON.stringify(report.checks));
});

/*
 * A history file that says timeline 2 forked right after the backup, in a bundle without any WAL of
 * timeline 2: PostgreSQL, recovering to the latest timeline, tries timeline 2's segments, finds none,
 * reads timeline 1's and replays them to the set's end. The lie only renumbers the new timeline;
 * restore pg checks that replay reached the set's last segment, which it did, with every row.
 */
test("restore pg from a re-signed bundle with a history file forking a timeline it has no WAL for: replay still reaches the set's end with every row", async () => {
  const c = cluster();
  psql('CREATE TABLE IF NOT EXISTS hostile (id serial PRIMARY KEY, v text); INSERT INTO hostile (v) SELECT md5(g::text) FROM generate_series(1, 500) g');
  const rows = psql('SELECT count(*) FROM hostile');
  const medium = tmp('airlock-medium-');
  const e = airlock(
    exportArgs(keys, medium, tmp('airlock-state-'), [
      '--pg',
      `host=${c.socketDir} port=${c.port} user=postgres dbname=postgres`,
      '--wal-spool',
      c.spool,
      '--wal-timeout',
      '60',
      '--pg-base',
    ]),
  );
  assert.is(e.code, EXIT.ok, e.stderr);
  const bundle = e.stdout.trim();
  const pg = (JSON.parse(readFileSync(path.join(bundle, 'manifest.json'), 'utf8')) as Manifest).coverage?.postgres;
  assert.ok(pg?.base && pg.timeline === 1, 'a base backup on timeline 1');
  const fork = pg.base.stopLsn;
  const hostile = tmp('airlock-medium-');
  await resealBundle(bundle, hostile, keys, () => {}, {
    entries: [
      {
        name: 'pg/wal/00000002.history',
        bytes: Buffer.from(`1\t${fork}\tno recovery target specified\n`),
        record: { type: 'pg-wal', name: '00000002.history', kind: 'history', timeline: 2 },
      },
    ],
    manifest: (m) => m.coverage?.postgres?.timelines.push({ timeline: 2, parent: 1, switchLsn: fork }),
  });
  const data = path.join(clusterDir(`hostile-${Math.random().toString(36).slice(2, 8)}`), 'data');
  const port = freePort();
  const r = airlock([
    'restore',
    'pg',
    '--from',
    hostile,
    '--identity',
    keys.identity,
    '--allowed-signers',
    keys.allowedSigners,
    '--pgdata',
    data,
    '--port',
    String(port),
    '--start',
    '--airlock-cli',
    c.cli,
    '--timeout',
    '120',
    '--latest',
  ]);
  const pid = /\(pid (\d+)\)/.exec(r.stderr)?.[1];
  try {
    assert.is(r.code, EXIT.ok, r.stderr);
    assert.match(r.stderr, /airlock: recovered to \S+, .*; promoted to timeline 3 after/);
    const q = run(path.join(PG_BIN, 'psql'), ['-X', '-A', '-t', '-h', data, '-p', String(port), '-U', 'postgres', '-c', 'SELECT count(*) FROM hostile']);
    assert.is(q.stdout.trim(), rows, q.stderr);
  } finally {
    if (pid) process.kill(Number(pid));
  }
});

test.run();
