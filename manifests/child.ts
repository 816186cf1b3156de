/*
 * A child process as one stage of a stream pipeline (zstd between tar and age), spawned with an
 * argument list, never a shell string. The stage fails when the child cannot start, writes to stderr
 * and exits non-zero, or is killed: a pipeline's last exit code must never hide an earlier failure.
 */
import { spawn } from 'node:child_process';
import { Duplex, PassThrough } from 'node:stream';
import { AirlockError } from './errors.js';

/**
 * Returns a Duplex that feeds its input to `cmd args` and yields the child's stdout. Errors with
 * `child-failed` (exit status and the child's last stderr line) or `not-found` when `cmd` is missing.
 */
export function spawnFilter(cmd: string, args: readonly string[], signal?: AbortSignal): Duplex {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...(signal ? { signal } : {}) });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    stderr = (stderr + d).slice(-4096);
  });
  // stdout goes through a PassThrough so the readable side ends only after the exit status is known
  const out = new PassThrough({ highWaterMark: 1024 * 1024 });
  let exited = false;
  let stdoutEnded = false;
  let failure: Error | undefined;
  const finish = () => {
    if (failure) out.destroy(failure);
    else if (exited && stdoutEnded) out.end();
  };
  child.stdout.on('data', (d: Buffer) => {
    if (!out.write(d)) {
      child.stdout.pause();
      out.once('drain', () => child.stdout.resume());
    }
  });
  child.stdout.on('end', () => {
    stdoutEnded = true;
    finish();
  });
  child.on('error', (e: NodeJS.ErrnoException) => {
    failure =
      e.code === 'ENOENT'
        ? new AirlockError('not-found', `${cmd}: command not found`, { hint: `install ${cmd} (Debian: apt-get install ${cmd})` })
        : e;
    finish();
  });
  child.on('close', (code, sig) => {
    exited = true;
    if (code !== 0 && !failure) {
      const last = stderr.trim().split('\n').at(-1) ?? '';
      failure = new AirlockError('child-failed', `${cmd} ${sig ? `was killed by ${sig}` : `exited with status ${code}`}${last ? `: ${last}` : ''}`);
    }
    finish();
  });
  // an early close of our input (EPIPE) is reported through the exit status instead
  child.stdin.on('error', () => {});
  return Duplex.from({ writable: child.stdin, readable: out });
}
