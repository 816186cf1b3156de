/*
 * Fuzzing the cleartext files a verifier reads before anything else: manifest.json (canonical JSON,
 * then the schema, coverage included), SHA256SUMS and the inner MANIFEST.sha256. Inputs are valid
 * files made by the project's writers (canonicalJson, formatSums, formatInnerManifest), damaged at
 * the byte level and, for the manifest, edited field by field and serialised again so that the
 * damage reaches the schema. Each parser may only throw `malformed`; what it accepts is exactly the
 * bytes its writer produces for the value it returned (SPEC: compare bytes); it never looks outside
 * the bytes it is given; its time is linear in them.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { canonicalJson, parseCanonical } from '../../manifests/canonical.js';
import { formatRecipient } from '../../manifests/age/keys.js';
import { formatInnerManifest, parseInnerManifest } from '../../manifests/inner.js';
import { ENTRY_PATH_RE } from '../../manifests/records.js';
import { FORMAT, FORMAT_VERSION, MANIFEST_LIMIT, assertManifest, volumeName, type Manifest } from '../../manifests/manifest.js';
import { fingerprint } from '../../manifests/sshkey.js';
import { SUMS_LIMIT, formatSums, parseSums, type SumLine } from '../../manifests/sums.js';
import { ascii, assertLinear, check, embedded, fc, mutate, mutations, typedOnly } from './fuzz.js';

const hex64 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex'));
const key32 = fc.uint8Array({ minLength: 32, maxLength: 32 });
const segmentName = fc
  .tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 255 }))
  .map(([t, l, s]) => [t, l, s].map((x) => x.toString(16).toUpperCase().padStart(8, '0')).join(''));
const lsn = fc.tuple(fc.nat({ max: 0xff }), fc.nat({ max: 0xffffffff })).map(([hi, lo]) => `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`);
const time = fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2099-12-31T23:59:59Z'), noInvalidDate: true }).map((d) => d.toISOString());

const coverage = fc.record({
  postgres: fc.record(
    {
      systemIdentifier: fc.bigInt({ min: 1n, max: 2n ** 64n - 1n }).map(String),
      major: fc.integer({ min: 13, max: 17 }),
      segmentSize: fc.constantFrom(1 << 20, 16 << 20, 1 << 30),
      dataChecksums: fc.boolean(),
      timeline: fc.integer({ min: 1, max: 3 }),
      wal: fc.array(
        fc.tuple(segmentName, fc.nat({ max: 20 })).map(([first]) => ({ timeline: parseInt(first.slice(0, 8), 16), first, last: first })),
        { maxLength: 3 },
      ),
      timelines: fc.array(fc.record({ timeline: fc.constant(2), parent: fc.constant(1), switchLsn: lsn }), { maxLength: 2 }),
      base: fc.record({ timeline: fc.constant(1), startLsn: lsn, stopLsn: lsn, startTime: time, stopTime: time }),
      dumps: fc.nat({ max: 5 }),
      restorePoint: fc.record({ name: fc.stringMatching(/^[ -~]{1,63}$/), lsn, time, timeline: fc.constant(1) }),
    },
    { requiredKeys: ['systemIdentifier', 'major', 'segmentSize', 'dataChecksums', 'timeline', 'wal', 'timelines', 'dumps'] },
  ),
});

/** Valid manifests, from the shapes the writer produces. */
const manifest: fc.Arbitrary<Manifest> = fc
  .record({
    site: fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}$/),
    seq: fc.oneof(fc.constant(1), fc.integer({ min: 2, max: 2 ** 40 })),
    prev: hex64,
    created: time,
    signer: key32,
    recipients: fc.array(key32, { minLength: 1, maxLength: 3 }),
    volumeSize: fc.integer({ min: 4096, max: 2 ** 32 - 1 }),
    volumes: fc.integer({ min: 1, max: 12 }),
    last: fc.integer({ min: 1, max: 4096 }),
    shas: fc.array(hex64, { minLength: 14, maxLength: 14 }),
    entries: fc.integer({ min: 1, max: 10 ** 7 }),
    contents: fc.record({ files: fc.nat(), metadata: fc.nat(), bytes: fc.nat({ max: Number.MAX_SAFE_INTEGER }) }),
    compression: fc.constantFrom('none' as const, 'zstd' as const),
    coverage: fc.option(coverage, { nil: undefined }),
  })
  .map((r) => {
    const volumes = Array.from({ length: r.volumes }, (_, i) => ({
      name: volumeName(i, r.volumes),
      size: i === r.volumes - 1 ? Math.min(r.last, r.volumeSize) : r.volumeSize,
      sha256: r.shas[i % 14] as string,
    }));
    const m: Manifest = {
      format: FORMAT,
      version: FORMAT_VERSION,
      site: r.site,
      seq: r.seq,
      ...(r.seq > 1 ? { prev: r.prev } : {}),
      created: r.created,
      tool: 'airlock 0.1.0',
      signer: fingerprint(r.signer),
      recipients: r.recipients.map(formatRecipient),
      payload: {
        encryption: 'age-v1',
        compression: r.compression,
        volumeSize: r.volumeSize,
        volumes,
        size: volumes.reduce((a, v) => a + v.size, 0),
        sha256: r.shas[13] as string,
      },
      inner: { sha256: r.shas[12] as string, entries: r.entries },
      contents: r.contents,
    };
    if (r.coverage !== undefined) m.coverage = r.coverage;
    return m;
  });

