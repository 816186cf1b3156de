/*
 * WAL continuity from coverage alone: holes inside a timeline, a hole before a timeline switch, a
 * switch without its history, and recovery windows that follow a switch.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { PostgresCoverage } from '../../manifests/coverage.js';
import { checkContinuity } from '../../verifier/continuity.js';
import type { BundleReport } from '../../verifier/verify.js';

const SEG = 16 * 1024 * 1024;
const BASE = { timeline: 1, startLsn: '0/2000028', stopLsn: '0/2000100', startTime: '2026-01-01T00:00:00Z', stopTime: '2026-01-01T00:00:01Z' };

function bundle(seq: number, pg: Partial<PostgresCoverage>): BundleReport {
  const postgres: PostgresCoverage = {
    systemIdentifier: '7000000000000000001',
    major: 15,
    segmentSize: SEG,
    dataChecksums: true,
    timeline: 1,
    wal: [],
    timelines: [],
    dumps: 0,
    ...pg,
  };
  return {
    path: `/m/s/s-${seq}`,
    site: 's',
    seq,
    keyless: 'ok',
    deep: 'not-run',
    findings: [],
    manifest: { coverage: { postgres } } as NonNullable<BundleReport['manifest']>,
  };
}

const run = (...bs: BundleReport[]) => {
  const r = checkContinuity('s', bs);
  return { found: r.findings.map((f) => `${f.result} ${f.file ?? ''}`.trim()), ends: r.windows.map((w) => `${w.baseSeq}->${w.to.segment}@${w.lastSeq}`) };
};

test('a continuous chain gives one window to its last segment and no finding', () => {
  const r = run(
    bundle(1, {
      wal: [{ timeline: 1, first: '000000010000000000000002', last: '000000010000000000000004' }],
      base: BASE,
      restorePoint: { name: 'p1', lsn: '0/4000100', time: '2026-01-01T01:00:00Z', timeline: 1 },
    }),
    bundle(2, { wal: [{ timeline: 1, first: '000000010000000000000005', last: '000000010000000000000006' }] }),
  );
  assert.equal(r.found, []);
  assert.equal(r.ends, ['1->000000010000000000000006@2']);
});

test('a missing segment between bundles is a wal-gap naming it, and the window stops before it', () => {
  const r = run(
    bundle(1, { wal: [{ timeline: 1, first: '000000010000000000000002', last: '000000010000000000000004' }], base: BASE }),
    bundle(2, { wal: [{ timeline: 1, first: '000000010000000000000006', last: '000000010000000000000007' }] }),
  );
  assert.equal(r.found, ['wal-gap 000000010000000000000005']);
  assert.equal(r.ends, ['1->000000010000000000000004@1']);
});

test('a hole on the parent timeline before the switch is a wal-gap, though the parent has nothing after it', () => {
  const r = run(
    bundle(1, { wal: [{ timeline: 1, first: '000000010000000000000002', last: '000000010000000000000004' }], base: BASE }),
    bundle(2, {
      wal: [{ timeline: 2, first: '000000020000000000000007', last: '00000002000000000000000A' }],
      timelines: [{ timeline: 2, parent: 1, switchLsn: '0/7000100' }],
    }),
  );
  assert.equal(r.found, ['wal-gap 000000010000000000000005..000000010000000000000006']);
});

test('a switch with its history: the window follows the new timeline; without it, timeline-break', () => {
  const wal1 = { timeline: 1, first: '000000010000000000000002', last: '000000010000000000000006' };
  const ok = run(
    bundle(1, { wal: [wal1], base: BASE }),
    bundle(2, {
      wal: [{ timeline: 2, first: '000000020000000000000007', last: '000000020000000000000008' }],
      timelines: [{ timeline: 2, parent: 1, switchLsn: '0/7000100' }],
    }),
  );
  assert.equal(ok.found, []);
  assert.equal(ok.ends, ['1->000000020000000000000008@2']);
  const broken = run(
    bundle(1, { wal: [wal1], base: BASE }),
    bundle(2, { wal: [{ timeline: 2, first: '000000020000000000000007', last: '000000020000000000000008' }] }),
  );
  assert.equal(broken.found, ['timeline-break']);
});

test.run();
