/*
 * PostgreSQL in bundles against a real PostgreSQL 15 that archives through the built wal-push: base
 * backups, dumps and WAL exported by the built CLI, the continuity the verifier reads from the
 * cleartext manifests, and point-in-time restores into fresh clusters.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Manifest } from '../../manifests/manifest.js';
import { FAULT_POINTS } from '../../agent/faults.js';
import { parseWalFileName, segmentName, segmentNumber } from '../../agent/postgres/wal.js';
import { resignManifest } from '../resign.js';
import { AIRLOCK, airlock, airlockVerify, exportArgs, tmp } from '../helpers.js';
import { cluster, pgSite, psql, stopServer, writeLoad, type Server } from '../pg.js';
import { EXIT } from '../../manifests/errors.js';

const site = pgSite('site-pg');
const k = site.keys;
const { medium, conninfo, exportPg } = site;

/** Runs `airlock restore pg` into a new data folder, started and recovered; returns the running server. */
const restorePg = (target: readonly string[], from = medium) => site.restorePg(target, from);

test('a base backup export and a WAL-only export: coverage in the manifest, continuity and a recovery window', () => {
  psql(
    'CREATE TABLE IF NOT EXISTS t (id serial PRIMARY KEY, v text, at timestamptz DEFAULT clock_timestamp()); INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 1000) g',
  );
  const first = exportPg(['--pg-base']);
  const pg1 = first.manifest.coverage?.postgres;
  assert.ok(pg1, 'coverage.postgres');
  assert.ok(pg1.base, 'a base backup');
  assert.match(pg1.restorePoint?.name ?? '', new RegExp(`^airlock-${k().site}-1-[0-9a-f]{6}$`));
  assert.is(pg1.segmentSize, 16 * 1024 * 1024);
  assert.ok(pg1.wal.length >= 1);
  psql("INSERT INTO t (v) VALUES ('between')");
  const second = exportPg([]);
  const pg2 = second.manifest.coverage?.postgres;
  assert.ok(pg2 && !pg2.base && pg2.wal.length >= 1, 'WAL only');
  assert.match(pg2.restorePoint?.name ?? '', new RegExp(`^airlock-${k().site}-2-[0-9a-f]{6}$`));
  assert.ok((pg2.wal[0]?.first ?? '') > (pg1.wal.at(-1)?.last ?? ''), 'the second bundle continues after the first');

  const v = airlockVerify(['--allowed-signers', k().allowedSigners, '--json', medium]);
  assert.is(v.code, EXIT.ok, v.stdout + v.stderr);
  const report = JSON.parse(v.stdout) as { sites: { site: string; windows?: { baseSeq: number; lastSeq: number; to: { time?: string } }[] }[] };
  const w = report.sites[0]?.windows;
  assert.ok(w?.length === 1, JSON.stringify(report.sites));
  assert.is(w[0]?.baseSeq, 1);
  assert.is(w[0]?.lastSeq, 2);
  assert.is(w[0]?.to.time, pg2.restorePoint?.time);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Ids of `load` rows committed at or before `time` (by their commit timestamps), in id order. */
function committedBy(time: string, server?: Server): string {
  return psql(
    `SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM load WHERE pg_xact_commit_timestamp(xmin) <= '${time}'::timestamptz`,
    server ? { server } : {},
  );
}

function ids(server?: Server): string {
  return psql("SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM load", server ? { server } : {});
}

test('point in time under a steady write load: a time between two exports, the restore point name, --latest; archiving stays off', async () => {
  const c = cluster();
  psql('CREATE TABLE load (id serial PRIMARY KEY, v text)');
  const load = writeLoad('load', 2500);
  await sleep(300);
  const base = exportPg(['--pg-base']);
  await sleep(800);
  const wal = exportPg([]);
  await load;
  const p1 = base.manifest.coverage?.postgres?.restorePoint;
  const p2 = wal.manifest.coverage?.postgres?.restorePoint;
  assert.ok(p1 && p2);
  // a commit between the two exports, as the target
  const between = psql(
    `SELECT to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' FROM load WHERE pg_xact_commit_timestamp(xmin) > '${p1.time}'::timestamptz AND pg_xact_commit_timestamp(xmin) < '${p2.time}'::timestamptz ORDER BY id OFFSET 20 LIMIT 1`,
  );
  assert.match(between, /^\d{4}-\d{2}-\d{2} [\d:.]+\+00$/);
  const expected = committedBy(between);
  const later = ids();
  assert.ok(later.length > expected.length, 'rows were committed after the target');

  const spoolBefore = readdirSync(c.spool).sort();
  const atTime = restorePg(['--target-time', between]);
  try {
    assert.is(atTime.result.baseSeq, base.manifest.seq);
    assert.equal(atTime.result.bundles, [base.manifest.seq, wal.manifest.seq]);
    assert.is(ids(atTime.server), expected, 'every row committed by the target, none after');
    assert.is(psql('SHOW archive_mode', { server: atTime.server }), 'off');
    assert.is(psql("SELECT setting FROM pg_settings WHERE name = 'listen_addresses'", { server: atTime.server }), 'localhost');
    psql('CREATE TABLE written_after_restore AS SELECT g FROM generate_series(1, 100000) g; SELECT pg_switch_wal()', { server: atTime.server });
  } finally {
    stopServer(atTime.server);
  }
  assert.equal(
    readdirSync(c.spool).filter((n) => !spoolBefore.includes(n) && n.startsWith('00000002')),
    [],
    'the restored cluster archived nothing into the spool',
  );

  const byName = restorePg(['--target-name', p1.name]);
  try {
    assert.is(byName.result.baseSeq, base.manifest.seq);
    const got = ids(byName.server);
    const must = committedBy(p1.time);
    assert.ok(got.startsWith(must), 'every row committed before the restore point');
    const after = new Date(Date.parse(p1.time) + 100).toISOString();
    assert.ok(committedBy(after).startsWith(got), 'nothing committed well after it');
  } finally {
    stopServer(byName.server);
  }

  const latest = restorePg(['--latest']);
  try {
    const got = ids(latest.server);
    assert.ok(got.startsWith(committedBy(p2.time)), 'everything up to the last export');
    assert.ok(later.startsWith(got), 'and nothing that was not in the source');
  } finally {
    stopServer(latest.server);
  }
});

test('a target time needs an offset, and one after the newest data is refused unless --or-latest', () => {
  const data = path.join(tmp(), 'data');
  const base = ['restore', 'pg', '--from', medium, '--identity', k().identity, '--allowed-signers', k().allowedSigners, '--pgdata', data];
  const bare = airlock([...base, '--target-time', '2026-01-01 12:00:00']);
  assert.is(bare.code, EXIT.usage, bare.stderr);
  assert.match(bare.stderr, 'explicit offset');
  const future = airlock([...base, '--target-time', '2999-01-01T00:00:00Z']);
  assert.is(future.code, EXIT.usage, future.stderr);
  assert.match(future.stderr, 'after the newest data');
});

test('logical dumps: every database and the globals; one restores into a fresh database with equal rows', () => {
  psql('DROP DATABASE IF EXISTS shop');
  psql('CREATE DATABASE shop');
  psql(
    "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric); INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 5000) g; CREATE TABLE notes (id serial PRIMARY KEY, body text); INSERT INTO notes (body) SELECT repeat('n', g % 50) FROM generate_series(1, 700) g",
    { db: 'shop' },
  );
  const b = exportPg(['--pg-dump']);
  const pg = b.manifest.coverage?.postgres;
  assert.ok(pg && !pg.base);
  assert.ok(pg.dumps >= 3, `dumps of postgres, shop and the globals: ${pg.dumps}`);
  psql('DROP DATABASE IF EXISTS shop_restored');
  psql('CREATE DATABASE shop_restored');
  const c = cluster();
  const r = airlock([
    'restore',
    'pg',
    '--dump',
    '--from',
    medium,
    '--identity',
    k().identity,
    '--allowed-signers',
    k().allowedSigners,
    '--database',
    'shop',
    '--dbname',
    `host=${c.socketDir} port=${c.port} user=postgres dbname=shop_restored`,
    '--json',
  ]);
  assert.is(r.code, EXIT.ok, r.stderr);
  assert.is(JSON.parse(r.stdout).seq, b.manifest.seq);
  const sums = (db: string) =>
    ['items', 'notes']
      .map((t) => psql(`SELECT count(*) || ' ' || md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM ${t} x`, { db }))
      .join('; ');
  assert.is(sums('shop_restored'), sums('shop'));
  const missing = airlock([
    'restore',
    'pg',
    '--dump',
    '--from',
    medium,
    '--identity',
    k().identity,
    '--allowed-signers',
    k().allowedSigners,
    '--database',
    'nosuchdb',
    '--dbname',
    `host=${c.socketDir} port=${c.port} user=postgres dbname=shop_restored`,
  ]);
  assert.is(missing.code, EXIT.input, missing.stderr);
  assert.match(missing.stderr, 'no dump of database');
});

/**
 * A copy of the medium whose first WAL-only bundle no longer claims its first segment (manifest
 * rewritten and signed again): only continuity across bundles can tell. Returns the copy and the
 * segment dropped.
 */
function withWalGap(): { copy: string; dropped: string } {
  const copy = tmp('airlock-medium-');
  cpSync(medium, copy, { recursive: true });
  const site = path.join(copy, k().site);
  // the first WAL-only bundle loses its first segment from its claims: only continuity can tell
  const victim = readdirSync(site)
    .sort()
    .map((n) => path.join(site, n))
    .find((d) => {
      const pg = (JSON.parse(readFileSync(path.join(d, 'manifest.json'), 'utf8')) as Manifest).coverage?.postgres;
      return pg !== undefined && pg.base === undefined && pg.wal.length > 0;
    }) as string;
  let dropped = '';
  resignManifest(victim, k().signingKey, (m) => {
    const pg = m.coverage?.postgres as NonNullable<NonNullable<Manifest['coverage']>['postgres']>;
    const r = pg.wal[0] as { timeline: number; first: string; last: string };
    dropped = r.first;
    const n = parseWalFileName(r.first) as { name: string; log: number; seg: number };
    const next = segmentName(r.timeline, segmentNumber(n, pg.segmentSize) + 1n, pg.segmentSize);
    pg.wal = r.first === r.last ? pg.wal.slice(1) : [{ ...r, first: next }, ...pg.wal.slice(1)];
  });
  return { copy, dropped };
}

test('a WAL segment missing from the set: airlock-verify exits 1 with wal-gap, and restore refuses', () => {
  const { copy, dropped } = withWalGap();
  const v = airlockVerify(['--allowed-signers', k().allowedSigners, copy]);
  assert.is(v.code, EXIT.failed, v.stdout + v.stderr);
  assert.match(v.stdout, `wal-gap: `);
  assert.match(v.stdout, dropped);
  // with the key, the claim no longer matches what the payload holds
  const deep = airlockVerify(['--allowed-signers', k().allowedSigners, '--identity', k().identity, copy]);
  assert.is(deep.code, EXIT.failed);
  assert.match(deep.stdout, 'coverage.postgres.wal does not list the WAL segments the payload holds');
  const clean = airlockVerify(['--allowed-signers', k().allowedSigners, medium]);
  assert.is(clean.code, EXIT.ok, clean.stdout);
  const r = airlock([
    'restore',
    'pg',
    '--from',
    copy,
    '--identity',
    k().identity,
    '--allowed-signers',
    k().allowedSigners,
    '--pgdata',
    path.join(tmp(), 'data'),
    '--latest',
  ]);
  assert.is(r.code, EXIT.failed, r.stderr);
  assert.match(r.stderr, 'wal-gap');
});

test('an export killed at every fault point (seeded) and by SIGKILL: no bundle left that does not verify, the chain continues', () => {
  const c = cluster();
  const media = tmp('airlock-medium-');
  const state = tmp('airlock-state-');
  const args = exportArgs(k(), media, state, ['--pg', conninfo(), '--wal-spool', c.spool, '--pg-base', '--pg-dump']);
  const first = airlock(args);
  assert.is(first.code, EXIT.ok, first.stderr);
  for (let seed = 0; seed < FAULT_POINTS.length; seed++) {
    psql('INSERT INTO t (v) VALUES (md5(random()::text))');
    const r = airlock(args, { env: { ...process.env, AIRLOCK_FAULT: `seed:${seed}` } });
    assert.is(r.code, 137, `${FAULT_POINTS[seed]}: ${r.stderr}`);
    assert.match(r.stderr, `fault point ${FAULT_POINTS[seed]}`);
  }
  // and a kill from outside while pg_basebackup streams
  const killed = spawnSync(process.execPath, [...AIRLOCK, ...args], { timeout: 700, killSignal: 'SIGKILL' });
  assert.is(killed.signal, 'SIGKILL');
  const last = airlock(args);
  assert.is(last.code, EXIT.ok, last.stderr);
  const v = airlockVerify(['--allowed-signers', k().allowedSigners, '--identity', k().identity, '--json', media]);
  assert.is(v.code, EXIT.ok, v.stdout);
  const report = JSON.parse(v.stdout) as { bundles: { seq: number }[]; sites: { newest: { seq: number }; windows?: unknown[] }[] };
  const seqs = report.bundles.map((b) => b.seq);
  assert.equal(
    seqs,
    Array.from({ length: seqs.length }, (_, i) => i + 1),
    'continuous seqs, nothing half-written',
  );
  assert.ok((report.sites[0]?.windows?.length ?? 0) >= 2, 'recovery windows from the first and the last base backup');
  assert.equal(
    readdirSync(path.join(media, k().site)).filter((n) => n.endsWith('.partial')),
    [],
    'no partial folder left after the next export',
  );
});

test('airlock check: the test cluster passes; a long archive_timeout and a missing spool are problems', () => {
  const c = cluster();
  const ok = airlock(['check', '--pg', conninfo(), '--wal-spool', c.spool, '--json']);
  assert.is(ok.code, EXIT.ok, ok.stdout + ok.stderr);
  const checks = (JSON.parse(ok.stdout) as { checks: { check: string; result: string }[] }).checks;
  for (const name of ['wal_level', 'archive_mode', 'archive_command', 'archive_timeout', 'tool: pg_dump', 'spool']) {
    assert.is(checks.find((x) => x.check === name)?.result, 'ok', name);
  }
  const strict = airlock(['check', '--pg', conninfo(), '--wal-spool', path.join(tmp(), 'nope'), '--max-archive-timeout', '5']);
  assert.is(strict.code, EXIT.failed, strict.stdout);
  assert.match(strict.stdout, 'problem: archive_timeout: archive_timeout = 10 s: set at most 5 s');
  assert.match(strict.stdout, 'problem: spool');
  // a password never goes on a command line
  const secret = airlock(exportArgs(k(), tmp(), tmp(), ['--pg', `${conninfo()} password=hunter2`, '--wal-spool', c.spool]));
  assert.is(secret.code, EXIT.usage, secret.stderr);
  assert.match(secret.stderr, 'PGPASSFILE');
  const down = airlock(['check', '--pg', 'host=/nonexistent port=1 user=postgres dbname=postgres']);
  assert.is(down.code, EXIT.failed);
  assert.match(down.stdout, 'problem: connection');
});

function drill(from: string): {
  code: number;
  report: { result: string; checks: { name: string; result: string; detail: string }[]; recoverySeconds?: number };
  stderr: string;
} {
  const prefix = path.join(tmp(), 'drill');
  const r = airlock([
    'drill',
    '--from',
    from,
    '--identity',
    k().identity,
    '--allowed-signers',
    k().allowedSigners,
    '--airlock-cli',
    cluster().cli,
    '--timeout',
    '120',
    '--report',
    prefix,
  ]);
  return { code: r.code, report: JSON.parse(readFileSync(`${prefix}.json`, 'utf8')), stderr: r.stderr + r.stdout };
}

test('drill: passes on the media set with table checks and pg_amcheck; fails on a corrupted volume and on a WAL gap', () => {
  psql('INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 300) g; CREATE INDEX IF NOT EXISTS t_v ON t (v)');
  exportPg(['--pg-table-checks']);
  const good = drill(medium);
  assert.is(good.code, EXIT.ok, good.stderr);
  assert.is(good.report.result, 'pass');
  const byName = new Map(good.report.checks.map((c) => [c.name, c]));
  assert.is(byName.get('postgresql recovery')?.result, 'pass');
  assert.is(byName.get('table checks')?.result, 'pass', byName.get('table checks')?.detail);
  assert.match(byName.get('table checks')?.detail ?? '', /\d+ table\(s\) of postgres/);
  assert.is(byName.get('pg_amcheck')?.result, 'pass', byName.get('pg_amcheck')?.detail);
  assert.ok((good.report.recoverySeconds ?? 0) > 0);

  const corrupt = tmp('airlock-medium-');
  cpSync(medium, corrupt, { recursive: true });
  const site = path.join(corrupt, k().site);
  const last = readdirSync(site).sort().at(-1) as string;
  const vol = path.join(site, last, 'payload.000');
  const bytes = readFileSync(vol);
  bytes[100] = (bytes[100] as number) ^ 0xff;
  writeFileSync(vol, bytes);
  const bad = drill(corrupt);
  assert.is(bad.code, EXIT.failed, bad.stderr);
  assert.is(bad.report.result, 'fail');
  assert.is(bad.report.checks.find((c) => c.name === 'verify')?.result, 'fail');
  assert.match(bad.report.checks.find((c) => c.name === 'verify')?.detail ?? '', 'checksum-mismatch');

  const gap = drill(withWalGap().copy);
  assert.is(gap.code, EXIT.failed, gap.stderr);
  assert.is(gap.report.result, 'fail');
  assert.match(gap.report.checks.find((c) => c.name === 'verify')?.detail ?? '', 'wal-gap');
});

test('restore pg hashes volumes as it decrypts them: a damaged volume in the base bundle fails cleanly, no data folder left', () => {
  const copy = tmp('airlock-medium-');
  cpSync(medium, copy, { recursive: true });
  const vol = path.join(copy, k().site, `${k().site}-00000001`, 'payload.000');
  const bytes = readFileSync(vol);
  bytes[bytes.length - 100] = (bytes[bytes.length - 100] as number) ^ 0xff;
  writeFileSync(vol, bytes);
  const parent = tmp();
  const data = path.join(parent, 'data');
  const r = airlock([
    'restore',
    'pg',
    '--from',
    copy,
    '--identity',
    k().identity,
    '--allowed-signers',
    k().allowedSigners,
    '--pgdata',
    data,
    '--target-name',
    (JSON.parse(readFileSync(path.join(copy, k().site, `${k().site}-00000002`, 'manifest.json'), 'utf8')) as Manifest).coverage?.postgres?.restorePoint
      ?.name as string,
  ]);
  assert.is(r.code, EXIT.failed, r.stderr);
  // age notices the damaged chunk (or the volume's hash does, at its end): either way nothing is kept
  assert.match(r.stderr, /airlock: error: .*(checksum-mismatch|sha256 differs|authentication|decrypt)/i);
  assert.equal(readdirSync(parent), [], 'no data folder, WAL folder or staging left');
});

test.run();