const DEEP = Symbol('deep');

/** Values that test a schema's every branch: wrong types, edges of ranges, sizes, depth. */
const ODD_VALUES: unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1,
  2 ** 53 - 1,
  2 ** 53,
  1.5,
  -0,
  '',
  ' ',
  '0',
  'x'.repeat(300),
  '\u0000',
  '\u202e',
  'é',
  [],
  [1],
  {},
  { a: 1 },
  '0'.repeat(64),
  'A'.repeat(64),
  'age1',
  'SHA256:',
  '2026-02-30T25:61:61Z',
  '2026-01-31T12:00:00.000Z',
  '0/0',
  '00000000000000000000000G',
  Array.from({ length: 70 }, () => 'age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq'),
  DEEP,
];

/** Nesting deeper than any schema: built afresh for each use (structuredClone recurses). */
function deep(): unknown[] {
  let v: unknown[] = [];
  for (let i = 0; i < 5000; i++) v = [v];
  return v;
}

/** An edit at a path chosen by index among every path of the value. */
const edit = fc.record({ path: fc.nat(), kind: fc.constantFrom('delete', 'replace', 'add'), value: fc.nat() });

function paths(v: unknown, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (at.length >= 12) return out; // the schema ends well above this; deeper lies only the nesting value
  if (Array.isArray(v)) v.slice(0, 20).forEach((x, i) => paths(x, [...at, i], out));
  else if (v !== null && typeof v === 'object') for (const k of Object.keys(v)) paths((v as Record<string, unknown>)[k], [...at, k], out);
  return out;
}

