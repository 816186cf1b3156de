/*
 * Benchmark helpers. Every figure is a ratio against a peer tool run in the same process, on the
 * same data, right before or after, because this machine is shared and absolute times are noise.
 * Each side runs `rounds` times alternately and the best time counts.
 */
import { spawnSync } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
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

/** CPU seconds per GiB of the work an export cannot avoid, measured alone in this process, this run. */
export interface Floor {
  sha256: number;
  cipher: number;
}

let measured: Floor | undefined;

/**
 * SHA-256 and age's ChaCha20-Poly1305 (64 KiB chunks, a cipher object each, as age does it) over
 * 256 MiB in memory, on node:crypto (the same OpenSSL code the export runs); best of three.
 */
export function floor(): Floor {
  if (measured) return measured;
  const buf = randomBytes(64 * 1024 * 1024);
  const key = randomBytes(32);
  const nonce = Buffer.alloc(12);
  const cpu = (f: () => void): number => {
    let best = Infinity;
    for (let round = 0; round < 3; round++) {
      const start = process.cpuUsage();
      f();
      const used = process.cpuUsage(start);
      best = Math.min(best, (used.user + used.system) / 1e6);
    }
    // 4 passes over 64 MiB: a quarter of a GiB
    return best * 4;
  };
  const sha256 = cpu(() => {
    const h = createHash('sha256');
    for (let i = 0; i < 4; i++) h.update(buf);
    h.digest();
  });
  const cipher = cpu(() => {
    for (let i = 0; i < 4; i++)
      for (let off = 0; off < buf.byteLength; off += 65536) {
        const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
        c.update(buf.subarray(off, off + 65536));
        c.final();
        c.getAuthTag();
      }
  });
  measured = { sha256, cipher };
  return measured;
}

/**
 * The CPU figure of an export beside its floor: CPU seconds per GiB of input against what the
 * required hashing and cipher cost alone (`sha256Passes` SHA-256 passes and one cipher pass over the
 * ciphertext, `cipherShare` of the input), plus `extra` CPU seconds per GiB measured alone (zstd, pg_basebackup).
 */
export function cpuLine(name: string, t: Timed, bytes: number, sha256Passes: number, cipherShare = 1, extra?: { name: string; perGiB: number }): string {
  const f = floor();
  const gib = bytes / 1024 ** 3;
  const perGiB = t.cpuSeconds / gib;
  const base = sha256Passes * f.sha256 + cipherShare * f.cipher;
  const total = base + (extra?.perGiB ?? 0);
  const parts = `${Number(sha256Passes.toFixed(2))} x sha256 ${f.sha256.toFixed(2)} + cipher ${(cipherShare * f.cipher).toFixed(2)}${extra ? ` + ${extra.name} ${extra.perGiB.toFixed(2)}` : ''}`;
  return `${name}: CPU ${perGiB.toFixed(2)} s/GiB against a floor of ${total.toFixed(2)} s/GiB (${parts}): ${(perGiB / total).toFixed(2)}x the floor (target <= 1.3x)`;
}
