/*
 * WAL archiving against a real PostgreSQL 15: the cluster's archive_command is the built
 * `airlock-wal-push` helper, running as the cluster's OS user; the agent's side (wal-ingest) and the
 * restore side (wal-fetch) run as the built CLI. What wal-push must do is checked on both pushers:
 * the helper, and `airlock wal-push`, to which the helper hands everything but a new push.
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import type { SpawnSyncOptions } from 'node:child_process';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EXIT, WAL_FETCH_EXIT } from '../../manifests/errors.js';
import { sha256Hex } from '../../manifests/hash.js';
import { checkSegmentHeader, parseBackupLabel, parseHistory } from '../../agent/postgres/wal.js';
import { ROOT, airlock, exportArgs, makeKeys, run, tmp, type Ran } from '../helpers.js';
import {
  PG_BIN,
  alive,
  cluster,
  clusterDir,
  logTail,
  poll,
  psql,
  runAs,
  shellSafe,
  startServer,
  stopServer,
  switchWal,
  systemIdentifier,
  waitSpooled,
} from '../pg.js';

const SEGMENT = 16 * 1024 * 1024;

/** The native archive_command helper, and `airlock wal-push`, which it hands all but a new push to. */
const HELPER = path.join(ROOT, 'dist/native/airlock-wal-push');
const pushers: [string, (args: readonly string[], opts?: SpawnSyncOptions) => Ran][] = [
  ['airlock-wal-push', (args, opts) => run(HELPER, args, opts)],
  ['airlock wal-push', (args, opts) => airlock(['wal-push', ...args], opts)],
];

/** Two segments archived by the cluster, pushed by PostgreSQL itself. */
const archived: string[] = [];
function segments(): string[] {
  while (archived.length < 2) archived.push(switchWal());
  return archived;
}

/** A fresh spool holding copies of `names` (and their sidecars) from the cluster's spool. */
function spoolCopy(names: readonly string[]): string {
  const dir = tmp('airlock-spool-');
  for (const n of names) {
    copyFileSync(path.join(cluster().spool, n), path.join(dir, n));
    copyFileSync(path.join(cluster().spool, `${n}.sha256`), path.join(dir, `${n}.sha256`));
  }
  return dir;
}

function flipByte(file: string, at: number): void {
  const b = readFileSync(file);
  b[at] = (b[at] as number) ^ 0xff;
  writeFileSync(file, b);
}

function walRows(
  stateDir: string,
): { name: string; kind: string; header_checked: number; sha256: string; start_lsn: string | null; system_identifier: string | null }[] {
  const db = new Database(path.join(stateDir, 'catalog.db'), { readonly: true });
  try {
    return db.prepare('SELECT * FROM wal ORDER BY name').all() as never;
  } finally {
    db.close();
  }
}

test('the cluster archives through airlock-wal-push: durable copies, correct sidecars, headers that check', () => {
  const c = cluster();
  const sysid = systemIdentifier();
  for (const name of segments()) {
    const file = path.join(c.spool, name);
    const bytes = readFileSync(file);
    assert.is(bytes.length, SEGMENT);
    assert.is(readFileSync(`${file}.sha256`, 'utf8'), `${sha256Hex(bytes)}  ${name}\n`);
    // written by PostgreSQL's own user, as in production
    assert.is(statSync(file).uid, c.user.uid);
    const checked = checkSegmentHeader(name, bytes.subarray(0, 40), { fileSize: bytes.length, systemIdentifier: sysid, segmentSize: SEGMENT });
    assert.is(checked.header.magic, 0xd110);
    assert.is(checked.header.timeline, 1);
    assert.is(checked.header.pageAddress, checked.startLsn);
  }
  assert.equal(
    readdirSync(c.spool).filter((n) => n.endsWith('.tmp')),
    [],
    'no temporary file left',
  );
  const stat = psql('SELECT archived_count, failed_count FROM pg_stat_archiver').split('|').map(Number);
  assert.ok((stat[0] as number) >= 2);
  assert.is(stat[1], 0, 'no failed archive_command');
});

test('wal-ingest records good segments and a real backup history file, and is idempotent', () => {
  const c = cluster();
  segments();
  const stop = psql("SELECT pg_backup_start('airlock test', true);\nSELECT lsn FROM pg_backup_stop(true);", { input: true }).split('\n').at(-1) as string;
  // other tests of this process may have taken base backups too: find this one by its label
  const backupName = poll('the .backup file of this backup', 30_000, () =>
    readdirSync(c.spool).find(
      (n) =>
        n.endsWith('.backup') && existsSync(path.join(c.spool, `${n}.sha256`)) && readFileSync(path.join(c.spool, n), 'utf8').includes('LABEL: airlock test\n'),
    ),
  );
  assert.ok(backupName, 'a .backup file was archived');
  waitSpooled(backupName);
  const label = parseBackupLabel(backupName, readFileSync(path.join(c.spool, backupName), 'utf8'));
  assert.is(label.stopLsn, stop);
  assert.is(label.label, 'airlock test');
  assert.is(label.startTimeline, 1);
  assert.ok(label.startTimeUtc?.endsWith('Z'));

  const spool = spoolCopy([...segments(), backupName]);
  const state = tmp('airlock-state-');
  const r = airlock(['wal-ingest', '--spool', spool, '--state-dir', state, '--json']);
  assert.is(r.code, EXIT.ok, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.ingested, [...segments(), backupName].sort());
  assert.equal(out.problems, []);
  const rows = walRows(state);
  const seg = rows.find((w) => w.name === segments()[0]);
  assert.is(seg?.header_checked, 1);
  assert.is(seg?.system_identifier, systemIdentifier());
  assert.is(rows.find((w) => w.name === backupName)?.start_lsn, label.startLsn);

  const again = airlock(['wal-ingest', '--spool', spool, '--state-dir', state, '--json']);
  assert.is(again.code, EXIT.ok, again.stderr);
  assert.equal(JSON.parse(again.stdout).ingested, []);
  assert.is(JSON.parse(again.stdout).known.length, rows.length);
});

