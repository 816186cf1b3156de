/*
 * Point-in-time restores at the edges of what airlock-verify promises, against the real PostgreSQL 15
 * cluster: every time of a window on an idle site (from the base backup's real end to the newest
 * restore point), in every ISO 8601 form with an offset; targets before the window refused before
 * anything is unpacked; failed recoveries that say which phase failed and why; the drill's scratch
 * folder; and the on-appliance RPO of an idle server.
 */
import { appendFileSync, chmodSync, cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EXIT } from '../../manifests/errors.js';
import type { Manifest } from '../../manifests/manifest.js';
import { airlock, airlockVerify, tmp } from '../helpers.js';
import { cluster, clusterDir, freePort, pgSite, psql, sleepMs, stopServer, switchWal, writeLoad, type Restored } from '../pg.js';
import { resignManifest } from '../resign.js';

const site = pgSite('site-pitr');
const { medium, exportPg, restorePg, restoreArgs } = site;

/** `iso` (UTC, from a manifest or the server) written at `offsetMin` from UTC, in a given style. */
function inZone(iso: string, offsetMin: number, style: { sep: 'T' | ' '; colon: boolean; fraction: boolean }): string {
  const us = Date.parse(iso) * 1000 + Number(/\.\d{3}(\d{3})/.exec(iso)?.[1] ?? '0');
  const local = new Date(Math.floor(us / 1000) + offsetMin * 60_000).toISOString();
  const frac = String(us % 1_000_000).padStart(6, '0');
  const sign = offsetMin < 0 ? '-' : '+';
  const hh = String(Math.floor(Math.abs(offsetMin) / 60)).padStart(2, '0');
  const mm = String(Math.abs(offsetMin) % 60).padStart(2, '0');
  return `${local.slice(0, 10)}${style.sep}${local.slice(11, 19)}${style.fraction ? `.${frac}` : ''}${sign}${hh}${style.colon ? ':' : ''}${mm}`;
}

/** The commit time of the newest row of `table`, from the source, in UTC with microseconds. */
const newestCommit = (table: string) =>
  psql(`SELECT to_char(max(pg_xact_commit_timestamp(xmin)) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') FROM ${table}`);

function restoredCount(r: Restored, table: string): number {
  try {
    return Number(psql(`SELECT count(*) FROM ${table}`, { server: r.server }));
  } finally {
    stopServer(r.server);
  }
}

let manifests: { base: Manifest; wal: Manifest } | undefined;
/** the base backup taken under a write load, and a medium that holds only its bundle */
let loaded: { base: NonNullable<NonNullable<NonNullable<Manifest['coverage']>['postgres']>['base']>; medium: string; inside: string } | undefined;

test('an idle site: every time in the window restores, in every ISO 8601 form, exact to the commit', () => {
  psql('ALTER SYSTEM SET autovacuum = off; SELECT pg_reload_conf()', { input: true });
  try {
    psql('CREATE TABLE quiet (id int PRIMARY KEY); INSERT INTO quiet SELECT generate_series(1, 100)', { input: true });
    const base = exportPg(['--pg-base']).manifest;
    psql('INSERT INTO quiet SELECT generate_series(101, 200)');
    const last = newestCommit('quiet');
    sleepMs(1500); // nothing is written from here to the next export
    const wal = exportPg([]).manifest;
    manifests = { base, wal };
    const stop = base.coverage?.postgres?.base?.stopTime as string;
    const end = wal.coverage?.postgres?.restorePoint?.time as string;

    const v = airlockVerify(['--allowed-signers', site.keys().allowedSigners, '--json', medium]);
    assert.is(v.code, EXIT.ok, v.stdout);
    const window = (JSON.parse(v.stdout) as { sites: { windows: { from: { time: string }; to: { time: string } }[] }[] }).sites[0]?.windows[0];
    assert.equal(
      window && [window.from.time, window.to.time],
      [stop, end],
      "the verifier prints the window from the base backup's end to the newest restore point",
    );
    assert.ok(Date.parse(last) + 1000 < Date.parse(end), 'a quiet second before the second export');

    // the window's first instant, as the manifest writes it
    assert.is(restoredCount(restorePg(['--target-time', stop]), 'quiet'), 100);
    // after the last commit, with nothing after it until the restore point: every row
    const quietTime = new Date(Date.parse(last) + 700).toISOString();
    const atQuiet = restorePg(['--target-time', inZone(quietTime, 60, { sep: 'T', colon: true, fraction: true })]);
    assert.is(atQuiet.result.recovered.lastCommit, last, 'the restore says which commit it recovered to');
    assert.is(restoredCount(atQuiet, 'quiet'), 200);
    // whole seconds, a negative offset with minutes
    const whole = new Date(Math.ceil(Date.parse(last) / 1000) * 1000).toISOString();
    assert.is(restoredCount(restorePg(['--target-time', inZone(whole, -330, { sep: 'T', colon: true, fraction: false })]), 'quiet'), 200);
    // the window's last instant, with a space and an offset without a colon; told as people read it
    const data = path.join(clusterDir(`end-${Math.random().toString(36).slice(2, 8)}`), 'data');
    const r = airlock([
      ...restoreArgs(data),
      '--target-time',
      inZone(end, 60, { sep: ' ', colon: false, fraction: true }),
      '--port',
      String(freePort()),
      '--start',
      '--airlock-cli',
      cluster().cli,
      '--timeout',
      '120',
    ]);
    try {
      assert.is(r.code, EXIT.ok, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `airlock: recovered to [0-9A-F]+/[0-9A-F]+, the last transaction replayed committed at ${last.replace(/\./g, '\\.')}; promoted to timeline \\d+`,
        ),
      );
      assert.is(psql('SELECT count(*) FROM quiet', { server: { data, port: portOf(data), pid: 0, socketDir: data, log: '' } }), '200');
    } finally {
      stopIfRunning(data);
    }
  } finally {
    psql('ALTER SYSTEM RESET autovacuum; SELECT pg_reload_conf()', { input: true });
  }
});

