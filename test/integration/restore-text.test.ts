/*
 * RESTORE.txt followed literally: its command lines (the ones indented by six spaces) are taken from
 * the files as text and run in order in one clean bash, with only stock tools on PATH, as a restore
 * operator with nothing but those tools would: a PostgreSQL set of a base bundle and two WAL-only
 * bundles, from a cluster that keeps its configuration in its data folder and from one that keeps it
 * outside (Debian's layout), and a bundle of configuration files with their modes, owners and times.
 */
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EXIT } from '../../manifests/errors.js';
import { airlock, exportArgs, makeKeys, run, tmp } from '../helpers.js';
import { PG_BIN, cluster, clusterDir, freePort, pgSite, psql, runAs, stopServer, type Layout } from '../pg.js';

/** The programs RESTORE.txt may use: the tools it names, coreutils and bash. Nothing else is on PATH. */
const STOCK = [
  'bash',
  'ssh-keygen',
  'sha256sum',
  'age',
  'zstd',
  'tar',
  'jq',
  'cat',
  'mkdir',
  'cp',
  'mv',
  'rm',
  'ln',
  'chown',
  'chmod',
  'touch',
  'grep',
  'sed',
  'sleep',
  'dirname',
  'runuser',
];

function stockPath(): string {
  const bin = tmp('airlock-stock-');
  chmodSync(bin, 0o755);
  for (const tool of STOCK) {
    const where = run('bash', ['-c', `command -v ${tool}`]).stdout.trim();
    assert.ok(where, `${tool} is installed`);
    symlinkSync(where, path.join(bin, tool));
  }
  return bin;
}

/** The command lines of each step of a RESTORE.txt: `1`..`6`, and `6a`, `6b`, `6c`. */
function commands(text: string): Map<string, string[]> {
  const steps = new Map<string, string[]>();
  let step = '';
  for (const line of text.split('\n')) {
    const top = /^(\d+)\. /.exec(line);
    const sub = /^ {3}(\d+[a-z])\. /.exec(line);
    if (top) step = top[1] as string;
    else if (sub) step = sub[1] as string;
    else if (line.startsWith('      ') && step) steps.set(step, [...(steps.get(step) ?? []), line]);
  }
  return steps;
}

