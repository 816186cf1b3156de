/*
 * Runs every bundle test vector (test/vectors/cases/*): airlock-verify must end with the expected
 * exit code and findings, and `airlock restore files` must end with the expected exit code, refusing
 * every bad set without writing anything.
 */
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, airlock, airlockVerify, tmp } from '../helpers.js';
import { EXIT } from '../../manifests/errors.js';

const VECTORS = path.join(ROOT, 'test', 'vectors');
const KEYS = path.join(VECTORS, 'keys');
const cases = readdirSync(path.join(VECTORS, 'cases')).sort();

interface Expected {
  description: string;
  deep?: boolean;
  wrongIdentity?: boolean;
  state?: Record<string, { seq: number; sums: string }>;
  exit: number;
  findings: { result: string; file?: string }[];
  /** a name in EXIT */
  restoreExit: 'ok' | 'failed' | 'input';
}

test('there are at least 20 tamper vectors and some good ones', () => {
  const all = cases.map((c) => JSON.parse(readFileSync(path.join(VECTORS, 'cases', c, 'expected.json'), 'utf8')) as Expected);
  assert.ok(all.filter((e) => e.exit === 1).length >= 20);
  assert.ok(all.filter((e) => e.exit === 0).length >= 2);
});

for (const name of cases) {
  test(`vector ${name}`, () => {
    const dir = path.join(VECTORS, 'cases', name);
    const e = JSON.parse(readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Expected;
    const media = path.join(dir, 'media');
    const identity = path.join(KEYS, e.wrongIdentity ? 'other-identity.txt' : 'identity.txt');
    const args = ['--allowed-signers', path.join(KEYS, 'allowed_signers'), '--json'];
    if (e.deep) args.push('--identity', identity);
    const state = path.join(tmp(), 'state.json');
    const stateBefore = `${JSON.stringify({ format: 'airlock-verify-state', version: 1, sites: e.state })}\n`;
    if (e.state) {
      writeFileSync(state, stateBefore);
      args.push('--state', state);
    }
    const r = airlockVerify([...args, media]);
    assert.is(r.code, e.exit, `${e.description}\n${r.stdout}${r.stderr}`);
    // a site with a finding never moves the remembered state (past withheld bundles, for one)
    if (e.state && e.exit !== 0) assert.equal(JSON.parse(readFileSync(state, 'utf8')), JSON.parse(stateBefore));
    const report = JSON.parse(r.stdout) as { status: string; findings: { result: string; file?: string; message: string }[] };
    assert.is(report.status, e.exit === 0 ? 'ok' : 'error');
    const allowed = new Set(e.findings.map((f) => f.result));
    for (const f of report.findings) assert.ok(allowed.has(f.result), `unexpected finding ${f.result} ${f.file ?? ''}: ${f.message}`);
    for (const want of e.findings) {
      assert.ok(
        report.findings.some((f) => f.result === want.result && (want.file === undefined || f.file === want.file)),
        `expected ${want.result} ${want.file ?? ''}; got ${JSON.stringify(report.findings)}`,
      );
    }
    if (e.exit === 0) assert.is(report.findings.length, 0);

    const parent = tmp();
    const to = path.join(parent, 'restored');
    const rs = airlock(['restore', 'files', '--from', media, '--identity', identity, '--allowed-signers', path.join(KEYS, 'allowed_signers'), '--to', to]);
    assert.is(rs.code, EXIT[e.restoreExit], `restore files must end ${e.restoreExit}: ${e.description}\n${rs.stderr}`);
    if (e.restoreExit !== 'ok') {
      assert.match(rs.stderr, /^airlock: error: /m);
      assert.not.ok(existsSync(to), 'restore wrote the target');
      assert.equal(readdirSync(parent), [], 'restore left files behind');
    }
  });
}

test.run();
