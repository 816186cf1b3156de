/*
 * Fuzzing readTar: tar streams written by the project's own writer (ustar headers, pax records for
 * long, non-ASCII, large or AIRLOCK.* values), then damaged, with the header checksums optionally
 * recomputed so that the damage reaches past the checksum into the fields, pax records, GNU long
 * names, global headers and sparse maps. The reader may only throw `malformed`, pulls its source
 * only as far as the consumer has read, refuses oversized metadata before reading it, and takes
 * time linear in the stream.
 */
import { test } from 'uvu';
import { Parser } from 'tar';
import * as assert from 'uvu/assert';
import { END_OF_ARCHIVE, MAX_META_BYTES, encodeHeader, entryProblem, paddingFor, readTar, type EntryHeader } from '../../manifests/tar.js';
import { CountingSource, ascii, assertLinear, checkAsync, fc, fixChecksums, mutate, mutations, typedOnlyAsync, type Target } from './fuzz.js';

const BLOCK = 512;

interface Built {
  bytes: Buffer;
  /** offsets of every 512-byte header (pax headers included) */
  headers: number[];
  /** offsets of pax record data */
  paxData: number[];
}

const segment = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.ü日-]{0,40}$/);
const entryHeader: fc.Arbitrary<EntryHeader> = fc
  .record({
    parts: fc.array(segment, { minLength: 1, maxLength: 8 }),
    dir: fc.boolean(),
    size: fc.oneof(fc.integer({ min: 0, max: 1100 }), fc.constantFrom(0, 511, 512, 513)),
    mode: fc.integer({ min: 0, max: 0o7777 }),
    mtime: fc.oneof(fc.integer({ min: 0, max: 2 ** 33 - 1 }), fc.integer({ min: -(2 ** 40), max: 2 ** 40 })),
    pax: fc.option(
      fc.dictionary(fc.stringMatching(/^AIRLOCK\.[A-Za-z0-9_.]{1,12}$/), fc.string({ minLength: 1, maxLength: 60, unit: 'grapheme' }), { maxKeys: 3 }),
      { nil: undefined },
    ),
  })
  .map(({ parts, dir, size, mode, mtime, pax }) => {
    const h: EntryHeader = { path: parts.join('/'), type: dir ? 'dir' : 'file', size: dir ? 0 : size, mode, mtime };
    if (pax !== undefined && Object.keys(pax).length > 0) h.pax = { ...pax };
    return h;
  });

/** Builds a tar with the project's writer; entries the writer refuses are left out. */
function build(headers: readonly EntryHeader[]): Built {
  const parts: Buffer[] = [];
  const offsets: number[] = [];
  const paxData: number[] = [];
  let at = 0;
  for (const h of headers) {
    let head: Buffer;
    try {
      head = encodeHeader(h);
    } catch {
      continue; // a path the writer refuses (a '.' or '..' component): not a valid input
    }
    for (let i = 0; i < head.length; i += BLOCK) if (head.toString('latin1', i + 257, i + 263) === 'ustar\u0000') offsets.push(at + i);
    if (head.length > BLOCK) paxData.push(at + BLOCK);
    const body = Buffer.alloc(h.size, h.path.length & 0xff);
    parts.push(head, body, paddingFor(h.size));
    at += head.length + body.length + paddingFor(h.size).length;
  }
  offsets.push(at); // where the end-of-archive marker starts: a header may be written there
  parts.push(END_OF_ARCHIVE);
  return { bytes: Buffer.concat(parts), headers: offsets, paxData };
}

function octal(n: number, len: number): string {
  return `${n.toString(8).padStart(len - 1, '0')}\u0000`;
}

function paxRecord(kv: string): string {
  let d = 1;
  const n = Buffer.byteLength(kv) + 2;
  while (String(n + d).length !== d) d++;
  return `${n + d} ${kv}\n`;
}