test('target times: malformed or impossible ones are usage errors, as is a location after the newest data', () => {
  const data = path.join(tmp(), 'data');
  for (const t of [
    '2026-02-30T00:00:00Z',
    '2026-01-01T24:00:00Z',
    '2026-01-01T12:00:00',
    '2026-01-01T12:00:00.1234567Z',
    '2026-01-01T12:00:00+1:00',
    '2026-01-01T12:00:00+25:00',
    'yesterday',
  ]) {
    const r = airlock([...restoreArgs(data), '--target-time', t]);
    assert.is(r.code, EXIT.usage, `${t}: ${r.stderr}`);
    assert.match(r.stderr, 'airlock: hint: write it like');
  }
  // a location after the newest restore point: PostgreSQL would replay everything and then fail
  const beyond = airlock([...restoreArgs(data), '--target-lsn', 'FFFF/0']);
  assert.is(beyond.code, EXIT.usage, beyond.stderr);
  assert.match(beyond.stderr, 'is after the newest data of the set');
});

test("a recovery that fails after the server started names the phase and the server's FATAL line", async () => {
  // a base backup taken under a write load, whose manifest is re-signed to claim it was consistent
  // a minute before it started: a time inside the backup passes airlock's check, and PostgreSQL
  // then stops before the consistent point, which it refuses after it started recovering
  psql('CREATE TABLE during (id serial PRIMARY KEY, v text, lsn pg_lsn DEFAULT pg_current_wal_insert_lsn())');
  const load = writeLoad('during', 400);
  sleepMs(200);
  const { path: bundle, manifest } = exportPg(['--pg-base']);
  await load;
  const base = manifest.coverage?.postgres?.base;
  assert.ok(base);
  // the last commit before the backup's end: the row after it was inserted before the stop LSN
  const inside = psql(
    `SELECT to_char(pg_xact_commit_timestamp(a.xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') FROM during a JOIN during b ON b.id = a.id + 1 WHERE a.lsn > '${base.startLsn}' AND b.lsn < '${base.stopLsn}' ORDER BY a.id DESC LIMIT 1`,
  );
  assert.match(inside, /^\d{4}-/, 'a commit inside the base backup');
  // a set that starts at this bundle: no earlier base backup can serve a time inside it
  const only = tmp('airlock-medium-');
  cpSync(bundle, path.join(only, site.keys().site, path.basename(bundle)), { recursive: true });
  loaded = { base, medium: only, inside };
  const copy = tmp('airlock-medium-');
  cpSync(medium, copy, { recursive: true });
  resignManifest(path.join(copy, site.keys().site, path.basename(bundle)), site.keys().signingKey, (m) => {
    const b = m.coverage?.postgres?.base;
    if (b) b.stopTime = new Date(Date.parse(b.startTime) - 60_000).toISOString();
  });
  const data = path.join(clusterDir(`failing-${Math.random().toString(36).slice(2, 8)}`), 'data');
  const r = airlock([
    ...restoreArgs(data, copy),
    '--target-time',
    inside,
    '--port',
    String(freePort()),
    '--start',
    '--airlock-cli',
    cluster().cli,
    '--timeout',
    '120',
  ]);
  try {
    assert.is(r.code, EXIT.failed, r.stderr);
    assert.match(r.stderr, 'airlock: error: recovery failed after the restored server started: FATAL:');
    assert.match(r.stderr, 'requested recovery stop point is before consistent recovery point');
  } finally {
    stopIfRunning(data);
  }
});

