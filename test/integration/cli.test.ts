/*
 * The CLI's promises outside the round trip: keys from stock tools, keygen never overwrites, the
 * config file (every problem listed with its line, flags win), JSON output.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EXIT } from '../../manifests/errors.js';
import { airlock, airlockVerify, exportArgs, makeKeys, run, tmp } from '../helpers.js';

const keys = makeKeys('site-k');

test('a signing key made by ssh-keygen signs bundles; an airlock key signs with ssh-keygen -Y sign', () => {
  const dir = tmp();
  const key = path.join(dir, 'id_ed25519');
  assert.is(run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'stock', '-f', key]).code, 0);
  const src = tmp();
  writeFileSync(path.join(src, 'x.conf'), 'x\n');
  const medium = tmp();
  const r = airlock([
    'export',
    '--to',
    medium,
    '--site',
    'site-k',
    '--signing-key',
    key,
    '--recipient',
    keys.recipient,
    '--files',
    src,
    '--state-dir',
    tmp(),
    '--json',
  ]);
  assert.is(r.code, EXIT.ok, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.is(out.seq, 1);
  assert.is(out.contents.files, 1);
  const signers = path.join(dir, 'allowed_signers');
  writeFileSync(signers, `site-k ${readFileSync(`${key}.pub`, 'utf8')}`);
  assert.is(airlockVerify(['--allowed-signers', signers, medium]).code, EXIT.ok);
  // the other way round
  const msg = path.join(dir, 'msg');
  writeFileSync(msg, 'hello\n');
  const s = run('ssh-keygen', ['-Y', 'sign', '-f', keys.signingKey, '-n', 'file', msg]);
  assert.is(s.code, 0, s.stderr);
  const v = run('ssh-keygen', ['-Y', 'verify', '-f', keys.allowedSigners, '-I', 'site-k', '-n', 'file', '-s', `${msg}.sig`], { input: 'hello\n' });
  assert.is(v.code, 0, v.stderr);
});

test('keygen never overwrites a key and writes it 0600', () => {
  const r = airlock(['keygen', '--signing-key', keys.signingKey, '--site', 'site-k']);
  assert.is(r.code, EXIT.conflict);
  assert.match(r.stderr, 'already exists');
  const mode = run('stat', ['-c', '%a', keys.signingKey]).stdout.trim();
  assert.is(mode, '600');
  const age = path.join(tmp(), 'id.txt');
  const a = airlock(['keygen', '--age', age]);
  assert.is(a.code, EXIT.ok, a.stderr);
  assert.match(a.stdout, /^age1[0-9a-z]{58}\n$/);
  assert.is(run('stat', ['-c', '%a', age]).stdout.trim(), '600');
  // Go age reads the identity airlock wrote
  assert.is(run('age-keygen', ['-y', age]).stdout.trim(), a.stdout.trim());
  assert.is(airlock(['keygen', '--age', age]).code, EXIT.conflict);
});

test('a signing key others can read is refused', () => {
  const dir = tmp();
  const key = path.join(dir, 'k');
  assert.is(airlock(['keygen', '--signing-key', key, '--site', 'site-k']).code, EXIT.ok);
  run('chmod', ['644', key]);
  const r = airlock(['export', '--to', tmp(), '--site', 'site-k', '--signing-key', key, '--recipient', keys.recipient, '--files', dir, '--state-dir', tmp()]);
  assert.is(r.code, EXIT.input);
  assert.match(r.stderr, 'chmod 600');
});

test('config file: every problem with its line at once; flags win over the file', () => {
  const dir = tmp();
  const conf = path.join(dir, 'airlock.conf');
  writeFileSync(conf, ['site = Bad Site', 'medium = /x', 'colour = blue', 'compress = lz4', 'recipient = age1nope', 'just words'].join('\n'));
  const r = airlock(['export', '--config', conf]);
  assert.is(r.code, EXIT.usage);
  for (const want of [`${conf}:1: site`, `${conf}:3: unknown key colour`, `${conf}:4: compress`, `${conf}:5: recipient`, `${conf}:6: not "key = value"`])
    assert.match(r.stderr, want);
  const src = tmp();
  writeFileSync(path.join(src, 'a'), 'a');
  const medium = tmp();
  writeFileSync(
    conf,
    [
      `site = site-k`,
      `medium = ${path.join(dir, 'not-this-one')}`,
      `signing-key = ${keys.signingKey}`,
      `recipient = ${keys.recipient}`,
      `files = ${src}`,
      `state-dir = ${tmp()}`,
      'compress = none',
    ].join('\n'),
  );
  const ok = airlock(['export', '--config', conf, '--to', medium]);
  assert.is(ok.code, EXIT.ok, ok.stderr);
  assert.match(ok.stdout, medium);
  const m = JSON.parse(readFileSync(path.join(ok.stdout.trim(), 'manifest.json'), 'utf8'));
  assert.is(m.payload.compression, 'none');
});

test('a missing medium and a missing source are typed errors that leave nothing behind', () => {
  const src = tmp();
  const r = airlock(exportArgs(keys, '/nonexistent/medium', tmp(), ['--files', src]));
  assert.is(r.code, EXIT.input);
  assert.match(r.stderr, 'airlock: error: medium /nonexistent/medium is not there');
  const medium = tmp();
  const state = tmp();
  const m = airlock(exportArgs(keys, medium, state, ['--files', path.join(src, 'missing')]));
  assert.is(m.code, EXIT.input);
  assert.match(m.stderr, 'no such file or folder');
  assert.equal(run('find', [medium, '-mindepth', '2']).stdout, '', 'no partial bundle');
  // and the seq was not consumed
  writeFileSync(path.join(src, 'a'), 'a');
  const ok = airlock(exportArgs(keys, medium, state, ['--files', src]));
  assert.is(ok.code, EXIT.ok, ok.stderr);
  assert.match(ok.stdout, 'site-k-00000001');
});

test('a number option that is not one stops the command with a usage error (it was NaN), from a flag or the file', () => {
  const medium = tmp();
  const r = airlock([
    'restore',
    'files',
    '--from',
    medium,
    '--identity',
    keys.identity,
    '--allowed-signers',
    keys.allowedSigners,
    '--to',
    path.join(tmp(), 'out'),
    '--seq',
    'abc',
  ]);
  assert.is(r.code, EXIT.usage);
  assert.is(r.stderr, 'airlock: error: --seq abc: not a bundle number\nairlock: hint: see airlock restore files --help\n');
  const conf = path.join(tmp(), 'airlock.conf');
  writeFileSync(conf, 'min-copies = two\n');
  const p = airlock(['prune', '--config', conf, '--site', 'site-k', '--wal-spool', tmp(), '--state-dir', tmp()]);
  assert.is(p.code, EXIT.usage);
  assert.match(p.stderr, `${conf}:1: min-copies: not a number of media from 1 to 99`);
});

test.run();