test('pushing a segment again: same bytes succeed, different bytes fail with wal-conflict and keep the first', () => {
  const name = segments()[0] as string;
  const first = readFileSync(path.join(cluster().spool, name));
  for (const [who, push] of pushers) {
    const spool = spoolCopy([name]);
    const spooled = path.join(spool, name);
    const src = path.join(tmp(), name);
    writeFileSync(src, first);
    const same = push([src, '--spool', spool]);
    assert.is(same.code, EXIT.ok, `${who}: ${same.stderr}`);

    flipByte(src, 1000);
    const other = push([src, '--spool', spool]);
    assert.is(other.code, EXIT.conflict, `${who}: ${other.stderr}`);
    assert.match(other.stderr, `airlock: error: ${name}: the spool already holds a different file of that name`);
    assert.match(other.stderr, 'airlock: hint: the spooled file was kept');
    assert.ok(readFileSync(spooled).equals(first), `${who}: the first file is kept`);
    assert.is(readFileSync(`${spooled}.sha256`, 'utf8'), `${sha256Hex(first)}  ${name}\n`);
    assert.equal(readdirSync(spool).sort(), [name, `${name}.sha256`], `${who}: no temporary file left`);
  }
});

test('wal-push completes a push that died before its sidecar, and refuses what is not WAL', () => {
  const name = segments()[1] as string;
  for (const [who, push] of pushers) {
    const spool = tmp('airlock-spool-');
    copyFileSync(path.join(cluster().spool, name), path.join(spool, name));
    const r = push([path.join(cluster().spool, name), '--spool', spool]);
    assert.is(r.code, EXIT.ok, `${who}: ${r.stderr}`);
    assert.is(readFileSync(path.join(spool, `${name}.sha256`), 'utf8'), readFileSync(path.join(cluster().spool, `${name}.sha256`), 'utf8'));

    const junk = path.join(tmp(), 'postgresql.conf');
    writeFileSync(junk, 'x');
    const bad = push([junk, '--spool', spool]);
    assert.is(bad.code, EXIT.usage, who);
    assert.match(bad.stderr, 'is not a wal file name');
    const noSpool = push([path.join(cluster().spool, name)], { env: { ...process.env, AIRLOCK_SPOOL: '' } });
    assert.is(noSpool.code, EXIT.usage, who);
    assert.match(noSpool.stderr, 'no wal spool given');
    const missing = push([path.join(tmp(), name), '--spool', spool]);
    assert.is(missing.code, EXIT.input, `${who}: ${missing.stderr}`);
    assert.match(missing.stderr, 'no such file');
    const fresh = tmp('airlock-spool-');
    const fromEnv = push([path.join(cluster().spool, name)], { env: { ...process.env, AIRLOCK_SPOOL: fresh } });
    assert.is(fromEnv.code, EXIT.ok, `${who}: ${fromEnv.stderr}`);
    assert.ok(readFileSync(path.join(fresh, name)).equals(readFileSync(path.join(cluster().spool, name))));
  }
});

test('airlock-wal-push spools exactly what airlock wal-push spools, for every kind of WAL file', () => {
  const c = cluster();
  const history = path.join(tmp(), '00000002.history');
  writeFileSync(history, '1\t0/3000000\tno recovery target specified\n');
  const backup = readdirSync(c.spool).find((n) => n.endsWith('.backup'));
  const sources = [path.join(c.spool, segments()[0] as string), history, ...(backup ? [path.join(c.spool, backup)] : [])];
  const spools = pushers.map(([who, push]) => {
    const spool = tmp('airlock-spool-');
    for (const src of sources) {
      const r = push([src, '--spool', spool]);
      assert.is(r.code, EXIT.ok, `${who} ${src}: ${r.stderr}`);
    }
    return spool;
  });
  const [native, node] = spools as [string, string];
  assert.equal(readdirSync(native).sort(), readdirSync(node).sort());
  assert.is(readdirSync(native).length, sources.length * 2, 'each file and its sidecar, nothing else');
  for (const n of readdirSync(native)) {
    assert.ok(readFileSync(path.join(native, n)).equals(readFileSync(path.join(node, n))), n);
    assert.is(statSync(path.join(native, n)).mode & 0o777, 0o640, n);
  }
  // a --config (or any option it does not know) goes to airlock wal-push
  const conf = path.join(tmp(), 'airlock.conf');
  const viaConfig = tmp('airlock-spool-');
  writeFileSync(conf, `spool = ${viaConfig}\n`);
  const r = run(HELPER, [history, '--config', conf]);
  assert.is(r.code, 0, r.stderr);
  assert.ok(existsSync(path.join(viaConfig, '00000002.history.sha256')));
  // moved away from the CLI it hands over to, it says so and fails (postgresql keeps the file)
  const moved = path.join(tmp(), 'airlock-wal-push');
  copyFileSync(HELPER, moved);
  run('chmod', ['+x', moved]);
  const lost = run(moved, ['--help']);
  assert.is(lost.code, EXIT.internal);
  assert.match(lost.stderr, 'airlock: error: cannot find the airlock cli beside this program');
});

