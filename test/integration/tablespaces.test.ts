/*
 * A cluster with two tablespaces against a real PostgreSQL 15: the base backup carries each one's
 * tar, the manifest names them and the verifier checks that claim against the payload, and a restore
 * maps each to a folder of its own (refusing before anything is unpacked when one has no folder or
 * a folder is not empty). Also the parallel dump restore (restore pg --dump --jobs).
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Manifest } from '../../manifests/manifest.js';
import { resealBundle } from '../reseal.js';
import { resignManifest } from '../resign.js';
import { airlock, airlockVerify, tmp } from '../helpers.js';
import { cluster, clusterDir, pgSite, psql, stopServer, type Server } from '../pg.js';

const site = pgSite('site-tblspc');
const k = site.keys;

/** Row count and an order-independent digest of a table. */
const digest = (table: string, server?: Server) =>
  psql(`SELECT count(*) || ' ' || md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM ${table} x`, server ? { server } : {});

let base: { path: string; manifest: Manifest };
let walOnly: { path: string; manifest: Manifest };
const where = { fast: '', slow: '' };

test('a cluster with two tablespaces exports: the manifest names each by OID, name and location; both verifiers accept it', () => {
  where.fast = clusterDir('ts-fast');
  where.slow = clusterDir('ts-slow');
  psql(`CREATE TABLESPACE fast LOCATION '${where.fast}'`);
  psql(`CREATE TABLESPACE "slow space" LOCATION '${where.slow}'`);
  psql(
    'CREATE TABLE big (id int PRIMARY KEY, v text) TABLESPACE fast; INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 100000) g; CREATE TABLE small (id int, v text) TABLESPACE "slow space"; INSERT INTO small SELECT g, \'s\' || g FROM generate_series(1, 50) g',
  );
  // what an export killed during its base backup would leave
  mkdirSync(path.join(site.stateDir, '.pg-base-killed', 'backup'), { recursive: true });
  writeFileSync(path.join(site.stateDir, '.pg-base-killed', 'backup', 'base.tar'), 'x');
  base = site.exportPg(['--pg-base', '--pg-dump']);
  const spaces = base.manifest.coverage?.postgres?.base?.tablespaces;
  const oids = psql("SELECT string_agg(oid::text, ',' ORDER BY oid) FROM pg_tablespace WHERE spcname IN ('fast', 'slow space')");
  assert.equal(spaces, [
    { oid: Number(oids.split(',')[0]), name: 'fast', location: where.fast },
    { oid: Number(oids.split(',')[1]), name: 'slow space', location: where.slow },
  ]);
  assert.equal(
    readdirSync(site.stateDir).filter((n) => n.startsWith('.pg-base-')),
    [],
    "the scratch folder of the backup is gone, and a killed export's too",
  );
  // rows written after the base backup reach the restore through WAL, into the tablespace
  psql('INSERT INTO big SELECT g, md5(g::text) FROM generate_series(100001, 101000) g; DELETE FROM small WHERE id <= 10');
  walOnly = site.exportPg([]);
  const keyless = airlockVerify(['--allowed-signers', k().allowedSigners, site.medium]);
  assert.is(keyless.code, 0, keyless.stdout + keyless.stderr);
  const deep = airlockVerify(['--allowed-signers', k().allowedSigners, '--identity', k().identity, site.medium]);
  assert.is(deep.code, 0, deep.stdout + deep.stderr);
});

test('restore pg maps each tablespace to its folder and recovers to a restore point with equal rows', () => {
  const home = clusterDir('restored-tblspc');
  const fast = path.join(home, 'fast');
  const slow = path.join(home, 'slow');
  const point = walOnly.manifest.coverage?.postgres?.restorePoint?.name as string;
  const r = site.restorePg([
    '--target-name',
    point,
    '--tablespace-map',
    'fast=' + fast,
    '--tablespace-map',
    `${base.manifest.coverage?.postgres?.base?.tablespaces?.[1]?.oid}=${slow}`,
  ]);
  try {
    assert.is(digest('big', r.server), digest('big'));
    assert.is(digest('small', r.server), digest('small'));
    assert.match(digest('big', r.server), /^101000 /);
    assert.is(
      psql("SELECT string_agg(spcname || '=' || pg_tablespace_location(oid), ',' ORDER BY oid) FROM pg_tablespace WHERE spcname NOT LIKE 'pg\\_%'", {
        server: r.server,
      }),
      `fast=${fast},slow space=${slow}`,
    );
    const oid = String(base.manifest.coverage?.postgres?.base?.tablespaces?.[0]?.oid);
    assert.is(readlinkSync(path.join(r.server.data, 'pg_tblspc', oid)), fast);
    const spaces = base.manifest.coverage?.postgres?.base?.tablespaces ?? [];
    assert.equal(
      (r.result as unknown as { tablespaces: unknown }).tablespaces,
      [
        { oid: spaces[0]?.oid, name: 'fast', dir: fast },
        { oid: spaces[1]?.oid, name: 'slow space', dir: slow },
      ],
      'the JSON result says where each went',
    );
    assert.ok(
      readdirSync(fast).some((n) => n.startsWith('PG_15_')),
      'the tablespace folder holds its version folder',
    );
  } finally {
    stopServer(r.server);
  }
});

