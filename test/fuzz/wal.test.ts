/*
 * Fuzzing what wal-ingest reads from the spool, which the database's OS user can write: WAL page
 * headers (built as PostgreSQL 13 to 17 lay them out: no writer of ours exists, the server writes them),
 * timeline history files, backup history files (.backup labels), file names and sha256 sidecars.
 * Valid inputs are damaged field by field with the values the checks branch on (magic of other
 * versions, flags, timelines, page addresses, segment and block sizes). Only `bad-wal` (and
 * `malformed` for a sidecar) may be thrown; a header is judged on its own bytes only; time is
 * linear in the file.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  checkSegmentHeader,
  majorOfMagic,
  walMagic,
  parseBackupLabel,
  parseHistory,
  parsePageHeader,
  parseWalFileName,
  segmentName,
  segmentStartLsn,
  type TimelineHistory,
  type WalFileName,
} from '../../agent/postgres/wal.js';
import { SegmentPages, parseSidecar, sidecarText } from '../../agent/spool.js';
import { ascii, assertLinear, check, embedded, fc, mutate, mutations, typedOnly } from './fuzz.js';

const MiB = 1024 * 1024;

const u16 = (n: number) => Buffer.from([n & 0xff, n >> 8]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};
const u64 = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  return b;
};

const segment = fc.record({
  major: fc.constantFrom(13, 14, 15, 16, 17),
  timeline: fc.integer({ min: 1, max: 5 }),
  segno: fc.bigInt({ min: 0n, max: 2n ** 20n }),
  segSize: fc.constantFrom(MiB, 16 * MiB, 64 * MiB, 1024 * MiB),
  sysid: fc.bigInt({ min: 1n, max: 2n ** 64n - 1n }),
  blcksz: fc.constantFrom(8192, 1024, 65536),
  info: fc.constantFrom(0x0002, 0x0003, 0x0006, 0x000a),
  partial: fc.boolean(),
});
type Segment = typeof segment extends fc.Arbitrary<infer T> ? T : never;

/** The first page's long header of a segment, as the server writes it, with some of the page after it. */
function firstPage(s: Segment): { name: string; bytes: Buffer } {
  const name = segmentName(s.timeline, s.segno, s.segSize) + (s.partial ? '.partial' : '');
  const bytes = Buffer.concat([
    u16(walMagic(s.major) as number),
    u16(s.info),
    u32(s.timeline),
    u64(s.segno * BigInt(s.segSize)),
    u32(0),
    u32(0),
    u64(s.sysid),
    u32(s.segSize),
    u32(s.blcksz),
    Buffer.alloc(88, 0x5a),
  ]);
  return { name, bytes };
}

/** Offsets of the header's fields. */
const HEADER_FIELDS = [0, 2, 4, 8, 12, 16, 20, 24, 32, 36, 40];
const HEADER_TOKENS = [
  u16(0xd110),
  u16(0xd113),
  u16(0xd106),
  u16(0xd10d),
  u16(0xd116),
  u16(0xd119),
  u16(0xd101),
  u16(0xffff),
  u16(0x0000),
  u16(0x0002),
  u16(0x0010),
  u16(0x8002),
  u32(0),
  u32(1),
  u32(2),
  u32(0xffffffff),
  u32(MiB),
  u32(MiB + 1),
  u32(1024 * MiB),
  u32(2048 * MiB),
  u32(8192),
  u32(512),
  u32(131072),
  u64(0n),
  u64(2n ** 64n - 1n),
  u64(0x1000000n),
  Buffer.alloc(1),
];