test('wal-ingest refuses a corrupted segment and one whose header does not fit its name, and ingests the rest', () => {
  const [a, b] = segments() as [string, string];
  const spool = spoolCopy([a, b]);
  flipByte(path.join(spool, a), 5000);
  // a good segment under the wrong name, with a sidecar that matches its bytes: only the header can tell
  const wrongName = '0000000100000000000000F0';
  const bBytes = readFileSync(path.join(spool, b));
  writeFileSync(path.join(spool, wrongName), bBytes);
  writeFileSync(path.join(spool, `${wrongName}.sha256`), `${sha256Hex(bBytes)}  ${wrongName}\n`);
  // a push still in progress: no sidecar yet
  writeFileSync(path.join(spool, '0000000100000000000000F1'), bBytes);

  const state = tmp('airlock-state-');
  const r = airlock(['wal-ingest', '--spool', spool, '--state-dir', state, '--json']);
  assert.is(r.code, EXIT.failed, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.ingested, [b]);
  assert.equal(out.waiting, ['0000000100000000000000F1']);
  assert.equal(
    out.problems.map((p: { code: string }) => p.code),
    ['checksum-mismatch', 'bad-wal'],
  );
  assert.match(out.problems[0].message, `${a}: sha256 `);
  assert.match(out.problems[1].message, `${wrongName}: not a valid postgresql wal segment: page address`);
  // with --json each refusal is also one JSON object on stderr
  const errors = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { code: string; message: string; exit: number });
  assert.equal(
    errors.map((e) => e.code),
    ['checksum-mismatch', 'bad-wal'],
  );
  assert.match(errors[0]?.message ?? '', `${a}: sha256`);
  assert.match(errors[1]?.message ?? '', `${wrongName}:`);
  assert.equal(
    walRows(state).map((w) => w.name),
    [b],
    'refused files are not in the catalog',
  );

  // the database's user can write into the spool: a FIFO or a link in it must not hang or mislead ingest
  const fifo = '0000000100000000000000F2';
  assert.is(run('mkfifo', [path.join(spool, fifo)]).code, 0);
  writeFileSync(path.join(spool, `${fifo}.sha256`), `${'0'.repeat(64)}  ${fifo}\n`);
  const link = '0000000100000000000000F3';
  symlinkSync('/dev/zero', path.join(spool, link));
  writeFileSync(path.join(spool, `${link}.sha256`), `${'0'.repeat(64)}  ${link}\n`);
  const r2 = airlock(['wal-ingest', '--spool', spool, '--state-dir', state, '--json'], { timeout: 60_000 });
  assert.is(r2.code, EXIT.failed, r2.stderr);
  const codes = JSON.parse(r2.stdout)
    .problems.map((p: { message: string }) => p.message)
    .join('\n');
  assert.match(codes, `${fifo}: not a regular file`);
  assert.match(codes, link);
});

test('wal-fetch: copies a good segment (0), 1 only when absent, 126 for a corrupt one, 127 for bad use', () => {
  const [a, b] = segments() as [string, string];
  const from = spoolCopy([a, b]);
  const pgWal = tmp('airlock-pgwal-');
  const target = path.join(pgWal, 'RECOVERYXLOG');

  const ok = airlock(['wal-fetch', a, target, '--from', from]);
  assert.is(ok.code, WAL_FETCH_EXIT.ok, ok.stderr);
  assert.ok(readFileSync(target).equals(readFileSync(path.join(from, a))));

  const absent = airlock(['wal-fetch', '0000000100000000000000EE', path.join(pgWal, 'X'), '--from', from]);
  assert.is(absent.code, WAL_FETCH_EXIT.absent);
  assert.is(absent.stderr, '', 'an absent file is not an error');
  const absentHistory = airlock(['wal-fetch', '00000002.history', path.join(pgWal, 'X'), '--from', from]);
  assert.is(absentHistory.code, WAL_FETCH_EXIT.absent);
  // a sidecar without its file: extracted incompletely, so recovery must stop, not end
  const vouched = '0000000100000000000000ED';
  writeFileSync(path.join(from, `${vouched}.sha256`), `${'0'.repeat(64)}  ${vouched}\n`);
  const missing = airlock(['wal-fetch', vouched, path.join(pgWal, 'X'), '--from', from]);
  assert.ok(missing.code > 125, `${missing.code}: ${missing.stderr}`);
  assert.match(missing.stderr, 'its checksum is known but the file is missing');

  flipByte(path.join(from, b), 20000);
  const bad = airlock(['wal-fetch', b, path.join(pgWal, 'Y'), '--from', from]);
  assert.is(bad.code, WAL_FETCH_EXIT.refused);
  assert.match(bad.stderr, `airlock: error: ${b}: sha256`);
  assert.not.ok(existsSync(path.join(pgWal, 'Y')), 'nothing written for a bad file');
  assert.equal(readdirSync(pgWal), ['RECOVERYXLOG'], 'no temporary file left');

  // no sidecar: only a hash from an index (the bundle's MANIFEST.sha256) makes it trusted
  const staging = tmp('airlock-staging-');
  mkdirSync(path.join(staging, 'pg', 'wal'), { recursive: true });
  copyFileSync(path.join(cluster().spool, a), path.join(staging, 'pg', 'wal', a));
  const unknown = airlock(['wal-fetch', a, path.join(pgWal, 'Z'), '--from', path.join(staging, 'pg', 'wal')]);
  assert.is(unknown.code, WAL_FETCH_EXIT.refused);
  assert.match(unknown.stderr, 'no known sha256');
  writeFileSync(path.join(staging, 'MANIFEST.sha256'), `${sha256Hex(readFileSync(path.join(staging, 'pg', 'wal', a)))}  pg/wal/${a}\n`);
  const indexed = airlock(['wal-fetch', a, path.join(pgWal, 'Z'), '--from', path.join(staging, 'pg', 'wal'), '--sums', path.join(staging, 'MANIFEST.sha256')]);
  assert.is(indexed.code, WAL_FETCH_EXIT.ok, indexed.stderr);

  for (const args of [
    [a, target], // no --from
    [a, target, '--from', path.join(from, 'missing-folder')],
    ['../etc/passwd', target, '--from', from],
    [a, '--from', from],
    [a, target, '--from', from, '--frmo', 'x'],
  ]) {
    const r = airlock(['wal-fetch', ...args]);
    assert.is(r.code, WAL_FETCH_EXIT.error, `${args.join(' ')}: ${r.stderr}`);
  }
});

