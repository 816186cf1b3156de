/*
 * WAL knowledge from names and bytes alone: segment names for several segment sizes, LSNs, page
 * headers (built here byte by byte, as PostgreSQL 13 to 17 lay them out), history and backup files.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isAirlockError } from '../../manifests/errors.js';
import {
  checkSegmentHeader,
  formatLsn,
  parseBackupLabel,
  parseHistory,
  parseLsn,
  parsePageHeader,
  parseWalFileName,
  segmentName,
  segmentNumber,
  segmentStartLsn,
} from '../../agent/postgres/wal.js';

const MiB = 1024 * 1024;

function header(o: { magic?: number; info?: number; tli?: number; addr: bigint; sysid?: bigint; segSize?: number; blcksz?: number }): Uint8Array {
  const b = new Uint8Array(40);
  const v = new DataView(b.buffer);
  v.setUint16(0, o.magic ?? 0xd110, true);
  v.setUint16(2, o.info ?? 0x0002, true);
  v.setUint32(4, o.tli ?? 1, true);
  v.setBigUint64(8, o.addr, true);
  v.setUint32(16, 0, true);
  v.setBigUint64(24, o.sysid ?? 7311806245567262489n, true);
  v.setUint32(32, o.segSize ?? 16 * MiB, true);
  v.setUint32(36, o.blcksz ?? 8192, true);
  return b;
}

function throwsCode(fn: () => unknown, code: string, text?: string): void {
  try {
    fn();
  } catch (e) {
    assert.ok(isAirlockError(e), `not an AirlockError: ${String(e)}`);
    assert.is((e as { code: string }).code, code, (e as Error).message);
    if (text) assert.match((e as Error).message, text);
    return;
  }
  assert.unreachable(`expected ${code}`);
}

test('file names: segments, partial, history, backup, and what is not WAL', () => {
  assert.equal(parseWalFileName('000000010000000000000003'), { kind: 'segment', name: '000000010000000000000003', timeline: 1, log: 0, seg: 3 });
  assert.equal(parseWalFileName('0000000A00000001000000FF.partial'), {
    kind: 'partial',
    name: '0000000A00000001000000FF.partial',
    timeline: 10,
    log: 1,
    seg: 255,
  });
  assert.equal(parseWalFileName('00000002.history'), { kind: 'history', name: '00000002.history', timeline: 2 });
  // PostgreSQL asks restore_command for it at the end of recovery, though it never exists
  assert.equal(parseWalFileName('00000001.history'), { kind: 'history', name: '00000001.history', timeline: 1 });
  assert.equal(parseWalFileName('000000010000000000000002.00000028.backup'), {
    kind: 'backup',
    name: '000000010000000000000002.00000028.backup',
    timeline: 1,
    log: 0,
    seg: 2,
    offset: 0x28,
  });
  for (const bad of [
    '00000001000000000000003',
    '0000000100000000000000030',
    '000000010000000000000003.sha256',
    '00000000.history',
    '000000000000000000000003',
    '00000001000000000000000a',
    'archive_status',
    '../000000010000000000000003',
    '',
  ]) {
    assert.is(parseWalFileName(bad), undefined, bad);
  }
});

test('segment numbers and start locations depend on wal_segment_size', () => {
  const n = parseWalFileName('000000010000000100000002') as { name: string; log: number; seg: number };
  assert.is(segmentNumber(n, 16 * MiB), 256n + 2n);
  assert.is(segmentStartLsn(n, 16 * MiB), '1/2000000');
  assert.is(segmentNumber(n, 64 * MiB), 64n + 2n);
  assert.is(segmentStartLsn(n, 64 * MiB), '1/8000000');
  assert.is(segmentName(1, 258n, 16 * MiB), '000000010000000100000002');
  assert.is(segmentName(3, 66n, 64 * MiB), '000000030000000100000002');
  // seg 0x40 cannot exist with 64 MiB segments (only 0x00..0x3F per log)
  throwsCode(() => segmentNumber(parseWalFileName('000000010000000000000040') as never, 64 * MiB), 'bad-wal');
  throwsCode(() => segmentNumber(n, 3 * MiB), 'usage');
});

test('LSNs round-trip as PostgreSQL prints them', () => {
  assert.is(parseLsn('0/3000028'), 0x3000028n);
  assert.is(parseLsn('1A/ff'), (0x1an << 32n) | 0xffn);
  assert.is(formatLsn(parseLsn('16/b374d848')), '16/B374D848');
  assert.is(formatLsn(0n), '0/0');
  throwsCode(() => parseLsn('0/'), 'malformed');
  throwsCode(() => parseLsn('123456789/0'), 'malformed');
});

test('page headers: long header fields, sysid as a decimal string', () => {
  const h = parsePageHeader(header({ addr: 0x3000000n, info: 0x0006 }));
  assert.is(h.magic, 0xd110);
  assert.is(h.pgVersion, 15);
  assert.equal(h.flags, { longHeader: true, firstIsContRecord: false, bkpRemovable: true, firstIsOverwriteContRecord: false });
  assert.is(h.pageAddress, '0/3000000');
  assert.equal(h.long, { systemIdentifier: '7311806245567262489', segmentSize: 16 * MiB, blockSize: 8192 });
  const short = parsePageHeader(header({ addr: 0x3002000n, info: 0x0001 }).subarray(0, 24));
  assert.is(short.long, undefined);
  assert.ok(short.flags.firstIsContRecord);
  throwsCode(() => parsePageHeader(new Uint8Array(10)), 'bad-wal');
});

test('segment header check: a good one passes, each kind of mismatch is named', () => {
  const name = '000000010000000000000003';
  const ok = checkSegmentHeader(name, header({ addr: 0x3000000n }), { fileSize: 16 * MiB, systemIdentifier: '7311806245567262489', segmentSize: 16 * MiB });
  assert.is(ok.startLsn, '0/3000000');
  assert.is(ok.segno, 3n);
  // every supported major's magic passes; with the server's major only its own
  for (const [magic, major] of [
    [0xd106, 13],
    [0xd10d, 14],
    [0xd110, 15],
    [0xd113, 16],
    [0xd116, 17],
  ] as const) {
    assert.is(checkSegmentHeader(name, header({ addr: 0x3000000n, magic })).header.pgVersion, major);
    assert.is(checkSegmentHeader(name, header({ addr: 0x3000000n, magic }), { major }).header.pgVersion, major);
  }
  throwsCode(
    () => checkSegmentHeader(name, header({ addr: 0x3000000n, magic: 0xd10d }), { major: 15 }),
    'bad-wal',
    "magic 0xD10D is postgresql 14's, not 15's (0xD110)",
  );
  throwsCode(
    () => checkSegmentHeader(name, header({ addr: 0x3000000n, magic: 0xd119 })),
    'bad-wal',
    'magic 0xD119 is not the wal of any supported version (postgresql 13 to 17)',
  );
  throwsCode(
    () => checkSegmentHeader(name, header({ addr: 0x3000000n, magic: 0xd101 }), { major: 17 }),
    'bad-wal',
    'magic 0xD101 is not the wal of any supported version',
  );
  throwsCode(() => checkSegmentHeader(name, header({ addr: 0x4000000n })), 'bad-wal', 'page address 0/4000000 is not the segment');
  throwsCode(() => checkSegmentHeader(name, header({ addr: 0x3000000n, tli: 2 })), 'bad-wal', 'page timeline 2');
  throwsCode(() => checkSegmentHeader(name, header({ addr: 0x3000000n, info: 0 })), 'bad-wal', 'no long header');
  throwsCode(() => checkSegmentHeader(name, header({ addr: 0x3000000n }), { systemIdentifier: '1' }), 'bad-wal', 'system identifier');
  throwsCode(() => checkSegmentHeader(name, header({ addr: 0x3000000n }), { fileSize: 1000 }), 'bad-wal', 'the file has 1000 bytes');
  throwsCode(() => checkSegmentHeader(name, header({ addr: 0x3000000n, segSize: 3 * MiB })), 'bad-wal', 'segment size');
  throwsCode(() => checkSegmentHeader(name, header({ addr: 0x3000000n }).subarray(0, 30)), 'bad-wal', 'only 30 bytes');
  throwsCode(() => checkSegmentHeader('00000002.history', header({ addr: 0n })), 'bad-wal', 'not a wal segment name');
  // several problems at once are all listed
  throwsCode(
    () => checkSegmentHeader(name, header({ addr: 0n, magic: 0x1234 })),
    'bad-wal',
    'magic 0x1234 is not the wal of any supported version (postgresql 13 to 17); page address',
  );
});

test('segment header check: a first page from the parent timeline needs the history', () => {
  const name = '000000020000000000000005';
  const first = header({ addr: 0x5000000n, tli: 1 });
  throwsCode(() => checkSegmentHeader(name, first), 'bad-wal', 'not an ancestor');
  const history = parseHistory('00000002.history', '1\t0/5000F28\tno recovery target specified\n');
  assert.is(checkSegmentHeader(name, first, { history }).header.timeline, 1);
  const early = parseHistory('00000002.history', '1\t0/4FFFFFF\tbefore\n');
  throwsCode(() => checkSegmentHeader(name, first, { history: early }), 'bad-wal', 'ended at 0/4FFFFFF');
});

test('history files: ancestors oldest first, comments ignored, bad ones refused', () => {
  const h = parseHistory('00000003.history', '1\t0/3000158\tno recovery target specified\n\n# comment\n2\t0/5000000\tbefore 2026-11-24 00:00:00+00\n');
  assert.equal(h, {
    timeline: 3,
    parents: [
      { timeline: 1, end: '0/3000158', reason: 'no recovery target specified' },
      { timeline: 2, end: '0/5000000', reason: 'before 2026-11-24 00:00:00+00' },
    ],
  });
  throwsCode(() => parseHistory('00000003.history', ''), 'bad-wal', 'no ancestor');
  throwsCode(() => parseHistory('00000003.history', '3\t0/1\tself\n'), 'bad-wal', 'not an ancestor');
  throwsCode(() => parseHistory('00000003.history', '2\t0/5\tx\n1\t0/6\ty\n'), 'bad-wal', 'must rise');
  throwsCode(() => parseHistory('00000003.history', '1\t0/6\tx\n2\t0/5\ty\n'), 'bad-wal', 'before');
  throwsCode(() => parseHistory('00000003.history', 'garbage\n'), 'bad-wal', 'line 1');
  throwsCode(() => parseHistory('000000010000000000000001', '1\t0/1\tx\n'), 'bad-wal', 'not a timeline history file name');
});

const BACKUP = `START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
STOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)
CHECKPOINT LOCATION: 0/2000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2026-11-24 00:50:00 UTC
LABEL: pg_basebackup base backup
START TIMELINE: 1
STOP TIME: 2026-11-24 00:50:01 UTC
STOP TIMELINE: 1
`;

test('backup history files: locations, times, timelines', () => {
  const b = parseBackupLabel('000000010000000000000002.00000028.backup', BACKUP);
  assert.is(b.startLsn, '0/2000028');
  assert.is(b.stopLsn, '0/2000100');
  assert.is(b.stopSegment, '000000010000000000000002');
  assert.is(b.checkpointLsn, '0/2000060');
  assert.is(b.label, 'pg_basebackup base backup');
  assert.is(b.startTimeUtc, '2026-11-24T00:50:00Z');
  assert.is(b.stopTimeUtc, '2026-11-24T00:50:01Z');
  assert.is(b.startTimeline, 1);
  const cet = parseBackupLabel(
    '000000010000000000000002.00000028.backup',
    BACKUP.replace('00:50:00 UTC', '01:50:00 CET').replace('00:50:01 UTC', '01:50:01 +01'),
  );
  assert.is(cet.startTimeUtc, undefined, 'a named zone other than UTC is kept as written only');
  assert.is(cet.stopTimeUtc, '2026-11-24T00:50:01Z');
  throwsCode(() => parseBackupLabel('000000010000000000000002.00000028.backup', BACKUP.replace(/^STOP WAL.*\n/m, '')), 'bad-wal', 'no STOP WAL LOCATION');
  throwsCode(() => parseBackupLabel('000000010000000000000003.00000028.backup', BACKUP), 'bad-wal', 'not the one in the file');
  throwsCode(() => parseBackupLabel('000000010000000000000002.00000028.backup', BACKUP.replace('0/2000100', '0/1000000')), 'bad-wal', 'before start');
});

test.run();
