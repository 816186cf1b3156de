/*
 * Backup health: what an operator or a monitoring system needs to know about the appliance, from the
 * catalog, the spool and (when reachable) the server, judged against thresholds.
 *
 * Two recovery point objectives: on the appliance, the age of the oldest WAL the server wrote that
 * is not in the spool yet (what a lost server would lose); off site, the age of the newest data on
 * verified media (what a lost appliance would lose). Only the server knows whether it wrote anything
 * since the last archived segment: with it, an idle server that archived everything has an RPO of
 * 0, however old its newest segment; without it, the newest spooled segment's age is the figure, an
 * upper bound that grows on an idle server though nothing would be lost. A full spool stops archiving and then fills the server's pg_wal, so its free
 * space is watched too. Levels follow Nagios: ok, warning, critical, unknown.
 */
import { readdirSync, statfsSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Catalog } from './catalog.js';
import { lsnValue, segmentNo } from '../manifests/coverage.js';
import { escapeText } from '../manifests/escape.js';
import { parseWalFileName } from './postgres/wal.js';

export type Level = 'ok' | 'warning' | 'critical' | 'unknown';
export const LEVEL_EXIT: Record<Level, number> = { ok: 0, warning: 1, critical: 2, unknown: 3 };

export interface Thresholds {
  /** seconds since the newest spooled WAL file */
  walAgeWarning: number;
  walAgeCritical: number;
  /** free space of the spool's file system, as a fraction */
  spoolFreeWarning: number;
  spoolFreeCritical: number;
  /** seconds since the newest data on verified media */
  offsiteWarning: number;
  offsiteCritical: number;
}

export interface StatusCheck {
  name: string;
  level: Level;
  message: string;
}

export interface Status {
  level: Level;
  site: string;
  at: string;
  checks: StatusCheck[];
  jobs: { job: string; lastSuccess: string | null; lastFailure: string | null; lastFailureMessage: string | null }[];
  wal: {
    newest: string | null;
    newestAgeSeconds: number | null;
    spoolBytes: number;
    spoolFreeBytes: number | null;
    spoolFreeFraction: number | null;
    unexportedBytes: number;
    unexportedFiles: number;
  };
  archiver?: { failedCount: number; failingNow: boolean; lastFailedWal: string | null };
  media: { uuid: string; label: string; newestSeq: number; verified: string }[];
  /** the newest finished bundle of the site: its size and how long writing it took */
  lastBundle: { seq: number; bytes: number; durationSeconds: number; finished: string } | null;
  /** seconds since the last successful base backup, null when there was none */
  baseBackupAgeSeconds: number | null;
  /** onApplianceFrom: `server` when it said what is not archived yet, `spool` for the newest segment's age (an upper bound) */
  rpo: { onAppliance: number | null; onApplianceFrom?: 'server' | 'spool'; offSite: number | null };
}

export interface StatusInput {
  catalog: Catalog;
  site: string;
  spool: string | undefined;
  now: Date;
  thresholds: Thresholds;
  /** pg_stat_archiver, when the server answered */
  archiver?: Status['archiver'];
  /** why the server could not be asked, when it was configured */
  archiverError?: string;
  /** where the server writes WAL now and the last segment it archived, when it answered */
  server?: ServerWal;
}

export interface ServerWal {
  /** pg_current_wal_insert_lsn() */
  insertLsn: string;
  segmentSize: number;
  /** pg_stat_archiver's last archived file and when */
  lastArchived: { name: string; time: string } | null;
}

/** A page's long header: the insert position of a segment nothing was written to yet. */
const LONG_PAGE_HEADER = 40n;

/**
 * The on-appliance RPO from the server: 0 when nothing was written after the newest archived
 * segment, else the time since that segment reached the spool (the WAL after it was written later,
 * so this is its age, within the archiving delay). Undefined when no segment was archived yet.
 */