/** The values the reader branches on, to be written over its fields. */
const TOKENS: Uint8Array[] = [
  ...ascii('0', '5', 'x', 'g', 'L', 'K', 'S', '1', '2', '3', '4', '6', '7', 'D', 'V', '\u0000'),
  ...ascii('ustar\u000000', 'ustar  \u0000', 'ustar\u0000', 'GNUtar '),
  ...ascii(
    octal(0, 12),
    octal(1, 12),
    octal(BLOCK, 12),
    octal(MAX_META_BYTES, 12),
    octal(MAX_META_BYTES + 1, 12),
    '77777777777\u0000',
    '   17 \u0000',
    '17 1\u0000',
    '8\u0000',
    '        ',
  ),
  Buffer.from([0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]),
  Buffer.from([0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
  Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]),
  Buffer.from([0x81, 0, 0, 0, 0, 0, 0, 0]),
  ...ascii(
    paxRecord('path=../../etc/passwd'),
    paxRecord('path=/abs'),
    paxRecord('path='),
    paxRecord('size=99999999999999999'),
    paxRecord('size=1048577'),
    paxRecord('size=-1'),
    paxRecord('mtime=-1.5'),
    paxRecord('mtime=1e9'),
    paxRecord('mtime=-9007199254740991.5'),
    paxRecord('mtime=9007199254740992'),
    paxRecord('linkpath=/etc'),
    paxRecord('GNU.sparse.size=1'),
    paxRecord('AIRLOCK.key=a\u0000b'),
    '0 x=\n',
    '99999999 a=b\n',
    '5 =\n',
    '6 a=\n',
    '012 path=x\n',
  ),
  Buffer.alloc(BLOCK),
  Buffer.alloc(2 * BLOCK),
  Buffer.from([0xc3, 0x28, 0xff, 0xfe]),
];

function targetOf(t: Built, donors: readonly Uint8Array[]): Target {
  const fields: number[] = [];
  for (const h of t.headers) fields.push(h, h + 100, h + 124, h + 136, h + 156, h + 157, h + 257, h + 345, h + 482, h + BLOCK);
  for (const p of t.paxData) fields.push(p, p + 3, p + 10);
  return { fields, tokens: TOKENS, donors };
}

/** The source in pieces of `size` bytes, each in its own ArrayBuffer, so a view maps back to its stream offset. */
function sourceOf(bytes: Buffer, size: number): { source: CountingSource; offsetOf: (view: Buffer) => number } {
  const starts = new Map<ArrayBufferLike, number>();
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) {
    const c = new Uint8Array(bytes.subarray(i, i + size)); // a copy with its own ArrayBuffer
    starts.set(c.buffer, i);
    chunks.push(c);
  }
  return {
    source: new CountingSource(chunks),
    offsetOf: (view) => {
      const start = starts.get(view.buffer);
      return start === undefined ? -1 : start + view.byteOffset;
    },
  };
}

const tarInput = fc
  .record({
    entries: fc.array(entryHeader, { minLength: 0, maxLength: 6 }),
    donor: fc.array(entryHeader, { minLength: 1, maxLength: 3 }),
    ms: mutations(5),
    fix: fc.boolean(),
    chunk: fc.oneof(fc.constant(1 << 20), fc.integer({ min: 1, max: 2000 }), fc.constantFrom(BLOCK, 511, 513)),
    stopAfter: fc.option(fc.nat({ max: 8 }), { nil: undefined }),
    skipBodies: fc.boolean(),
  })
  .map((r) => {
    const valid = build(r.entries);
    const donor = build(r.donor).bytes;
    const bytes = mutate(valid.bytes, r.ms, targetOf(valid, [donor]));
    return { ...r, bytes: r.fix ? fixChecksums(bytes) : bytes };
  });