test('a tablespace without a mapping is refused before anything is unpacked, naming each; so is a mapping to a non-empty folder', () => {
  const parent = tmp();
  const data = path.join(parent, 'data');
  const fast = path.join(parent, 'fast');
  const args = [...site.restoreArgs(data), '--latest'];
  const none = airlock(args);
  assert.is(none.code, 2, none.stderr);
  assert.match(none.stderr, 'airlock: error: the base backup has tablespaces with no --tablespace-map');
  for (const t of base.manifest.coverage?.postgres?.base?.tablespaces ?? [])
    assert.match(none.stderr, `${t.oid} (${JSON.stringify(t.name)}, was ${t.location})`);
  assert.not.match(none.stderr, 'decrypting');
  const one = airlock([...args, '--tablespace-map', `fast=${fast}`]);
  assert.is(one.code, 2, one.stderr);
  assert.match(one.stderr, 'a tablespace with no --tablespace-map: ');
  assert.match(one.stderr, '"slow space"');
  assert.equal(readdirSync(parent), [], 'nothing unpacked, no folder made');

  const full = path.join(parent, 'full');
  const slow = path.join(parent, 'slow');
  mkdirSync(full);
  writeFileSync(path.join(full, 'keep.txt'), 'kept');
  const busy = airlock([...args, '--tablespace-map', `fast=${full}`, '--tablespace-map', `slow space=${slow}`]);
  assert.is(busy.code, 4, busy.stderr);
  assert.match(busy.stderr, `${full} (tablespace "fast") is not empty`);
  assert.equal(readdirSync(parent), ['full']);
  assert.equal(readdirSync(full), ['keep.txt']);
  const unknown = airlock([...args, '--tablespace-map', `nosuch=${slow}`]);
  assert.is(unknown.code, 2, unknown.stderr);
  assert.match(unknown.stderr, 'no tablespace of that OID or name');
});

test('the index and the manifest must agree on the tablespaces: a manifest that leaves one out fails the deep check', () => {
  // the base bundle alone (seq 1 needs no predecessor), its manifest signed again without one tablespace
  const copy = tmp('airlock-medium-');
  const bundle = path.join(copy, k().site, path.basename(base.path));
  cpSync(base.path, bundle, { recursive: true });
  resignManifest(bundle, k().signingKey, (m) => {
    const b = m.coverage?.postgres?.base;
    if (b?.tablespaces) b.tablespaces = b.tablespaces.slice(0, 1);
  });
  const keyless = airlockVerify(['--allowed-signers', k().allowedSigners, copy]);
  assert.is(keyless.code, 0, keyless.stdout);
  const deep = airlockVerify(['--allowed-signers', k().allowedSigners, '--identity', k().identity, copy]);
  assert.is(deep.code, 1, deep.stdout);
  assert.match(deep.stdout, 'coverage.postgres.base.tablespaces lists 1 tablespace(s), the payload holds 2');
});

test('a re-sealed bundle whose tablespace tar holds a link: unsafe-entry, and neither the data folder nor a tablespace folder is left', async () => {
  const src = tmp();
  mkdirSync(path.join(src, 'PG_15_202209061'));
  symlinkSync('/etc', path.join(src, 'PG_15_202209061', 'evil'));
  const tar = spawnSync('tar', ['-c', '-f', '-', '-C', src, '.']);
  assert.is(tar.status, 0, String(tar.stderr));
  const [fast, slow] = base.manifest.coverage?.postgres?.base?.tablespaces ?? [];
  const hostile = tmp('airlock-medium-');
  await resealBundle(base.path, hostile, k(), (entries) => {
    assert.ok(entries.has(`pg/tblspc/${fast?.oid}/000001`), [...entries.keys()].filter((n) => n.startsWith('pg/tblspc/')).join(' '));
    entries.set(`pg/tblspc/${fast?.oid}/000001`, tar.stdout);
  });
  const home = clusterDir('restored-hostile');
  const r = airlock([
    ...site.restoreArgs(path.join(home, 'data'), hostile),
    '--latest',
    '--tablespace-map',
    `${fast?.oid}=${path.join(home, 'fast')}`,
    '--tablespace-map',
    `${slow?.oid}=${path.join(home, 'slow')}`,
  ]);
  assert.is(r.code, 1, r.stderr);
  assert.match(r.stderr, 'airlock: error: the base backup holds "PG_15_202209061/evil"');
  assert.equal(readdirSync(home), [], 'nothing left beside the targets');
});

