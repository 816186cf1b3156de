/*
 * The read side of the bounds the parsers rely on: the small files of a bundle and of the spool are
 * read from disk up to their limit and no further, whatever size the file claims. A sparse file of
 * 1 TiB (no blocks on disk, so it costs nothing to make) stands for a courier's or a database
 * user's oversized file: each reader must refuse it, or read its prefix only, at once.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closeSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import { readSmallSync } from '../../agent/spool.js';
import { MAX_HEADER_BYTES } from '../../manifests/age/header.js';
import { readPrefix, readSmall } from '../../manifests/hash.js';
import { MANIFEST_LIMIT } from '../../manifests/manifest.js';
import { SIG_LIMIT } from '../../manifests/sshsig.js';
import { SUMS_LIMIT } from '../../manifests/sums.js';
import { tmp } from '../helpers.js';
import { typedOnly, typedOnlyAsync } from './fuzz.js';

const TiB = 1024 ** 4;
const dir = tmp('airlock-fuzz-bounds-');

/** A sparse file of `size` bytes whose first bytes are `head`. */
function sparse(name: string, size: number, head = 'x'): string {
  const file = path.join(dir, name);
  const fd = openSync(file, 'w');
  writeSync(fd, head, 0);
  writeSync(fd, 'y', size - 1);
  closeSync(fd);
  return file;
}

test('readSmall refuses a 1 TiB SHA256SUMS, signature or manifest.json before reading it', async () => {
  for (const [name, limit] of [
    ['SHA256SUMS', SUMS_LIMIT],
    ['SHA256SUMS.sig', SIG_LIMIT],
    ['manifest.json', MANIFEST_LIMIT],
  ] as const) {
    const file = sparse(name, TiB);
    const t = Date.now();
    const e = await typedOnlyAsync(['malformed'], () => readSmall(file, limit));
    assert.match(e?.message ?? 'read whole', `over the ${limit}-byte limit`);
    assert.ok(Date.now() - t < 1000, `${name}: ${Date.now() - t} ms`);
    // one byte over the limit is refused too; at the limit, it is read
    const over = sparse(`${name}.over`, limit + 1);
    assert.is((await typedOnlyAsync(['malformed'], () => readSmall(over, limit)))?.code, 'malformed');
    assert.is((await readSmall(sparse(`${name}.at`, limit), limit)).length, limit);
  }
});

test('readPrefix reads only the age header bound of a 1 TiB volume', async () => {
  const file = sparse('payload.000', TiB, 'age-encryption.org/v1\n');
  const t = Date.now();
  const head = await readPrefix(file, MAX_HEADER_BYTES);
  assert.is(head.length, MAX_HEADER_BYTES);
  assert.ok(Date.now() - t < 1000, `${Date.now() - t} ms`);
});

test('readSmallSync refuses a 1 TiB history file or sidecar in the spool after reading its limit only', () => {
  for (const limit of [4096, 1024 * 1024]) {
    const file = sparse(`00000002.history.${limit}`, TiB);
    const t = Date.now();
    const e = typedOnly(['malformed'], () => readSmallSync(file, limit));
    assert.match(e?.message ?? 'read whole', `larger than ${limit} bytes`);
    assert.ok(Date.now() - t < 1000, `${Date.now() - t} ms`);
  }
});

test.run();