function serverRpo(server: ServerWal, spooled: { name: string; mtime: number } | undefined, nowMs: number): { age: number; message: string } | undefined {
  const archived =
    server.lastArchived && parseWalFileName(server.lastArchived.name)?.kind === 'segment'
      ? { name: server.lastArchived.name, ms: Date.parse(server.lastArchived.time) }
      : undefined;
  // the newer of what the server says and what the spool holds: a .backup or .history file may be the last archived
  const newest = [archived, spooled && { name: spooled.name, ms: spooled.mtime }]
    .filter((x) => x !== undefined)
    .sort((a, b) => (a.name.slice(8) < b.name.slice(8) ? 1 : -1))[0];
  if (!newest) return undefined;
  const end = (segmentNo(newest.name, server.segmentSize) + 1n) * BigInt(server.segmentSize);
  const pending = lsnValue(server.insertLsn) - end;
  if (pending <= LONG_PAGE_HEADER)
    return { age: 0, message: `the server wrote nothing after ${newest.name}, the newest archived segment: all its WAL is in the spool` };
  const age = Math.max(0, (nowMs - newest.ms) / 1000);
  return { age, message: `the server wrote ${pending} bytes of WAL after ${newest.name}, archived ${duration(age)} ago; they are not in the spool yet` };
}

/** The worst of `levels` (unknown ranks below critical, above warning); ok for none. */
export const worst = (levels: readonly Level[]): Level => (['critical', 'unknown', 'warning', 'ok'] as const).find((l) => levels.includes(l)) ?? 'ok';

/** The level of an age against its warning and critical thresholds. */
export function byAge(age: number, warn: number, crit: number): Level {
  return age >= crit ? 'critical' : age >= warn ? 'warning' : 'ok';
}

