/*
 * WAL continuity across a media set, from the cleartext coverage alone (no key needed).
 *
 * Per site, the segments of every bundle that verified are put together per timeline. From the
 * oldest base backup's first segment on, every segment up to the newest one of that timeline must be
 * there; a hole is `wal-gap`, named by the missing segments and the bundles around it. A timeline
 * other than the oldest base backup's whose history (the switch from its parent) no bundle carries
 * is `timeline-break`: recovery could not follow it. Each base backup then gives a recovery window:
 * from its stop location to the last segment reached without a hole, following timeline switches.
 */
import {
  formatLsnValue as formatLsn,
  lsnValue,
  segmentFileName as nameOf,
  segmentNo as segnoOf,
  type PostgresCoverage,
  type RecoveryWindow,
  type TimelineSwitch,
} from '../manifests/coverage.js';
import type { BundleReport, Finding } from './verify.js';

interface Held {
  seq: number;
  bundle: string;
}

export interface Continuity {
  findings: Finding[];
  windows: RecoveryWindow[];
}

/** Continuity findings and recovery windows of one site's bundles (those without findings). */
export function checkContinuity(site: string, bundles: readonly BundleReport[]): Continuity {
  const withPg = bundles
    .filter((b) => b.findings.length === 0 && b.manifest?.coverage?.postgres && b.seq !== undefined)
    .sort((a, b) => (a.seq as number) - (b.seq as number));
  const findings: Finding[] = [];
  const windows: RecoveryWindow[] = [];
  if (withPg.length === 0) return { findings, windows };
  const pgOf = (b: BundleReport) => b.manifest?.coverage?.postgres as PostgresCoverage;
  const segmentSize = pgOf(withPg[0] as BundleReport).segmentSize;
  const sysid = pgOf(withPg[0] as BundleReport).systemIdentifier;

  const segments = new Map<number, Map<bigint, Held>>(); // timeline -> segno -> where
  const switches = new Map<number, TimelineSwitch>();
  const bases: { b: BundleReport; pg: PostgresCoverage }[] = [];
  const points: { lsn: bigint; time: string; timeline: number }[] = [];
  for (const b of withPg) {
    const pg = pgOf(b);
    const held = { seq: b.seq as number, bundle: b.path };
    if (pg.systemIdentifier !== sysid || pg.segmentSize !== segmentSize) {
      findings.push({
        result: 'timeline-break',
        bundle: b.path,
        site,
        seq: held.seq,
        message: `this bundle is of another cluster (system identifier ${pg.systemIdentifier}, segment size ${pg.segmentSize}) than seq ${withPg[0]?.seq} (${sysid}, ${segmentSize})`,
      });
      continue;
    }
    for (const r of pg.wal) {
      const tl = segments.get(r.timeline) ?? new Map<bigint, Held>();
      segments.set(r.timeline, tl);
      for (let s = segnoOf(r.first, segmentSize); s <= segnoOf(r.last, segmentSize); s++) if (!tl.has(s)) tl.set(s, held);
    }
    for (const t of pg.timelines) switches.set(t.timeline, t);
    if (pg.base) bases.push({ b, pg });
    if (pg.restorePoint) points.push({ lsn: lsnValue(pg.restorePoint.lsn), time: pg.restorePoint.time, timeline: pg.restorePoint.timeline });
  }

  // gaps: per timeline, from where it starts to be needed up to its newest segment
  const oldest = bases[0]?.pg.base;
  const startOf = (timeline: number): bigint | undefined => {
    if (oldest?.timeline === timeline) return lsnValue(oldest.startLsn) / BigInt(segmentSize);
    const sw = switches.get(timeline);
    if (sw) return lsnValue(sw.switchLsn) / BigInt(segmentSize);
    return undefined;
  };
  for (const [timeline, held] of [...segments].sort((a, b) => a[0] - b[0])) {
    const have = [...held.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    // a timeline that another one branches off must be whole up to the segment before the switch
    const children = [...switches.values()]
      .filter((t) => t.parent === timeline && segments.has(t.timeline))
      .map((t) => lsnValue(t.switchLsn) / BigInt(segmentSize) - 1n);
    const newest = [have.at(-1) as bigint, ...children].reduce((a, b) => (b > a ? b : a));
    const from = startOf(timeline) ?? have[0] ?? newest;
    if (oldest && timeline !== oldest.timeline && !switches.has(timeline) && timeline > oldest.timeline) {
      const first = held.get(have[0] as bigint) as Held;
      findings.push({
        result: 'timeline-break',
        bundle: first.bundle,
        site,
        seq: first.seq,
        message: `WAL of timeline ${timeline} is in the set but no bundle carries ${nameOf(timeline, 0n, segmentSize).slice(0, 8)}.history, so recovery cannot follow the switch to it`,
      });
    }
    let missingFrom: bigint | undefined;
    for (let s = from; s <= newest + 1n; s++) {
      const present = s > newest || held.has(s);
      if (!present && missingFrom === undefined) missingFrom = s;
      if (present && missingFrom !== undefined) {
        const after = held.get(s);
        const first = nameOf(timeline, missingFrom, segmentSize);
        const last = nameOf(timeline, s - 1n, segmentSize);
        const where = after ?? ({ seq: withPg.at(-1)?.seq as number, bundle: withPg.at(-1)?.path as string } satisfies Held);
        findings.push({
          result: 'wal-gap',
          bundle: where.bundle,
          site,
          seq: where.seq,
          file: first === last ? first : `${first}..${last}`,
          message: `WAL segment${first === last ? ` ${first} is` : `s ${first} to ${last} (${s - missingFrom}) are`} in no bundle of the set; recovery cannot pass this point`,
        });
        missingFrom = undefined;
      }
    }
  }

  // windows: from each base backup's stop, forward while segments are there, across switches
  for (const { b, pg } of bases) {
    const base = pg.base;
    if (!base) continue;
    let timeline = base.timeline;
    let s = lsnValue(base.startLsn) / BigInt(segmentSize);
    const stopSeg = lsnValue(base.stopLsn) / BigInt(segmentSize);
    let last: { timeline: number; segno: bigint; held: Held } | undefined;
    const segOf = (lsn: string) => lsnValue(lsn) / BigInt(segmentSize);
    for (;;) {
      // recovery follows the newest timeline that forked from this one at or before here
      const child = [...switches.values()]
        .filter((t) => t.parent === timeline && segOf(t.switchLsn) <= s && segments.get(t.timeline)?.has(segOf(t.switchLsn)))
        .sort((x, y) => y.timeline - x.timeline)[0];
      if (child) {
        timeline = child.timeline;
        s = segOf(child.switchLsn);
      }
      const held = segments.get(timeline)?.get(s);
      if (!held) break;
      last = { timeline, segno: s, held };
      s++;
    }
    if (!last || last.segno < stopSeg) continue; // the base's own WAL is not all there: no window
    const end = (last.segno + 1n) * BigInt(segmentSize);
    const reached = points
      .filter((p) => p.lsn >= lsnValue(base.stopLsn) && p.lsn < end)
      .sort((x, y) => (x.lsn < y.lsn ? -1 : 1))
      .at(-1);
    windows.push({
      timeline: last.timeline,
      baseSeq: b.seq as number,
      lastSeq: last.held.seq,
      from: { lsn: base.stopLsn, time: base.stopTime },
      to: { lsn: formatLsn(end), segment: nameOf(last.timeline, last.segno, segmentSize), ...(reached ? { time: reached.time } : {}) },
    });
  }
  return { findings, windows };
}
