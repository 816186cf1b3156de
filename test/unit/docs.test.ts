/*
 * The exit-code table is written once (manifests/errors.ts) and printed by every --help; the README
 * copy must say the same, and the README must start with the two commands a new user runs.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EXIT_TABLE, STATUS_EXIT_NOTE } from '../../manifests/errors.js';
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

test.run();