const history = fc.array(fc.tuple(fc.nat({ max: 0xff }), fc.nat({ max: 0xffffffff })), { minLength: 1, maxLength: 4 }).map((ends) => {
  const sorted = ends.map(([hi, lo]) => (BigInt(hi) << 32n) | BigInt(lo)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const lines = sorted.map(
    (lsn, i) => `${i + 1}\t${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}\tno recovery target specified`,
  );
  return { name: `${String(sorted.length + 1).padStart(8, '0')}.history`, text: `${lines.join('\n')}\n` };
});

test('damaged first pages: checkSegmentHeader throws only bad-wal, and judges only the bytes it is given', () => {
  check(
    fc.record({
      s: segment,
      ms: mutations(3),
      h: fc.option(history, { nil: undefined }),
      expectSize: fc.boolean(),
      expectSysid: fc.boolean(),
      expectMajor: fc.boolean(),
    }),
    1000,
    ({ s, ms, h, expectSize, expectSysid, expectMajor }) => {
      const { name, bytes } = firstPage(s);
      const damaged = mutate(bytes, ms, { fields: HEADER_FIELDS, tokens: HEADER_TOKENS });
      let parsedHistory: TimelineHistory | undefined;
      if (h !== undefined) typedOnly(['bad-wal'], () => (parsedHistory = parseHistory(h.name, h.text)));
      const expect = {
        ...(expectSize ? { segmentSize: s.segSize, fileSize: s.segSize } : {}),
        ...(expectSysid ? { systemIdentifier: s.sysid.toString() } : {}),
        ...(parsedHistory ? { history: parsedHistory } : {}),
        ...(expectMajor ? { major: s.major } : {}),
      };
      let ok = false;
      const e = typedOnly(['bad-wal'], () => {
        checkSegmentHeader(name, damaged, expect);
        ok = true;
      });
      const again = typedOnly(['bad-wal'], () => checkSegmentHeader(name, embedded(damaged, 0xff), expect));
      assert.is(again?.message, e?.message);
      typedOnly(['bad-wal'], () => parsePageHeader(damaged));
      if (ok) {
        // What passes is a long header of a supported major (the expected one when given) whose page
        // address is where the name says.
        const p = parsePageHeader(damaged);
        assert.ok(majorOfMagic(p.magic) !== undefined, `magic ${p.magic.toString(16)}`);
        if (expectMajor) assert.is(majorOfMagic(p.magic), s.major);
        assert.ok(p.long !== undefined);
        assert.is(p.pageAddress, segmentStartLsn(parseWalFileName(name) as { name: string; log: number; seg: number }, p.long.segmentSize));
      }
    },
  );
});

/** A whole small segment as the server writes it: the first page's long header, then a short header per page. */
function wholeSegment(s: Segment, switchedAt: number | undefined): { name: string; bytes: Buffer } {
  const blck = 8192;
  const size = MiB;
  const name = segmentName(s.timeline, s.segno, size);
  const start = s.segno * BigInt(size);
  const bytes = Buffer.alloc(size, 0x5a);
  Buffer.concat([u16(walMagic(s.major) as number), u16(0x0002), u32(s.timeline), u64(start), u32(0), u32(0), u64(s.sysid), u32(size), u32(blck)]).copy(
    bytes,
    0,
  );
  for (let i = 1; i < size / blck; i++) {
    if (switchedAt !== undefined && i >= switchedAt) {
      bytes.fill(0, i * blck);
      break;
    }
    Buffer.concat([u16(walMagic(s.major) as number), u16(i % 3 === 0 ? 0x0001 : 0), u32(s.timeline), u64(start + BigInt(i * blck)), u32(0)]).copy(
      bytes,
      i * blck,
    );
  }
  return { name, bytes };
}

/** Feeds `bytes` to a fresh page check in pieces of `sizes` (cycled); returns what it says. */
function pageCheck(name: string, bytes: Uint8Array, sizes: readonly number[]): string[] {
  const parsed = parseWalFileName(name);
  assert.is(parsed?.kind, 'segment');
  const pages = new SegmentPages(parsed as WalFileName & { kind: 'segment' }, undefined);
  let at = 0;
  for (let i = 0; at < bytes.byteLength; i++) {
    const n = Math.max(1, sizes[i % sizes.length] as number);
    pages.feed(bytes.subarray(at, at + n));
    at += n;
  }
  return pages.summary();
}

test('every page of a segment: a whole segment checks in any pieces; damaged, it never throws, says the same whatever the pieces, and names at most a few pages', () => {
  const pieces = fc.array(fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 70_000 })), { minLength: 1, maxLength: 6 });
  check(
    fc.record({ s: segment, switchedAt: fc.option(fc.integer({ min: 1, max: 127 }), { nil: undefined }), sizes: pieces }),
    20,
    ({ s, switchedAt, sizes }) => {
      const { name, bytes } = wholeSegment(s, switchedAt);
      assert.equal(pageCheck(name, bytes, sizes), [], 'a segment as the server writes it');
    },
  );
  let refused = 0;
  check(
    fc.record({
      s: segment,
      switchedAt: fc.option(fc.integer({ min: 1, max: 127 }), { nil: undefined }),
      sizes: pieces,
      ms: mutations(4),
      page: fc.integer({ min: 1, max: 127 }),
    }),
    60,
    ({ s, switchedAt, sizes, ms, page }) => {
      const { name, bytes } = wholeSegment(s, switchedAt);
      // damage one later page's header, field by field, with the values the check branches on
      const at = page * 8192;
      const damaged = Buffer.from(bytes);
      mutate(damaged.subarray(at, at + 24), ms, { fields: [0, 2, 4, 8, 16], tokens: HEADER_TOKENS }).copy(damaged, at, 0, 24);
      const whole = pageCheck(name, damaged, [damaged.byteLength]);
      assert.equal(pageCheck(name, damaged, sizes), whole, 'the same answer whatever the pieces');
      assert.ok(whole.length <= 4, whole.join('; '));
      if (whole.length > 0) refused++;
    },
  );
  assert.ok(refused > 0, 'some damaged page was refused');
});

test('damaged names: parseWalFileName never throws; checkSegmentHeader refuses what is not a segment name with bad-wal', () => {
  check(fc.record({ s: segment, ms: mutations(2) }), 500, ({ s, ms }) => {
    const { name, bytes } = firstPage(s);
    const damaged = mutate(Buffer.from(name), ms, {
      fields: [0, 8, 16, 24],
      tokens: ascii('0', 'F', 'f', 'G', '.partial', '.history', '.backup', '/', '..', '00000000', 'FFFFFFFF', '\u0000'),
    }).toString('latin1');
    parseWalFileName(damaged);
    typedOnly(['bad-wal'], () => checkSegmentHeader(damaged, bytes));
  });
});

