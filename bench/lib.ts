/*
 * Benchmark helpers. Every figure is a ratio against a peer tool run in the same process, on the
 * same data, right before or after, because this machine is shared and absolute times are noise.
 * Each side runs `rounds` times alternately and the best time counts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '..');

export interface Timed {
  seconds: number;
  maxRssMb: number;
  /** CPU time (user and system) of the command and the children it waited for */
  cpuSeconds: number;
  /** CPU time of the servers the command talked to, when the caller measured it (cpuOf) */
  serverCpuSeconds?: number;
  /** what the command printed on stdout */
  stdout: string;
}

/** Runs a command under GNU time (as `uid`/`gid` when given); throws if it fails. */
export function timed(cmd: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; uid?: number; gid?: number } = {}): Timed {
  const r = spawnSync('/usr/bin/time', ['-f', 'BENCH %e %M %U %S', cmd, ...args], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  const m = /BENCH ([\d.]+) (\d+) ([\d.]+) ([\d.]+)/.exec(r.stderr);
  if (!m) throw new Error(`no timing from ${cmd}`);
  return { seconds: Number(m[1]), maxRssMb: Number(m[2]) / 1024, cpuSeconds: Number(m[3]) + Number(m[4]), stdout: r.stdout };
}

/** Clock ticks per second of /proc/PID/stat's CPU times. */
const TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU seconds (user and system, all threads) the running processes `pids` used so far. */
export function cpuOf(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the fields after the command name, which is in parentheses and may hold anything
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / TICKS;
}

/** Runs `ours` and `peer` alternately `rounds` times (with `reset` before each) and keeps the best of each. */
export function compare(rounds: number, reset: () => void, ours: () => Timed, peer: () => Timed): { ours: Timed; peer: Timed } {
  let best: { ours: Timed; peer: Timed } | undefined;
  for (let i = 0; i < rounds; i++) {
    reset();
    const p = peer();
    reset();
    const o = ours();
    best = {
      ours: !best || o.seconds < best.ours.seconds ? o : best.ours,
      peer: !best || p.seconds < best.peer.seconds ? p : best.peer,
    };
    best.ours.maxRssMb = Math.max(best.ours.maxRssMb, o.maxRssMb);
  }
  return best as { ours: Timed; peer: Timed };
}

/**
 * Writes every dirty page back (sync). The disk here is slow next to the page cache, so without it a
 * side that runs right after another pays for writing back the other's gigabyte.
 */
export function settle(): void {
  const r = spawnSync('sync', [], { stdio: 'ignore' });
  if (r.status !== 0) throw new Error('sync failed');
}

export function line(
  name: string,
  r: { ours: Timed; peer: Timed },
  peerName: string,
  bytes: number,
  target: string,
  faster: 'higher' | 'lower' = 'higher',
  rssLimitMb?: number,
): string {
  const mb = bytes / 1024 / 1024;
  const ratio = faster === 'higher' ? r.peer.seconds / r.ours.seconds : r.ours.seconds / r.peer.seconds;
  const rss = `peak RSS ${r.ours.maxRssMb.toFixed(0)} MB${rssLimitMb ? ` (limit ${rssLimitMb})` : ''}`;
  return `${name}: ${ratio.toFixed(2)}x ${faster === 'higher' ? 'the speed of' : 'the time of'} ${peerName} (target ${target}); airlock ${r.ours.seconds.toFixed(2)} s = ${(mb / r.ours.seconds).toFixed(0)} MB/s, ${peerName} ${r.peer.seconds.toFixed(2)} s = ${(mb / r.peer.seconds).toFixed(0)} MB/s; ${rss}`;
}

export function scratch(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'airlock-bench-'));
  process.on('exit', () => rmSync(d, { recursive: true, force: true }));
  return d;
}