/** Seconds as people read them: 45 s, 12 min, 3.5 h. */
export const duration = (s: number) => (s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`);

/** Reads the spool: the newest WAL file's time, total bytes, free space. */
function spoolFacts(spool: string): { newest: { name: string; mtime: number } | undefined; bytes: number; free: number; fraction: number } {
  let newest: { name: string; mtime: number } | undefined;
  let bytes = 0;
  for (const name of readdirSync(spool)) {
    const w = parseWalFileName(name);
    if (!w) continue;
    const st = statSync(path.join(spool, name));
    bytes += st.size;
    if (w.kind === 'segment' && (!newest || st.mtimeMs > newest.mtime)) newest = { name, mtime: st.mtimeMs };
  }
  const fs = statfsSync(spool);
  return { newest, bytes, free: fs.bavail * fs.bsize, fraction: fs.blocks > 0 ? fs.bavail / fs.blocks : 0 };
}

/** Collects the status. Never throws for an unhealthy appliance: that is a level. */
export function collectStatus(input: StatusInput): Status {
  const { catalog, site, now, thresholds: t } = input;
  const checks: StatusCheck[] = [];
  const nowMs = now.getTime();
  const status: Status = {
    level: 'ok',
    site,
    at: now.toISOString(),
    checks,
    jobs: [],
    wal: { newest: null, newestAgeSeconds: null, spoolBytes: 0, spoolFreeBytes: null, spoolFreeFraction: null, unexportedBytes: 0, unexportedFiles: 0 },
    media: [],
    lastBundle: null,
    baseBackupAgeSeconds: null,
    rpo: { onAppliance: null, offSite: null },
  };

  // media copies are recorded without a site (a copy may carry several)
  for (const [job, of] of [
    ['export', site],
    ['base-backup', site],
    ['media copy', undefined],
    ['prune', site],
  ] as const) {
    const runs = catalog.jobRuns(job, of, 200);
    const ok = runs.find((r) => r.outcome === 'ok');
    const bad = runs.find((r) => r.outcome === 'failed');
    if (runs.length === 0) continue;
    status.jobs.push({ job, lastSuccess: ok?.time ?? null, lastFailure: bad?.time ?? null, lastFailureMessage: bad?.message ?? null });
    if (job === 'base-backup' && ok) status.baseBackupAgeSeconds = Math.max(0, (nowMs - Date.parse(ok.time)) / 1000);
    const latest = runs[0];
    if (latest?.outcome === 'failed')
      checks.push({ name: `job ${job}`, level: 'warning', message: `the last ${job} failed at ${latest.time}: ${latest.message ?? latest.code ?? ''}` });
    else checks.push({ name: `job ${job}`, level: 'ok', message: `the last ${job} succeeded at ${latest?.time}` });
  }

  if (input.spool !== undefined) {
    try {
      const s = spoolFacts(input.spool);
      status.wal.spoolBytes = s.bytes;
      status.wal.spoolFreeBytes = s.free;
      status.wal.spoolFreeFraction = s.fraction;
      const fromServer = input.server && serverRpo(input.server, s.newest, nowMs);
      if (s.newest) {
        const age = Math.max(0, (nowMs - s.newest.mtime) / 1000);
        status.wal.newest = s.newest.name;
        status.wal.newestAgeSeconds = age;
      }
      if (fromServer) {
        status.rpo.onAppliance = fromServer.age;
        status.rpo.onApplianceFrom = 'server';
        checks.push({ name: 'wal age', level: byAge(fromServer.age, t.walAgeWarning, t.walAgeCritical), message: fromServer.message });
      } else if (s.newest && status.wal.newestAgeSeconds !== null) {
        const age = status.wal.newestAgeSeconds;
        status.rpo.onAppliance = age;
        status.rpo.onApplianceFrom = 'spool';
        checks.push({
          name: 'wal age',
          level: byAge(age, t.walAgeWarning, t.walAgeCritical),
          message: `the newest spooled segment ${s.newest.name} is ${duration(age)} old: at most that much WAL is not in the spool (give --pg to ask the server; an idle server archives nothing new)`,
        });
      } else checks.push({ name: 'wal age', level: 'warning', message: 'no WAL segment in the spool yet' });
      const freeLevel: Level = s.fraction <= t.spoolFreeCritical ? 'critical' : s.fraction <= t.spoolFreeWarning ? 'warning' : 'ok';
      checks.push({
        name: 'spool space',
        level: freeLevel,
        message: `${(s.fraction * 100).toFixed(1)}% free (${Math.round(s.free / 1024 ** 2)} MiB); a full spool stops archiving and then fills pg_wal`,
      });
    } catch (e) {
      checks.push({ name: 'spool', level: 'unknown', message: `${input.spool}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
    }
    const unexported = catalog.unexportedWal(site);
    status.wal.unexportedFiles = unexported.length;
    status.wal.unexportedBytes = unexported.reduce((a, r) => a + r.size, 0);
  }

  if (input.archiver) {
    status.archiver = input.archiver;
    checks.push({
      name: 'archiver',
      level: input.archiver.failingNow ? 'critical' : 'ok',
      message: input.archiver.failingNow
        ? `archive_command fails (last ${input.archiver.lastFailedWal}); WAL piles up in pg_wal`
        : `archiving works (${input.archiver.failedCount} failure(s) since the statistics reset)`,
    });
  } else if (input.archiverError !== undefined) {
    checks.push({ name: 'archiver', level: 'unknown', message: `cannot ask the server: ${input.archiverError}` });
  }

  const last = catalog.lastDone(site);
  if (last?.finished && last.size !== null) {
    status.lastBundle = {
      seq: last.seq,
      bytes: last.size,
      durationSeconds: Math.max(0, (Date.parse(last.finished) - Date.parse(last.started)) / 1000),
      finished: last.finished,
    };
  }

  const media = catalog.newestCopies(site);
  status.media = media.map((m) => ({ uuid: m.uuid, label: m.label, newestSeq: m.seq, verified: m.verified }));
  const offsite = catalog.newestVerifiedData(site);
  if (offsite) {
    const age = Math.max(0, (nowMs - Date.parse(offsite.time)) / 1000);
    status.rpo.offSite = age;
    checks.push({
      name: 'off-site RPO',
      level: byAge(age, t.offsiteWarning, t.offsiteCritical),
      message: `the newest data on verified media (seq ${offsite.seq}) is ${duration(age)} old`,
    });
  } else {
    checks.push({ name: 'off-site RPO', level: 'warning', message: 'no bundle of this site is verified on any labelled medium yet' });
  }
  status.level = worst(checks.map((c) => c.level));
  return status;
}