/** Writes `bytes` as WAL file `name` into `dir` with a sidecar that vouches for them, as a re-signed bundle would. */
function vouched(dir: string, name: string, bytes: Buffer | string): void {
  writeFileSync(path.join(dir, name), bytes);
  writeFileSync(path.join(dir, `${name}.sha256`), `${sha256Hex(bytes)}  ${name}\n`);
}

/*
 * A bundle is only as honest as its signer: a key taken from the appliance can sign any bytes under
 * any name, and every hash then matches. wal-fetch must still not hand PostgreSQL a file whose
 * contents are not what its name says, or recovery would replay the wrong WAL without a word.
 */
test('wal-fetch refuses, with a matching sha256, bytes that do not fit the name: another segment, another timeline, a bad history or backup history file (126)', () => {
  const [a, b] = segments() as [string, string];
  const bytes = readFileSync(path.join(cluster().spool, a));
  const from = tmp('airlock-wal-');
  const pgWal = tmp('airlock-pgwal-');
  const fetch = (name: string) => airlock(['wal-fetch', name, path.join(pgWal, 'RECOVERYXLOG'), '--from', from]);
  const refused = (name: string, why: string | RegExp) => {
    const r = fetch(name);
    assert.is(r.code, WAL_FETCH_EXIT.refused, `${name}: ${r.stderr}`);
    assert.match(r.stderr, why);
    assert.match(r.stderr, /\nairlock: hint: /);
    assert.equal(readdirSync(pgWal), [], 'nothing handed to postgresql, no temporary file left');
  };

  // a valid segment under the next segment's name
  vouched(from, b, bytes);
  refused(b, /page address \S+ is not the segment's start/);

  // the same segment under timeline 2's name: its first page says timeline 1
  const tl2 = `00000002${a.slice(8)}`;
  vouched(from, tl2, bytes);
  refused(tl2, 'page timeline 1 is not an ancestor of timeline 2');
  // a history in which timeline 1 ends after this segment: the segment is not where timeline 2 began
  const start = BigInt(`0x${a.slice(8, 16)}`) * 0x1_0000_0000n + BigInt(`0x${a.slice(16)}`) * BigInt(SEGMENT);
  const lsn = (v: bigint) => `${(v >> 32n).toString(16).toUpperCase()}/${(v & 0xffffffffn).toString(16).toUpperCase()}`;
  vouched(from, '00000002.history', `1\t${lsn(start + 3n * BigInt(SEGMENT))}\tno recovery target specified\n`);
  refused(tl2, `its first page is of timeline 1, which ended at ${lsn(start + 3n * BigInt(SEGMENT))}, after this segment`);
  // where timeline 1 ended inside it, it is the first segment of timeline 2 and is handed over
  vouched(from, '00000002.history', `1\t${lsn(start + 0x1234n)}\tno recovery target specified\n`);
  const first = fetch(tl2);
  assert.is(first.code, WAL_FETCH_EXIT.ok, first.stderr);
  assert.ok(readFileSync(path.join(pgWal, 'RECOVERYXLOG')).equals(bytes));
  rmSync(path.join(pgWal, 'RECOVERYXLOG'));
  const history = fetch('00000002.history');
  assert.is(history.code, WAL_FETCH_EXIT.ok, history.stderr);
  rmSync(path.join(pgWal, 'RECOVERYXLOG'));

  // history files that are not history files
  vouched(from, '00000003.history', "restore_command = 'sh -c id'\n");
  refused('00000003.history', '00000003.history: line 1 is not "timeline<TAB>location<TAB>reason"');
  vouched(from, '00000003.history', '1\t0/3000000\tok\n7\t0/5000000\tnot an ancestor\n');
  refused('00000003.history', 'timeline 7 is not an ancestor of 3');
  vouched(from, '00000003.history', Buffer.alloc(2 * 1024 * 1024, 0x31));
  refused('00000003.history', 'too large for a history file');

  // a backup history file that names another segment than its own name
  const label = (seg: string) =>
    [
      `START WAL LOCATION: 0/2000028 (file ${seg})`,
      `STOP WAL LOCATION: 0/2000100 (file ${seg})`,
      'CHECKPOINT LOCATION: 0/2000060',
      'BACKUP METHOD: streamed',
      'BACKUP FROM: primary',
      'START TIME: 2026-01-01 00:00:00 UTC',
      'LABEL: x',
      'START TIMELINE: 1',
      'STOP TIME: 2026-01-01 00:00:01 UTC',
      'STOP TIMELINE: 1',
      '',
    ].join('\n');
  const backup = '000000010000000000000002.00000028.backup';
  vouched(from, backup, label('000000010000000000000003'));
  refused(backup, "the start segment 000000010000000000000003 is not the one in the file's name");
  vouched(from, backup, label('000000010000000000000002'));
  const good = fetch(backup);
  assert.is(good.code, WAL_FETCH_EXIT.ok, good.stderr);
  rmSync(path.join(pgWal, 'RECOVERYXLOG'));

  // FIFOs for a file or its sidecar: refused at once, never a hang and never "absent"
  const fifo = (file: string) => assert.is(run('mkfifo', [file]).code, 0);
  const c = `00000001${a.slice(8, 16)}000000C0`;
  writeFileSync(path.join(from, c), bytes);
  fifo(path.join(from, `${c}.sha256`));
  const d = `00000001${a.slice(8, 16)}000000C1`;
  fifo(path.join(from, `${d}.sha256`));
  const e = `00000001${a.slice(8, 16)}000000C2`;
  fifo(path.join(from, e));
  writeFileSync(path.join(from, `${e}.sha256`), `${sha256Hex(bytes)}  ${e}\n`);
  for (const [name, why] of [
    [c, `${c}.sha256: not a regular file`],
    [d, `${d}.sha256: not a regular file`],
    [e, `${e}: not a regular file`],
  ] as const) {
    const r = airlock(['wal-fetch', name, path.join(pgWal, 'RECOVERYXLOG'), '--from', from], { timeout: 30_000 });
    assert.is(r.code, WAL_FETCH_EXIT.refused, `${name}: ${r.stderr}`);
    assert.match(r.stderr, why);
  }
  assert.equal(readdirSync(pgWal), []);
});

test('wal-push into a full spool fails cleanly and leaves no partial file', () => {
  if (process.getuid?.() !== 0) {
    console.log('  (skipped: mounting a tmpfs needs root)');
    return;
  }
  const [a, b] = segments() as [string, string];
  for (const [who, push] of pushers) {
    const mnt = tmp('airlock-tmpfs-');
    const m = run('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', mnt]);
    assert.is(m.code, 0, m.stderr);
    try {
      const first = push([path.join(cluster().spool, a), '--spool', mnt]);
      assert.is(first.code, EXIT.ok, `${who}: ${first.stderr}`);
      const full = push([path.join(cluster().spool, b), '--spool', mnt]);
      assert.is(full.code, EXIT.medium, `${who}: ${full.stderr}`);
      assert.match(full.stderr, `airlock: error: ${b}: no space left in the wal spool`);
      assert.match(full.stderr, 'airlock: hint: free space in the spool');
      assert.equal(readdirSync(mnt).sort(), [a, `${a}.sha256`], `${who}: only the first push is there`);
      assert.is(statSync(path.join(mnt, a)).size, SEGMENT);
      // PostgreSQL retrying a file that is already spooled succeeds even on a full spool
      const retry = push([path.join(cluster().spool, a), '--spool', mnt]);
      assert.is(retry.code, EXIT.ok, `${who}: ${retry.stderr}`);
    } finally {
      const u = run('umount', [mnt]);
      assert.is(u.code, 0, u.stderr);
    }
  }
});