test('a target before the window is refused before anything is unpacked, also one inside the second the base backup ended', () => {
  assert.ok(manifests && loaded, 'the idle and the loaded base backups were taken');
  const idleStop = manifests.base.coverage?.postgres?.base?.stopTime as string;
  // the last commit before the loaded backup ended, inside the second it ended in (most of the
  // time): the label's STOP TIME, cut to the second, let such a time through, and PostgreSQL failed
  // after the whole base backup was unpacked
  const targets = [new Date(Date.parse(idleStop) - 1).toISOString(), loaded.inside];
  for (const t of targets) {
    const parent = clusterDir(`early-${Math.random().toString(36).slice(2, 8)}`);
    const r = airlock([
      ...restoreArgs(path.join(parent, 'data'), loaded.medium),
      '--target-time',
      t,
      '--port',
      String(freePort()),
      '--start',
      '--airlock-cli',
      cluster().cli,
      '--timeout',
      '120',
    ]);
    stopIfRunning(path.join(parent, 'data'));
    assert.is(r.code, EXIT.input, `${t}: ${r.stderr}`);
    assert.match(r.stderr, 'no base backup in the set ends before the target');
    assert.equal(readdirSync(parent), [], 'nothing unpacked');
  }
});

test('a restored server that cannot start says so, with its FATAL line', () => {
  const running = restorePg(['--latest']);
  try {
    // the same port as a running server: the new one cannot listen
    const data = path.join(clusterDir(`clash-${Math.random().toString(36).slice(2, 8)}`), 'data');
    const r = airlock([...restoreArgs(data), '--latest', '--port', String(running.server.port), '--start', '--airlock-cli', cluster().cli, '--timeout', '60']);
    assert.is(r.code, EXIT.failed, r.stderr);
    assert.match(r.stderr, 'airlock: error: the restored server did not start: FATAL:');
    assert.match(r.stderr, 'could not create any TCP/IP sockets');
  } finally {
    stopServer(running.server);
  }
});

test("a restored cluster runs nothing the bundle's configuration names: commands, libraries, log paths and includes are kept aside", () => {
  const c = cluster();
  const marks = clusterDir(`marks-${Math.random().toString(36).slice(2, 8)}`);
  const mark = (n: string) => path.join(marks, n);
  const included = path.join(marks, 'included.conf');
  writeFileSync(included, `recovery_end_command = 'touch ${mark('included')}'\n`);
  const conf = path.join(c.data, 'postgresql.conf');
  const original = readFileSync(conf);
  // what a stolen appliance key can seal into a base backup; the source itself never reloads it
  appendFileSync(
    conf,
    [
      '',
      `recovery_end_command = 'touch ${mark('recovery-end')}'`,
      `archive_cleanup_command = 'touch ${mark('cleanup')}'`,
      "shared_preload_libraries = 'airlock_no_such_library'",
      `dynamic_library_path = '${marks}'`,
      'logging_collector = on',
      `log_directory = '${marks}'`,
      `external_pid_file = '${mark('pid')}'`,
      `include_if_exists = '${included}'`,
      "work_mem = '7MB'",
      "timezone = 'Europe/Berlin'",
      '',
    ].join('\n'),
  );
  let restored: Restored | undefined;
  try {
    exportPg(['--pg-base']);
    restored = restorePg(['--latest']);
    const warnings = (restored.result as unknown as { warnings: string[] }).warnings.join('\n');
    assert.match(warnings, `the source's configuration is in ${restored.server.data}/airlock-source-config for review`);
    for (const name of [
      'recovery_end_command',
      'archive_cleanup_command',
      'shared_preload_libraries',
      'dynamic_library_path',
      'logging_collector',
      'log_directory',
      'external_pid_file',
    ])
      assert.match(warnings, name);
    assert.match(warnings, `include_if_exists '${included}'`);
    assert.not.match(warnings, /listen_addresses|unix_socket_directories/, 'what airlock sets itself is not reported as dropped');
    assert.is(psql('SHOW work_mem', { server: restored.server }), '7MB', 'a safe setting is kept');
    assert.is(psql('SHOW timezone', { server: restored.server }), 'Europe/Berlin');
    assert.is(psql('SHOW shared_preload_libraries', { server: restored.server }), '');
    assert.is(psql('SHOW logging_collector', { server: restored.server }), 'off');
    assert.ok(
      readFileSync(path.join(restored.server.data, 'airlock-source-config', 'postgresql.conf'), 'utf8').includes('recovery_end_command'),
      "the source's file is kept for review",
    );
  } finally {
    if (restored) stopServer(restored.server);
    writeFileSync(conf, original);
  }
  assert.equal(
    readdirSync(marks).filter((n) => n !== 'included.conf'),
    [],
    'no command ran, no log or pid file was written',
  );
});