/**
 * The Prometheus text format, for node_exporter's textfile collector. Labels are `site` and what
 * tells series apart (`task`, `medium`): never `job` or `instance`, which Prometheus sets itself for
 * the scraped target.
 */
export function prometheusText(s: Status): string {
  const lines = metricLines(s.site, [
    ['airlock_status_up', '1 when the status could be taken (0: see airlock_status)', [{ value: 1 }]],
    ['airlock_status', 'overall health: 0 ok, 1 warning, 2 critical, 3 unknown', [{ value: LEVEL_EXIT[s.level] }]],
    ['airlock_wal_newest_age_seconds', 'age of the newest WAL segment in the spool', [{ value: s.wal.newestAgeSeconds }]],
    [
      'airlock_rpo_appliance_seconds',
      "age of the oldest WAL not in the spool (0: everything is archived); without --pg, the newest spooled segment's age, an upper bound",
      [{ value: s.rpo.onAppliance }],
    ],
    ['airlock_spool_bytes', 'bytes of WAL files in the spool', [{ value: s.wal.spoolBytes }]],
    ['airlock_spool_free_bytes', 'free bytes of the spool file system', [{ value: s.wal.spoolFreeBytes }]],
    ['airlock_unexported_bytes', 'bytes of ingested WAL no finished bundle carries yet', [{ value: s.wal.unexportedBytes }]],
    ['airlock_rpo_offsite_seconds', 'age of the newest data on verified media', [{ value: s.rpo.offSite }]],
    ['airlock_base_backup_age_seconds', 'time since the last successful base backup', [{ value: s.baseBackupAgeSeconds }]],
    ['airlock_last_bundle_bytes', 'size of the newest finished bundle', [{ value: s.lastBundle?.bytes ?? null }]],
    ['airlock_last_bundle_duration_seconds', 'how long writing the newest finished bundle took', [{ value: s.lastBundle?.durationSeconds ?? null }]],
    ['airlock_archiver_failing', '1 when archive_command fails now', [{ value: s.archiver ? Number(s.archiver.failingNow) : null }]],
    [
      'airlock_job_last_success_timestamp_seconds',
      'time of the last successful run of a task',
      s.jobs.map((j) => ({ labels: { task: j.job }, value: j.lastSuccess ? Date.parse(j.lastSuccess) / 1000 : null })),
    ],
    [
      'airlock_job_last_failure_timestamp_seconds',
      'time of the last failed run of a task',
      s.jobs.map((j) => ({ labels: { task: j.job }, value: j.lastFailure ? Date.parse(j.lastFailure) / 1000 : null })),
    ],
    [
      'airlock_medium_newest_seq',
      'the newest bundle verified on a medium',
      s.media.map((m) => ({ labels: { medium: m.uuid, label: m.label }, value: m.newestSeq })),
    ],
  ]);
  return `${lines.join('\n')}\n`;
}

/** The Prometheus file when no status could be taken (no config, an unreadable catalog): down, unknown. */
export function prometheusDown(site: string | undefined): string {
  const lines = metricLines(site, [
    ['airlock_status_up', '1 when the status could be taken (0: see airlock_status)', [{ value: 0 }]],
    ['airlock_status', 'overall health: 0 ok, 1 warning, 2 critical, 3 unknown', [{ value: LEVEL_EXIT.unknown }]],
  ]);
  return `${lines.join('\n')}\n`;
}