function applyEdit(root: unknown, e: { path: number; kind: string; value: number }): unknown {
  const all = paths(root);
  const p = all[e.path % all.length] as (string | number)[];
  // A copy, so that a value added inside itself cannot make a cycle.
  const odd = ODD_VALUES[e.value % ODD_VALUES.length];
  const value = odd === DEEP ? deep() : structuredClone(odd);
  if (p.length === 0) return e.kind === 'replace' ? value : root;
  let parent = root as Record<string | number, unknown>;
  for (const k of p.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const last = p[p.length - 1] as string | number;
  if (e.kind === 'delete') {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  } else if (e.kind === 'replace') parent[last] = value;
  else if (Array.isArray(parent)) parent.push(value);
  else parent[`${String(last)}x`] = value;
  return root;
}

const JSON_TOKENS = [
  ...ascii('"', '\\', '\\u0000', '\\ud800', '{', '}', '[', ']', ',', ':', ' ', '\n', '\r\n', '1e3', '-0', '0.5', 'null'),
  // a byte-order mark, bytes that are not UTF-8, an encoded surrogate, a two-byte character
  Buffer.from([0xef, 0xbb, 0xbf]),
  Buffer.from([0xff]),
  Buffer.from([0xc3]),
  Buffer.from([0xed, 0xa0, 0x80]),
  Buffer.from('\u00e9', 'utf8'),
];

/** The start and end of the file and of every string: where a decoder's leniency shows. */
function jsonFields(text: Buffer): number[] {
  const out = [0, text.length];
  for (let i = text.indexOf(0x22); i >= 0; i = text.indexOf(0x22, i + 1)) out.push(i, i + 1);
  return out;
}

function parseManifest(bytes: Uint8Array): Manifest {
  const v = parseCanonical(bytes, 'manifest.json', MANIFEST_LIMIT);
  assertManifest(v);
  return v;
}

/** What assertManifest promises of a manifest it let through. */
function assertConsistent(m: Manifest): void {
  const n = m.payload.volumes.length;
  assert.is(
    m.payload.volumes.reduce((a, v) => a + v.size, 0),
    m.payload.size,
  );
  m.payload.volumes.forEach((v, i) => {
    assert.is(v.name, volumeName(i, n));
    if (i < n - 1) assert.is(v.size, m.payload.volumeSize);
  });
  assert.is(m.seq === 1, m.prev === undefined);
}

/** JSON values the canonical writer accepts: integers only, any strings. */
const jsonValue = fc.jsonValue({ maxDepth: 4 }).filter((v) => {
  try {
    canonicalJson(v);
    return true;
  } catch {
    return false;
  }
});

test('canonical JSON damaged once or twice: only malformed; accepted bytes are exactly the canonical bytes of the value', () => {
  check(fc.record({ v: jsonValue, ms: mutations(2) }), 600, ({ v, ms }) => {
    const valid = Buffer.from(canonicalJson(v));
    const bytes = mutate(valid, ms, { fields: jsonFields(valid), tokens: JSON_TOKENS });
    let got: unknown;
    const e = typedOnly(['malformed'], () => {
      got = parseCanonical(bytes, 'label', MANIFEST_LIMIT);
    });
    if (e === undefined)
      assert.ok(
        Buffer.from(canonicalJson(got)).equals(bytes),
        `accepted ${JSON.stringify(bytes.toString('latin1'))}, not the canonical bytes of what it holds`,
      );
  });
});

// Found by the property above (seed 20261203, path "70:2:1:2:4:5:10:1:1:8:2:2:2:2:16:14:16:14:14:15"):
// the decoder turned a byte that is not UTF-8 into U+FFFD, whose canonical form is other bytes, and
// dropped a leading byte-order mark, so parseCanonical compared text that was not the file's bytes.
test('vector: canonical JSON with a byte that is not UTF-8, or a byte-order mark, is not canonical', () => {
  const notUtf8 = Buffer.from('[\n  "\x80"\n]\n', 'latin1');
  const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(canonicalJson({ a: 1 }))]);
  for (const bytes of [notUtf8, bom]) {
    const e = typedOnly(['malformed'], () => parseCanonical(bytes, 'manifest.json', MANIFEST_LIMIT));
    // refused: not UTF-8, not JSON (a byte-order mark), or not canonical, depending on where the check sees it first
    assert.match(e?.message ?? 'accepted', /^manifest\.json: not (in canonical form|UTF-8|valid JSON)/);
  }
});

test('manifest.json damaged byte by byte: only malformed; what is accepted is exactly its canonical bytes', () => {
  check(fc.record({ m: manifest, donor: manifest, ms: mutations(4) }), 400, ({ m, donor, ms }) => {
    const valid = Buffer.from(canonicalJson(m));
    const bytes = mutate(valid, ms, { fields: jsonFields(valid), tokens: JSON_TOKENS, donors: [Buffer.from(canonicalJson(donor))] });
    let got: Manifest | undefined;
    typedOnly(['malformed'], () => {
      got = parseManifest(bytes);
    });
    if (got !== undefined) {
      assert.ok(Buffer.from(canonicalJson(got)).equals(bytes), 'accepted bytes that are not the canonical form of what they hold');
      assertConsistent(got);
    }
  });
});

