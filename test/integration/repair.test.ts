/*
 * Recovery data from a signer that is not honest: par2 files signed by the site key whose packets
 * name other files than the bundle's volumes (a parent folder, an absolute path, a file of the
 * bundle that is not a volume). A restore must refuse them before par2 runs and write nothing outside
 * its target; and a repair from honest recovery data works from a read-only medium.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, cpSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { sha256Hex } from '../../manifests/hash.js';
import { airlock, exportArgs, makeKeys, run, tmp } from '../helpers.js';
import { renameInRecovery } from '../par2.js';
import { EXIT } from '../../manifests/errors.js';

const keys = makeKeys('site-r');

/** A medium with one bundle of 3 MiB of files in 1 MiB volumes, recovery data, and payload.001 damaged. */
function damagedBundle(): { medium: string; bundle: string; src: string } {
  const src = path.join(tmp(), 'etc-app');
  mkdirSync(src);
  writeFileSync(path.join(src, 'data.bin'), randomBytes(3 * 1024 * 1024));
  const medium = tmp();
  const r = airlock(exportArgs(keys, medium, tmp(), ['--files', src, '--recovery-percent', '10', '--volume-size', '1M', '--compress', 'none']));
  assert.is(r.code, EXIT.ok, r.stderr);
  const bundle = r.stdout.trim();
  const fd = openSync(path.join(bundle, 'payload.001'), 'r+');
  writeSync(fd, randomBytes(8192), 0, 8192, 300_000);
  closeSync(fd);
  return { medium, bundle, src };
}

function restore(from: string, to: string) {
  return airlock(['restore', 'files', '--from', from, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', to]);
}

test('recovery data signed by the site key that names other files than the volumes is refused before par2 runs; nothing is written outside the target', () => {
  const { medium } = damagedBundle();
  const outside = tmp();
  for (const name of ['../escape', `${outside}/abs`, '../../../x', 'SHA256SUMS', 'payload.001/../../y', '']) {
    const copy = tmp();
    cpSync(medium, copy, { recursive: true });
    const bundle = path.join(copy, keys.site, readdirSync(path.join(copy, keys.site))[0] as string);
    renameInRecovery(bundle, new Map([['payload.001', name]]), keys.signingKey);
    // the re-signed list holds: only what the recovery data says is wrong
    assert.is(run('sha256sum', ['--strict', '--quiet', '-c', 'SHA256SUMS'], { cwd: bundle }).code, 1, 'only the damaged volume fails');
    const parent = tmp();
    const to = path.join(parent, 'restored');
    const r = restore(copy, to);
    assert.is(r.code, EXIT.failed, `${name}: ${r.stderr}`);
    assert.match(
      r.stderr,
      new RegExp(
        `^airlock: error: recovery\\.par2 describes ${JSON.stringify(name).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}, not a volume of the bundle; par2 was not run\\nairlock: hint: [^\\n]+\\n$`,
        'm',
      ),
    );
    assert.equal(readdirSync(parent), [], `${name}: nothing in the target's folder, no scratch copy left`);
    assert.equal(readdirSync(outside), [], `${name}: nothing written at the absolute path`);
    assert.not.ok(existsSync(path.join(path.dirname(parent), 'escape')), `${name}: nothing beside the target's folder`);
  }
});

test('a damaged volume is repaired from a read-only medium: the repair writes only its scratch copy', () => {
  const { medium, bundle, src } = damagedBundle();
  const before = sha256Hex(readFileSync(path.join(bundle, 'payload.001')));
  const ro = tmp();
  const bind = run('mount', ['--bind', '-o', 'ro', medium, ro]);
  assert.is(bind.code, 0, `a bind mount needs root: ${bind.stderr}`);
  try {
    // older mount(8) ignore ro on the first bind; remounting makes it stick
    run('mount', ['-o', 'remount,bind,ro', ro]);
    assert.is(run('touch', [path.join(ro, 'probe')]).code, 1, 'the medium is read-only');
    const parent = tmp();
    const to = path.join(parent, 'restored');
    const r = restore(ro, to);
    assert.is(r.code, EXIT.ok, r.stderr);
    assert.match(r.stderr, 'airlock: repaired payload.001');
    assert.ok(readFileSync(path.join(to, src, 'data.bin')).equals(readFileSync(path.join(src, 'data.bin'))));
    assert.equal(readdirSync(parent), ['restored'], 'no scratch copy left');
  } finally {
    spawnSync('umount', [ro]);
  }
  assert.is(sha256Hex(readFileSync(path.join(bundle, 'payload.001'))), before, 'the medium was not written');
});

test.run();