export type Series = { labels?: Record<string, string>; value: number | null }[];

/** Prometheus text lines of `metrics` (name, help, series), every series labelled with `site`; a null value is left out. */
export function metricLines(site: string | undefined, metrics: readonly (readonly [string, string, Series])[]): string[] {
  const lines: string[] = [];
  const quote = (x: string) => `"${x.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
  for (const [name, help, values] of metrics) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const v of values) {
      if (v.value === null) continue;
      const labels = Object.entries({ ...(site !== undefined ? { site } : {}), ...v.labels });
      lines.push(`${name}${labels.length > 0 ? `{${labels.map(([k, x]) => `${k}=${quote(x)}`).join(',')}}` : ''} ${v.value}`);
    }
  }
  return lines;
}

/**
 * The first line of a Nagios plugin's output: `AIRLOCK LEVEL - the worst problem | perfdata`, with
 * a value for every threshold (`label=value[unit];warn;crit`, `U` for a value not known; the spool's
 * free space alerts below its thresholds, the range form `N:`).
 */
export function nagiosLine(s: Status, t: Thresholds): string {
  const rank: Record<Level, number> = { critical: 3, unknown: 2, warning: 1, ok: 0 };
  const worstCheck = s.checks.filter((c) => c.level === s.level).sort((a, b) => rank[b.level] - rank[a.level])[0];
  const summary = s.level === 'ok' || !worstCheck ? `${s.checks.length} checks ok, site ${s.site}` : `${worstCheck.name}: ${worstCheck.message}`;
  const v = (x: number | null, unit = '') => (x === null ? 'U' : `${Math.round(x * 1000) / 1000}${unit}`);
  const pct = (f: number) => Math.round(f * 1000) / 10;
  const perf = [
    `wal_age=${v(s.rpo.onAppliance, 's')};${t.walAgeWarning};${t.walAgeCritical};0`,
    `offsite_rpo=${v(s.rpo.offSite, 's')};${t.offsiteWarning};${t.offsiteCritical};0`,
    `spool_free=${v(s.wal.spoolFreeFraction === null ? null : pct(s.wal.spoolFreeFraction), '%')};${pct(t.spoolFreeWarning)}:;${pct(t.spoolFreeCritical)}:;0;100`,
    `spool=${v(s.wal.spoolBytes, 'B')};;;0`,
    `unexported=${v(s.wal.unexportedBytes, 'B')};;;0`,
    `base_backup_age=${v(s.baseBackupAgeSeconds, 's')};;;0`,
    `last_bundle=${v(s.lastBundle?.bytes ?? null, 'B')};;;0`,
  ];
  return `AIRLOCK ${s.level.toUpperCase()} - ${oneLine(summary)} | ${perf.join(' ')}`;
}

/** The Nagios line when no status could be taken. */
export function nagiosUnknown(message: string): string {
  return `AIRLOCK UNKNOWN - ${oneLine(message)}`;
}

/** Text for the plugin line: one line, no `|` (it starts the perfdata). */
export const oneLine = (text: string) => text.replace(/[\r\n]+/g, ' ').replace(/\|/g, '/');

/** The status for people and for Nagios: the plugin line, then one line per check, the level last. */
export function statusText(s: Status, t: Thresholds): string {
  const out = [nagiosLine(s, t), ...s.checks.map((c) => `${c.level}: ${c.name}: ${c.message}`)];
  for (const m of s.media) out.push(`medium ${m.label} (${m.uuid}): newest verified bundle seq ${m.newestSeq} at ${m.verified}`);
  out.push(`status: ${s.level}`);
  // messages quote job errors and medium labels: one line each, no terminal control
  return `${out.map(escapeText).join('\n')}\n`;
}