test('manifest.json edited field by field and serialised again: only malformed, and only consistent manifests pass', () => {
  check(fc.record({ m: manifest, edits: fc.array(edit, { minLength: 1, maxLength: 3 }) }), 400, ({ m, edits }) => {
    let v: unknown = structuredClone(m);
    for (const e of edits) v = applyEdit(v, e);
    let text: string;
    try {
      text = canonicalJson(v);
    } catch {
      return; // a value the writer refuses (a non-integer number): no file to read
    }
    let got: Manifest | undefined;
    typedOnly(['malformed'], () => {
      got = parseManifest(Buffer.from(text));
    });
    if (got !== undefined) assertConsistent(got);
  });
});

test('manifest.json: valid files read back, inside a larger buffer too; over the limit is refused unread', () => {
  check(manifest, 150, (m) => {
    const bytes = Buffer.from(canonicalJson(m));
    assert.equal(parseManifest(bytes), JSON.parse(canonicalJson(m)));
    assert.equal(parseManifest(embedded(bytes, 0x20)), JSON.parse(canonicalJson(m)));
  });
  const e = typedOnly(['malformed'], () => parseManifest(Buffer.alloc(MANIFEST_LIMIT + 1, 0x20)));
  assert.match(e?.message ?? '', `over the ${MANIFEST_LIMIT}-byte limit`);
  // Nesting deeper than the serialiser's stack is a finding, not a crash.
  const deep = Buffer.from(`${'['.repeat(400_000)}${']'.repeat(400_000)}`);
  assert.is(typedOnly(['malformed'], () => parseManifest(deep))?.code, 'malformed');
});

test('manifest.json: time is linear in volumes and in nesting', async () => {
  const withVolumes = (n: number) => {
    const volumes = Array.from({ length: n }, (_, i) => ({ name: volumeName(i, n), size: 4096, sha256: 'a'.repeat(64) }));
    const m = {
      format: FORMAT,
      version: FORMAT_VERSION,
      site: 's',
      seq: 1,
      created: '2026-01-31T12:00:00.000Z',
      tool: 't',
      signer: `SHA256:${'A'.repeat(43)}`,
      recipients: [formatRecipient(new Uint8Array(32))],
      payload: { encryption: 'age-v1', compression: 'none', volumeSize: 4096, volumes, size: 4096 * n, sha256: 'b'.repeat(64) },
      inner: { sha256: 'c'.repeat(64), entries: 1 },
      contents: { files: 0, metadata: 0, bytes: 0 },
    };
    return Buffer.from(canonicalJson(m));
  };
  // The limit is lifted for the larger input: only the growth is measured here.
  await assertLinear('volumes', withVolumes, (b: Buffer) => assertManifest(parseCanonical(b, 'manifest.json', 64 * MANIFEST_LIMIT)), 600);
  await assertLinear(
    'nesting',
    (n: number) => Buffer.from(`{"a":${'['.repeat(n)}${']'.repeat(n)}}`),
    (b: Buffer) => typedOnly(['malformed'], () => parseManifest(b)),
    20_000,
  );
});

// ---- SHA256SUMS and MANIFEST.sha256 ----

const bundleFile = fc.oneof(
  fc.constantFrom('manifest.json', 'RESTORE.txt', 'payload.000', 'payload.001', 'payload.1000', 'recovery.par2', 'recovery.vol000-10.par2'),
  fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,30}$/),
);
const sums = fc
  .uniqueArray(fc.record({ name: bundleFile, sha256: hex64 }, { noNullPrototype: true }), { selector: (l) => l.name, maxLength: 12 })
  .map((lines) => lines.filter((l) => l.name !== 'SHA256SUMS' && l.name !== 'SHA256SUMS.sig'));
const entryPath = fc.stringMatching(ENTRY_PATH_RE).filter((p) => p.length < 200);
const innerLines = fc.uniqueArray(fc.record({ name: entryPath, sha256: hex64 }, { noNullPrototype: true }), { selector: (l) => l.name, maxLength: 12 });

