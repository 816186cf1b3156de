/*
 * Operating the appliance against the real test cluster: prune keeps spooled WAL until enough
 * verified media hold it (a media copy counts), and status turns warning and critical as the newest
 * WAL ages (an injected clock) and as the spool's file system fills, and back to ok.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Manifest } from '../../manifests/manifest.js';
import { AIRLOCK, airlock, airlockVerify, exportArgs, makeKeys, run, tmp } from '../helpers.js';
import { cluster, switchWal } from '../pg.js';
import { LEVEL_EXIT } from '../../agent/status.js';
import { EXIT } from '../../manifests/errors.js';

const keys = makeKeys('site-ops');
/** promtool: the setup takes it out of Debian's prometheus package when it is not installed */
const PROMTOOL = existsSync('/var/cache/airlock-test/bin/promtool') ? '/var/cache/airlock-test/bin/promtool' : 'promtool';
const state = tmp('airlock-state-');
const mediumA = tmp('airlock-medium-');
const mediumB = tmp('airlock-medium-');

function conninfo(): string {
  const c = cluster();
  return `host=${c.socketDir} port=${c.port} user=postgres dbname=postgres`;
}

function ok(args: readonly string[], env: Record<string, string> = {}): string {
  const r = airlock(args, { env: { ...process.env, ...env } });
  assert.is(r.code, EXIT.ok, `${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

let bundle: { path: string; manifest: Manifest } | undefined;

test('prune keeps spooled WAL until enough verified media hold its bundle; a media copy counts', () => {
  const c = cluster();
  ok(['media', 'init', mediumA, '--label', 'usb a', '--state-dir', state]);
  ok(['media', 'init', mediumB, '--label', 'usb b', '--state-dir', state]);
  switchWal();
  const out = ok(exportArgs(keys, mediumA, state, ['--pg', conninfo(), '--wal-spool', c.spool, '--pg-base'])).trim();
  bundle = { path: out, manifest: JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8')) as Manifest };
  const carried = (bundle.manifest.coverage?.postgres?.wal ?? []).map((r) => r.first);
  assert.ok(carried.length > 0);
  const prune = () => JSON.parse(ok(['prune', '--site', keys.site, '--wal-spool', c.spool, '--state-dir', state, '--json'])) as { removed: string[] };

  // one verified copy (the export read its bundle back from medium A): below the default of 2
  assert.equal(prune().removed, []);
  for (const n of carried) assert.ok(existsSync(path.join(c.spool, n)), `${n} stays in the spool`);

  // on a terminal (script(1) gives it one) the copy shows its progress with the share done and time left
  const shown = run('script', [
    '-qec',
    [process.execPath, ...AIRLOCK, 'media', 'copy', mediumA, mediumB, '--signing-key', keys.signingKey, '--state-dir', state].join(' '),
    '/dev/null',
  ]);
  assert.is(shown.code, EXIT.ok, shown.stdout);
  assert.match(shown.stdout, /airlock: media copy: [\d.]+ (B|KiB|MiB) of [\d.]+ (B|KiB|MiB) at .*\/s, \d+%, \d+ s left/);
  const after = ok(['prune', '--site', keys.site, '--wal-spool', c.spool, '--state-dir', state, '--dry-run']);
  for (const n of carried) assert.match(after, `would remove: ${n}`);
  const removed = prune().removed;
  for (const n of carried) {
    assert.ok(removed.includes(n));
    assert.not.ok(existsSync(path.join(c.spool, n)), `${n} left the spool`);
    assert.not.ok(existsSync(path.join(c.spool, `${n}.sha256`)));
  }
  // WAL archived after the export is in no bundle: it stays
  const later = switchWal();
  assert.not.ok(prune().removed.includes(later));
  assert.ok(existsSync(path.join(c.spool, later)));

  // the catalog's retention window: long after, the records of pruned files are forgotten, others kept
  const far = { env: { ...process.env, AIRLOCK_NOW: new Date(Date.now() + 500 * 86_400_000).toISOString() } };
  const expired = airlock(['prune', '--site', keys.site, '--wal-spool', c.spool, '--state-dir', state, '--retention', '400d', '--json'], far);
  assert.is(expired.code, EXIT.ok, expired.stderr);
  const forgotten = (JSON.parse(expired.stdout) as { forgotten: { wal: number; jobs: number } }).forgotten;
  assert.ok(forgotten.wal >= carried.length, JSON.stringify(forgotten));
  assert.ok(forgotten.jobs > 0);
  // what is still in the spool ingests as before: nothing refused for lack of the forgotten records
  const ingest = airlock(['wal-ingest', '--spool', c.spool, '--state-dir', state, '--json']);
  assert.is(ingest.code, EXIT.ok, ingest.stderr);
  const seen = JSON.parse(ingest.stdout) as { ingested: string[]; known: string[]; problems: unknown[] };
  assert.equal(seen.problems, []);
  assert.ok([...seen.ingested, ...seen.known].includes(later));
});

test('status: the newest WAL ages into warning and critical with an injected clock; a filling spool too; back to ok', () => {
  assert.ok(bundle, 'runs after the prune test');
  const spool = tmp('airlock-spool-');
  const segment = readFileSync(path.join(cluster().spool, switchWal()));
  const name = '000000010000000000000042';
  writeFileSync(path.join(spool, name), segment);
  const written = new Date(Date.parse(bundle.manifest.created) + 60_000);
  utimesSync(path.join(spool, name), written, written);
  const config = path.join(tmp(), 'airlock.conf');
  writeFileSync(config, `site = ${keys.site}\nstate-dir = ${state}\nspool = ${spool}\nwal-age-warning = 5m\nwal-age-critical = 15m\n`);
  const status = (at: number, spoolDir = spool) => {
    const r = airlock(['status', '--config', config, '--wal-spool', spoolDir, '--json'], {
      env: { ...process.env, AIRLOCK_NOW: new Date(written.getTime() + at).toISOString() },
    });
    const s = JSON.parse(r.stdout) as { level: string; checks: { name: string; level: string }[]; rpo: { onAppliance: number; offSite: number } };
    return { code: r.code, level: s.level, check: (n: string) => s.checks.find((c) => c.name === n)?.level, s };
  };
  const fresh = status(60_000);
  assert.is(fresh.check('wal age'), 'ok');
  assert.is(fresh.check('off-site RPO'), 'ok');
  assert.is(fresh.level, 'ok');
  assert.is(fresh.code, LEVEL_EXIT.ok);
  assert.is(Math.round(fresh.s.rpo.onAppliance), 60);
  const warning = status(10 * 60_000);
  assert.is(warning.check('wal age'), 'warning');
  assert.is(warning.code, LEVEL_EXIT.warning);
  const critical = status(20 * 60_000);
  assert.is(critical.check('wal age'), 'critical');
  assert.is(critical.code, LEVEL_EXIT.critical);

  // the same spool on a small file system that fills up
  const mnt = tmp();
  const m = run('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
  if (m.code !== 0) {
    console.log(`  (spool space part skipped: cannot mount a tmpfs here: ${m.stderr.trim()})`);
    return;
  }
  // a short stand-in for the segment: the age check reads only its name and time
  const small = path.join(mnt, 'spool');
  mkdirSync(small, { recursive: true });
  writeFileSync(path.join(small, name), segment.subarray(0, 8192));
  utimesSync(path.join(small, name), written, written);
  try {
    assert.is(status(60_000, small).check('spool space'), 'ok');
    writeFileSync(path.join(mnt, 'filler'), Buffer.alloc(4 * 1024 * 1024 - 96 * 1024));
    const full = status(60_000, small);
    assert.is(full.check('spool space'), 'critical');
    assert.is(full.code, LEVEL_EXIT.critical);
    run('rm', ['-f', path.join(mnt, 'filler')]);
    const prom = path.join(tmp(), 'airlock.prom');
    const back = airlock(['status', '--config', config, '--wal-spool', small, '--prometheus', prom], {
      env: { ...process.env, AIRLOCK_NOW: new Date(written.getTime() + 60_000).toISOString() },
    });
    assert.is(back.code, EXIT.ok, back.stdout);
    assert.match(back.stdout, 'status: ok');
    const text = readFileSync(prom, 'utf8');
    assert.match(text, `airlock_status{site="${keys.site}"} 0`);
    assert.match(text, /airlock_wal_newest_age_seconds\{site="site-ops"\} 60/);
    assert.match(text, /airlock_medium_newest_seq\{site="site-ops",medium="[0-9a-f-]+",label="usb b"\} \d+/);
  } finally {
    run('umount', [mnt]);
  }
});

test('status for monitoring: the Nagios plugin line with perfdata for every threshold, a Prometheus file promtool accepts, "down" when no status can be taken', () => {
  // a state of its own: the prune test's far-future clock expired the job runs of the shared one
  const own = tmp('airlock-state-');
  const medium = tmp('airlock-medium-');
  ok(['media', 'init', medium, '--label', 'usb c', '--state-dir', own]);
  const c = cluster();
  const out = ok(exportArgs(keys, medium, own, ['--pg', conninfo(), '--wal-spool', c.spool, '--pg-base'])).trim();
  const created = (JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8')) as Manifest).created;
  const spool = tmp('airlock-spool-');
  const name = '000000010000000000000043';
  writeFileSync(path.join(spool, name), readFileSync(path.join(c.spool, switchWal())));
  const written = new Date(Date.parse(created) + 60_000);
  utimesSync(path.join(spool, name), written, written);
  const config = path.join(tmp(), 'airlock.conf');
  writeFileSync(
    config,
    `site = ${keys.site}\nstate-dir = ${own}\nspool = ${spool}\nwal-age-warning = 5m\nwal-age-critical = 15m\nspool-free-warning = 20%\nspool-free-critical = 5%\n`,
  );
  const prom = path.join(tmp(), 'airlock.prom');
  const at = (ms: number) => ({ env: { ...process.env, AIRLOCK_NOW: new Date(written.getTime() + ms).toISOString() } });

  const critical = airlock(['status', '--config', config, '--prometheus', prom], at(20 * 60_000));
  assert.is(critical.code, LEVEL_EXIT.critical, critical.stderr);
  const [first = '', ...details] = critical.stdout.split('\n');
  // AIRLOCK LEVEL - the worst problem | label=value[unit];warn;crit;min[;max] ...
  assert.match(first, /^AIRLOCK CRITICAL - wal age: the newest spooled segment 000000010000000000000043 is 20 min old[^|]* \| /);
  const perf = new Map(
    first
      .split(' | ')[1]
      ?.split(' ')
      .map((p) => [p.split('=')[0], p.split('=')[1]]),
  );
  assert.is(perf.get('wal_age'), '1200s;300;900;0');
  assert.is(perf.get('offsite_rpo')?.split(';').slice(1).join(';'), `${26 * 3600};${50 * 3600};0`);
  assert.match(perf.get('spool_free') ?? '', /^[\d.]+%;20:;5:;0;100$/);
  for (const k of ['spool', 'unexported', 'base_backup_age', 'last_bundle']) assert.ok(perf.has(k), `perfdata ${k}`);
  assert.ok(
    details.includes(
      'critical: wal age: the newest spooled segment 000000010000000000000043 is 20 min old: at most that much WAL is not in the spool (give --pg to ask the server; an idle server archives nothing new)',
    ),
  );

  // the Prometheus file: valid by promtool's rules, no job or instance label, the new figures
  const text = readFileSync(prom, 'utf8');
  const check = run(PROMTOOL, ['check', 'metrics'], { input: text });
  assert.is(check.code, 0, `promtool: ${check.stdout}${check.stderr}`);
  assert.not.match(text, /[{,](job|instance)=/);
  assert.match(text, `airlock_status_up{site="${keys.site}"} 1`);
  assert.match(text, `airlock_status{site="${keys.site}"} 2`);
  assert.match(text, /airlock_base_backup_age_seconds\{site="site-ops"\} \d+/);
  assert.match(text, /airlock_last_bundle_bytes\{site="site-ops"\} [1-9]\d*/);
  assert.match(text, /airlock_last_bundle_duration_seconds\{site="site-ops"\} [\d.]+/);
  assert.match(text, /airlock_job_last_success_timestamp_seconds\{site="site-ops",task="export"\} \d+/);

  // no status can be taken (a catalog that is not one): UNKNOWN, exit 3, and a file that says so
  const broken = tmp('airlock-state-');
  writeFileSync(path.join(broken, 'catalog.db'), 'not a database, and long enough to be read as a header by SQLite: '.repeat(20));
  const down = airlock(['status', '--config', config, '--state-dir', broken, '--prometheus', prom], at(60_000));
  assert.is(down.code, LEVEL_EXIT.unknown, down.stderr);
  assert.match(down.stdout, /^AIRLOCK UNKNOWN - /);
  const downText = readFileSync(prom, 'utf8');
  assert.is(run(PROMTOOL, ['check', 'metrics'], { input: downText }).code, 0);
  assert.match(downText, `airlock_status_up{site="${keys.site}"} 0`);
  assert.match(downText, `airlock_status{site="${keys.site}"} 3`);
});

test('under systemd (stderr is the journal stream JOURNAL_STREAM names) errors carry priority <3>; elsewhere no prefix', () => {
  const dir = tmp();
  const log = path.join(dir, 'stderr');
  const fd = openSync(log, 'w');
  const st = fstatSync(fd, { bigint: true });
  const args = [...AIRLOCK, 'status', '--config', path.join(dir, 'missing.conf')];
  const journal = spawnSync(process.execPath, args, { stdio: ['ignore', 'ignore', fd], env: { ...process.env, JOURNAL_STREAM: `${st.dev}:${st.ino}` } });
  closeSync(fd);
  assert.is(journal.status, 3);
  const lines = readFileSync(log, 'utf8').trim().split('\n');
  assert.ok(lines.length > 0 && lines.every((l) => l.startsWith('<3>airlock: ')), lines.join('\n'));
  // a stream that is not the journal (a child's redirected stderr) gets no prefix
  const plain = spawnSync(process.execPath, args, { env: { ...process.env, JOURNAL_STREAM: `${st.dev}:${st.ino}` }, encoding: 'utf8' });
  assert.match(plain.stderr, /^airlock: error: /);
});

test('several sites on one appliance (airlock@NAME instances): two configs with their own state and spool export to one medium as two sites, both verify, status per instance; a site with two media gets each bundle on both', () => {
  const c = cluster();
  const shared = tmp('airlock-medium-');
  const second = tmp('airlock-medium-');
  const db = makeKeys('site-db');
  const buckets = makeKeys('site-buckets');
  const files = tmp();
  writeFileSync(path.join(files, 'app.conf'), 'workers = 4\n');
  const instance = (k: typeof db, extra: string[]) => {
    const st = tmp('airlock-state-');
    const f = path.join(tmp(), `${k.site}.conf`);
    writeFileSync(
      f,
      [
        `site = ${k.site}`,
        `signing-key = ${k.signingKey}`,
        `recipient = ${k.recipient}`,
        `state-dir = ${st}`,
        `files = ${files}`,
        'export-every = 1h',
        'min-copies = 1',
        ...extra,
        '',
      ].join('\n'),
    );
    return { conf: f, st, keys: k };
  };
  const a = instance(db, [`medium = ${shared}`, `spool = ${c.spool}`, `pg = ${conninfo()}`]);
  const b = instance(buckets, [`medium = ${shared}`, `medium = ${second}`]);
  ok(['media', 'init', shared, '--label', 'shared', '--state-dir', a.st]);
  ok(['media', 'init', second, '--label', 'second', '--state-dir', b.st]);
  const env = { AWS_ACCESS_KEY_ID: 'nobody', AWS_SECRET_ACCESS_KEY: 'nothing' };
  for (const i of [a, b]) ok(['run', '--config', i.conf, '--once'], env);

  // one medium, two sites, each signed by its own key: both verify with both keys named
  assert.equal(
    readdirSync(shared)
      .filter((n) => n.startsWith('site-'))
      .sort(),
    ['site-buckets', 'site-db'],
  );
  const signers = path.join(tmp(), 'allowed_signers');
  writeFileSync(signers, readFileSync(db.allowedSigners, 'utf8') + readFileSync(buckets.allowedSigners, 'utf8'));
  const verify = airlockVerify(['--allowed-signers', signers, '--json', shared]);
  assert.is(verify.code, EXIT.ok, verify.stdout);
  const report = JSON.parse(verify.stdout) as { bundles: { site: string; findings: unknown[] }[] };
  assert.equal([...new Set(report.bundles.map((x) => x.site))].sort(), ['site-buckets', 'site-db']);
  assert.ok(report.bundles.every((x) => x.findings.length === 0));
  // the site with two media: the bundle was copied to the second one and verified there
  assert.equal(readdirSync(path.join(second, 'site-buckets')), readdirSync(path.join(shared, 'site-buckets')));
  assert.is(airlockVerify(['--allowed-signers', buckets.allowedSigners, second]).code, EXIT.ok);

  // status per instance: its own site, its own jobs and media
  const status = (i: typeof a) =>
    JSON.parse(airlock(['status', '--config', i.conf, '--json']).stdout) as {
      site: string;
      media: { label: string }[];
      lastBundle: { seq: number } | null;
      baseBackupAgeSeconds: number | null;
    };
  const sa = status(a);
  const sb = status(b);
  assert.is(sa.site, 'site-db');
  assert.is(sb.site, 'site-buckets');
  assert.equal(
    sa.media.map((m) => m.label),
    ['shared'],
  );
  assert.equal(sb.media.map((m) => m.label).sort(), ['second', 'shared']);
  assert.ok(sa.baseBackupAgeSeconds !== null, 'the database site took a base backup');
  assert.is(sb.baseBackupAgeSeconds, null);
  assert.is(sb.lastBundle?.seq, 1);
});

test('airlock run on an injected clock: exports on schedule, a failed job is recorded and the next pass recovers, SIGTERM mid-export leaves no partial bundle', async () => {
  const c = cluster();
  const st = tmp('airlock-state-');
  const med = tmp('airlock-medium-');
  ok(['media', 'init', med, '--label', 'run medium', '--state-dir', st]);
  const files = tmp();
  writeFileSync(path.join(files, 'app.conf'), 'workers = 4\n');
  const conf = (extra = '') => {
    const f = path.join(tmp(), 'airlock.conf');
    writeFileSync(
      f,
      [
        `site = ${keys.site}-run`,
        `medium = ${med}`,
        `signing-key = ${keys.signingKey}`,
        `recipient = ${keys.recipient}`,
        `state-dir = ${st}`,
        `spool = ${c.spool}`,
        `pg = ${conninfo()}`,
        `files = ${files}`,
        'export-every = 1h',
        'base-every = 24h',
        'min-copies = 1',
        extra,
        '',
      ].join('\n'),
    );
    return f;
  };
  const good = conf();
  const t0 = Date.parse('2031-05-01T00:00:00Z');
  const at = (minutes: number) => ({
    env: { ...process.env, AIRLOCK_NOW: new Date(t0 + minutes * 60_000).toISOString(), AWS_ACCESS_KEY_ID: 'nobody', AWS_SECRET_ACCESS_KEY: 'nothing' },
  });
  const bundles = () => (existsSync(path.join(med, `${keys.site}-run`)) ? readdirSync(path.join(med, `${keys.site}-run`)).sort() : []);
  const manifest = (name: string) => JSON.parse(readFileSync(path.join(med, `${keys.site}-run`, name, 'manifest.json'), 'utf8')) as Manifest;

  const first = airlock(['run', '--config', good, '--once'], at(0));
  assert.is(first.code, EXIT.ok, first.stderr);
  assert.is(bundles().length, 1);
  assert.ok(manifest(bundles()[0] as string).coverage?.postgres?.base, 'the first export carries a base backup');
  const early = airlock(['run', '--config', good, '--once'], at(30));
  assert.is(early.code, EXIT.ok, early.stderr);
  assert.is(bundles().length, 1, 'not due yet after 30 minutes');
  const second = airlock(['run', '--config', good, '--once'], at(61));
  assert.is(second.code, EXIT.ok, second.stderr);
  assert.is(bundles().length, 2);
  assert.not.ok(manifest(bundles()[1] as string).coverage?.postgres?.base, 'the hourly export is WAL only');

  // the bucket endpoint is down: the job fails, is recorded, and the next pass (fixed) exports
  const broken = conf('s3-endpoint = http://127.0.0.1:9\nbucket = records');
  const failed = airlock(['run', '--config', broken, '--once'], at(180));
  assert.is(failed.code, EXIT.failed, failed.stderr);
  assert.match(failed.stderr, 'the export failed');
  assert.is(bundles().length, 2);
  const seen = JSON.parse(airlock(['status', '--config', good, '--json'], at(181)).stdout) as {
    jobs: { job: string; lastFailure: string | null; lastFailureMessage: string | null }[];
  };
  const job = seen.jobs.find((j) => j.job === 'export');
  assert.is(job?.lastFailure, new Date(t0 + 180 * 60_000).toISOString());
  assert.match(job?.lastFailureMessage ?? '', /127\.0\.0\.1:9|S3|connect/i);
  const recovered = airlock(['run', '--config', good, '--once'], at(182));
  assert.is(recovered.code, EXIT.ok, recovered.stderr);
  assert.is(bundles().length, 3);

  // SIGTERM while the export writes: the agent stops, the partial bundle is gone
  const agent = spawn(process.execPath, [...AIRLOCK, 'run', '--config', good], {
    ...at(300),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  agent.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((resolve) => agent.on('close', (code) => resolve(code)));
  const deadline = Date.now() + 60_000;
  while (!bundles().some((n) => n.endsWith('.partial')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.ok(
    bundles().some((n) => n.endsWith('.partial')),
    'the export began writing',
  );
  agent.kill('SIGTERM');
  assert.is(await exited, 130, log);
  assert.equal(
    bundles().filter((n) => n.endsWith('.partial')),
    [],
    'no partial bundle left',
  );
  assert.is(bundles().length, 3, 'and no new finished one');
  const after = airlock(['run', '--config', good, '--once'], at(301));
  assert.is(after.code, EXIT.ok, after.stderr);
  assert.is(bundles().at(-1), `${keys.site}-run-00000004`);
});

test('airlock runbook: media to fetch by label and UUID, the keys, the point-in-time commands for the newest base backup', () => {
  const c = cluster();
  const config = path.join(tmp(), 'airlock.conf');
  writeFileSync(
    config,
    [`site = ${keys.site}`, `signing-key = ${keys.signingKey}`, `recipient = ${keys.recipient}`, `state-dir = ${state}`, `spool = ${c.spool}`, ''].join('\n'),
  );
  const text = ok(['runbook', '--config', config]);
  assert.match(text, `RECOVERY RUNBOOK, SITE ${keys.site}`);
  const seq1 = text.split('\n').find((l) => l.includes('seq 1 (base backup + WAL')) ?? '';
  assert.match(seq1, /usb a \([0-9a-f-]{36}\)/);
  assert.match(seq1, /usb b \([0-9a-f-]{36}\)/);
  assert.match(text, readFileSync(keys.allowedSigners, 'utf8').trim().split(' ').slice(0, 3).join(' '));
  assert.match(text, keys.recipient);
  assert.match(text, new RegExp(`--target-name airlock-${keys.site}-1-[0-9a-f]{6} `));
  assert.match(text, 'RESTORE.txt of seq 1, steps 1 to 4 and 6a');
});

test.run();
