/*
 * shellQuote: every word it writes, read back by a real POSIX shell (/bin/sh), is exactly the string
 * it was given, whatever bytes that holds; and a plain word stays readable.
 */
import { spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AirlockError } from '../../manifests/errors.js';
import { shellQuote } from '../../manifests/shell.js';

/** What /bin/sh makes of `word`: the bytes of the one argument it passes to printf. */
function throughShell(word: string): string {
  const r = spawnSync('/bin/sh', ['-c', `printf '%s|' ${word}`], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  return r.stdout;
}

const SAMPLES = [
  "it's",
  "''",
  'two words',
  'line\nbreak',
  'trailing newline\n',
  'tab\there',
  '\x1b[2J\x07\x7f\x01',
  '$HOME `id` $(id) \\n "x"',
  '*.txt ? [a] ~ # ; & | < > ( ) { } !',
  '-rf',
  '--target-name=x',
  'ü €  \u{1f600}',
];

test('every sample reaches the program as exactly one argument, byte for byte', () => {
  for (const s of SAMPLES) assert.is(throughShell(shellQuote(s)), `${s}|`, JSON.stringify(s));
});

test('the empty string is one empty argument, not none', () => {
  assert.is(shellQuote(''), "''");
  assert.is(throughShell(`${shellQuote('')} ${shellQuote('x')}`), '|x|');
});

test('a plain word is written as it is; anything else is single-quoted', () => {
  assert.is(shellQuote('/media/usb/db-00000004.restored'), '/media/usb/db-00000004.restored');
  assert.is(shellQuote('site-a:5@x=1,2%+'), 'site-a:5@x=1,2%+');
  assert.is(shellQuote("/media/it's usb"), `'/media/it'\\''s usb'`);
  assert.is(shellQuote('line\nbreak'), "'line\nbreak'");
  assert.is(shellQuote('\x1b[2J'), "'\x1b[2J'");
});

test('a leading dash is quoted, so it shows as a value, and stays one word', () => {
  assert.is(shellQuote('-rf'), "'-rf'");
  assert.is(throughShell(`${shellQuote('-n')} ${shellQuote('x')}`), '-n|x|');
});

test('a NUL, which no argument can hold, is refused', () => {
  try {
    shellQuote('a\0b');
    assert.unreachable('a NUL was quoted');
  } catch (e) {
    assert.instance(e, AirlockError);
    assert.is((e as AirlockError).code, 'internal');
  }
});

test.run();
