/*
 * The health of a warm standby (standby.ts), judged as `airlock status` judges the appliance and with
 * its helpers (status.ts): is the server up and in recovery, has replay reached what was applied, how
 * old is the newest restore point it holds, and how many bundles on the media given it has not
 * applied. Levels follow Nagios: ok, warning, critical, unknown.
 */
import { lsnValue } from '../manifests/coverage.js';
import { escapeText } from '../manifests/escape.js';
import type { BundleReport } from '../verifier/verify.js';
import { formatLsn } from './postgres/wal.js';
import { replayGoal, type Replay, type StandbyPoint, type StandbyState } from './standby.js';
import { LEVEL_EXIT, byAge, duration, metricLines, oneLine, worst, type Level, type StatusCheck } from './status.js';

export interface StandbyThresholds {
  /** seconds since the newest restore point the standby replayed */
  lagWarning: number;
  lagCritical: number;
}

export interface StandbyStatus {
  level: Level;
  site: string;
  at: string;
  checks: StatusCheck[];
  applied: { seq: number; restorePoint: StandbyPoint | null; at: string };
  server: { running: boolean; inRecovery: boolean | null; replayLsn: string | null; lastCommit: string | null };
  /** seconds from the newest restore point applied to now: how old the standby's data is */
  lagSeconds: number | null;
  /** the newest bundle verified on the media given, and how many the standby lacks */
  media: { newestSeq: number; created: string | null; behind: number; behindSeconds: number | null } | null;
  promoted: StandbyState['promoted'] | null;
}

export interface StandbyStatusInput {
  state: StandbyState;
  now: Date;
  thresholds: StandbyThresholds;
  /** the server's answer, or why it could not be asked */
  replay: Replay | { error: string; running: boolean };
  /** the media given with --from: their newest verified bundle of the site, or why they did not verify */
  media?: { newest: BundleReport | undefined } | { error: string };
}

/** The standby's health, judged like `airlock status` (status.ts). Never throws for an unhealthy standby: that is a level. */
export function collectStandbyStatus(input: StandbyStatusInput): StandbyStatus {
  const { state, now, thresholds: t } = input;
  const checks: StatusCheck[] = [];
  const point = state.restorePoints.at(-1) ?? null;
  const answered = 'error' in input.replay ? undefined : input.replay;
  const status: StandbyStatus = {
    level: 'ok',
    site: state.site,
    at: now.toISOString(),
    checks,
    applied: { seq: state.applied.seq, restorePoint: point, at: state.applied.at },
    server: {
      running: answered !== undefined || ('running' in input.replay && input.replay.running),
      inRecovery: answered?.inRecovery ?? null,
      replayLsn: answered?.replayLsn ?? null,
      lastCommit: answered?.lastCommit ?? null,
    },
    lagSeconds: point ? Math.max(0, (now.getTime() - Date.parse(point.time)) / 1000) : null,
    media: null,
    promoted: state.promoted ?? null,
  };
  if (state.promoted)
    checks.push({ name: 'standby', level: 'warning', message: `promoted at ${state.promoted.at} (${state.promoted.target}): no longer a standby` });
  else if (!answered)
    checks.push({ name: 'standby', level: 'critical', message: `the standby's server does not answer: ${(input.replay as { error: string }).error}` });
  else if (!answered.inRecovery) checks.push({ name: 'standby', level: 'critical', message: 'the server is not in recovery: it was promoted outside airlock' });
  else {
    const goal = replayGoal(state);
    const behind = goal !== undefined && (answered.replayLsn === null || lsnValue(answered.replayLsn) < goal);
    checks.push(
      behind
        ? {
            name: 'replay',
            level: 'warning',
            message: `replay is at ${answered.replayLsn ?? 'nothing yet'}, the WAL applied goes on to ${formatLsn(goal)}${answered.paused ? ' (replay is paused: SELECT pg_wal_replay_resume())' : ''}`,
          }
        : { name: 'replay', level: 'ok', message: `replayed everything applied, up to seq ${state.applied.seq}${point ? ` (${point.name})` : ''}` },
    );
  }
  if (status.lagSeconds !== null && point)
    checks.push({
      name: 'standby lag',
      level: byAge(status.lagSeconds, t.lagWarning, t.lagCritical),
      message: `the newest restore point applied, ${point.name}, is ${duration(status.lagSeconds)} old`,
    });
  if (input.media && 'error' in input.media) checks.push({ name: 'media', level: 'unknown', message: `the media do not verify: ${input.media.error}` });
  else if (input.media) {
    const newest = input.media.newest;
    if (!newest) checks.push({ name: 'media', level: 'unknown', message: `no bundle of ${state.site} on the media given` });
    else {
      const seq = newest.seq as number;
      const behind = Math.max(0, seq - state.applied.seq);
      const created = newest.created ?? null;
      const behindSeconds = behind > 0 && created && point ? Math.max(0, (Date.parse(created) - Date.parse(point.time)) / 1000) : behind > 0 ? null : 0;
      status.media = { newestSeq: seq, created, behind, behindSeconds };
      checks.push(
        behind > 0
          ? {
              name: 'media',
              level: 'warning',
              message: `the media hold ${behind} bundle(s) the standby has not applied (up to seq ${seq}${behindSeconds !== null ? `, ${duration(behindSeconds)} newer` : ''}): run standby apply`,
            }
          : { name: 'media', level: 'ok', message: `the standby holds the newest bundle on the media (seq ${seq})` },
      );
    }
  }
  status.level = worst(checks.map((c) => c.level));
  return status;
}