test('damaged tar streams: only malformed is thrown, bodies hold exactly their size, the source is pulled only as read', async () => {
  await checkAsync(tarInput, 300, async ({ bytes, chunk, stopAfter, skipBodies }) => {
    const { source, offsetOf } = sourceOf(bytes, chunk);
    let n = 0;
    const seen = new Set<string>();
    await typedOnlyAsync(['malformed'], async () => {
      for await (const { entry, body } of readTar(source)) {
        entryProblem(entry, seen); // documented never to throw: a verifier judges every entry and goes on
        assert.ok(Number.isSafeInteger(entry.size) && entry.size >= 0, `size ${entry.size}`);
        assert.ok(entry.mode >= 0 && entry.mode <= 0o7777, `mode ${entry.mode}`);
        assert.ok(Number.isSafeInteger(entry.mtime), `mtime ${entry.mtime}`);
        assert.ok(entry.offset >= 0 && entry.offset < bytes.length, `offset ${entry.offset}`);
        if (stopAfter !== undefined && n++ >= stopAfter) break;
        if (skipBodies) continue;
        let got = 0;
        for await (const b of body) {
          got += b.length;
          assert.ok(got <= entry.size, `body of ${entry.path}: ${got} bytes, more than its size ${entry.size}`);
          // The reader pulls a chunk only when the consumer needs a byte of it.
          const at = offsetOf(b);
          if (entry.typeflag !== 'g' && at >= 0)
            assert.ok(source.pulled <= Math.ceil((at + b.length) / chunk) * chunk, `pulled ${source.pulled} bytes to yield ${at}+${b.length}`);
        }
        assert.is(got, entry.size, `body of ${entry.path}`);
      }
    });
    assert.ok(source.pulled <= bytes.length);
  });
});

/**
 * Whether every header's name, link name and prefix is NUL-padded after its end. Bytes after the
 * terminating NUL are ignored by airlock and GNU tar, but node-tar keeps those after a line feed
 * in the name (it cuts with /\0.*\/), so there the oracle is wrong, not the reader.
 */
function cleanTextFields(b: Buffer): boolean {
  for (let h = 0; h + BLOCK <= b.length; h += BLOCK) {
    if (b.toString('latin1', h + 257, h + 262) !== 'ustar') continue;
    for (const [off, len] of [
      [0, 100],
      [157, 100],
      [345, 155],
    ] as const) {
      const field = b.subarray(h + off, h + off + len);
      const nul = field.indexOf(0);
      if (nul >= 0 && field.subarray(nul).some((x) => x !== 0)) return false;
    }
  }
  return true;
}

/** The entries node-tar's parser (the test oracle) sees in `bytes`, or undefined when it fails. */
async function nodeTarEntries(bytes: Buffer): Promise<{ path: string; size: number }[] | undefined> {
  const got: { path: string; size: number }[] = [];
  const parser = new Parser({
    strict: true,
    onReadEntry: (e) => {
      got.push({ path: e.path, size: e.size });
      e.resume();
    },
  });
  try {
    await new Promise<void>((resolve, reject) => {
      parser.on('end', () => resolve());
      parser.on('error', reject);
      parser.end(bytes);
    });
  } catch {
    return undefined;
  }
  return got;
}

test('damaged tar streams whose every entry airlock would accept frame the same entries for node-tar', async () => {
  await checkAsync(tarInput, 200, async ({ bytes }) => {
    const ours: { path: string; size: number }[] = [];
    const seen = new Set<string>();
    let other = false;
    const e = await typedOnlyAsync(['malformed'], async () => {
      for await (const { entry } of readTar(sourceOf(bytes, 4096).source)) {
        // Only where airlock finds nothing wrong must the two readers agree on what is an entry
        // and where it ends; an entry it judges unsafe (a path that is not UTF-8, a link) is a
        // finding however another tar reads it.
        if (entryProblem(entry, seen) !== undefined) other = true;
        // node-tar cuts pax values at a line feed, though the record's length covers it (GNU tar
        // and airlock keep it): there too the oracle is wrong
        if (Object.values(entry.pax).some((v) => v.includes('\n'))) other = true;
        ours.push({ path: entry.path, size: entry.size });
      }
    });
    if (e !== undefined || other || ours.length === 0 || !cleanTextFields(bytes)) return;
    const theirs = await nodeTarEntries(bytes);
    if (theirs === undefined) return; // node-tar stricter: nothing can hide from airlock there
    assert.equal(
      theirs.map((t) => ({ ...t, path: t.path.replace(/\/$/, '') })),
      ours.map((o) => ({ ...o, path: o.path.replace(/\/$/, '') })),
      'readTar and node-tar see different entries',
    );
  });
});