test('wal-push into a spool without O_DIRECT (ramfs, which refuses it after creating the file) spools through the page cache', () => {
  if (process.getuid?.() !== 0) {
    console.log('  (skipped: mounting a ramfs needs root)');
    return;
  }
  const name = segments()[0] as string;
  for (const [who, push] of pushers) {
    const mnt = tmp('airlock-ramfs-');
    const m = run('mount', ['-t', 'ramfs', 'ramfs', mnt]);
    assert.is(m.code, 0, m.stderr);
    try {
      const r = push([path.join(cluster().spool, name), '--spool', mnt]);
      assert.is(r.code, EXIT.ok, `${who}: ${r.stderr}`);
      assert.equal(readdirSync(mnt).sort(), [name, `${name}.sha256`], `${who}: the file and its sidecar, no temporary file`);
      assert.ok(readFileSync(path.join(mnt, name)).equals(readFileSync(path.join(cluster().spool, name))), who);
    } finally {
      const u = run('umount', [mnt]);
      assert.is(u.code, 0, u.stderr);
    }
  }
});

/** A base backup without WAL (-X none), ready for archive recovery: every segment must come from wal-fetch. */
function baseBackup(): { data: string; log: string } {
  const c = cluster();
  const data = clusterDir(`restore-${Math.random().toString(36).slice(2, 8)}`);
  const b = runAs(c.user, path.join(PG_BIN, 'pg_basebackup'), [
    '-h',
    c.socketDir,
    '-p',
    String(c.port),
    '-U',
    'postgres',
    '-D',
    data,
    '-X',
    'none',
    '-c',
    'fast',
  ]);
  assert.is(b.code, 0, b.stderr);
  writeFileSync(path.join(data, 'recovery.signal'), '');
  return { data, log: path.join(data, 'restore.log') };
}

