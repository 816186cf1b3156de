/*
 * airlock run: the long-running agent, as its own OS user (never the database's).
 *
 * Each pass ingests the WAL spool, then, when an export is due and the configured medium is present
 * (its mount point holds an airlock medium label), runs one export as a child process: a base backup
 * and dumps when `base-every` has passed since the last successful one, WAL (and the configured files
 * and buckets) otherwise; then prunes the spool. One job at a time; a failed job is recorded in the
 * catalog (by the export itself) and the next pass tries again. SIGTERM or SIGINT stop the loop; a
 * running export gets the signal and removes its partial bundle before the agent exits.
 * `--once` does one pass (for cron, systemd timers and tests); AIRLOCK_NOW sets the clock.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { AirlockError, EXIT } from '../../manifests/errors.js';
import { Catalog, resolveStateDir } from '../catalog.js';
import { now } from '../clock.js';
import { LABEL_FILE } from '../media.js';
import { ingestSpool } from '../spool.js';
import { command, resolveOptions, type Flags } from './options.js';

interface RunFlags {
  config: string;
  once?: boolean;
  site: string;
  stateDir?: string;
  medium?: string[];
  spool?: string;
  pg?: string;
  /** seconds */
  exportEvery: number;
  baseEvery: number;
}

interface Running {
  /** signals the running child job, if any */
  kill: ((sig: NodeJS.Signals) => void) | undefined;
  stopping: boolean;
}

const say = (line: string) => process.stderr.write(`airlock run: ${now().toISOString()} ${line}\n`);

/** Runs `airlock ARGS` as a child; resolves its exit code. `stop` forwards a signal to it. */
function child(args: readonly string[], running: Running): Promise<number> {
  return new Promise((resolve) => {
    // with node's options this process got (the executable's --single-threaded-gc)
    const c = spawn(process.execPath, [...process.execArgv, process.argv[1] as string, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
    running.kill = (sig) => c.kill(sig);
    c.on('error', () => resolve(EXIT.internal));
    c.on('close', (code, sig) => {
      running.kill = undefined;
      resolve(code ?? (sig ? 128 + (sig === 'SIGKILL' ? 9 : 15) : EXIT.internal));
    });
  });
}

interface Plan {
  site: string;
  stateDir: string;
  /** every configured medium; an export goes to the first one mounted, then is copied to the others mounted */
  media: string[];
  spool: string | undefined;
  pg: boolean;
  exportEvery: number;
  baseEvery: number;
}

function plan(flags: RunFlags): Plan {
  return {
    site: flags.site,
    stateDir: resolveStateDir(flags.stateDir),
    media: flags.medium ?? [],
    spool: flags.spool,
    pg: flags.pg !== undefined,
    exportEvery: flags.exportEvery,
    baseEvery: flags.baseEvery,
  };
}

/** When a job last succeeded, by the catalog's record of runs. */
function lastOk(p: Plan, job: string): number | undefined {
  const catalog = Catalog.open(p.stateDir);
  try {
    const ok = catalog.jobRuns(job, p.site, 500).find((r) => r.outcome === 'ok');
    return ok ? Date.parse(ok.time) : undefined;
  } finally {
    catalog.close();
  }
}

/** One pass. Returns whether every job it ran succeeded, and when the next export is due. */
async function pass(config: string, p: Plan, running: Running): Promise<{ ok: boolean; nextDue: number }> {
  let ok = true;
  const t = now().getTime();
  if (p.spool !== undefined) {
    const catalog = Catalog.open(p.stateDir);
    try {
      const r = ingestSpool(catalog, p.spool, now);
      if (r.ingested.length > 0) say(`ingested ${r.ingested.length} WAL file(s)`);
      for (const e of r.problems) {
        ok = false;
        say(`spool: ${e.message}`);
      }
    } finally {
      catalog.close();
    }
  }
  const last = lastOk(p, 'export');
  const due = last === undefined ? t : last + p.exportEvery * 1000;
  if (due > t) return { ok, nextDue: due };
  const present = p.media.filter((m) => existsSync(path.join(m, LABEL_FILE)));
  const [first, ...others] = present;
  if (first === undefined) {
    say(`an export is due but no airlock medium is at ${p.media.length > 0 ? p.media.join(' or ') : '(no medium configured)'}; waiting for one`);
    return { ok, nextDue: t + 60_000 };
  }
  const lastBase = lastOk(p, 'base-backup');
  const base = p.pg && (lastBase === undefined || lastBase + p.baseEvery * 1000 <= t);
  say(`export to ${first}${base ? ' with a base backup and dumps' : ''}`);
  const code = await child(['export', '--config', config, '--to', first, ...(base ? ['--pg-base', '--pg-dump'] : [])], running);
  if (code !== 0) {
    ok = false;
    say(`the export failed (exit ${code}); it is recorded and the next pass tries again`);
  } else {
    // every other medium mounted now gets this site's new bundles too (a copy verifies and counts for
    // retention); only this site's folder: a medium shared by several instances holds others' bundles
    for (const other of others) {
      if (running.stopping) break;
      say(`copy to ${other}`);
      if ((await child(['media', 'copy', path.join(first, p.site), other, '--config', config], running)) !== 0) ok = false;
    }
    if (p.spool !== undefined && !running.stopping) {
      const pruned = await child(['prune', '--config', config], running);
      if (pruned !== 0) ok = false;
    }
  }
  return { ok, nextDue: code === 0 ? now().getTime() + p.exportEvery * 1000 : now().getTime() + 60_000 };
}

async function runCommand(flags: RunFlags): Promise<void> {
  const config = flags.config;
  const p = plan(flags);
  const running: Running = { kill: undefined, stopping: false };
  let wake: (() => void) | undefined;
  const stop = (sig: NodeJS.Signals) => {
    if (running.stopping) return;
    running.stopping = true;
    say(`${sig}: stopping${running.kill ? ' after the running job cleans up' : ''}`);
    running.kill?.(sig);
    wake?.();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  for (;;) {
    const r = await pass(config, p, running);
    if (running.stopping) throw new AirlockError('interrupted', 'stopped by a signal; no partial bundle was left');
    if (flags.once) {
      if (!r.ok) throw new AirlockError('verification-failed', 'a job of this pass failed; it is recorded in the catalog (airlock status shows it)');
      return;
    }
    const wait = Math.min(Math.max(r.nextDue - now().getTime(), 1000), 60_000);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, wait);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    wake = undefined;
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the signal handler sets it while this waited
    if (running.stopping) throw new AirlockError('interrupted', 'stopped by a signal');
  }
}

export function register(program: Command): void {
  command(program, 'run', 'the agent: ingest the WAL spool, export on schedule when a medium is present, prune; one job at a time').action((flags: Flags) =>
    runCommand(resolveOptions<RunFlags>('run', flags)),
  );
}