const label = fc
  .record({ s: segment, offset: fc.nat({ max: 0xffffff }), len: fc.nat({ max: 0xffffff }), tz: fc.constantFrom('UTC', 'GMT', '+02', '-0530', 'CET', '+05:45') })
  .map(({ s, offset, len, tz }) => {
    const seg = segmentName(s.timeline, s.segno, s.segSize);
    const start = s.segno * BigInt(s.segSize) + BigInt(offset % s.segSize);
    const stop = start + BigInt(len);
    const lsn = (v: bigint) => `${(v >> 32n).toString(16).toUpperCase()}/${(v & 0xffffffffn).toString(16).toUpperCase()}`;
    const name = `${seg}.${(offset % s.segSize).toString(16).toUpperCase().padStart(8, '0')}.backup`;
    const text = [
      `START WAL LOCATION: ${lsn(start)} (file ${seg})`,
      `STOP WAL LOCATION: ${lsn(stop)} (file ${seg})`,
      `CHECKPOINT LOCATION: ${lsn(start)}`,
      'BACKUP METHOD: streamed',
      'BACKUP FROM: primary',
      `START TIME: 2026-01-31 12:00:00 ${tz}`,
      'LABEL: airlock',
      `START TIMELINE: ${s.timeline}`,
      `STOP TIME: 2026-01-31 12:00:05 ${tz}`,
      `STOP TIMELINE: ${s.timeline}`,
      '',
    ].join('\n');
    return { name, text };
  });

const TEXT_TOKENS = ascii(
  '\n',
  '\r\n',
  '\t',
  ' ',
  ':',
  ': ',
  '/',
  '0/0',
  'FFFFFFFF/FFFFFFFF',
  '0',
  '99999999999999999999',
  '#',
  '(file ',
  ')',
  'START WAL LOCATION: ',
  'STOP TIMELINE: 0',
  'G',
  '\u0000',
  '9999-99-99 99:99:99 UTC',
  '+99',
);

function lineFields(text: string): number[] {
  const out = [0, text.length];
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) out.push(i, i + 1);
  for (let i = text.indexOf(':'); i >= 0; i = text.indexOf(':', i + 1)) out.push(i + 2);
  for (let i = text.indexOf('\t'); i >= 0; i = text.indexOf('\t', i + 1)) out.push(i + 1);
  return out;
}

test('damaged history and backup files: only bad-wal; what parses is ordered as the format says', () => {
  check(fc.record({ h: history, l: label, ms: mutations(3) }), 800, ({ h, l, ms }) => {
    const ht = mutate(Buffer.from(h.text), ms, { fields: lineFields(h.text), tokens: TEXT_TOKENS }).toString('utf8');
    typedOnly(['bad-wal'], () => {
      const parsed = parseHistory(h.name, ht);
      parsed.parents.forEach((p, i) => {
        assert.ok(p.timeline >= 1 && p.timeline < parsed.timeline);
        if (i > 0) assert.ok(p.timeline > (parsed.parents[i - 1] as { timeline: number }).timeline);
      });
    });
    const lt = mutate(Buffer.from(l.text), ms, { fields: lineFields(l.text), tokens: TEXT_TOKENS }).toString('utf8');
    typedOnly(['bad-wal'], () => {
      const b = parseBackupLabel(l.name, lt);
      if (b.startTimeUtc !== undefined) assert.ok(!Number.isNaN(Date.parse(b.startTimeUtc)));
    });
  });
});

test('damaged sidecars: only malformed', () => {
  check(fc.record({ s: segment, sha: fc.stringMatching(/^[0-9a-f]{64}$/), ms: mutations(2) }), 400, ({ s, sha, ms }) => {
    const { name } = firstPage(s);
    const text = mutate(Buffer.from(sidecarText(name, sha)), ms, { fields: [0, 64, 66], tokens: ascii(' ', '  ', ' *', '\n', '\r\n', 'G', name) }).toString(
      'utf8',
    );
    let got: string | undefined;
    typedOnly(['malformed'], () => {
      got = parseSidecar(name, text);
    });
    // What is accepted is exactly one sha256sum line for this name.
    if (got !== undefined) assert.is(text, sidecarText(name, got));
  });
});

test('time is linear: history lines, backup label lines', async () => {
  const lines = (n: number) => Array.from({ length: n }, (_, i) => `${i + 1}\t0/${(i * 16).toString(16).toUpperCase()}\treason`).join('\n');
  await assertLinear('history lines', lines, (t: string) => parseHistory(`${(1e6).toString(16).toUpperCase().padStart(8, '0')}.history`, t), 2000);
  const junk = (n: number) => 'NOT A FIELD: x\n'.repeat(n);
  await assertLinear(
    'backup label lines',
    junk,
    (t: string) => typedOnly(['bad-wal'], () => parseBackupLabel('000000010000000000000002.00000028.backup', t)),
    5000,
  );
});

test.run();
