/*
 * Tablespaces without a server: what coverage.postgres.base.tablespaces may say and how it must
 * agree with the index, how --tablespace-map values are read and matched (every refusal before
 * anything is decrypted), and how tablespace_map becomes links to the mapped folders.
 */
import { existsSync, mkdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { coverageAgainstIndex, coverageProblems, type PostgresCoverage, type Tablespace } from '../../manifests/coverage.js';
import { AirlockError, type Code } from '../../manifests/errors.js';
import { linkTablespaces, parseTablespaceMaps, planTablespaces } from '../../agent/restore/tablespaces.js';
import { tmp } from '../helpers.js';

const SPACES: Tablespace[] = [
  { oid: 16384, name: 'fast', location: '/srv/pg/fast' },
  { oid: 16390, name: 'slow\nspace', location: '/srv/pg/slow' },
];

const coverage = (tablespaces: unknown): { postgres: PostgresCoverage } => ({
  postgres: {
    systemIdentifier: '7000000000000000001',
    major: 15,
    segmentSize: 16 * 1024 * 1024,
    dataChecksums: true,
    timeline: 1,
    wal: [],
    timelines: [],
    dumps: 0,
    base: {
      timeline: 1,
      startLsn: '0/2000028',
      stopLsn: '0/2000100',
      startTime: '2026-01-01T00:00:00Z',
      stopTime: '2026-01-01T00:00:01Z',
      ...(tablespaces === undefined ? {} : { tablespaces: tablespaces as Tablespace[] }),
    },
  },
});

test('coverage: tablespaces sorted by OID with names and absolute locations pass; every malformed list is named', () => {
  assert.equal(coverageProblems(coverage(SPACES)), []);
  assert.equal(coverageProblems(coverage(undefined)), []);
  const bad: [unknown, string][] = [
    [[], 'must be a non-empty list'],
    [[SPACES[1], SPACES[0]], 'tablespaces[1].oid: not above the one before'],
    [[SPACES[0], { ...SPACES[1], name: 'fast' }], 'tablespaces[1].name: named twice'],
    [[{ ...SPACES[0], location: 'srv/fast' }], 'tablespaces[0]: must be an OID'],
    [[{ ...SPACES[0], name: 'x'.repeat(64) }], 'tablespaces[0]: must be an OID'],
    [[{ ...SPACES[0], oid: 0 }], 'tablespaces[0]: must be an OID'],
    [[{ ...SPACES[0], oid: '16384' }], 'tablespaces[0]: must be an OID'],
    [[{ ...SPACES[0], extra: 1 }], 'extra'],
  ];
  for (const [list, want] of bad) {
    const p = coverageProblems(coverage(list));
    assert.ok(
      p.some((m) => m.includes(want)),
      `${JSON.stringify(list)}: ${JSON.stringify(p)}`,
    );
  }
});

test('coverage against the index: the pg-tblspc-end records must be exactly the tablespaces claimed', () => {
  const records = (spaces: readonly Tablespace[]) => [{ type: 'pg-base-end' }, ...spaces.map((t) => ({ type: 'pg-tblspc-end', ...t }))];
  assert.equal(coverageAgainstIndex(coverage(SPACES), records(SPACES)), []);
  assert.equal(coverageAgainstIndex(coverage(undefined), records([])), []);
  const says = (c: unknown, spaces: readonly Tablespace[]) => coverageAgainstIndex(c as { postgres: PostgresCoverage }, records(spaces)).join('; ');
  assert.match(says(coverage(SPACES.slice(0, 1)), SPACES), 'lists 1 tablespace(s), the payload holds 2');
  assert.match(says(coverage(undefined), SPACES), 'lists 0 tablespace(s), the payload holds 2');
  assert.match(says(coverage(SPACES), [SPACES[0] as Tablespace, { ...(SPACES[1] as Tablespace), location: '/elsewhere' }]), 'each by OID, name and location');
});

/** The AirlockError code `f` throws (or rejects with). */
async function codeOf(f: () => unknown): Promise<{ code: Code; message: string; hint: string }> {
  try {
    await f();
  } catch (e) {
    if (e instanceof AirlockError) return { code: e.code, message: e.message, hint: e.hint ?? '' };
    throw e;
  }
  throw new Error('did not throw');
}

test('--tablespace-map: OID_OR_NAME=DIR, split at the last =, the folder made absolute; anything else is usage', async () => {
  assert.equal(parseTablespaceMaps(['16384=/a', 'x=y=rel']), [
    { key: '16384', dir: '/a' },
    { key: 'x=y', dir: path.resolve('rel') },
  ]);
  for (const bad of ['=/a', 'fast=', 'fast']) assert.is((await codeOf(() => parseTablespaceMaps([bad]))).code, 'usage', bad);
});

test('planning: by OID or name; a tablespace left out, named twice or unknown, and folders that overlap or hold files are refused', async () => {
  const root = tmp();
  const pgdata = path.join(root, 'data');
  const at = (n: string) => path.join(root, n);
  const ok = await planTablespaces(SPACES, parseTablespaceMaps([`slow\nspace=${at('s')}`, `16384=${at('f')}`]), pgdata);
  assert.equal(
    ok.map((t) => [t.oid, t.dir, t.partial]),
    [
      [16384, at('f'), at('.f.airlock-partial')],
      [16390, at('s'), at('.s.airlock-partial')],
    ],
  );

  const missing = await codeOf(() => planTablespaces(SPACES, parseTablespaceMaps([`fast=${at('f')}`]), pgdata));
  assert.is(missing.code, 'tablespace-unmapped');
  assert.match(missing.message, 'a tablespace with no --tablespace-map: 16390 ("slow\\nspace", was /srv/pg/slow)');
  assert.match(missing.hint, '16384 ("fast", was /srv/pg/fast), 16390');
  assert.is((await codeOf(() => planTablespaces(SPACES, [], pgdata))).code, 'tablespace-unmapped');
  assert.is(
    (await codeOf(() => planTablespaces(SPACES, parseTablespaceMaps([`fast=${at('f')}`, `16384=${at('g')}`, `16390=${at('s')}`]), pgdata))).message,
    '--tablespace-map: tablespace 16384 ("fast") is mapped twice',
  );
  assert.match((await codeOf(() => planTablespaces([], parseTablespaceMaps([`fast=${at('f')}`]), pgdata))).hint, 'no tablespaces');
  const inData = await codeOf(() => planTablespaces(SPACES, parseTablespaceMaps([`fast=${path.join(pgdata, 'ts')}`, `16390=${at('s')}`]), pgdata));
  assert.equal([inData.code, inData.message], ['usage', `--tablespace-map: ${path.join(pgdata, 'ts')} overlaps ${pgdata}`]);
  assert.is((await codeOf(() => planTablespaces(SPACES, parseTablespaceMaps([`fast=${at('f')}`, `16390=${at('f/inner')}`]), pgdata))).code, 'usage');

  mkdirSync(at('full'));
  writeFileSync(path.join(at('full'), 'x'), '');
  assert.is((await codeOf(() => planTablespaces(SPACES, parseTablespaceMaps([`fast=${at('full')}`, `16390=${at('s')}`]), pgdata))).code, 'target-exists');
  mkdirSync(at('empty'));
  symlinkSync(at('empty'), at('link'));
  assert.is((await codeOf(() => planTablespaces(SPACES, parseTablespaceMaps([`fast=${at('link')}`, `16390=${at('s')}`]), pgdata))).code, 'unsafe-target');
  assert.equal((await planTablespaces(SPACES, parseTablespaceMaps([`fast=${at('empty')}`, `16390=${at('s')}`]), pgdata)).length, 2, 'an empty folder is fine');
});

test('linking: tablespace_map must name exactly the planned OIDs; it is replaced by links to the mapped folders', async () => {
  const root = tmp();
  const data = path.join(root, 'data');
  mkdirSync(path.join(data, 'pg_tblspc'), { recursive: true });
  const targets = await planTablespaces(
    SPACES,
    parseTablespaceMaps([`fast=${path.join(root, 'f')}`, `16390=${path.join(root, 's')}`]),
    path.join(root, 'pgdata'),
  );
  writeFileSync(path.join(data, 'tablespace_map'), '16384 /srv/pg/fast\n');
  assert.is((await codeOf(() => linkTablespaces(data, targets))).code, 'unsafe-entry');
  assert.is((await codeOf(() => linkTablespaces(data, []))).code, 'unsafe-entry', 'a map in a backup whose manifest names no tablespace');
  writeFileSync(path.join(data, 'tablespace_map'), '16384 /srv/pg/fast\n16390 /srv/pg/slow\n');
  await linkTablespaces(data, targets);
  assert.not.ok(existsSync(path.join(data, 'tablespace_map')));
  assert.is(readlinkSync(path.join(data, 'pg_tblspc', '16384')), path.join(root, 'f'));
  assert.is(readlinkSync(path.join(data, 'pg_tblspc', '16390')), path.join(root, 's'));
  // no tablespaces: an empty map (or none) is fine
  writeFileSync(path.join(data, 'tablespace_map'), '');
  await linkTablespaces(data, []);
  assert.not.ok(existsSync(path.join(data, 'tablespace_map')));
});

test.run();