/** Runs `script` in bash with only the stock tools, stopping at the first error; returns its output. */
function runLiterally(script: string, cwd: string): string {
  const r = run('bash', ['-e'], { input: script, cwd, env: { PATH: stockPath(), HOME: cwd, LANG: 'C' } });
  assert.is(r.code, 0, `${script}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  return r.stdout + r.stderr;
}

/** A folder holding copies of `bundles`, key.txt and allowed_signers, as the operator lays them out. */
function workFolder(bundles: readonly string[], keys: { identity: string; allowedSigners: string }): string {
  const work = clusterDir(`literal-${Math.random().toString(36).slice(2, 8)}`);
  for (const b of bundles) cpSync(b, path.join(work, path.basename(b)), { recursive: true });
  cpSync(keys.identity, path.join(work, 'key.txt'));
  cpSync(keys.allowedSigners, path.join(work, 'allowed_signers'));
  return work;
}

/** With `tablespace`, the table lives in a tablespace of its own (a second site on the in-folder cluster). */
function literalPgRestore(layout: Layout, tablespace = false): void {
  const site = pgSite(tablespace ? 'site-txt-tblspc' : `site-txt-${layout}`, layout);
  const c = cluster(layout);
  const on = { server: c };
  const lit = tablespace ? 'lit_ts' : 'lit';
  if (tablespace) psql(`CREATE TABLESPACE lit_space LOCATION '${clusterDir('lit-space')}'`, on);
  psql(`CREATE TABLE ${lit} (id int PRIMARY KEY)${tablespace ? ' TABLESPACE lit_space' : ''}; INSERT INTO ${lit} SELECT generate_series(1, 100)`, {
    ...on,
    input: true,
  });
  const bundles = [site.exportPg(['--pg-base'])];
  psql(`INSERT INTO ${lit} SELECT generate_series(101, 200)`, on);
  bundles.push(site.exportPg([]));
  psql(`INSERT INTO ${lit} SELECT generate_series(201, 300)`, on);
  bundles.push(site.exportPg([]));
  psql(`INSERT INTO ${lit} SELECT generate_series(301, 400)`, on); // after the last restore point: not restored
  assert.is(bundles[0]?.manifest.coverage?.postgres?.base !== undefined, true);
  const text = (b: { path: string }) => readFileSync(path.join(b.path, 'RESTORE.txt'), 'utf8');
  if (layout === 'debian')
    assert.match(text(bundles[0] as { path: string }), 'pg/config/ holds the configuration files the source kept outside its data folder');
  const work = workFolder(
    bundles.map((b) => b.path),
    site.keys(),
  );
  const port = freePort();
  const [base, ...later] = bundles.map((b) => commands(text(b)));
  const steps = (m: Map<string, string[]> | undefined, names: readonly string[]) => names.flatMap((n) => m?.get(n) ?? []);
  assert.ok(base?.get('6a') && base.get('6c'), 'the base bundle gives steps 6a and 6c');
  const script = [...steps(base, ['1', '2', '3', '4', '6', '6a']), ...later.flatMap((m) => steps(m, ['1', '2', '3', '4', '6'])), ...steps(base, ['6c'])].join(
    '\n',
  );
  // the one value an operator chooses: a free port
  assert.match(script, 'PORT=5433');
  const out = runLiterally(script.replace('PORT=5433', `PORT=${port}`), work);
  const data = path.join(work, 'pgdata');
  const pid = Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const server = { data, port, pid, socketDir: data, log: path.join(data, 'restore.log') };
  // as the procedure leaves it: the server's own OS user connects (peer)
  const sql = (q: string) => {
    const r = runAs(c.user, path.join(PG_BIN, 'psql'), ['-X', '-A', '-t', '-h', data, '-p', String(port), '-d', 'postgres', '-c', q]);
    assert.is(r.code, 0, r.stderr);
    return r.stdout.trim();
  };
  try {
    assert.match(out, `recovery stopping at restore point "${bundles[2]?.manifest.coverage?.postgres?.restorePoint?.name}"`);
    assert.match(out, 'selected new timeline');
    assert.is(sql('SELECT pg_is_in_recovery()'), 'f', 'promoted');
    assert.is(sql(`SELECT count(*) || ',' || max(id) FROM ${lit}`), '300,300', 'every row up to the newest restore point, none after');
    if (tablespace)
      assert.is(
        sql("SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'lit_space'"),
        path.join(work, 'tblspc', String(bundles[0]?.manifest.coverage?.postgres?.base?.tablespaces?.[0]?.oid)),
        'the tablespace in its own folder',
      );
    assert.is(sql('SHOW archive_mode'), 'off');
    assert.is(sql("SELECT setting FROM pg_settings WHERE name = 'listen_addresses'"), 'localhost');
    assert.ok(
      existsSync(path.join(data, 'source-config', layout === 'debian' ? 'postgresql.auto.conf' : 'postgresql.conf')),
      'the source configuration is kept aside',
    );
  } finally {
    stopServer(server);
  }
}

test('RESTORE.txt followed literally: a base bundle and two WAL-only bundles of a cluster with its configuration in its data folder', () => {
  literalPgRestore('in-folder');
});

test("RESTORE.txt followed literally: the same from a cluster that keeps its configuration outside (Debian's layout)", () => {
  literalPgRestore('debian');
});

test('RESTORE.txt followed literally: a cluster whose table lives in a tablespace (its tar into a folder of its own, linked)', () => {
  try {
    literalPgRestore('in-folder', true);
  } finally {
    // the cluster is shared with the tests that run after these: leave it without the tablespace,
    // which their base backups would otherwise carry (and their restores have to map)
    psql('DROP TABLE IF EXISTS lit_ts');
    psql('DROP TABLESPACE IF EXISTS lit_space');
  }
});

test('RESTORE.txt followed literally: configuration files come back with their contents, modes, owners, times and links', () => {
  const keys = makeKeys('site-txt-files');
  const src = tmp('airlock-src-');
  const etc = path.join(src, 'etc', 'platform');
  mkdirSync(path.join(etc, 'conf.d'), { recursive: true });
  const files: [string, string, number, number][] = [
    ['app.conf', 'listen = 8080\n', 0o640, 1234],
    ['conf.d/tls key', 'secret\n', 0o600, 0],
    ['bin-helper', '#!/bin/sh\n', 0o4755, 0],
    ['shared', 'group\n', 0o2750, 1234],
  ];
  for (const [name, body, mode, uid] of files) {
    writeFileSync(path.join(etc, name), body);
    chownSync(path.join(etc, name), uid, uid);
    chmodSync(path.join(etc, name), mode);
  }
  symlinkSync('app.conf', path.join(etc, 'current.conf'));
  linkSync(path.join(etc, 'app.conf'), path.join(etc, 'app.conf.hard'));
  chmodSync(path.join(etc, 'conf.d'), 0o750);
  chmodSync(etc, 0o1777);
  const when = new Date('2025-06-01T10:20:30.000Z');
  for (const p of [
    path.join(etc, 'conf.d', 'tls key'),
    path.join(etc, 'conf.d'),
    path.join(etc, 'bin-helper'),
    path.join(etc, 'shared'),
    path.join(etc, 'app.conf'),
    etc,
  ])
    utimesSync(p, when, when);
  const medium = tmp('airlock-medium-');
  const r = airlock(exportArgs(keys, medium, tmp('airlock-state-'), ['--files', etc]));
  assert.is(r.code, EXIT.ok, r.stderr);
  const bundle = r.stdout.trim();
  const steps = commands(readFileSync(path.join(bundle, 'RESTORE.txt'), 'utf8'));
  assert.ok((steps.get('5') ?? []).length > 0, 'step 5 gives the commands for the files');
  const work = workFolder([bundle], keys);
  runLiterally(['1', '2', '3', '4', '5'].flatMap((n) => steps.get(n) ?? []).join('\n'), work);
  const back = path.join(work, 'files', etc);
  for (const [name, body, mode, uid] of files) {
    const st = lstatSync(path.join(back, name));
    assert.is(readFileSync(path.join(back, name), 'utf8'), body, name);
    assert.is((st.mode & 0o7777).toString(8), mode.toString(8), `${name}: mode`);
    assert.equal([st.uid, st.gid], [uid, uid], `${name}: owner`);
  }
  assert.is(readlinkSync(path.join(back, 'current.conf')), 'app.conf');
  assert.is(lstatSync(path.join(back, 'app.conf.hard')).ino, lstatSync(path.join(back, 'app.conf')).ino, 'the hard link is one file again');
  for (const p of ['', 'conf.d', 'conf.d/tls key', 'bin-helper', 'app.conf'])
    assert.is(lstatSync(path.join(back, p)).mtime.toISOString(), when.toISOString(), `${p || 'the folder'}: time`);
  assert.is((lstatSync(back).mode & 0o7777).toString(8), '1777');
  assert.is((lstatSync(path.join(back, 'conf.d')).mode & 0o7777).toString(8), '750');
});

test.run();
