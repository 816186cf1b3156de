/*
 * escapeText: what a medium, a tar, a bucket or a server chose reaches a terminal or a log only as
 * visible text. Each unsafe class is shown as an escape; everything else is left as it is.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { escapeStack, escapeText } from '../../manifests/escape.js';

/** Nothing a terminal would act on: no C0 but none at all, no DEL, no C1, no bidi control. */

const ACTIVE = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;

test('ESC sequences, CR, LF and other C0 controls are shown, not sent', () => {
  assert.is(escapeText('\x1b[2J\x1b[Hstatus: ok'), '\\x1b[2J\\x1b[Hstatus: ok');
  assert.is(escapeText('a\nstatus: ok\r'), 'a\\nstatus: ok\\r');
  assert.is(escapeText('\t\x00\x07\x7f'), '\\t\\x00\\x07\\x7f');
  assert.is(escapeText('\x1b]0;title\x07'), '\\x1b]0;title\\x07');
});

test('C1 controls (CSI), bidi overrides and isolates, line separators are shown', () => {
  assert.is(escapeText('\u009b2J'), '\\u009b2J');
  assert.is(escapeText('\u202etxt.exe'), '\\u202etxt.exe');
  for (const c of [0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x200e, 0x200f, 0x061c, 0x2028, 0x2029, 0xfeff]) {
    const s = escapeText(`a${String.fromCharCode(c)}b`);
    assert.is(s, `a\\u${c.toString(16).padStart(4, '0')}b`);
  }
});

test('a backslash is doubled, so an escape in the output always stands for a character', () => {
  assert.is(escapeText('\\x1b'), '\\\\x1b');
  assert.is.not(escapeText('\\x1b'), escapeText('\x1b'));
});

test('bytes that are not UTF-8 are shown as \\xNN; a decoded U+FFFD and lone surrogates as \\uNNNN', () => {
  assert.is(escapeText(Buffer.from([0x61, 0xff, 0x62, 0xc3])), 'a\\xffb\\xc3');
  assert.is(escapeText(Buffer.from([0xed, 0xa0, 0x80])), '\\xed\\xa0\\x80');
  assert.is(escapeText(Buffer.from([0xc0, 0xaf])), '\\xc0\\xaf');
  assert.is(escapeText(Buffer.from('ü €  \u{1f600}', 'utf8')), 'ü €  \u{1f600}');
  assert.is(escapeText(Buffer.from([0x1b, 0x5b])), '\\x1b[');
  assert.is(escapeText('x\ufffdy'), 'x\\ufffdy');
  assert.is(escapeText('\ud800x\udc00'), '\\ud800x\\udc00');
});

test('ordinary text, non-ASCII letters and emoji pass unchanged', () => {
  for (const s of ['status: ok', 'Grüße/файл/名前.txt', 'a \u{1f600} b', '']) assert.is(escapeText(s), s);
});

test('no output of any byte string holds a character a terminal acts on', () => {
  for (let i = 0; i < 2000; i++) {
    const bytes = Buffer.from(Array.from({ length: 24 }, (_, j) => (i * 31 + j * 17 + ((i * j) % 7)) & 0xff));
    assert.not.ok(ACTIVE.test(escapeText(bytes)), bytes.toString('hex'));
    assert.not.ok(ACTIVE.test(escapeText(bytes.toString('latin1'))), bytes.toString('hex'));
  }
});

test('an unexpected error: the message escaped whole, one stack frame per line', () => {
  const e = new Error('bad name \x1b[2J\nstatus: ok');
  const lines = escapeStack(e).split('\n');
  assert.is(lines[0], 'Error: bad name \\x1b[2J\\nstatus: ok');
  assert.ok(lines.length > 1 && lines.slice(1).every((l) => l.startsWith('    at ')));
  assert.is(escapeStack('\x1b'), '\\x1b');
});

test.run();
