import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AirlockError, EXIT, exitCodeOf, fromSystemError, isAirlockError } from '../../manifests/errors.js';

test('each code maps to its documented exit code', () => {
  assert.is(new AirlockError('usage', 'x').exitCode, EXIT.usage);
  assert.is(new AirlockError('bad-signature', 'x').exitCode, EXIT.failed);
  assert.is(new AirlockError('medium-full', 'x').exitCode, EXIT.medium);
  assert.is(exitCodeOf(new Error('boom')), EXIT.internal);
});

test('system errors become typed errors', () => {
  const e = fromSystemError(Object.assign(new Error('x'), { code: 'ENOSPC' }), 'payload.000');
  assert.ok(isAirlockError(e, 'medium-full'));
  assert.match((e as AirlockError).message, 'payload.000');
});

test.run();
