/*
 * Crashes and lost state: an export killed at each named fault point leaves no bundle that verifies
 * and no catalog entry for it, the next export reconciles and keeps the chain continuous, and a lost
 * state folder is refused until the operator names the bundle to continue from.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseIdentities } from '../../manifests/age/keys.js';
import { parseAllowedSigners } from '../../manifests/allowed-signers.js';
import { isAirlockError } from '../../manifests/errors.js';
import { FAULT_POINTS, PG_FAULT_POINTS, type FaultPoint } from '../../agent/faults.js';
import { restoreFiles } from '../../agent/restore/files.js';
import { verifyPaths } from '../../verifier/verify.js';
import { airlock, airlockVerify, makeKeys, tmp } from '../helpers.js';

const keys = makeKeys('site-c');
const src = tmp();
writeFileSync(path.join(src, 'a.conf'), 'a\n');
writeFileSync(path.join(src, 'b.conf'), 'b'.repeat(300_000));

function exportOnce(medium: string, state: string, env: Record<string, string> = {}, extra: string[] = []) {
  return airlock(['export', '--to', medium, '--site', keys.site, '--signing-key', keys.signingKey, '--recipient', keys.recipient, '--files', src, '--state-dir', state, ...extra], {
    env: { ...process.env, ...env },
  });
}

function verifyOk(medium: string): void {
  const v = airlockVerify(['--allowed-signers', keys.allowedSigners, '--identity', keys.identity, medium]);
  assert.is(v.code, 0, v.stdout);
}

const seqs = (medium: string) => readdirSync(path.join(medium, keys.site)).sort();

for (const point of ['export:after-intent', 'writer:after-volumes', 'writer:before-rename']) {
  test(`killed at ${point}: nothing finished is left, the seq is reused, the chain stays whole`, () => {
    const medium = tmp();
    const state = tmp();
    assert.is(exportOnce(medium, state).code, 0);
    const killed = exportOnce(medium, state, { AIRLOCK_FAULT: point });
    assert.is(killed.code, 128 + 9, killed.stderr);
    assert.match(killed.stderr, `fault point ${point}`);
    assert.not.ok(existsSync(path.join(medium, keys.site, 'site-c-00000002')), 'no finished bundle 2');
    const again = exportOnce(medium, state);
    assert.is(again.code, 0, again.stderr);
    assert.match(again.stdout, 'site-c-00000002');
    assert.equal(seqs(medium), ['site-c-00000001', 'site-c-00000002'], 'the partial folder was removed');
    verifyOk(medium);
  });
}

for (const point of ['writer:after-rename', 'export:before-commit']) {
  test(`killed at ${point}: the finished bundle is adopted, its seq never reused`, () => {
    const medium = tmp();
    const state = tmp();
    assert.is(exportOnce(medium, state).code, 0);
    assert.is(exportOnce(medium, state, { AIRLOCK_FAULT: point }).code, 128 + 9);
    assert.ok(existsSync(path.join(medium, keys.site, 'site-c-00000002')));
    const again = exportOnce(medium, state);
    assert.is(again.code, 0, again.stderr);
    assert.match(again.stdout, 'site-c-00000003');
    verifyOk(medium);
  });
}

test('killed at a seeded fault point, again and again: the chain stays continuous', () => {
  const medium = tmp();
  const state = tmp();
  for (let seed = 0; seed < FAULT_POINTS.length; seed++) {
    const point = FAULT_POINTS[seed] as FaultPoint;
    const r = exportOnce(medium, state, { AIRLOCK_FAULT: `seed:${seed}` });
    // a files-only export never reaches the PostgreSQL points (pg.test.ts drives those)
    const reached = !(PG_FAULT_POINTS as readonly string[]).includes(point);
    assert.is(r.code, reached ? 137 : 0, `${point}: ${r.stderr}`);
  }
  const last = exportOnce(medium, state);
  assert.is(last.code, 0, last.stderr);
  const names = seqs(medium);
  names.forEach((n, i) => assert.is(n, `site-c-${String(i + 1).padStart(8, '0')}`));
  verifyOk(medium);
});

test('an unfinished export on an absent medium blocks the next one instead of reusing its seq', () => {
  const mnt = tmp();
  const medium = path.join(mnt, 'medium');
  mkdirSync(medium);
  const state = tmp();
  assert.is(exportOnce(medium, state, { AIRLOCK_FAULT: 'writer:before-rename' }).code, 137);
  renameSync(medium, path.join(mnt, 'unmounted'));
  const r = exportOnce(tmp(), state);
  assert.is(r.code, 4, r.stderr);
  assert.match(r.stderr, 'did not finish and that medium is not here');
  renameSync(path.join(mnt, 'unmounted'), medium);
  const back = exportOnce(medium, state);
  assert.is(back.code, 0, back.stderr);
  assert.match(back.stdout, 'site-c-00000001');
  assert.equal(seqs(medium), ['site-c-00000001']);
});

test('lost state: refused with a hint, then continued with --continue-from', () => {
  const medium = tmp();
  assert.is(exportOnce(medium, tmp()).code, 0);
  const fresh = tmp();
  const r = exportOnce(medium, fresh);
  assert.is(r.code, 4);
  assert.match(r.stderr, 'airlock: error: the catalog has no bundle of site-c');
  assert.match(r.stderr, '--continue-from');
  const first = path.join(medium, keys.site, 'site-c-00000001');
  const c = exportOnce(medium, fresh, {}, ['--continue-from', first]);
  assert.is(c.code, 0, c.stderr);
  assert.match(c.stdout, 'site-c-00000002');
  const m = JSON.parse(readFileSync(path.join(c.stdout.trim(), 'manifest.json'), 'utf8'));
  assert.is(m.prev, createHash('sha256').update(readFileSync(path.join(first, 'SHA256SUMS'))).digest('hex'));
  verifyOk(medium);
  // a bundle signed by another key cannot be continued from
  const other = makeKeys('site-c');
  const o = airlock(['export', '--to', tmp(), '--site', 'site-c', '--signing-key', other.signingKey, '--recipient', other.recipient, '--files', src, '--state-dir', tmp(), '--continue-from', first]);
  assert.is(o.code, 1, o.stderr);
  assert.match(o.stderr, 'wrong-signer');
});

test('a medium that returns other bytes on the second read: restore promotes nothing', async () => {
  const medium = tmp();
  assert.is(exportOnce(medium, tmp(), {}, ['--compress', 'none']).code, 0);
  const signers = parseAllowedSigners(readFileSync(keys.allowedSigners, 'utf8'));
  const report = await verifyPaths([medium], { allowedSigners: signers, now: new Date(), tool: 'test' });
  const bundle = report.bundles[0];
  assert.ok(bundle && bundle.findings.length === 0);
  // after verification, the volume changes under us
  const vol = path.join(bundle.path, 'payload.000');
  truncateSync(vol, readFileSync(vol).byteLength - 1);
  const parent = tmp();
  const to = path.join(parent, 'out');
  try {
    await restoreFiles(bundle, parseIdentities(readFileSync(keys.identity, 'utf8')), to);
    assert.unreachable('restore must fail');
  } catch (e) {
    assert.ok(isAirlockError(e), String(e));
    assert.ok(['size-mismatch', 'decrypt-failed', 'malformed'].includes(e.code), e.code);
  }
  assert.equal(readdirSync(parent), [], 'nothing in the target, no staging left');
});

test('two exports at once: the second is refused while the first holds the lock', () => {
  const state = tmp();
  writeFileSync(path.join(state, 'export.lock'), `${process.pid}\n`);
  const r = exportOnce(tmp(), state);
  assert.is(r.code, 4);
  assert.match(r.stderr, 'another airlock export is running');
});

test.run();
