/*
 * The main PostgreSQL cases on every major version the tests run a real server of (test/pg.ts MAJORS:
 * 15, the machine's own, and 17 from a Debian 13 root): archiving through the C helper, base + dumps
 * and WAL-only exports, continuity read without the key, point-in-time restores to a time and to a
 * restore point, a dump restore of databases whose names hold a newline and 0x1F, a drill, and
 * `airlock check`. The other PostgreSQL tests (pg, pitr, wal, ...) go deeper on 15 alone: the code
 * paths they cover do not depend on the major.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkSegmentHeader } from '../../agent/postgres/wal.js';
import { airlock, airlockVerify, exportArgs, run, tmp } from '../helpers.js';
import { EXIT } from '../../manifests/errors.js';
import { MAJORS, cluster, pgBin, pgSite, psql, stopServer, switchWal, type Major } from '../pg.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Database names psql's text output could not carry: a newline, and the unit separator. */
const ODD_NAMES = ['a\nb', 'x\x1fy'];
const quoteIdent = (s: string) => `"${s.replace(/"/g, '""')}"`;

function cases(major: Major): void {
  const site = pgSite(`site-pg${major}`, 'in-folder', major);
  const k = site.keys;
  const sql = (q: string, opts: { db?: string } = {}) => psql(q, { major, ...opts });
  const binArgs = major === 15 ? [] : ['--pg-bin', pgBin(major)];
  let base: ReturnType<typeof site.exportPg> | undefined;
  let wal: ReturnType<typeof site.exportPg> | undefined;
  let between = '';

  test(`PostgreSQL ${major}: archiving through airlock-wal-push spools segments of ${major}'s WAL format; wal-push refuses a format airlock does not know`, () => {
    const c = cluster('in-folder', major);
    assert.match(sql('SELECT version()'), `PostgreSQL ${major}.`);
    assert.match(sql('SHOW archive_command'), 'native/airlock-wal-push %p');
    const name = switchWal(major);
    const bytes = readFileSync(path.join(c.spool, name));
    assert.is(readFileSync(path.join(c.spool, `${name}.sha256`), 'utf8'), `${sha256(bytes)}  ${name}\n`);
    const checked = checkSegmentHeader(name, bytes.subarray(0, 40), { fileSize: bytes.length, major });
    assert.is(checked.header.pgVersion, major);

    // the same segment as a server of an unknown major would write it: the helper and node refuse it
    const src = path.join(tmp(), name);
    const foreign = Buffer.from(bytes);
    foreign.writeUInt16LE(0xd119, 0);
    writeFileSync(src, foreign);
    for (const push of [[c.walPush], [process.execPath, c.cli, 'wal-push']]) {
      const spool = tmp('airlock-spool-');
      const r = run(push[0] as string, [...push.slice(1), src, '--spool', spool]);
      assert.is(r.code, 1, r.stderr);
      assert.match(r.stderr, `${name}: magic 0xD119 is not the wal of any supported version (postgresql 13 to 17)`);
      assert.equal(readdirSync(spool), [], 'nothing spooled');
    }
    // and one that reached a spool anyway is refused at ingest, the real one beside it taken
    const spool = tmp('airlock-spool-');
    const foreignName = name.replace(/.$/, (d) => (d === 'F' ? 'E' : 'F'));
    writeFileSync(path.join(spool, name), bytes);
    writeFileSync(path.join(spool, `${name}.sha256`), `${sha256(bytes)}  ${name}\n`);
    writeFileSync(path.join(spool, foreignName), foreign);
    writeFileSync(path.join(spool, `${foreignName}.sha256`), `${sha256(foreign)}  ${foreignName}\n`);
    const ingest = airlock(['wal-ingest', '--spool', spool, '--state-dir', tmp('airlock-state-'), '--json']);
    assert.is(ingest.code, EXIT.failed, ingest.stderr);
    const out = JSON.parse(ingest.stdout) as { ingested: string[]; problems: { code: string; message: string }[] };
    assert.equal(out.ingested, [name]);
    assert.equal(
      out.problems.map((p) => p.code),
      ['bad-wal'],
    );
    assert.match(out.problems[0]?.message ?? '', `${foreignName}: not a valid postgresql wal segment: magic 0xD119 is not the wal of any supported version`);
  });

  test(`PostgreSQL ${major}: a base backup with dumps and a WAL-only export; the major in the manifest; continuity and the window without the key`, () => {
    sql('CREATE TABLE IF NOT EXISTS pitr (id int PRIMARY KEY, v text)');
    for (const db of ODD_NAMES) {
      sql(`DROP DATABASE IF EXISTS ${quoteIdent(db)}`);
      sql(`CREATE DATABASE ${quoteIdent(db)}`);
      sql(`CREATE TABLE odd (id int PRIMARY KEY, name text); INSERT INTO odd SELECT g, current_database() || g FROM generate_series(1, 300) g`, { db });
    }
    base = site.exportPg(['--pg-base', '--pg-dump']);
    const pg1 = base.manifest.coverage?.postgres;
    assert.ok(pg1?.base, 'a base backup');
    assert.is(pg1.major, major);
    assert.ok(pg1.dumps >= 4, `postgres, both odd names and the globals: ${pg1.dumps}`);

    sql('INSERT INTO pitr SELECT g, md5(g::text) FROM generate_series(1, 100) g');
    between = sql(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'`);
    sql('INSERT INTO pitr SELECT g, md5(g::text) FROM generate_series(101, 200) g');
    wal = site.exportPg([]);
    const pg2 = wal.manifest.coverage?.postgres;
    assert.ok(pg2 && !pg2.base && pg2.wal.length >= 1, 'WAL only');
    assert.is(pg2.major, major);

    const v = airlockVerify(['--allowed-signers', k().allowedSigners, '--json', site.medium]);
    assert.is(v.code, EXIT.ok, v.stdout + v.stderr);
    const w = (JSON.parse(v.stdout) as { sites: { windows?: { baseSeq: number; lastSeq: number; to: { time?: string } }[] }[] }).sites[0]?.windows;
    assert.equal(
      w?.map((x) => [x.baseSeq, x.lastSeq, x.to.time]),
      [[1, 2, pg2.restorePoint?.time]],
    );
  });

  test(`PostgreSQL ${major}: point in time to a time and to a restore point, with ${major}'s programs`, () => {
    assert.ok(base && wal, 'the exports above ran');
    const atTime = site.restorePg(['--target-time', between]);
    try {
      assert.equal(atTime.result.bundles, [1, 2]);
      assert.is(psql('SELECT count(*) FROM pitr', { server: atTime.server }), '100', 'the rows committed by the time, none after');
      assert.match(psql('SELECT version()', { server: atTime.server }), `PostgreSQL ${major}.`);
    } finally {
      stopServer(atTime.server);
    }
    const byName = site.restorePg(['--target-name', wal.manifest.coverage?.postgres?.restorePoint?.name as string]);
    try {
      assert.is(psql('SELECT count(*) FROM pitr', { server: byName.server }), '200');
    } finally {
      stopServer(byName.server);
    }
  });

  test(`PostgreSQL ${major}: dumps of databases named with a newline and 0x1F restore with equal rows`, () => {
    const c = cluster('in-folder', major);
    for (const [i, db] of ODD_NAMES.entries()) {
      const target = `odd_restored_${i}`;
      sql(`DROP DATABASE IF EXISTS ${target}`);
      sql(`CREATE DATABASE ${target}`);
      const r = airlock([
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
        db,
        '--dbname',
        `host=${c.socketDir} port=${c.port} user=postgres dbname=${target}`,
        '--json',
        ...binArgs,
      ]);
      assert.is(r.code, EXIT.ok, r.stderr);
      const sums = (d: string) => sql("SELECT count(*) || ' ' || md5(string_agg(name, ',' ORDER BY id)) FROM odd", { db: d });
      assert.is(sums(target), sums(db));
      assert.match(sums(target), /^300 /);
      assert.ok(sql('SELECT name FROM odd WHERE id = 1', { db: target }).startsWith(db), 'the rows name the source database');
    }
  });

  test(`PostgreSQL ${major}: drill passes with ${major}'s programs`, () => {
    const prefix = path.join(tmp(), 'drill');
    const c = cluster('in-folder', major);
    const r = airlock([
      'drill',
      '--from',
      site.medium,
      '--identity',
      k().identity,
      '--allowed-signers',
      k().allowedSigners,
      '--airlock-cli',
      c.cli,
      '--timeout',
      '120',
      '--report',
      prefix,
      '--os-user',
      String(c.user.uid),
      ...binArgs,
    ]);
    const report = JSON.parse(readFileSync(`${prefix}.json`, 'utf8')) as { result: string; checks: { name: string; result: string; detail: string }[] };
    assert.is(r.code, EXIT.ok, r.stderr + r.stdout);
    assert.is(report.result, 'pass');
    for (const check of ['postgresql recovery', 'pg_amcheck']) assert.is(report.checks.find((x) => x.name === check)?.result, 'pass', check);
  });

  test(`PostgreSQL ${major}: airlock check states the major; client programs older than the server are a problem`, () => {
    const c = cluster('in-folder', major);
    const ok = airlock(['check', '--pg', site.conninfo(), '--wal-spool', c.spool, '--json', ...binArgs]);
    assert.is(ok.code, EXIT.ok, ok.stdout + ok.stderr);
    const checks = (JSON.parse(ok.stdout) as { checks: { check: string; result: string; message: string }[] }).checks;
    assert.match(checks.find((x) => x.check === 'connection')?.message ?? '', `PostgreSQL ${major} answers`);
    assert.is(checks.find((x) => x.check === 'version')?.result, 'ok');
    if (major > 15) {
      const old = airlock(['check', '--pg', site.conninfo(), '--wal-spool', c.spool, '--pg-bin', pgBin(15)]);
      assert.is(old.code, EXIT.failed, old.stdout);
      assert.match(old.stdout, `problem: tool: pg_dump: ${pgBin(15)}/pg_dump is version 15, older than the server's ${major}`);
    }
  });
}

for (const major of MAJORS) cases(major);

test("a role without EXECUTE on pg_create_restore_point: the export fails with the server's ERROR line naming the function", () => {
  const c = cluster();
  psql('DROP ROLE IF EXISTS airlock_norp');
  psql(
    'CREATE ROLE airlock_norp LOGIN REPLICATION; GRANT pg_read_all_settings TO airlock_norp; GRANT EXECUTE ON FUNCTION pg_switch_wal() TO airlock_norp; REVOKE EXECUTE ON FUNCTION pg_create_restore_point(text) FROM PUBLIC, airlock_norp',
  );
  const site = pgSite('site-norp');
  const k = site.keys;
  const state = tmp('airlock-state-');
  const medium = tmp('airlock-medium-');
  const r = airlock(exportArgs(k(), medium, state, ['--pg', `host=${c.socketDir} port=${c.port} user=airlock_norp dbname=postgres`, '--wal-spool', c.spool]));
  assert.is(r.code, EXIT.source, r.stderr);
  assert.match(r.stderr, 'airlock: error: postgresql: ERROR: permission denied for function pg_create_restore_point');
  assert.not.match(r.stderr, '^', 'no caret line');
  assert.not.match(r.stderr, 'LINE 1');
});

test.run();