test('the unmutated streams read back as written', async () => {
  await checkAsync(fc.array(entryHeader, { maxLength: 8 }), 150, async (entries) => {
    const built = build(entries);
    const written = entries.filter((h) => {
      try {
        encodeHeader(h);
        return true;
      } catch {
        return false;
      }
    });
    const read: EntryHeader[] = [];
    for await (const { entry } of readTar(sourceOf(built.bytes, 777).source)) {
      const h: EntryHeader = { path: entry.path, type: entry.typeflag === '5' ? 'dir' : 'file', size: entry.size, mode: entry.mode, mtime: entry.mtime };
      const airlockPax = Object.fromEntries(Object.entries(entry.pax).filter(([k]) => k.startsWith('AIRLOCK.')));
      if (Object.keys(airlockPax).length > 0) h.pax = airlockPax;
      read.push(h);
    }
    assert.equal(read, written);
  });
});

/** A header block for metadata of `size` bytes, checksummed. */
function metaHeader(typeflag: string, size: number): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write('meta', 0, 'latin1');
  b.write(octal(0o644, 8), 100, 'latin1');
  b.write(octal(0, 8), 108, 'latin1');
  b.write(octal(0, 8), 116, 'latin1');
  if (size > 8 ** 11 - 1) {
    b[124] = 0x80;
    b.writeUIntBE(size, 124 + 12 - 6, 6);
  } else b.write(octal(size, 12), 124, 'latin1');
  b.write(octal(0, 12), 136, 'latin1');
  b.write(typeflag, 156, 'latin1');
  b.write('ustar\u000000', 257, 'latin1');
  return fixChecksums(b);
}

test('metadata headers over the 1 MiB bound are refused before their data is pulled', async () => {
  await checkAsync(
    fc.record({
      typeflag: fc.constantFrom('x', 'g', 'L', 'K'),
      size: fc.oneof(fc.integer({ min: MAX_META_BYTES + 1, max: 2 ** 40 }), fc.constant(MAX_META_BYTES + 1)),
    }),
    60,
    async ({ typeflag, size }) => {
      // An endless source: a reader that honoured the size would never stop.
      let pulled = 0;
      const endless = (async function* () {
        yield metaHeader(typeflag, size);
        pulled += BLOCK;
        for (;;) {
          pulled += 65536;
          yield Buffer.alloc(65536, 0x31);
        }
      })();
      const e = await typedOnlyAsync(['malformed'], async () => {
        for await (const _ of readTar(endless)) assert.unreachable('an entry');
      });
      assert.ok(e !== undefined, 'accepted');
      assert.match(e.message, `larger than ${MAX_META_BYTES}`);
      assert.ok(pulled <= BLOCK + 65536, `pulled ${pulled} bytes`);
    },
    500,
  );
});

// Found while writing the property above, which asserts safe-integer times: a pax mtime of
// -(2^53 - 1) with a fraction was floored to -2^53, a time no arithmetic on it can be trusted with.
test('vector: a pax mtime floored out of the safe-integer range is malformed', async () => {
  const data = Buffer.from(paxRecord('mtime=-9007199254740991.5'), 'latin1');
  const tar = Buffer.concat([
    metaHeader('x', data.length),
    data,
    paddingFor(data.length),
    encodeHeader({ path: 'f', type: 'file', size: 0, mode: 0o644, mtime: 0 }),
    END_OF_ARCHIVE,
  ]);
  const e = await typedOnlyAsync(['malformed'], async () => {
    for await (const { entry } of readTar(sourceOf(tar, 512).source)) assert.unreachable(`read mtime ${entry.mtime}`);
  });
  assert.match(e?.message ?? 'accepted', 'bad pax mtime');
});