/*
 * A point-in-time restore with wal-fetch as restore_command reading copies of the spool: PostgreSQL
 * replays to a named restore point and forks timeline 2 there; with one damaged segment recovery
 * must abort instead of ending early. (A recovery that runs out of WAL ends on wal-fetch's exit 1:
 * the damaged case shows the other side of that line.)
 */
test('a real point-in-time restore through wal-fetch; the new timeline ingests; a corrupt segment aborts recovery', () => {
  const c = cluster();
  psql("CREATE TABLE IF NOT EXISTS restored (note text); INSERT INTO restored VALUES ('before the backup')");
  const good = baseBackup();
  const bad = baseBackup();
  psql("INSERT INTO restored VALUES ('after the backup')");
  // well over a WAL page more before the target, so timeline 2 forks past the first page of its
  // segment, and that page keeps timeline 1 in the new timeline's copy of the segment
  psql("INSERT INTO restored SELECT 'filler ' || g FROM generate_series(1, 2000) g");
  psql("SELECT pg_create_restore_point('airlock-test-target')");
  psql("INSERT INTO restored VALUES ('after the target')");
  const last = switchWal();
  // what a restore operator has after extracting bundles: the WAL files and their sidecars
  const walDir = clusterDir('restore-wal');
  for (const n of readdirSync(c.spool)) copyFileSync(path.join(c.spool, n), path.join(walDir, n));
  run('chmod', ['-R', 'a+rX', walDir]);
  const restoreCommand = (dir: string) => `restore_command = '${shellSafe(process.execPath)} ${shellSafe(c.cli)} wal-fetch %f %p --from ${shellSafe(dir)}'`;
  const conf = (dir: string) => ['archive_mode = off', restoreCommand(dir), "recovery_target_action = 'promote'"];

  const ok = startServer(c.user, good.data, c.socketDir, good.log, [...conf(walDir), "recovery_target_name = 'airlock-test-target'"], false);
  try {
    poll('recovery to finish', 60_000, () => {
      if (!alive(ok.pid)) throw new Error(`the restored server exited:\n${logTail(good.log)}`);
      const r = run(path.join(PG_BIN, 'psql'), [
        '-X',
        '-A',
        '-t',
        '-h',
        c.socketDir,
        '-p',
        String(ok.port),
        '-U',
        'postgres',
        '-c',
        'SELECT pg_is_in_recovery()',
      ]);
      return r.code === 0 && r.stdout.trim() === 'f' ? true : undefined;
    });
    assert.is(
      psql("SELECT string_agg(note, ',' ORDER BY note) FROM restored WHERE note NOT LIKE 'filler%'", { server: ok }),
      'after the backup,before the backup',
    );
    const log = readFileSync(good.log, 'utf8');
    assert.match(log, `restored log file "${last}" from archive`);
    assert.match(log, 'recovery stopping at restore point "airlock-test-target"');
    assert.match(log, 'archive recovery complete');
    assert.match(log, 'selected new timeline ID: 2');
    // the archiver takes a segment only once it is finished: finish timeline 2's first one (a switch
    // writes the rest of it as zeros and flushes it), so the copy below is what would be archived
    psql('SELECT pg_switch_wal()', { server: ok });

    // the new timeline's history file and first segment, pushed and ingested: that segment starts as
    // a copy of timeline 1's, so its first page says timeline 1 and only the history vouches for it
    const tl2 = readdirSync(path.join(good.data, 'pg_wal'))
      .filter((n) => n.startsWith('00000002'))
      .sort();
    assert.is(tl2[0], '00000002.history');
    const spool = tmp('airlock-spool-');
    for (const n of tl2.slice(0, 2)) {
      const r = airlock(['wal-push', path.join(good.data, 'pg_wal', n), '--spool', spool]);
      assert.is(r.code, EXIT.ok, r.stderr);
    }
    const seg = tl2[1] as string;
    const firstPage = readFileSync(path.join(spool, seg)).subarray(0, 40);
    assert.is(
      checkSegmentHeader(seg, firstPage, { history: parseHistory('00000002.history', readFileSync(path.join(spool, '00000002.history'), 'utf8')) }).header
        .timeline,
      1,
    );
    const state = tmp('airlock-state-');
    const ing = airlock(['wal-ingest', '--spool', spool, '--state-dir', state, '--json']);
    assert.is(ing.code, EXIT.ok, ing.stderr);
    assert.equal(JSON.parse(ing.stdout).ingested, ['00000002.history', seg]);
    // without the history the same segment is refused
    const alone = tmp('airlock-spool-');
    for (const n of [seg, `${seg}.sha256`]) copyFileSync(path.join(spool, n), path.join(alone, n));
    const refused = airlock(['wal-ingest', '--spool', alone, '--state-dir', tmp('airlock-state-'), '--json']);
    assert.is(refused.code, EXIT.failed);
    assert.match(refused.stdout, 'page timeline 1 is not an ancestor of timeline 2');
  } finally {
    stopServer(ok);
  }

  // the segment the backup starts in is damaged: recovery must stop with an error, not end early
  const label = readFileSync(path.join(bad.data, 'backup_label'), 'utf8');
  const first = /\(file ([0-9A-F]{24})\)/.exec(label)?.[1] as string;
  const badDir = clusterDir('restore-wal-bad');
  for (const n of readdirSync(walDir)) copyFileSync(path.join(walDir, n), path.join(badDir, n));
  flipByte(path.join(badDir, first), 100_000);
  run('chmod', ['-R', 'a+rX', badDir]);
  const broken = startServer(c.user, bad.data, c.socketDir, bad.log, conf(badDir), false);
  try {
    poll('the server to give up', 60_000, () => (alive(broken.pid) ? undefined : true));
    const log = readFileSync(bad.log, 'utf8');
    assert.match(log, `airlock: error: ${first}: sha256`);
    // PostgreSQL words exit status 126 as the shell's "command not executable", and treats it as fatal
    assert.match(log, new RegExp(`FATAL:\\s+could not restore file "${first}" from archive: command not executable`));
    assert.not.match(log, 'archive recovery complete');
  } finally {
    stopServer(broken);
  }
});

