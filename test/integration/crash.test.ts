/*
 * Crashes and lost state: an export killed at each named fault point leaves no bundle that verifies
 * and no catalog entry for it, the next export reconciles and keeps the chain continuous, and a lost
 * state folder is refused until the operator names the bundle to continue from.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseIdentities } from '../../manifests/age/keys.js';
import { parseAllowedSigners } from '../../manifests/allowed-signers.js';
import { EXIT, isAirlockError } from '../../manifests/errors.js';
import { FAULT_POINTS, PG_FAULT_POINTS, type FaultPoint } from '../../agent/faults.js';
import { restoreFiles } from '../../agent/restore/files.js';
import { verifyPaths } from '../../verifier/verify.js';
import { ROOT, airlock, airlockAsync, airlockVerify, exportArgs, makeKeys, nodeAsync, tmp } from '../helpers.js';

const keys = makeKeys('site-c');
const src = tmp();
writeFileSync(path.join(src, 'a.conf'), 'a\n');
writeFileSync(path.join(src, 'b.conf'), 'b'.repeat(300_000));

function exportOnce(medium: string, state: string, env: Record<string, string> = {}, extra: string[] = []) {
  return airlock(exportArgs(keys, medium, state, ['--files', src, ...extra]), {
    env: { ...process.env, ...env },
  });
}

function verifyOk(medium: string): void {
  const v = airlockVerify(['--allowed-signers', keys.allowedSigners, '--identity', keys.identity, medium]);
  assert.is(v.code, EXIT.ok, v.stdout);
}

const seqs = (medium: string) => readdirSync(path.join(medium, keys.site)).sort();

for (const point of ['export:after-intent', 'writer:after-volumes', 'writer:before-rename']) {
  test(`killed at ${point}: nothing finished is left, the seq is reused, the chain stays whole`, () => {
    const medium = tmp();
    const state = tmp();
    assert.is(exportOnce(medium, state).code, EXIT.ok);
    const killed = exportOnce(medium, state, { AIRLOCK_FAULT: point });
    assert.is(killed.code, 128 + 9, killed.stderr);
    assert.match(killed.stderr, `fault point ${point}`);
    assert.not.ok(existsSync(path.join(medium, keys.site, 'site-c-00000002')), 'no finished bundle 2');
    const again = exportOnce(medium, state);
    assert.is(again.code, EXIT.ok, again.stderr);
    assert.match(again.stdout, 'site-c-00000002');
    assert.equal(seqs(medium), ['site-c-00000001', 'site-c-00000002'], 'the partial folder was removed');
    verifyOk(medium);
  });
}

for (const point of ['writer:after-rename', 'export:before-commit']) {
  test(`killed at ${point}: the finished bundle is adopted, its seq never reused`, () => {
    const medium = tmp();
    const state = tmp();
    assert.is(exportOnce(medium, state).code, EXIT.ok);
    assert.is(exportOnce(medium, state, { AIRLOCK_FAULT: point }).code, 128 + 9);
    assert.ok(existsSync(path.join(medium, keys.site, 'site-c-00000002')));
    const again = exportOnce(medium, state);
    assert.is(again.code, EXIT.ok, again.stderr);
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
  assert.is(last.code, EXIT.ok, last.stderr);
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
  assert.is(r.code, EXIT.conflict, r.stderr);
  assert.match(r.stderr, 'did not finish and that medium is not here');
  renameSync(path.join(mnt, 'unmounted'), medium);
  const back = exportOnce(medium, state);
  assert.is(back.code, EXIT.ok, back.stderr);
  assert.match(back.stdout, 'site-c-00000001');
  assert.equal(seqs(medium), ['site-c-00000001']);
});

test('lost state: refused with a hint, then continued with --continue-from', () => {
  const medium = tmp();
  assert.is(exportOnce(medium, tmp()).code, EXIT.ok);
  const fresh = tmp();
  const r = exportOnce(medium, fresh);
  assert.is(r.code, EXIT.conflict);
  assert.match(r.stderr, 'airlock: error: the catalog has no bundle of site-c');
  assert.match(r.stderr, '--continue-from');
  const first = path.join(medium, keys.site, 'site-c-00000001');
  const c = exportOnce(medium, fresh, {}, ['--continue-from', first]);
  assert.is(c.code, EXIT.ok, c.stderr);
  assert.match(c.stdout, 'site-c-00000002');
  const m = JSON.parse(readFileSync(path.join(c.stdout.trim(), 'manifest.json'), 'utf8'));
  assert.is(
    m.prev,
    createHash('sha256')
      .update(readFileSync(path.join(first, 'SHA256SUMS')))
      .digest('hex'),
  );
  verifyOk(medium);
  // a bundle signed by another key cannot be continued from
  const other = makeKeys('site-c');
  const o = airlock(exportArgs(other, tmp(), tmp(), ['--files', src, '--continue-from', first]));
  assert.is(o.code, EXIT.failed, o.stderr);
  assert.match(o.stderr, 'wrong-signer');
});

test('a medium that returns other bytes on the second read: restore promotes nothing', async () => {
  const medium = tmp();
  assert.is(exportOnce(medium, tmp(), {}, ['--compress', 'none']).code, EXIT.ok);
  const signers = parseAllowedSigners(readFileSync(keys.allowedSigners, 'utf8'));
  const report = await verifyPaths([medium], { allowedSigners: signers, now: new Date(), tool: 'test' });
  const bundle = report.bundles[0];
  assert.ok(bundle?.findings.length === 0);
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

// A process that takes the lock `export` of a state folder through the built agent/lock.js and
// holds it until it is killed; resolves once it holds it.
const LOCK_JS = pathToFileURL(path.join(ROOT, 'dist/agent/lock.js')).href;
function lockHolder(state: string): Promise<ChildProcess> {
  const code = `import { acquireLock } from ${JSON.stringify(LOCK_JS)}; acquireLock(process.argv[1], 'export'); process.stdout.write('held\\n'); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code, state], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.stdout.setEncoding('utf8').on('data', (d: string) => d.includes('held') && resolve(child));
    child.on('exit', (c) => reject(new Error(`the lock holder exited with ${c}: ${err}`)));
  });
}

function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.removeAllListeners('exit');
    child.on('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

test('two exports at once: the second is refused while the first holds the lock', async () => {
  const state = tmp();
  const holder = await lockHolder(state);
  try {
    const r = exportOnce(tmp(), state);
    assert.is(r.code, EXIT.conflict, r.stderr);
    assert.match(r.stderr, 'airlock: error: another airlock export is running');
    assert.match(r.stderr, 'airlock: hint: wait for it to finish');
  } finally {
    await killed(holder);
  }
  // killed, its lock went with it: the next export takes it
  const after = exportOnce(tmp(), state);
  assert.is(after.code, EXIT.ok, after.stderr);
});

// Each contender tries to take the lock again and again for a while; when it has it, it creates
// `inside` exclusively (so a second holder at the same time finds it there), keeps it a moment and
// removes it. Any error but `locked`, or finding `inside`, ends it with exit 1.
const CONTENDER = `
import { openSync, closeSync, unlinkSync } from 'node:fs';
import { acquireLock } from ${JSON.stringify(LOCK_JS)};
const [state, inside, ms] = process.argv.slice(1);
const nap = (t) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, t);
let held = 0;
for (const end = Date.now() + Number(ms); Date.now() < end; ) {
  let release;
  try {
    release = acquireLock(state, 'export');
  } catch (e) {
    if (e.code !== 'locked') { console.log('error ' + (e.code ?? '') + ' ' + e.message); process.exit(1); }
    continue;
  }
  try { closeSync(openSync(inside, 'wx')); } catch { console.log('two holders at once'); process.exit(1); }
  held++;
  nap(1);
  unlinkSync(inside);
  release();
}
console.log('held ' + held);
`;

// One try at the lock: prints `ok` and holds it a moment, or prints the error's code.
const ONE_TRY = `
import { acquireLock } from ${JSON.stringify(LOCK_JS)};
try {
  const release = acquireLock(process.argv[1], 'export');
  console.log('ok');
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
  release();
} catch (e) {
  console.log(e.code ?? e.message);
}
`;

test('two starters at the same moment: one takes the lock, the other is refused, never both', async () => {
  // SQLite takes the lock in steps; with no wait at all, two starters could each block the other
  for (let round = 0; round < 20; round++) {
    const state = tmp();
    const both = await Promise.all([0, 1].map(() => nodeAsync(['--input-type=module', '-e', ONE_TRY, state])));
    const answers = both.map((r) => r.stdout.trim()).sort();
    assert.equal(answers, ['locked', 'ok'], `round ${round}: ${both.map((r) => r.stderr).join('')}`);
  }
});

test('a dead holder is taken over; racing starters never hold the lock together', async () => {
  const state = tmp();
  // the lock a killed export leaves behind
  await killed(await lockHolder(state));
  const inside = path.join(tmp(), 'inside');
  const contenders = await Promise.all(Array.from({ length: 4 }, () => nodeAsync(['--input-type=module', '-e', CONTENDER, state, inside, '3000'])));
  for (const c of contenders) {
    assert.is(c.code, 0, `${c.stdout}${c.stderr}`);
    assert.match(c.stdout, /^held \d+\n$/);
  }
  const held = contenders.reduce((a, c) => a + Number(c.stdout.split(' ')[1]), 0);
  assert.ok(held > 10, `the lock was taken ${held} times`);
});

test('an export killed while it holds the lock, then exports racing on its state folder: one at a time, every bundle whole', async () => {
  const medium = tmp();
  const state = tmp();
  // three volumes a bundle, so a bundle missing one would show
  const big = tmp();
  writeFileSync(path.join(big, 'data'), randomBytes(2_500_000));
  const args = exportArgs(keys, medium, state, ['--files', big, '--volume-size', '1M', '--compress', 'none']);
  const dead = airlock(args, { env: { ...process.env, AIRLOCK_FAULT: 'writer:after-volumes' } });
  assert.is(dead.code, 128 + 9, dead.stderr);
  const runs = await Promise.all(Array.from({ length: 3 }, () => airlockAsync(args)));
  for (const r of runs)
    assert.ok(r.code === EXIT.ok || (r.code === EXIT.conflict && r.stderr.includes('another airlock export is running')), `${r.code} ${r.stderr}`);
  const ok = runs.filter((r) => r.code === EXIT.ok).length;
  assert.ok(ok >= 1, 'one of them exported');
  // every bundle the catalog holds as done is on the medium with every volume, and the set verifies
  const db = new Database(path.join(state, 'catalog.db'), { readonly: true });
  const done = db.prepare(`SELECT seq, path FROM bundles WHERE state = 'done' ORDER BY seq`).all() as { seq: number; path: string }[];
  db.close();
  assert.equal(
    done.map((d) => d.seq),
    Array.from({ length: ok }, (_, i) => i + 1),
  );
  assert.equal(
    seqs(medium),
    done.map((d) => path.basename(d.path)),
    'no partial folder left',
  );
  verifyOk(medium);
});

test.run();