test('a body of 64 GiB is skipped with bounded memory, then the truncated stream is refused', async () => {
  const header = encodeHeader({ path: 'big', type: 'file', size: 64 * 1024 ** 3, mode: 0o644, mtime: 1 });
  const chunk = Buffer.alloc(1 << 20);
  const total = 256 * (1 << 20);
  const before = process.memoryUsage();
  let peak = 0;
  let n = 0;
  const source = (async function* () {
    yield header;
    for (let sent = 0; sent < total; sent += chunk.length) {
      if (n++ % 32 === 0) {
        const m = process.memoryUsage();
        peak = Math.max(peak, m.heapUsed + m.arrayBuffers - before.heapUsed - before.arrayBuffers);
      }
      yield chunk;
    }
  })();
  const e = await typedOnlyAsync(['malformed'], async () => {
    for await (const _ of readTar(source)) {
      // the body is left unread: the reader skips it
    }
  });
  assert.match(e?.message ?? '', 'stream ends inside the body');
  assert.ok(peak < 64 * 1024 * 1024, `memory grew by ${peak} bytes while skipping 256 MiB`);
});

async function drain(bytes: Buffer): Promise<number> {
  let n = 0;
  for await (const { body } of readTar(
    (async function* () {
      yield bytes;
    })(),
  )) {
    for await (const _ of body) n++;
  }
  return n;
}

test('time is linear: entries, pax records per header, global records, GNU sparse extension blocks', async () => {
  const many = (n: number) =>
    build(
      Array.from({ length: n }, (_, i) => ({
        path: `d/${'é'.repeat(i % 7)}f${i}`,
        type: 'file' as const,
        size: i % 600,
        mode: 0o644,
        mtime: i,
        pax: { 'AIRLOCK.i': String(i) },
      })),
    ).bytes;
  await assertLinear('entries', many, drain, 500);

  // One pax header of n short records (the sparse keys may repeat), the most work per byte the pax parser can get.
  const paxHeavy = (n: number) => {
    const text = Array.from({ length: n }, (_, i) => paxRecord(`GNU.sparse.offset=${i}`)).join('');
    const data = Buffer.from(text, 'latin1');
    return Buffer.concat([
      metaHeader('x', data.length),
      data,
      paddingFor(data.length),
      encodeHeader({ path: 'f', type: 'file', size: 0, mode: 0o644, mtime: 0 }),
      END_OF_ARCHIVE,
    ]);
  };
  await assertLinear('pax records', paxHeavy, drain, 3000);

  // Global records stay in force for every later entry: 64 of them, and n entries.
  const globals = (n: number) => {
    const data = Buffer.from(Array.from({ length: 64 }, (_, i) => paxRecord(`comment${i}=${'v'.repeat(40)}`)).join(''), 'latin1');
    return Buffer.concat([metaHeader('g', data.length), data, paddingFor(data.length), many(n).subarray(0, -END_OF_ARCHIVE.length), END_OF_ARCHIVE]);
  };
  await assertLinear('global records', globals, drain, 100);

  // An old GNU sparse header followed by n extension blocks.
  const sparse = (n: number) => {
    const h = metaHeader('S', 0);
    h.write('ustar  \u0000', 257, 'latin1');
    h[482] = 1;
    const ext = Buffer.alloc(BLOCK);
    ext[504] = 1;
    const last = Buffer.alloc(BLOCK);
    return Buffer.concat([fixChecksums(h), ...Array.from({ length: n }, () => ext), last, END_OF_ARCHIVE]);
  };
  await assertLinear('sparse extension blocks', sparse, drain, 10000);
});

test.run();