test('airlock runbook: the restore command maps every tablespace of the newest base backup', () => {
  const config = path.join(tmp(), 'airlock.conf');
  writeFileSync(
    config,
    [
      `site = ${k().site}`,
      `signing-key = ${k().signingKey}`,
      `recipient = ${k().recipient}`,
      `state-dir = ${site.stateDir}`,
      `spool = ${cluster().spool}`,
      '',
    ].join('\n'),
  );
  const r = airlock(['runbook', '--config', config]);
  assert.is(r.code, 0, r.stderr);
  for (const t of base.manifest.coverage?.postgres?.base?.tablespaces ?? []) {
    assert.match(r.stdout, `     --tablespace-map ${t.oid}=/var/lib/postgresql/tablespaces/${t.oid} \\\n`);
    assert.match(r.stdout, `Tablespace ${t.oid} is ${JSON.stringify(t.name)}, on the source in ${JSON.stringify(t.location)}`);
  }
});

test('drill: maps the tablespaces into its scratch and passes', () => {
  const prefix = path.join(tmp(), 'drill');
  const r = airlock([
    'drill',
    '--from',
    site.medium,
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
  const report = JSON.parse(readFileSync(`${prefix}.json`, 'utf8')) as { result: string; checks: { name: string; result: string; detail: string }[] };
  assert.is(r.code, 0, r.stderr + r.stdout);
  assert.is(report.checks.find((c) => c.name === 'postgresql recovery')?.result, 'pass');
});

test('restore pg --dump --jobs 2: pg_restore runs in parallel from a scratch file that is removed; equal rows', () => {
  psql('DROP DATABASE IF EXISTS copy');
  psql('CREATE DATABASE copy');
  const c = cluster();
  const staging = tmp();
  const args = [
    'restore',
    'pg',
    '--dump',
    '--from',
    site.medium,
    '--identity',
    k().identity,
    '--allowed-signers',
    k().allowedSigners,
    '--database',
    'postgres',
    '--seq',
    String(base.manifest.seq),
    '--staging',
    staging,
    '--dbname',
    `host=${c.socketDir} port=${c.port} user=postgres dbname=copy`,
  ];
  for (const bad of ['0', '-1', '2.5', 'two']) {
    const r = airlock([...args, '--jobs', bad]);
    assert.is(r.code, 2, `--jobs ${bad}: ${r.stderr}`);
    assert.match(r.stderr, `--jobs ${bad}: not a positive whole number`);
  }
  // pg_restore fails (no such database): the scratch file goes all the same
  const failed = airlock([...args.slice(0, -1), `host=${c.socketDir} port=${c.port} user=postgres dbname=nosuchdb`, '--jobs', '2']);
  assert.is(failed.code, 5, failed.stderr);
  assert.match(failed.stderr, 'pg_restore exited with status 1');
  assert.equal(readdirSync(staging), [], 'nothing left after a failure');
  const r = airlock([...args, '--jobs', '2']);
  assert.is(r.code, 0, r.stderr);
  assert.equal(readdirSync(staging), [], 'the dump file and its parts are gone');
  // the dump was taken at the base backup: the rows written after it are not in it
  assert.is(psql('SELECT count(*) FROM big', { db: 'copy' }), '100000');
  assert.is(
    psql("SELECT count(*) || ' ' || md5(string_agg(x::text, ',' ORDER BY x::text)) FROM small x", { db: 'copy' }),
    psql("SELECT count(*) || ' ' || md5(string_agg(x::text, ',' ORDER BY x::text)) FROM (SELECT g AS id, 's' || g AS v FROM generate_series(1, 50) g) x"),
  );
});

// the cluster is shared with the tests that run after these: leave it without tablespaces, which a
// plain pg_basebackup of it would otherwise have to map
test.after(() => {
  psql('DROP DATABASE IF EXISTS copy');
  psql('DROP TABLE IF EXISTS big, small');
  psql('DROP TABLESPACE IF EXISTS fast');
  psql('DROP TABLESPACE IF EXISTS "slow space"');
});

test.run();
