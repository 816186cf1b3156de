/*
 * manifest.json must be the canonical bytes (SPEC.md 3.1): the reader compares bytes, so nothing a
 * decoder would quietly fix (a byte-order mark, bytes that are not UTF-8) makes another file verify.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { canonicalJson, parseCanonical } from '../../manifests/canonical.js';
import { isAirlockError } from '../../manifests/errors.js';

const value = { b: [1, 2], a: 'text', c: { y: 'ü', x: null } };
const canonical = Buffer.from(canonicalJson(value), 'utf8');

function refused(bytes: Uint8Array, why: RegExp): void {
  try {
    parseCanonical(bytes, 'manifest.json', 1024 * 1024);
  } catch (e) {
    assert.ok(isAirlockError(e, 'malformed'), String(e));
    assert.match((e as Error).message, why);
    return;
  }
  assert.unreachable('accepted');
}

test('the canonical bytes parse', () => {
  assert.equal(parseCanonical(canonical, 'manifest.json', 1024 * 1024), value);
});

test('a UTF-8 byte-order mark before canonical JSON is refused', () => {
  refused(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), canonical]), /^manifest\.json: /);
});

test('bytes that are not UTF-8 inside a string are refused, not read as U+FFFD', () => {
  const text = Buffer.from(canonicalJson({ a: 'x\ufffdy' }), 'utf8');
  const at = text.indexOf(Buffer.from('\ufffd', 'utf8'));
  const bad = Buffer.concat([text.subarray(0, at), Buffer.from([0xff]), text.subarray(at + 3)]);
  refused(bad, /not UTF-8/);
});

test('another spelling of the same value is refused', () => {
  refused(Buffer.from(JSON.stringify(value)), /not in canonical form/);
  refused(Buffer.from(canonicalJson(value).replace('\n', '\r\n')), /not in canonical form/);
  refused(Buffer.concat([canonical, Buffer.from('\n')]), /not in canonical form/);
});

test('over the limit is refused before parsing', () => {
  try {
    parseCanonical(canonical, 'manifest.json', 10);
    assert.unreachable('accepted');
  } catch (e) {
    assert.ok(isAirlockError(e, 'malformed'));
    assert.match((e as Error).message, /over the 10-byte limit/);
  }
});

test.run();
