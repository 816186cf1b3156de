import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ALL_CODES, AirlockError, EXIT, EXIT_TABLE, WAL_FETCH_EXIT, exitCodeOf, formatExitTable, fromSystemError, isAirlockError, walFetchExitCodeOf } from '../../manifests/errors.js';

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
  assert.match((e as AirlockError).message, 'payload.000');
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

test.run();
