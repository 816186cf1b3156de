/*
 * Fuzzing the inner manifest, read with the key: index.jsonl line by line, and the whole decrypted
 * tar through checkInner (SALT, payload entries, index.jsonl, MANIFEST.sha256, against the
 * cleartext manifest's claims). Tars are built as the bundle writer lays them out, with the
 * project's tar writer and canonical lines, then damaged: in the tar bytes (checksums recomputed,
 * so damage reaches the index and the inner manifest) and record by record in the index (fields
 * removed, retyped, duplicated, pointed elsewhere). checkInner may only throw `malformed` (what
 * ends the tar stream) and otherwise reports findings; an undamaged tar has none; time is linear
 * in the entries and records.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { canonicalLine } from '../../manifests/canonical.js';
import { INNER_MANIFEST, SALT, formatInnerManifest } from '../../manifests/inner.js';
import { INDEX, parseIndexLine } from '../../manifests/records.js';
import { checkInner } from '../../manifests/inner-check.js';
import { FORMAT, FORMAT_VERSION, type Manifest } from '../../manifests/manifest.js';
import { END_OF_ARCHIVE, encodeHeader, paddingFor, readTar } from '../../manifests/tar.js';
import { ascii, assertLinear, check, checkAsync, fc, fixChecksums, mutate, mutations, typedOnly, typedOnlyAsync } from './fuzz.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const BLOCK = 512;

interface Inner {
  tar: Buffer;
  manifest: Manifest;
  /** the index records after the bundle record */
  records: Record<string, unknown>[];
}

const fileEntry = fc.record({ size: fc.nat({ max: 700 }), name: fc.stringMatching(/^[a-z0-9]{1,12}$/), mode: fc.constantFrom('0600', '0640', '0755') });
const owner = { mode: '0755', uid: 0, gid: 0, mtime: '2026-01-31T12:00:00.000Z' };
const metaRecord = fc.oneof(
  fc.record({ type: fc.constant('dir'), source: fc.constantFrom('/etc', '/etc/platform', '/srv') }).map((r) => ({ ...r, ...owner })),
  fc
    .record({ type: fc.constant('symlink'), source: fc.constantFrom('/etc/link', '/srv/l'), target: fc.constantFrom('x', '../../etc/shadow', '/') })
    .map((r) => ({ ...r, ...owner })),
);
const innerShape = fc.record({
  files: fc.uniqueArray(fileEntry, { selector: (f) => f.name, maxLength: 5 }),
  meta: fc.uniqueArray(metaRecord, { selector: (r) => r.source, maxLength: 3 }),
  site: fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,10}$/),
  seq: fc.integer({ min: 1, max: 1000 }),
});
type Shape = typeof innerShape extends fc.Arbitrary<infer T> ? T : never;

function entry(name: string, body: Buffer): Buffer[] {
  return [encodeHeader({ path: name, type: 'file', size: body.length, mode: 0o600, mtime: 1767225600 }), body, paddingFor(body.length)];
}

/** The bundle writer's layout: SALT, payload entries, index.jsonl, MANIFEST.sha256 last. */
function build(s: Shape, records?: Record<string, unknown>[]): Inner {
  const parts: Buffer[] = [];
  const lines: { name: string; sha256: string }[] = [];
  const put = (name: string, body: Buffer) => {
    parts.push(...entry(name, body));
    lines.push({ name, sha256: sha256(body) });
  };
  put(SALT, Buffer.alloc(32, 7));
  const recs: Record<string, unknown>[] = records ?? [
    ...s.meta,
    ...s.files.map((f) => {
      const body = Buffer.alloc(f.size, f.name.charCodeAt(0));
      return {
        type: 'file',
        path: `files/${f.name}`,
        size: f.size,
        sha256: sha256(body),
        source: `/etc/platform/${f.name}`,
        mode: f.mode,
        uid: 0,
        gid: 0,
        mtime: '2026-01-31T12:00:00.000Z',
      };
    }),
  ];
  let files = 0;
  let bytes = 0;
  let metadata = 0;
  for (const r of recs) {
    if (typeof r.path === 'string') {
      const f = s.files.find((x) => `files/${x.name}` === r.path);
      try {
        put(r.path, Buffer.alloc(f?.size ?? 0, f?.name.charCodeAt(0) ?? 0));
      } catch {
        // a path the tar writer refuses ('..'): the record names an entry that is not there
      }
      if (r.type === 'file') files++;
      bytes += f?.size ?? 0;
    } else metadata++;
  }
  const created = '2026-01-31T12:00:00.000Z';
  const index = `${[canonicalLine({ type: 'bundle', site: s.site, seq: s.seq, created, format: FORMAT, version: FORMAT_VERSION }), ...recs.map(lineOf)].join('\n')}\n`;
  put(INDEX, Buffer.from(index));
  const innerText = Buffer.from(formatInnerManifest(lines));
  parts.push(...entry(INNER_MANIFEST, innerText), END_OF_ARCHIVE);
  const manifest = {
    format: FORMAT,
    version: FORMAT_VERSION,
    site: s.site,
    seq: s.seq,
    created,
    tool: 'fuzz',
    signer: `SHA256:${'A'.repeat(43)}`,
    recipients: [],
    payload: { encryption: 'age-v1', compression: 'none', volumeSize: 4096, volumes: [], size: 1, sha256: '0'.repeat(64) },
    inner: { sha256: sha256(innerText), entries: lines.length },
    contents: { files, metadata, bytes },
  } as unknown as Manifest;
  return { tar: Buffer.concat(parts), manifest, records: recs };
}

