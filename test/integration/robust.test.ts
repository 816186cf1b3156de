/*
 * What the review of the first cut found, kept as tests: overlapping roots, non-ASCII names across
 * index chunks, two bundles from one process (buffers moved between threads), a full medium, a file
 * that changes while read, remembered verifier state, a medium that changes between reads.
 */
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseIdentities } from '../../manifests/age/keys.js';
import { parseAllowedSigners } from '../../manifests/allowed-signers.js';
import { isAirlockError } from '../../manifests/errors.js';
import { parsePrivateKey } from '../../manifests/sshkey.js';
import { fileItems } from '../../agent/sources/files.js';
import { restoreFiles } from '../../agent/restore/files.js';
import { verifyPaths } from '../../verifier/verify.js';
import { ROOT, airlock, airlockVerify, makeKeys, run, tmp } from '../helpers.js';

const keys = makeKeys('site-r');
const exportArgs = (medium: string, state: string, files: string[], extra: string[] = []) => [
  'export', '--to', medium, '--site', keys.site, '--signing-key', keys.signingKey, '--recipient', keys.recipient, '--files', ...files, '--state-dir', state, ...extra,
];
const deepOk = (medium: string) => {
  const v = airlockVerify(['--allowed-signers', keys.allowedSigners, '--identity', keys.identity, medium]);
  assert.is(v.code, 0, v.stdout);
};

test('overlapping --files roots export each file once and restore', () => {
  const src = tmp();
  mkdirSync(path.join(src, 'ssh'));
  writeFileSync(path.join(src, 'ssh', 'sshd_config'), 'Port 22\n');
  const medium = tmp();
  const r = airlock(exportArgs(medium, tmp(), [src, path.join(src, 'ssh', 'sshd_config'), `${src}/ssh`]));
  assert.is(r.code, 0, r.stderr);
  deepOk(medium);
  const to = path.join(tmp(), 'out');
  const rs = airlock(['restore', 'files', '--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', to]);
  assert.is(rs.code, 0, rs.stderr);
  assert.is(readFileSync(path.join(to, src, 'ssh', 'sshd_config'), 'utf8'), 'Port 22\n');
});

test('thousands of non-ASCII names: index lines that straddle chunks decode whole', () => {
  const src = tmp();
  const names = Array.from({ length: 3000 }, (_, i) => `éè-ünïcödé-名前-${i}`);
  for (const n of names) writeFileSync(path.join(src, n), n);
  const medium = tmp();
  assert.is(airlock(exportArgs(medium, tmp(), [src], ['--compress', 'none'])).code, 0);
  deepOk(medium);
  const to = path.join(tmp(), 'out');
  const rs = airlock(['restore', 'files', '--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', to]);
  assert.is(rs.code, 0, rs.stderr);
  assert.equal(readdirSync(path.join(to, src)).sort(), [...names].sort());
});

test('two bundles written by one process (encryption on a worker thread) both verify', async () => {
  const w = (await import(pathToFileURL(path.join(ROOT, 'dist/agent/bundle/writer.js')).href)) as typeof import('../../agent/bundle/writer.js');
  const medium = tmp();
  const signingKey = parsePrivateKey(readFileSync(keys.signingKey, 'utf8'));
  const src = tmp();
  writeFileSync(path.join(src, 'a'), randomBytes(300_000));
  let prev: string | undefined;
  for (const seq of [1, 2]) {
    const b = await w.writeBundle({ medium, site: keys.site, seq, prev, recipients: [keys.recipient], signingKey, compression: 'none', volumeSize: 1024 * 1024, now: () => new Date() }, fileItems([src]));
    prev = b.sumsSha256;
  }
  deepOk(medium);
});