/** The plugin line and one line per check, as `airlock status` prints them. */
export function standbyStatusText(s: StandbyStatus, t: StandbyThresholds): string {
  const top = s.checks.find((c) => c.level === s.level);
  const summary = s.level === 'ok' || !top ? `${s.checks.length} checks ok, standby of ${s.site} at seq ${s.applied.seq}` : `${top.name}: ${top.message}`;
  const v = (x: number | null, unit = '') => (x === null ? 'U' : `${Math.round(x * 1000) / 1000}${unit}`);
  const perf = [
    `lag=${v(s.lagSeconds, 's')};${t.lagWarning};${t.lagCritical};0`,
    `applied_seq=${s.applied.seq};;;0`,
    `behind=${v(s.media?.behind ?? null)};;;0`,
  ];
  const lines = [
    `AIRLOCK STANDBY ${s.level.toUpperCase()} - ${oneLine(summary)} | ${perf.join(' ')}`,
    ...s.checks.map((c) => `${c.level}: ${c.name}: ${c.message}`),
    ...(s.server.lastCommit ? [`last transaction replayed committed at ${s.server.lastCommit}`] : []),
    `status: ${s.level}`,
  ];
  return `${lines.map(escapeText).join('\n')}\n`;
}

/** The standby's figures in the Prometheus text format (see prometheusText in status.ts). */
export function standbyPrometheusText(s: StandbyStatus): string {
  const at = (iso: string | null | undefined) => (iso ? Date.parse(iso) / 1000 : null);
  const lines = metricLines(s.site, [
    ['airlock_standby_up', '1 when the standby status could be taken', [{ value: 1 }]],
    ['airlock_standby_status', 'overall health: 0 ok, 1 warning, 2 critical, 3 unknown', [{ value: LEVEL_EXIT[s.level] }]],
    ['airlock_standby_applied_seq', 'the newest bundle the standby applied', [{ value: s.applied.seq }]],
    ['airlock_standby_lag_seconds', 'age of the newest restore point the standby applied', [{ value: s.lagSeconds }]],
    [
      'airlock_standby_in_recovery',
      '1 while the server is a standby in recovery',
      [{ value: s.server.inRecovery === null ? null : Number(s.server.inRecovery) }],
    ],
    ['airlock_standby_last_replay_timestamp_seconds', 'commit time of the last transaction replayed', [{ value: at(s.server.lastCommit) }]],
    ['airlock_standby_behind_bundles', 'bundles on the media given that the standby has not applied', [{ value: s.media?.behind ?? null }]],
  ]);
  return `${lines.join('\n')}\n`;
}

/** The Prometheus file when no standby status could be taken: down, unknown. */
export function standbyPrometheusDown(): string {
  const lines = metricLines(undefined, [
    ['airlock_standby_up', '1 when the standby status could be taken', [{ value: 0 }]],
    ['airlock_standby_status', 'overall health: 0 ok, 1 warning, 2 critical, 3 unknown', [{ value: LEVEL_EXIT.unknown }]],
  ]);
  return `${lines.join('\n')}\n`;
}
