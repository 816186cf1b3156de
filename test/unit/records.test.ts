/*
 * index.jsonl records: the parser takes each type SPEC.md 6.3 lists with its fields, and refuses an
 * unknown type, a missing or mistyped field, and entry fields on a record that names no entry, each
 * with `malformed` naming the line and the field. The types are SPEC.md's, table for table.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { canonicalLine } from '../../manifests/canonical.js';
import { AirlockError } from '../../manifests/errors.js';
import { FORMAT, FORMAT_VERSION } from '../../manifests/manifest.js';
import { RECORD_TYPES, hasEntry, parseIndexLine, type IndexRecord } from '../../manifests/records.js';
import { ROOT } from '../helpers.js';

const entry = { path: 'x/000001', size: 3, sha256: 'a'.repeat(64) };
const owner = { source: '/etc/a', mode: '0640', uid: 0, gid: 0, mtime: '2026-01-01T00:00:00.000Z' };

/** One record of every type, as the writer writes them. */
const EXAMPLES: IndexRecord[] = [
  { type: 'file', ...owner, user: 'root', ...entry },
  { type: 'dir', ...owner },
  { type: 'symlink', ...owner, target: '../b' },
  { type: 'hardlink', ...owner, target: '/etc/b' },
  { type: 'special', ...owner, kind: 'fifo', rdev: 0 },
  { type: 'bucket', bucket: 'b', prefix: '', endpoint: 'http://127.0.0.1:1', versioning: 'Enabled', lifecycle: null, objectLock: '<x/>', tags: null, since: 3 },
  {
    type: 'object',
    bucket: 'b',
    key: 'k',
    versionId: 'null',
    isLatest: true,
    lastModified: '2026-01-01T00:00:00.000Z',
    etag: '"0"',
    contentType: '',
    headers: {},
    metadata: { a: 'b' },
    tags: {},
    ...entry,
  },
  { type: 'delete-marker', bucket: 'b', key: 'k', versionId: 'v', isLatest: false, lastModified: '2026-01-01T00:00:00.000Z' },
  {
    type: 'version-changed',
    bucket: 'b',
    key: 'k',
    versionId: 'v',
    tags: { a: 'b' },
    lock: { 'x-amz-object-lock-mode': 'GOVERNANCE' },
    detected: '2026-01-02T00:00:00.000Z',
  },
  { type: 'version-removed', bucket: 'b', key: 'k', versionId: 'v', detected: '2026-01-02T00:00:00.000Z' },
  { type: 'bucket-summary', bucket: 'b', prefix: '', versions: 1, deleteMarkers: 1, latestObjects: 1, bytes: 3, alreadyExported: 0 },
  { type: 'pg-info', ...entry },
  { type: 'pg-config', file: '/etc/postgresql/15/main/postgresql.conf', ...entry },
  { type: 'pg-tables', database: 'postgres', ...entry },
  { type: 'pg-base', part: 1, ...entry },
  { type: 'pg-base-end', parts: 1, bytes: 3, label: 'airlock-1' },
  { type: 'pg-tblspc', oid: 16390, part: 1, ...entry },
  { type: 'pg-tblspc-end', oid: 16390, name: 'fast', location: '/srv/fast', prefix: 'pg/tblspc/16390', parts: 1, bytes: 3 },
  { type: 'pg-dump', database: 'app', part: 1, ...entry },
  { type: 'pg-dump-end', database: 'app', prefix: 'pg/dump/001', parts: 1, bytes: 3 },
  { type: 'pg-globals', part: 1, ...entry },
  { type: 'pg-globals-end', parts: 1, bytes: 3, passwords: false },
  { type: 'pg-wal', name: '000000010000000000000001', kind: 'segment', timeline: 1, ...entry },
];

function refused(line: string, n: number, message: RegExp): void {
  try {
    parseIndexLine(line, n);
  } catch (e) {
    assert.instance(e, AirlockError);
    assert.is((e as AirlockError).code, 'malformed');
    assert.match((e as Error).message, message);
    return;
  }
  assert.unreachable(`accepted: ${line}`);
}

test('every record type, as written, parses back to itself', () => {
  assert.equal(new Set(EXAMPLES.map((r) => r.type)), new Set(RECORD_TYPES));
  for (const r of EXAMPLES) assert.equal(parseIndexLine(canonicalLine(r), 2), r);
});

test('the first line is the bundle record, and only the first', () => {
  const bundle = { type: 'bundle', format: FORMAT, version: FORMAT_VERSION, site: 's', seq: 1, created: '2026-01-01T00:00:00.000Z' };
  assert.equal(parseIndexLine(canonicalLine(bundle), 1), bundle);
  refused(canonicalLine(bundle), 2, /index\.jsonl line 2: a second bundle record/);
  refused(canonicalLine({ type: 'dir', ...owner }), 1, /line 1: the first line must be the bundle record/);
});

test('an unknown type, a missing or mistyped field, entry fields where there is no entry: malformed, naming them', () => {
  refused('{"type":"pg-wall"}', 3, /index\.jsonl line 3: unknown record type pg-wall/);
  refused('{"kind":"file"}', 2, /no record type/);
  refused('[1]', 2, /not an object/);
  for (const r of EXAMPLES) {
    const missing = Object.keys(r).find((k) => k !== 'type' && k !== 'user' && k !== 'since' && k !== 'lock' && !(k in entry));
    if (missing === undefined) continue;
    const { [missing]: _, ...rest } = r as unknown as Record<string, unknown>;
    refused(canonicalLine(rest), 2, new RegExp(`${r.type} record: ${missing} must be`));
    refused(canonicalLine({ ...r, [missing]: [] }), 2, new RegExp(`${missing} must be`));
  }
  refused(canonicalLine({ type: 'pg-wal', name: 'x', kind: 'other', timeline: 1, ...entry }), 2, /kind must be segment, partial, history or backup/);
  refused(canonicalLine({ type: 'object', ...(EXAMPLES[6] as object), headers: { a: 1 } }), 2, /headers must be an object of strings/);
  refused(canonicalLine({ type: 'file', ...owner, size: 3, sha256: 'a'.repeat(64) }), 2, /bad entry path/);
  refused(canonicalLine({ type: 'file', ...owner, ...entry, size: -1 }), 2, /bad size/);
  refused(canonicalLine({ type: 'dir', ...owner, ...entry }), 2, /a dir record names no tar entry/);
  assert.ok(hasEntry(EXAMPLES[0] as IndexRecord));
  assert.not.ok(hasEntry(EXAMPLES[1] as IndexRecord));
});

test('the record types are the ones SPEC.md 6.3 lists, in its order', () => {
  const spec = readFileSync(path.join(ROOT, 'manifests', 'SPEC.md'), 'utf8');
  const section = spec.slice(spec.indexOf('### 6.3 index.jsonl'), spec.indexOf('### 6.4'));
  const listed = [...section.matchAll(/^\| `([a-z-]+)` \|/gm)].map((m) => m[1]);
  assert.equal(listed, RECORD_TYPES);
});

test.run();