/** A record as the writer writes it, or as JSON when the writer would refuse it (a fraction). */
function lineOf(r: Record<string, unknown>): string {
  try {
    return canonicalLine(r);
  } catch {
    return JSON.stringify(r);
  }
}

async function* chunks(b: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

const INDEX_TOKENS = ascii(
  '\n',
  '\r\n',
  '{',
  '}',
  '"',
  ',',
  ':',
  '"path":"SALT",',
  '"path":"../x",',
  '"size":-1,',
  '"size":1e400,',
  '"type":"bundle",',
  '"sha256":"x",',
  '"source":"/etc/../x",',
  '[',
  'null',
  '\\u0000',
  '{}\n',
  '"type":"pg-wal","kind":"segment","name":"000000010000000000000001",',
);

test('damaged inner tars: checkInner throws only malformed, otherwise reports; an undamaged tar has no finding', async () => {
  await checkAsync(
    fc.record({ s: innerShape, ms: mutations(4), fix: fc.boolean(), piece: fc.constantFrom(1 << 20, 512, 1000, 7) }),
    400,
    async ({ s, ms, fix, piece }) => {
      const { tar, manifest } = build(s);
      assert.equal(await checkInner(readTar(chunks(tar, 4096)), manifest), []);
      const indexAt = tar.indexOf('{"created"');
      const fields = [indexAt, tar.indexOf('\n', indexAt) + 1, tar.indexOf('"path"', indexAt), tar.indexOf('"size"', indexAt), tar.indexOf(INNER_MANIFEST) - 0];
      for (let h = 0; h < tar.length; h += BLOCK) if (tar.toString('latin1', h + 257, h + 262) === 'ustar') fields.push(h, h + 124, h + 156);
      let bytes = mutate(tar, ms, { fields: fields.filter((f) => f >= 0), tokens: INDEX_TOKENS });
      if (fix) bytes = fixChecksums(bytes);
      // Small pieces only for small tars: byte-sized reads of a large one find nothing more.
      await typedOnlyAsync(['malformed'], () => checkInner(readTar(chunks(bytes, Math.max(piece, bytes.length >> 8))), manifest));
    },
  );
});

const ODD: unknown[] = [
  null,
  -1,
  1.5,
  2 ** 53,
  '',
  'SALT',
  'index.jsonl',
  'MANIFEST.sha256',
  '../x',
  'files/a',
  '/etc',
  '/etc/platform/a/b',
  'relative',
  [],
  {},
  'file',
  'bundle',
  'pg-wal',
  'segment',
  '000000010000000000000001',
  '0'.repeat(64),
];

test('index records edited field by field: checkInner reports, never throws', async () => {
  const editArb = fc.array(
    fc.record({
      rec: fc.nat(),
      key: fc.constantFrom('type', 'path', 'size', 'sha256', 'source', 'target', 'kind', 'name', 'extra'),
      op: fc.constantFrom('set', 'delete', 'duplicate'),
      value: fc.nat(),
    }),
    { minLength: 1, maxLength: 3 },
  );
  const coverage = {
    postgres: {
      systemIdentifier: '7311806245567262489',
      major: 15,
      segmentSize: 16 << 20,
      dataChecksums: true,
      timeline: 1,
      wal: [{ timeline: 1, first: '000000010000000000000001', last: '000000010000000000000001' }],
      timelines: [],
      dumps: 0,
    },
  };
  await checkAsync(fc.record({ s: innerShape, edits: editArb, pg: fc.boolean() }), 400, async ({ s, edits, pg }) => {
    const base = build(s);
    // with a coverage section, the pg-wal records are checked against it too
    if (pg) base.manifest.coverage = coverage;
    const records = base.records.map((r) => ({ ...r }));
    for (const e of edits) {
      if (records.length === 0) break;
      const r = records[e.rec % records.length] as Record<string, unknown>;
      if (e.op === 'delete') delete r[e.key];
      else if (e.op === 'set') r[e.key] = ODD[e.value % ODD.length];
      else records.push({ ...r });
    }
    const { tar, manifest } = build(s, records);
    if (pg) manifest.coverage = coverage;
    // the cleartext claims stay those of the undamaged bundle: what a tampered payload would face
    await typedOnlyAsync(['malformed'], () => checkInner(readTar(chunks(tar, 4096)), base.manifest));
    await typedOnlyAsync(['malformed'], () => checkInner(readTar(chunks(tar, 4096)), manifest));
  });
});

test('index.jsonl lines damaged: parseIndexLine throws only malformed', () => {
  const line = fc.record({ s: innerShape, n: fc.integer({ min: 1, max: 3 }), ms: mutations(3) });
  check(line, 600, ({ s, n, ms }) => {
    const { records } = build(s);
    const text =
      n === 1
        ? canonicalLine({ type: 'bundle', site: s.site, seq: s.seq, created: '2026-01-31T12:00:00.000Z', format: FORMAT, version: FORMAT_VERSION })
        : canonicalLine(records[0] ?? { type: 'dir', source: '/etc', ...owner });
    const b = Buffer.from(text);
    typedOnly(['malformed'], () =>
      parseIndexLine(mutate(b, ms, { fields: [0, 1, b.indexOf(':') + 1, b.length - 1, b.length], tokens: INDEX_TOKENS }).toString('utf8'), n),
    );
  });
});

test('time is linear: entries and records; an index line past the bound is refused, at the latest when it is reached', async () => {
  const shape = (n: number): Shape => ({
    files: Array.from({ length: n }, (_, i) => ({ size: i % 100, name: `f${i}`, mode: '0600' })),
    meta: [],
    site: 's',
    seq: 1,
  });
  await assertLinear(
    'entries',
    (n: number) => build(shape(n)),
    async ({ tar, manifest }: Inner) => assert.equal(await checkInner(readTar(chunks(tar, 65536)), manifest), []),
    150,
  );
  // One index.jsonl line of n bytes without an end: refused at the 1 MiB bound, not read to the end of the tar.
  const long = (n: number) => {
    const index = Buffer.concat([
      Buffer.from(`${canonicalLine({ type: 'bundle', site: 's', seq: 1, created: 'x', format: FORMAT, version: FORMAT_VERSION })}\n{"a":"`),
      Buffer.alloc(n, 0x61),
    ]);
    return Buffer.concat([...entry(SALT, Buffer.alloc(32)), ...entry(INDEX, index), END_OF_ARCHIVE]);
  };
  // refused at the line bound, or before a byte of it is read when the tar header already says it is too big for its records
  let problems: { result: string; file?: string; message: string }[] = [];
  const e = await typedOnlyAsync(['malformed'], async () => {
    problems = await checkInner(readTar(chunks(long(2 * 1024 * 1024), 65536)), build(shape(0)).manifest);
  });
  const said = e?.message ?? problems.map((p) => `${p.result} ${p.file}: ${p.message}`).join('; ');
  assert.match(said, /is over 1048576 bytes|index\.jsonl: the tar says \d+ bytes, more than its records can take/, said || 'accepted');
  await assertLinear(
    'an index line without an end',
    long,
    async (t: Buffer) => typedOnlyAsync(['malformed'], () => checkInner(readTar(chunks(t, 65536)), build(shape(0)).manifest)),
    90_000,
  );
});

test.run();
