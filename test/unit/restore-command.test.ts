/*
 * restore_command's shortcut (restore/pg.ts, absentShortcut): run by /bin/sh as PostgreSQL runs it,
 * with %f and %p put in, it answers "absent" (exit 1) without running wal-fetch only when the folder
 * is there and holds neither the file nor its sidecar; every other case reaches wal-fetch, here a
 * stand-in that records that it ran.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { absentShortcut } from '../../agent/restore/pg.js';

const NAME = '000000010000000000000007';

/** Runs the shortcut for NAME against `dir`; returns its exit code and whether the stand-in ran. */
function run(dir: string): { code: number | null; fetched: boolean } {
  const command = absentShortcut(dir, "printf 'fetch %s %s' %f %p; exit 0").replaceAll('%f', NAME).replaceAll('%p', 'pg_wal/RECOVERYXLOG');
  const r = spawnSync('/bin/sh', ['-c', command], { encoding: 'utf8' });
  return { code: r.status, fetched: r.stdout === `fetch ${NAME} pg_wal/RECOVERYXLOG` };
}

let root = '';
test.before(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'airlock-restore-command-'));
});
test.after(() => rmSync(root, { recursive: true, force: true }));

/** A fresh WAL folder whose name needs quoting. */
function walDir(label: string): string {
  const d = path.join(root, `${label} it's $HOME`);
  mkdirSync(d);
  return d;
}

test('a folder without the file or its sidecar: absent, without wal-fetch', () => {
  const d = walDir('empty');
  writeFileSync(path.join(d, '000000010000000000000006'), 'another segment');
  assert.equal(run(d), { code: 1, fetched: false });
});

test('a missing folder goes to wal-fetch, which fails instead of ending recovery', () => {
  assert.equal(run(path.join(root, 'nowhere')), { code: 0, fetched: true });
});

test('the file, its sidecar alone, or a link in its place goes to wal-fetch', () => {
  const file = walDir('file');
  writeFileSync(path.join(file, NAME), 'bytes');
  assert.equal(run(file), { code: 0, fetched: true });
  const sidecar = walDir('sidecar');
  writeFileSync(path.join(sidecar, `${NAME}.sha256`), `${'0'.repeat(64)}  ${NAME}\n`);
  assert.equal(run(sidecar), { code: 0, fetched: true });
  const dangling = walDir('dangling');
  symlinkSync(path.join(root, 'gone'), path.join(dangling, NAME));
  assert.equal(run(dangling), { code: 0, fetched: true });
  const danglingSidecar = walDir('dangling sidecar');
  symlinkSync(path.join(root, 'gone'), path.join(danglingSidecar, `${NAME}.sha256`));
  assert.equal(run(danglingSidecar), { code: 0, fetched: true });
});

test.run();
