/*
 * Media prepared by a hostile courier, and bundles signed by a trusted key that carry hostile
 * payloads: what airlock-verify and a restore must survive with a verdict, in bounded time, memory
 * and disk, and without handing the terminal anything but text.
 */
import { cpSync, readFileSync, readdirSync, truncateSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, airlock, airlockVerify, tmp } from '../helpers.js';

const VECTORS = path.join(ROOT, 'test', 'vectors');
const KEYS = path.join(VECTORS, 'keys');
const ALLOWED = path.join(KEYS, 'allowed_signers');
const IDENTITY = path.join(KEYS, 'identity.txt');
const TiB = 1024 ** 4;

/** A copy of the good three-bundle chain to tamper with, and its first bundle (six volumes). */
function goodCopy(): { media: string; first: string } {
  const media = path.join(tmp(), 'media');
  cpSync(path.join(VECTORS, 'cases', 'good-chain', 'media'), media, { recursive: true });
  return { media, first: path.join(media, 'site-a', 'site-a-00000001') };
}

interface JsonReport {
  status: string;
  findings: { result: string; file?: string; message: string; bundle: string }[];
}

test('a volume and RESTORE.txt replaced by 1 TiB sparse files are size-mismatch at once, keyless, deep and in a restore', () => {
  const { media, first } = goodCopy();
  truncateSync(path.join(first, 'payload.001'), TiB);
  truncateSync(path.join(first, 'RESTORE.txt'), TiB);
  for (const deep of [false, true]) {
    const started = Date.now();
    const r = airlockVerify(['--allowed-signers', ALLOWED, '--json', ...(deep ? ['--identity', IDENTITY] : []), media], { timeout: 60_000 });
    const seconds = (Date.now() - started) / 1000;
    assert.is(r.code, 1, `${r.stderr}`);
    assert.ok(seconds < 20, `took ${seconds} s`);
    const report = JSON.parse(r.stdout) as JsonReport;
    for (const file of ['payload.001', 'RESTORE.txt']) {
      const f = report.findings.find((x) => x.file === file);
      assert.is(f?.result, 'size-mismatch', `${file}: ${JSON.stringify(f)}`);
      assert.match(f?.message ?? '', String(TiB));
    }
  }
  const parent = tmp();
  const started = Date.now();
  const rs = airlock(['restore', 'files', '--from', media, '--identity', IDENTITY, '--allowed-signers', ALLOWED, '--seq', '1', '--to', path.join(parent, 'restored')], { timeout: 60_000 });
  assert.ok((Date.now() - started) / 1000 < 20, 'the restore took too long');
  assert.is(rs.code, 1, rs.stderr);
  assert.match(rs.stderr, /^airlock: error: /m);
  assert.equal(readdirSync(parent), []);
});

test.run();