/*
 * The same through PostgreSQL itself: the WAL folder a restore lays down from a bundle signed by a
 * taken-over appliance, where the segment the backup starts in holds the next segment's bytes (its
 * sidecar vouches for them, as the bundle's index would). Recovery must abort, not replay the wrong
 * WAL and report success.
 */
test("a real recovery whose first segment holds the next segment's bytes under a matching sha256: wal-fetch refuses it and recovery aborts", () => {
  const c = cluster();
  psql("CREATE TABLE IF NOT EXISTS renamed (note text); INSERT INTO renamed VALUES ('before the backup')");
  const backup = baseBackup();
  psql("INSERT INTO renamed VALUES ('after the backup')");
  switchWal();
  const label = readFileSync(path.join(backup.data, 'backup_label'), 'utf8');
  const first = /\(file ([0-9A-F]{24})\)/.exec(label)?.[1] as string;
  const walDir = clusterDir('restore-wal-renamed');
  for (const n of readdirSync(c.spool)) copyFileSync(path.join(c.spool, n), path.join(walDir, n));
  const next = readdirSync(walDir)
    .filter((n) => /^[0-9A-F]{24}$/.test(n) && n > first)
    .sort()[0] as string;
  assert.ok(next, 'a segment after the first one');
  vouched(walDir, first, readFileSync(path.join(walDir, next)));
  run('chmod', ['-R', 'a+rX', walDir]);
  const restoreCommand = `restore_command = '${shellSafe(process.execPath)} ${shellSafe(c.cli)} wal-fetch %f %p --from ${shellSafe(walDir)}'`;
  const server = startServer(c.user, backup.data, c.socketDir, backup.log, ['archive_mode = off', restoreCommand, "recovery_target_action = 'promote'"], false);
  try {
    poll('the server to give up', 60_000, () => (alive(server.pid) ? undefined : true));
    const log = readFileSync(backup.log, 'utf8');
    assert.match(log, new RegExp(`airlock: error: ${first}: not a valid postgresql wal segment: page address \\S+ is not the segment's start`));
    assert.match(log, new RegExp(`FATAL:\\s+could not restore file "${first}" from archive: command not executable`));
    assert.not.match(log, 'archive recovery complete');
    assert.not.match(log, 'database system is ready to accept connections');
  } finally {
    stopServer(server);
  }
});

test('wal-push starts without loading commander, sqlite, the agent lock or the bundle code', () => {
  const name = segments()[0] as string;
  const spool = tmp('airlock-spool-');
  // NODE_DEBUG=esm logs every module the process loads: only the light ones may appear
  const probe = airlock(['wal-push', path.join(cluster().spool, name), '--spool', spool], {
    env: { ...process.env, NODE_DEBUG: 'esm' },
  });
  assert.is(probe.code, EXIT.ok, probe.stderr);
  assert.match(probe.stderr, 'wal-push.js', 'the module log works');
  for (const heavy of ['commander', 'better-sqlite3', 'program.js', 'writer.js', 'catalog.js', 'lock.js', 'export.js']) {
    assert.not.match(probe.stderr, heavy, `${heavy} is loaded by wal-push`);
  }
});

/** A fresh spool holding `bytes` under `name`, with a sidecar that matches them. */
function spoolOf(name: string, bytes: Uint8Array): string {
  const dir = tmp('airlock-spool-');
  writeFileSync(path.join(dir, name), bytes);
  writeFileSync(path.join(dir, `${name}.sha256`), `${sha256Hex(bytes)}  ${name}\n`);
  return dir;
}

const BLOCK = 8192;

/** A segment PostgreSQL wrote to its end (not one a WAL switch ended early): every page has a header. */
let full: string | undefined;
function fullSegment(): string {
  if (full) return full;
  psql('CREATE TABLE IF NOT EXISTS airlock_fill (v text); INSERT INTO airlock_fill SELECT repeat(md5(g::text), 30) FROM generate_series(1, 40000) g');
  const last = switchWal();
  const spool = cluster().spool;
  full = readdirSync(spool)
    .filter((n) => /^[0-9A-F]{24}$/.test(n) && n < last && existsSync(path.join(spool, `${n}.sha256`)))
    .find((n) => readFileSync(path.join(spool, n)).readUInt16LE(SEGMENT - BLOCK) === 0xd110);
  if (!full) throw new Error('no segment written to its end');
  return full;
}