test('a full medium: exit 6, no partial bundle, the seq is not consumed', () => {
  const mnt = tmp();
  const m = run('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
  if (m.code !== 0) {
    console.log(`  (skipped: cannot mount a tmpfs here: ${m.stderr.trim()})`);
    return;
  }
  try {
    const src = tmp();
    writeFileSync(path.join(src, 'big'), randomBytes(3 * 1024 * 1024));
    const state = tmp();
    const r = airlock(exportArgs(mnt, state, [src], ['--compress', 'none']));
    assert.is(r.code, 6, r.stderr);
    // refused up front by the free-space check (media.test.ts fills a medium mid-write)
    assert.match(r.stderr, /needs about [\d.]+ MiB on \S+ but only [\d.]+ \w+ is free/);
    const siteDir = path.join(mnt, keys.site);
    assert.equal(existsSync(siteDir) ? readdirSync(siteDir) : [], [], 'no partial bundle');
    writeFileSync(path.join(src, 'big'), 'small now');
    const again = airlock(exportArgs(mnt, state, [src]));
    assert.is(again.code, 0, again.stderr);
    assert.match(again.stdout, 'site-r-00000001');
  } finally {
    run('umount', [mnt]);
  }
});

test('a file that changes while it is read fails the export with source-changed', async () => {
  const src = tmp();
  const f = path.join(src, 'live.log');
  writeFileSync(f, 'one\n');
  const items = fileItems([src]);
  for await (const item of items) {
    if (item.kind !== 'entry') continue;
    writeFileSync(f, 'one\ntwo\n');
    try {
      for await (const _ of item.open()) void _;
      assert.unreachable('a changed file must not be read as if whole');
    } catch (e) {
      assert.ok(isAirlockError(e, 'source-changed'), String(e));
    }
  }
});

test('remembered state: the verifier advances it on success and catches a rollback later', () => {
  const src = tmp();
  writeFileSync(path.join(src, 'a'), 'a');
  const medium = tmp();
  const state = tmp();
  for (let i = 0; i < 2; i++) assert.is(airlock(exportArgs(medium, state, [src])).code, 0);
  const stateFile = path.join(tmp(), 'verify-state.json');
  assert.is(airlockVerify(['--allowed-signers', keys.allowedSigners, '--state', stateFile, medium]).code, 0);
  assert.is(JSON.parse(readFileSync(stateFile, 'utf8')).sites['site-r'].seq, 2);
  const old = tmp();
  cpSync(path.join(medium, keys.site, 'site-r-00000001'), path.join(old, keys.site, 'site-r-00000001'), { recursive: true });
  const r = airlockVerify(['--allowed-signers', keys.allowedSigners, '--state', stateFile, old]);
  assert.is(r.code, 1);
  assert.match(r.stdout, 'rollback: ');
  assert.is(JSON.parse(readFileSync(stateFile, 'utf8')).sites['site-r'].seq, 2, 'state never goes back');
});

test('a volume replaced after verification by a same-size one: restore promotes nothing', async () => {
  const src = tmp();
  writeFileSync(path.join(src, 'a'), randomBytes(100_000));
  const medium = tmp();
  const other = tmp();
  assert.is(airlock(exportArgs(medium, tmp(), [src], ['--compress', 'none'])).code, 0);
  assert.is(airlock(exportArgs(other, tmp(), [src], ['--compress', 'none'])).code, 0);
  const report = await verifyPaths([medium], { allowedSigners: parseAllowedSigners(readFileSync(keys.allowedSigners, 'utf8')), now: new Date(), tool: 'test' });
  const bundle = report.bundles[0];
  assert.ok(bundle && bundle.findings.length === 0);
  const mine = path.join(bundle.path, 'payload.000');
  const theirs = path.join(other, keys.site, 'site-r-00000001', 'payload.000');
  assert.is(readFileSync(mine).byteLength, readFileSync(theirs).byteLength);
  cpSync(theirs, mine);
  const parent = tmp();
  try {
    await restoreFiles(bundle, parseIdentities(readFileSync(keys.identity, 'utf8')), path.join(parent, 'out'));
    assert.unreachable('restore must fail');
  } catch (e) {
    assert.ok(isAirlockError(e, 'checksum-mismatch'), String(e));
  }
  assert.equal(readdirSync(parent), []);
  rmSync(other, { recursive: true, force: true });
  assert.not.ok(existsSync(path.join(parent, 'out')));
});

test.run();
