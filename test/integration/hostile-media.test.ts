/*
 * Media prepared by a hostile courier, and bundles signed by a trusted key that carry hostile
 * payloads: what airlock-verify and a restore must survive with a verdict, in bounded time, memory
 * and disk, and without handing the terminal anything but text.
 */
import { cpSync, mkdirSync, readdirSync, truncateSync, writeFileSync } from 'node:fs';
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

/** Names a courier can put on a medium to take over the auditor's terminal. */
const EVIL_FILE = '\x1b[2J\x1b[Hstatus: ok\nstatus: ok\u202etxt.exe\u009b0m';
const EVIL_PARTIAL = 'site-a-00000004\x1b]0;all good\x07\r\u2066ok\u2069.partial';
/** What a terminal acts on: C0 controls but LF, DEL, C1 controls, bidi controls. */
// eslint-disable-next-line no-control-regex
const ACTIVE = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;

test('names from the medium reach the terminal escaped: no forged status line, no escape sequence; --json keeps them exact', () => {
  const { media, first } = goodCopy();
  writeFileSync(path.join(first, EVIL_FILE), 'x');
  writeFileSync(Buffer.concat([Buffer.from(`${first}/not-utf8-`), Buffer.from([0xff, 0xfe]), Buffer.from('.txt')]), 'x');
  mkdirSync(path.join(media, 'site-a', EVIL_PARTIAL));
  writeFileSync(path.join(media, 'site-a', EVIL_PARTIAL, 'SHA256SUMS'), '');

  const r = airlockVerify(['--allowed-signers', ALLOWED, media]);
  assert.is(r.code, 1, r.stderr);
  assert.not.ok(ACTIVE.test(r.stdout), JSON.stringify(r.stdout));
  const lines = r.stdout.trimEnd().split('\n');
  assert.is(lines.at(-1), 'status: error');
  assert.is(lines.filter((l) => l.startsWith('status: ')).length, 1);
  for (const l of lines) assert.match(l, /^(ok: |failed: |extra: |partial: |site |\d+ bundle\(s\) |status: )/);
  assert.ok(lines.includes(`extra: site-a-00000001/\\x1b[2J\\x1b[Hstatus: ok\\nstatus: ok\\u202etxt.exe\\u009b0m: not listed in SHA256SUMS`), r.stdout);
  assert.ok(lines.some((l) => l.startsWith('extra: site-a-00000001/not-utf8-\\ufffd\\ufffd.txt: ')), r.stdout);
  assert.ok(lines.some((l) => l.startsWith('partial: site-a-00000004\\x1b]0;all good\\x07\\r\\u2066ok\\u2069.partial: ')), r.stdout);

  const j = airlockVerify(['--allowed-signers', ALLOWED, '--json', media]);
  const report = JSON.parse(j.stdout) as JsonReport;
  assert.ok(report.findings.some((f) => f.result === 'extra' && f.file === EVIL_FILE));
  assert.ok(report.findings.some((f) => f.result === 'partial' && path.basename(f.bundle) === EVIL_PARTIAL));

  // the error printer of the other CLI: a restore refuses the set and quotes the names in its error
  const parent = tmp();
  const rs = airlock(['restore', 'files', '--from', media, '--identity', IDENTITY, '--allowed-signers', ALLOWED, '--seq', '1', '--to', path.join(parent, 'restored')]);
  assert.is(rs.code, 1, rs.stderr);
  assert.not.ok(ACTIVE.test(rs.stderr), JSON.stringify(rs.stderr));
  const errLines = rs.stderr.trimEnd().split('\n').filter((l) => l.startsWith('airlock: error: ') || l.startsWith('airlock: hint: '));
  assert.is(errLines.length, 2, rs.stderr);
  assert.match(rs.stderr, '\\x1b[2J');
});

test.run();