test('wal-ingest checks every page of a segment, not only the first', () => {
  const name = fullSegment();
  const real = readFileSync(path.join(cluster().spool, name));
  const variants: [string, Buffer, string][] = [
    ['random bytes behind a real first page', Buffer.concat([real.subarray(0, BLOCK), randomBytes(SEGMENT - BLOCK)]), `the page at ${BLOCK}: magic`],
    ['one page address off by a page', Buffer.from(real), `the page at ${1000 * BLOCK}: page address`],
    ['one page of another major version', Buffer.from(real), `the page at ${2000 * BLOCK}: magic 0xD113`],
    ['one page of a later timeline', Buffer.from(real), `the page at ${1500 * BLOCK}: timeline 2, neither the name's 1 nor an ancestor`],
  ];
  const v = variants.map((x) => x[1]);
  (v[1] as Buffer).writeUInt32LE((v[1] as Buffer).readUInt32LE(1000 * BLOCK + 8) + BLOCK, 1000 * BLOCK + 8);
  (v[2] as Buffer).writeUInt16LE(0xd113, 2000 * BLOCK);
  (v[3] as Buffer).writeUInt32LE(2, 1500 * BLOCK + 4);
  // a segment a switch ended: zeros after the switch, one byte of something else at its very end
  const switched = segments()[1] as string;
  const tail = readFileSync(path.join(cluster().spool, switched));
  assert.is(tail.readUInt16LE(SEGMENT - BLOCK), 0, 'a segment ended by a switch ends in zeros');
  tail[SEGMENT - 1] = 1;
  const cases: [string, string, Buffer, string][] = [
    ...variants.map(([w, b, p]) => [w, name, b, p] as [string, string, Buffer, string]),
    ['a byte after the switch', switched, tail, `the page at ${SEGMENT - BLOCK}: not zeros, though the wal ended at `],
  ];
  for (const [what, n, bytes, problem] of cases) {
    const state = tmp('airlock-state-');
    const r = airlock(['wal-ingest', '--spool', spoolOf(n, bytes), '--state-dir', state, '--json']);
    assert.is(r.code, EXIT.failed, `${what}: ${r.stderr}`);
    const out = JSON.parse(r.stdout);
    assert.equal(out.ingested, [], what);
    assert.equal(
      out.problems.map((p: { code: string }) => p.code),
      ['bad-wal'],
      what,
    );
    assert.match(out.problems[0].message, `${n}: not a valid postgresql wal segment past its first page: ${problem}`, what);
    assert.equal(walRows(state), [], `${what}: nothing in the catalog`);
  }
  // the real ones check; a .partial (the end of a timeline, maybe a recycled file) ends where its pages stop
  for (const [n, bytes] of [
    [name, real],
    [switched, readFileSync(path.join(cluster().spool, switched))],
    [`${name}.partial`, Buffer.concat([real.subarray(0, SEGMENT / 2), randomBytes(SEGMENT / 2)])],
  ] as const) {
    const r = airlock(['wal-ingest', '--spool', spoolOf(n, bytes), '--state-dir', tmp('airlock-state-'), '--json']);
    assert.is(r.code, EXIT.ok, r.stderr);
    assert.equal(JSON.parse(r.stdout).ingested, [n]);
  }
});

/** A WAL segment of another cluster (system identifier 42), every page header valid, named `name`. */
function foreignSegment(segno: number): Buffer {
  const b = Buffer.alloc(SEGMENT);
  for (let at = 0; at < SEGMENT; at += BLOCK) {
    b.writeUInt16LE(0xd110, at);
    b.writeUInt16LE(at === 0 ? 0x0002 : 0, at + 2);
    b.writeUInt32LE(1, at + 4);
    b.writeBigUInt64LE(BigInt(segno) * BigInt(SEGMENT) + BigInt(at), at + 8);
  }
  b.writeBigUInt64LE(42n, 24);
  b.writeUInt32LE(SEGMENT, 32);
  b.writeUInt32LE(BLOCK, 36);
  return b;
}

test("an export takes the cluster's identity from the server, not from the first segment in the spool", () => {
  const c = cluster();
  segments();
  // another cluster's segment that sorts before every segment of this one
  const foreign = '000000010000000000000000';
  const bytes = foreignSegment(0);
  assert.is(checkSegmentHeader(foreign, bytes.subarray(0, 40), { fileSize: SEGMENT }).header.long.systemIdentifier, '42');
  writeFileSync(path.join(c.spool, foreign), bytes);
  writeFileSync(path.join(c.spool, `${foreign}.sha256`), `${sha256Hex(bytes)}  ${foreign}\n`);
  try {
    const keys = makeKeys('site-w');
    const state = tmp('airlock-state-');
    const r = airlock(
      exportArgs(keys, tmp('airlock-medium-'), state, [
        '--pg',
        `host=${c.socketDir} port=${c.port} user=postgres dbname=postgres`,
        '--wal-spool',
        c.spool,
        '--wal-timeout',
        '30',
      ]),
    );
    assert.is(r.code, EXIT.ok, r.stderr);
    assert.match(r.stderr, `${foreign}: not a valid postgresql wal segment: system identifier 42 is not the cluster's ${systemIdentifier()}`);
    const rows = walRows(state);
    assert.ok(rows.length >= 2, "the cluster's segments were ingested");
    assert.not.ok(
      rows.some((w) => w.name === foreign),
      'the foreign segment was not',
    );
    assert.equal([...new Set(rows.filter((w) => w.kind === 'segment').map((w) => w.system_identifier))], [systemIdentifier()]);
  } finally {
    rmSync(path.join(c.spool, foreign), { force: true });
    rmSync(path.join(c.spool, `${foreign}.sha256`), { force: true });
  }
});

test.run();