test('drill leaves no scratch folder behind', () => {
  const scratchParent = tmp('airlock-tmp-');
  chmodSync(scratchParent, 0o755);
  const prefix = path.join(tmp(), 'drill');
  const r = airlock(
    [
      'drill',
      '--from',
      medium,
      '--identity',
      site.keys().identity,
      '--allowed-signers',
      site.keys().allowedSigners,
      '--airlock-cli',
      cluster().cli,
      '--timeout',
      '120',
      '--report',
      prefix,
    ],
    { env: { ...process.env, TMPDIR: scratchParent } },
  );
  assert.is(r.code, EXIT.ok, r.stderr + r.stdout);
  assert.is((JSON.parse(readFileSync(`${prefix}.json`, 'utf8')) as { result: string }).result, 'pass');
  assert.equal(readdirSync(scratchParent), [], 'the drill removed the folder it made');
});

test('status --pg: an idle server that archived everything has an RPO of 0 however old its newest segment; unarchived WAL ages', () => {
  const state = tmp('airlock-state-');
  const status = (at: Date, pg: boolean) => {
    const r = airlock(
      ['status', '--site', site.keys().site, '--state-dir', state, '--wal-spool', cluster().spool, ...(pg ? ['--pg', site.conninfo()] : []), '--json'],
      { env: { ...process.env, AIRLOCK_NOW: at.toISOString() } },
    );
    const s = JSON.parse(r.stdout) as {
      checks: { name: string; level: string; message: string }[];
      rpo: { onAppliance: number | null; onApplianceFrom?: string };
    };
    return { ...s, wal: s.checks.find((c) => c.name === 'wal age') };
  };
  const later = () => new Date(Date.now() + 20 * 60_000);
  // the server may log a running-transactions record after a switch; a fresh switch settles it
  let idle = status(later(), true);
  for (let i = 0; i < 3 && idle.rpo.onAppliance !== 0; i++) {
    switchWal();
    idle = status(later(), true);
  }
  assert.is(idle.rpo.onAppliance, 0, JSON.stringify(idle.wal));
  assert.is(idle.rpo.onApplianceFrom, 'server');
  assert.is(idle.wal?.level, 'ok');
  assert.match(idle.wal?.message ?? '', 'the server wrote nothing after');

  const bound = status(later(), false);
  assert.is(bound.rpo.onApplianceFrom, 'spool');
  assert.is(bound.wal?.level, 'critical');
  assert.match(bound.wal?.message ?? '', 'at most that much WAL is not in the spool');

  psql('INSERT INTO quiet VALUES (1000)');
  const pending = status(later(), true);
  assert.is(pending.rpo.onApplianceFrom, 'server');
  assert.ok((pending.rpo.onAppliance ?? 0) > 19 * 60, JSON.stringify(pending.rpo));
  assert.is(pending.wal?.level, 'critical');
  assert.match(pending.wal?.message ?? '', 'they are not in the spool yet');
});

/** Stops a restored server left running in `data`, if one is. */
function stopIfRunning(data: string): void {
  const pidFile = path.join(data, 'postmaster.pid');
  const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').split('\n')[0]) : 0;
  if (pid > 0) stopServer({ data, port: 0, pid, socketDir: data, log: path.join(data, 'airlock-restore.log') });
}

/** The port of the server running in `data` (postmaster.pid's fourth line). */
const portOf = (data: string) => Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[3]);

test.run();