const SUM_TOKENS = ascii(
  '  ',
  ' *',
  ' ',
  '\t',
  '\r',
  '\n',
  '\r\n',
  '\\',
  '..',
  '.',
  '/',
  '/etc/passwd',
  'SHA256SUMS',
  'SHA256SUMS.sig',
  'A',
  'g',
  '0'.repeat(64),
  'F'.repeat(64),
  '\ufeff',
  'payload.000',
);
SUM_TOKENS.push(Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from([0xff, 0xfe]), Buffer.from([0]));

/** Offsets of each line's name and of its two spaces. */
function lineFields(text: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i < text.length; i = text.indexOf(0x0a, i) + 1 || text.length) out.push(i, i + 63, i + 64, i + 66);
  return out;
}

test('SHA256SUMS damaged: only malformed; accepted text is exactly what formatSums writes for it', () => {
  check(fc.record({ lines: sums, donor: sums, ms: mutations(4) }), 600, ({ lines, donor, ms }) => {
    const valid = Buffer.from(formatSums(lines));
    const bytes = mutate(valid, ms, { fields: lineFields(valid), tokens: SUM_TOKENS, donors: [Buffer.from(formatSums(donor))] });
    let got: SumLine[] | undefined;
    typedOnly(['malformed'], () => {
      got = parseSums(bytes);
    });
    if (got !== undefined) assert.ok(Buffer.from(formatSums(got)).equals(bytes), `accepted ${JSON.stringify(bytes.toString('latin1'))}`);
  });
});

test('MANIFEST.sha256 damaged: only malformed; accepted text is exactly what formatInnerManifest writes for it', () => {
  check(fc.record({ lines: innerLines, donor: innerLines, ms: mutations(4) }), 600, ({ lines, donor, ms }) => {
    const valid = Buffer.from(formatInnerManifest(lines));
    const bytes = mutate(valid, ms, { fields: lineFields(valid), tokens: SUM_TOKENS, donors: [Buffer.from(formatInnerManifest(donor))] });
    let got: SumLine[] | undefined;
    typedOnly(['malformed'], () => {
      got = parseInnerManifest(bytes);
    });
    if (got !== undefined) {
      assert.ok(Buffer.from(formatInnerManifest(got)).equals(bytes), `accepted ${JSON.stringify(bytes.toString('latin1'))}`);
      for (const l of got) assert.ok(ENTRY_PATH_RE.test(l.name), l.name);
    }
  });
});

test('SHA256SUMS: valid files read back, inside a larger buffer too; over the limit is refused unread', () => {
  check(sums, 150, (lines) => {
    const text = Buffer.from(formatSums(lines));
    const sorted = [...lines].sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
    assert.equal(parseSums(text), sorted);
    assert.equal(parseSums(embedded(text, 0x0a)), sorted);
  });
  const e = typedOnly(['malformed'], () => parseSums(Buffer.alloc(SUMS_LIMIT + 1, 0x0a)));
  assert.match(e?.message ?? '', `over the ${SUMS_LIMIT}-byte limit`);
});

test('SHA256SUMS and MANIFEST.sha256: time is linear in lines and in line length', async () => {
  const many = (n: number) =>
    Buffer.from(formatSums(Array.from({ length: n }, (_, i) => ({ name: `payload.${String(i).padStart(7, '0')}`, sha256: 'a'.repeat(64) }))));
  await assertLinear('SHA256SUMS lines', many, (b: Buffer) => parseSums(b), 1000);
  const inner = (n: number) =>
    Buffer.from(formatInnerManifest(Array.from({ length: n }, (_, i) => ({ name: `o/${i.toString(36)}/p/${'x'.repeat(40)}`, sha256: 'a'.repeat(64) }))));
  await assertLinear('MANIFEST.sha256 lines', inner, (b: Buffer) => parseInnerManifest(b), 2000);
  // One long line that almost matches: a name of n characters that breaks at its end.
  const long = (n: number) => Buffer.from(`${'a'.repeat(64)}  ${'a/'.repeat(n)}\u0000\n`);
  await assertLinear('a long bad line', long, (b: Buffer) => typedOnly(['malformed'], () => parseInnerManifest(b)), 20_000);
});

test.run();
