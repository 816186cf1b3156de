import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from '../helpers.js';
import {
  ALL_CODES,
  AirlockError,
  EXIT,
  EXIT_TABLE,
  WAL_FETCH_EXIT,
  exitCodeOf,
  formatExitTable,
  fromSystemError,
  isAirlockError,
  walFetchExitCodeOf,
} from '../../manifests/errors.js';
import { errorJson, formatError, wantsJson } from '../../manifests/print-error.js';

test('each code maps to its documented exit code', () => {
  assert.is(new AirlockError('usage', 'x').exitCode, EXIT.usage);
  assert.is(new AirlockError('bad-signature', 'x').exitCode, EXIT.failed);
  assert.is(new AirlockError('medium-full', 'x').exitCode, EXIT.medium);
  assert.is(exitCodeOf(new Error('boom')), EXIT.internal);
});

test('every code has an exit code that the table documents', () => {
  const documented = new Set(EXIT_TABLE.map(([c]) => c));
  assert.ok(ALL_CODES.length >= 25);
  for (const code of ALL_CODES) assert.ok(documented.has(new AirlockError(code, 'x').exitCode), code);
});

test('system errors become typed errors', () => {
  const e = fromSystemError(Object.assign(new Error('x'), { code: 'ENOSPC' }), 'payload.000');
  assert.ok(isAirlockError(e, 'medium-full'));
  assert.match(e.message, 'payload.000');
});

test('wal-fetch: only an absent file may look like the end of the WAL, every failure is above 125', () => {
  assert.is(walFetchExitCodeOf(new AirlockError('checksum-mismatch', 'x')), WAL_FETCH_EXIT.refused);
  assert.is(walFetchExitCodeOf(new AirlockError('bad-wal', 'x')), WAL_FETCH_EXIT.refused);
  // a missing folder or key file is "not found" too, but never "absent"
  for (const code of ['not-found', 'usage', 'io', 'medium-full', 'internal'] as const) {
    assert.ok(walFetchExitCodeOf(new AirlockError(code, 'x')) > 125, code);
  }
  assert.ok(walFetchExitCodeOf(new Error('boom')) > 125);
  assert.match(formatExitTable(), '126  wal-fetch only');
  assert.is(new AirlockError('wal-conflict', 'x').exitCode, EXIT.conflict);
  assert.is(new AirlockError('spool-full', 'x').exitCode, EXIT.medium);
});

test('one printer: text with the hint, escaped; with --json one object with the exact strings', () => {
  const e = new AirlockError('not-found', 'a\x1b[2Jb: no such file', { hint: 'give --from' });
  assert.is(formatError('airlock', e, false), 'airlock: error: a\\x1b[2Jb: no such file\nairlock: hint: give --from\n');
  assert.is(formatError('airlock-verify', new AirlockError('usage', 'x'), false), 'airlock-verify: error: x\n');
  const json = formatError('airlock', e, true);
  assert.ok(json.endsWith('}\n') && !json.slice(0, -1).includes('\n'), 'one line');
  assert.equal(JSON.parse(json), { code: 'not-found', message: 'a\x1b[2Jb: no such file', hint: 'give --from', exit: EXIT.input });
  assert.equal(errorJson(new AirlockError('usage', 'x')), { code: 'usage', message: 'x', hint: null, exit: EXIT.usage });
  // anything else is a bug: code internal, exit 70, its stack in the message
  const bug = errorJson(new TypeError('boom'));
  assert.is(bug.code, 'internal');
  assert.is(bug.exit, EXIT.internal);
  assert.match(bug.message, /^internal error: TypeError: boom\n\s+at /);
  assert.match(formatError('airlock', new TypeError('boom'), false), /^airlock: error: internal error: TypeError: boom\n[^]*\nairlock: hint: this is a bug/);
  // under the systemd journal each line starts with the error priority
  assert.is(
    formatError('airlock', e, false, '<3>'),
    'airlock: error: a\\x1b[2Jb: no such file\nairlock: hint: give --from\n'.replace(/^airlock/gm, '<3>airlock'),
  );
  assert.ok(wantsJson(['status', '--json']));
  assert.not.ok(wantsJson(['restore', 'files', '--', '--json']));
});

test('each error code is documented where it is defined: when it is raised', () => {
  const source = readFileSync(path.join(ROOT, 'manifests', 'errors.ts'), 'utf8');
  const table = source.slice(source.indexOf('const CODES = {'), source.indexOf('} as const satisfies'));
  for (const code of ALL_CODES) {
    const at = table.search(new RegExp(`\\n  (/\\*\\*[^]*?\\*/\\n  )?'?${code}'?: EXIT\\.`));
    assert.ok(at >= 0, `${code} is not in the table`);
    assert.match(table.slice(at, at + 400), /^\n {2}\/\*\*/, `${code} has no comment`);
  }
});

test.run();
