/*
 * The resource limits live in one table (manifests/limits.ts); the modules that enforce them take
 * their values from it, and SECURITY.md's input-limits table must say the same.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAX_HEADER_BYTES, MAX_STANZAS } from '../../manifests/age/header.js';
import { INNER_MANIFEST_LIMIT } from '../../manifests/inner.js';
import { INDEX_LINE_LIMIT } from '../../manifests/records.js';
import { LIMITS, limitsTable } from '../../manifests/limits.js';
import { MANIFEST_LIMIT, MAX_VOLUMES } from '../../manifests/manifest.js';
import { SIG_LIMIT } from '../../manifests/sshsig.js';
import { SUMS_LIMIT } from '../../manifests/sums.js';
import { MAX_META_BYTES, MAX_PATH_BYTES } from '../../manifests/tar.js';
import { ROOT } from '../helpers.js';

test("SECURITY.md's input-limits table is the table in manifests/limits.ts, row for row", () => {
  const doc = readFileSync(path.join(ROOT, 'SECURITY.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## Input limits'), doc.indexOf('\n## ', doc.indexOf('## Input limits') + 1));
  const documented = section.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| input |') && !l.startsWith('| ---'));
  assert.equal(
    documented,
    limitsTable().map(([what, limit]) => `| ${what} | ${limit} |`),
  );
});

test('the modules that enforce a limit take it from the table', () => {
  assert.is(MANIFEST_LIMIT, LIMITS.manifestBytes);
  assert.is(SUMS_LIMIT, LIMITS.sumsBytes);
  assert.is(SIG_LIMIT, LIMITS.signatureBytes);
  assert.is(MAX_HEADER_BYTES, LIMITS.ageHeaderBytes);
  assert.is(MAX_STANZAS, LIMITS.ageStanzas);
  assert.is(MAX_VOLUMES, LIMITS.volumes);
  assert.is(MAX_PATH_BYTES, LIMITS.tarPathBytes);
  assert.is(MAX_META_BYTES, LIMITS.paxHeaderBytes);
  assert.is(INDEX_LINE_LIMIT, LIMITS.indexLineBytes);
  assert.is(INNER_MANIFEST_LIMIT, LIMITS.innerManifestBytes);
});

test('the table formats limits as people read them', () => {
  const rows = new Map(limitsTable());
  assert.is(rows.get('manifest.json'), '1 MiB');
  assert.is(rows.get('tar path'), '4,096 bytes');
  assert.is(rows.get('volumes'), '1,000,000');
});

test.run();
