/*
 * The exit-code table is written once (manifests/errors.ts) and printed by every --help; the README
 * copy must say the same, and the README must start with the two commands a new user runs. The
 * verification results (manifests/results.ts) are the ones README and SPEC.md list, and the version
 * (manifests/version.ts) is package.json's.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EXIT_TABLE, STATUS_EXIT_NOTE } from '../../manifests/errors.js';
import { RESULTS } from '../../manifests/results.js';
import { VERSION } from '../../manifests/version.js';
import { ROOT } from '../helpers.js';

const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

test('the README lists every exit code as the code table says', () => {
  for (const [code, text] of EXIT_TABLE) {
    if (text.startsWith('wal-fetch only')) assert.match(readme, `${code} `);
    else assert.ok(readme.includes(`| ${code} | ${text} |`), `README lacks: | ${code} | ${text} |`);
  }
  assert.match(STATUS_EXIT_NOTE, '0 ok, 1 warning, 2 critical, 3 unknown');
  assert.match(readme.replace(/\s+/g, ' '), '0 ok, 1 warning, 2 critical, 3 unknown');
});

test('the README starts with the demo and the test commands', () => {
  const block = /```sh\n([^`]*)```/.exec(readme)?.[1] ?? '';
  const lines = block.trim().split('\n');
  assert.match(lines[0] ?? '', /^bash scripts\/setup\.sh && npm run demo/);
  assert.match(lines[1] ?? '', /^bash scripts\/setup\.sh && npm test/);
  assert.ok(readme.indexOf('```sh') < 20);
});

/** The `code` words of the sentence that starts with `lead`, in order, without repeats. */
function listedAfter(text: string, lead: string): string[] {
  const at = text.indexOf(lead);
  assert.ok(at >= 0, `no sentence starting ${lead}`);
  const sentence = text.slice(at, text.slice(at).search(/\.\s/) + at);
  return [...new Set([...sentence.matchAll(/`([a-z]+(?:-[a-z]+)*)`/g)].map((m) => m[1] as string))];
}

test('the verification results are the ones README and SPEC.md list, in their order', () => {
  const spec = readFileSync(path.join(ROOT, 'manifests', 'SPEC.md'), 'utf8');
  assert.equal(listedAfter(spec, 'Each check ends in one closed result:'), [...RESULTS]);
  assert.equal(
    listedAfter(readme, '`airlock-verify` results:').filter((w) => w !== 'airlock-verify'),
    [...RESULTS],
  );
});

test('the version is the one package.json states', () => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.is(VERSION, pkg.version);
});

test.run();
