/*
 * The standby's decisions without a server: which bundles of the media continue the chain it holds
 * (and the gaps and forks refused), and how a promotion must end for each target given what replay
 * passed (a target already passed refused, one inside new media needing a restart with it set).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { PostgresCoverage } from '../../manifests/coverage.js';
import { AirlockError, type Code } from '../../manifests/errors.js';
import { parseTargetTime } from '../../agent/restore/pg.js';
import { newBundles, promotePlan, type Replay, type StandbyPoint, type StandbyState } from '../../agent/standby.js';
import type { BundleReport } from '../../verifier/verify.js';

const SEG = 16 * 1024 * 1024;
const hash = (seq: number, chain = 'a') => `${chain}${String(seq)}`.padEnd(64, '0');
const seg = (n: number, tl = 1) => `${tl.toString(16).toUpperCase().padStart(8, '0')}00000000${n.toString(16).toUpperCase().padStart(8, '0')}`;

function bundle(seq: number, wal: [number, number] | undefined, opts: { chain?: string; prev?: string; sysid?: string; timeline?: number } = {}): BundleReport {
  const timeline = opts.timeline ?? 1;
  const postgres: PostgresCoverage = {
    systemIdentifier: opts.sysid ?? '7000000000000000001',
    major: 15,
    segmentSize: SEG,
    dataChecksums: true,
    timeline,
    wal: wal ? [{ timeline, first: seg(wal[0], timeline), last: seg(wal[1], timeline) }] : [],
    timelines: [],
    dumps: 0,
  };
  return {
    path: `/m/s/s-${seq}`,
    site: 's',
    seq,
    sums: hash(seq, opts.chain),
    keyless: 'ok',
    deep: 'not-run',
    findings: [],
    manifest: { prev: opts.prev ?? hash(seq - 1, opts.chain), coverage: { postgres } } as NonNullable<BundleReport['manifest']>,
  };
}

const state: StandbyState = {
  format: 'airlock-standby',
  version: 1,
  site: 's',
  pgdata: '/x/data',
  port: 5433,
  major: 15,
  systemIdentifier: '7000000000000000001',
  segmentSize: SEG,
  timeline: 1,
  baseSeq: 1,
  walFetch: { node: '/usr/bin/node', cli: '/opt/airlock/dist/agent/cli/main.js' },
  applied: { seq: 2, sums: hash(2), at: '2026-01-01T00:00:00.000Z' },
  lastSegment: seg(5),
  restorePoints: [],
};

function refused(code: Code, work: () => unknown): string {
  try {
    work();
  } catch (e) {
    assert.ok(e instanceof AirlockError, String(e));
    assert.is(e.code, code, e.message);
    return e.message;
  }
  assert.unreachable(`expected ${code}`);
  return '';
}

test('the bundles after the one applied, when they continue its chain; none when it holds them all', () => {
  const set = [bundle(1, [2, 3]), bundle(2, [4, 5]), bundle(3, [6, 7]), bundle(4, [8, 8])];
  assert.equal(
    newBundles(state, set).map((b) => b.seq),
    [3, 4],
  );
  assert.equal(newBundles(state, set.slice(0, 2)), [], 'the same media again: nothing new');
  // WAL that overlaps what is held is fine: only a hole is not
  assert.equal(
    newBundles(state, [bundle(3, [5, 7])]).map((b) => b.seq),
    [3],
  );
  // a bundle without PostgreSQL (files only) continues the chain too
  assert.equal(
    newBundles(state, [bundle(3, undefined), bundle(4, [6, 6])]).map((b) => b.seq),
    [3, 4],
  );
});

test('gaps and forks are refused', () => {
  assert.match(
    refused('standby-gap', () => newBundles(state, [bundle(4, [8, 9])])),
    'seq 3 is missing',
  );
  assert.match(
    refused('standby-gap', () => newBundles(state, [bundle(3, [7, 8])])),
    'starts its WAL at',
  );
  refused('standby-fork', () => newBundles(state, [bundle(3, [6, 6], { prev: hash(2, 'b') })]));
  refused('standby-fork', () => newBundles(state, [bundle(2, [4, 5], { chain: 'b' }), bundle(3, [6, 6], { chain: 'b' })]));
  refused('standby-fork', () => newBundles(state, [bundle(3, [6, 6], { sysid: '7000000000000000002' })]));
  refused('standby-fork', () => newBundles(state, [bundle(3, [6, 6], { timeline: 2 })]));
});

test('promotion: the target must lie after what replay passed, and inside what is held', () => {
  const points: StandbyPoint[] = [
    { seq: 2, name: 'airlock-s-2', lsn: '0/5000100', time: '2026-01-01T10:00:00.000Z' },
    { seq: 3, name: 'airlock-s-3', lsn: '0/7000100', time: '2026-01-01T11:00:00.000Z' },
  ];
  const replay: Replay = { inRecovery: true, replayLsn: '0/5000100', lastCommit: '2026-01-01T09:59:00.000000Z', paused: false };
  const at = (t: string) => parseTargetTime(t);
  // seq 3 is on new media (applied: 2)
  assert.equal(promotePlan({ kind: 'latest' }, replay, points, 2), { how: 'promote', addNew: true });
  assert.equal(promotePlan(at('2026-01-01T10:30:00Z'), replay, points, 2), { how: 'target', addNew: true }, 'inside the new media');
  assert.equal(promotePlan(at('2026-01-01T11:00:00Z'), replay, points, 2), { how: 'promote', addNew: true }, 'at their end: everything');
  assert.equal(promotePlan(at('2026-01-01T09:59:30Z'), replay, points, 2), { how: 'promote', addNew: false }, 'after the last commit replayed');
  assert.match(
    refused('standby-passed', () => promotePlan(at('2026-01-01T09:00:00Z'), replay, points, 2)),
    'replayed past',
  );
  refused('usage', () => promotePlan(at('2026-01-01T12:00:00Z'), replay, points, 2));
  assert.equal(promotePlan({ kind: 'name', name: 'airlock-s-3' }, replay, points, 2), { how: 'target', addNew: true });
  assert.equal(promotePlan({ kind: 'name', name: 'airlock-s-2' }, replay, points, 2), { how: 'promote', addNew: false });
  refused('standby-passed', () => promotePlan({ kind: 'name', name: 'airlock-s-2' }, { ...replay, lastCommit: '2026-01-01T10:00:01.000000Z' }, points, 2));
  refused('standby-passed', () => promotePlan({ kind: 'name', name: 'airlock-s-2' }, replay, points, 3));
  refused('usage', () => promotePlan({ kind: 'name', name: 'nowhere' }, replay, points, 2));
  refused('usage', () => promotePlan({ kind: 'lsn', lsn: '0/6000000' }, replay, points, 2));
});

test.run();
