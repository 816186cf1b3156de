/*
 * PostgreSQL in bundles against a real PostgreSQL 15 that archives through the built wal-push: base
 * backups, dumps and WAL exported by the built CLI, the continuity the verifier reads from the
 * cleartext manifests, and point-in-time restores into fresh clusters.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Manifest } from '../../manifests/manifest.js';
import { airlock, airlockVerify, makeKeys, tmp, type Keys } from '../helpers.js';
import { cluster, psql } from '../pg.js';

let keys: Keys | undefined;
const k = () => (keys ??= makeKeys('site-pg'));
const stateDir = tmp('airlock-state-');
const medium = tmp('airlock-medium-');

function conninfo(): string {
  const c = cluster();
  return `host=${c.socketDir} port=${c.port} user=postgres dbname=postgres`;
}

/** Runs `airlock export` of the test cluster with `extra` flags; returns the bundle's path and manifest. */
function exportPg(extra: readonly string[]): { path: string; manifest: Manifest } {
  const r = airlock(['export', '--to', medium, '--site', k().site, '--signing-key', k().signingKey, '--recipient', k().recipient, '--state-dir', stateDir, '--pg', conninfo(), '--wal-spool', cluster().spool, '--wal-timeout', '60', ...extra]);
  assert.is(r.code, 0, r.stderr);
  const dir = r.stdout.trim();
  return { path: dir, manifest: JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Manifest };
}

test('a base backup export and a WAL-only export: coverage in the manifest, continuity and a recovery window', () => {
  psql('CREATE TABLE IF NOT EXISTS t (id serial PRIMARY KEY, v text, at timestamptz DEFAULT clock_timestamp()); INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 1000) g');
  const first = exportPg(['--pg-base']);
  const pg1 = first.manifest.coverage?.postgres;
  assert.ok(pg1, 'coverage.postgres');
  assert.ok(pg1.base, 'a base backup');
  assert.is(pg1.restorePoint?.name, `airlock-${k().site}-1`);
  assert.is(pg1.segmentSize, 16 * 1024 * 1024);
  assert.ok(pg1.wal.length >= 1);
  psql("INSERT INTO t (v) VALUES ('between')");
  const second = exportPg([]);
  const pg2 = second.manifest.coverage?.postgres;
  assert.ok(pg2 && !pg2.base && pg2.wal.length >= 1, 'WAL only');
  assert.is(pg2.restorePoint?.name, `airlock-${k().site}-2`);
  assert.ok((pg2.wal[0]?.first ?? '') > (pg1.wal.at(-1)?.last ?? ''), 'the second bundle continues after the first');

  const v = airlockVerify(['--allowed-signers', k().allowedSigners, '--json', medium]);
  assert.is(v.code, 0, v.stdout + v.stderr);
  const report = JSON.parse(v.stdout) as { sites: { site: string; windows?: { baseSeq: number; lastSeq: number; to: { time?: string } }[] }[] };
  const w = report.sites[0]?.windows;
  assert.ok(w && w.length === 1, JSON.stringify(report.sites));
  assert.is(w[0]?.baseSeq, 1);
  assert.is(w[0]?.lastSeq, 2);
  assert.is(w[0]?.to.time, pg2.restorePoint?.time);
});

test.run();
