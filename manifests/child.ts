/*
 * The one way airlock runs another program (zstd, par2, psql, pg_dump, pg_ctl, pg_restore): an
 * argument list, never a shell string; the last few KiB of its stderr kept for the error message;
 * its exit status checked by the caller, since a pipeline's last exit code must never hide an
 * earlier failure. Every spawn goes through startChild, so a missing program is always `not-found`
 * with an install hint and a fired AbortSignal always `interrupted`.
 *
 *   runChild    to completion: input fed from files or chunks, stdout handed over or captured
 *   childStage  as one stage of a stream pipeline (zstd between tar and age)
 *   startChild  spawned, for a caller that consumes stdout itself (pg_dump's output cut into parts)
 *
 * It lives in manifests/ because the verifier decompresses through childStage and may not import
 * from agent/.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { Duplex, PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AirlockError } from './errors.js';

/** How much of a child's stderr is kept: enough for its last lines, never its whole output. */
const STDERR_TAIL = 8192;

export interface ChildOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  /** runs the program as this user (a restore run as root runs PostgreSQL's programs as the data folder's owner) */
  owner?: { uid: number; gid: number };
  /** the hint of the `not-found` error; by default, installing the Debian package named like the program */
  install?: string;
}

/** How a child ended. */
export interface ChildExit {
  /** null when it was killed by a signal */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** the last few KiB of its stderr */
  stderr: string;
}

export interface Started {
  child: ChildProcess;
  /**
   * Settles when the child exited: resolves whatever its exit status; rejects with `not-found` when
   * the program is missing, `interrupted` when the signal fired, the system error otherwise.
   */
  exit: Promise<ChildExit>;
}

/** Spawns `cmd args` with stdin piped when `stdin` is true (ignored otherwise), stdout and stderr piped. */
export function startChild(cmd: string, args: readonly string[], opts: ChildOptions & { stdin?: boolean } = {}): Started {
  const child = spawn(cmd, args, {
    stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.owner ? { uid: opts.owner.uid, gid: opts.owner.gid } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    stderr = (stderr + d).slice(-STDERR_TAIL);
  });
  // an early close of the child's input (EPIPE) is reported through its exit status instead
  child.stdin?.on('error', () => {});
  const exit = new Promise<ChildExit>((resolve, reject) => {
    child.on('error', (e: NodeJS.ErrnoException) => reject(spawnError(cmd, e, opts.install)));
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
  // awaited by every caller; a failure while the caller is busy with stdout surfaces there
  exit.catch(() => {});
  return { child, exit };
}

function spawnError(cmd: string, e: NodeJS.ErrnoException, install: string | undefined): Error {
  if (e.code === 'ENOENT') {
    const name = path.basename(cmd);
    return new AirlockError('not-found', `${cmd}: command not found`, { hint: install ?? `install ${name} (Debian: apt-get install ${name})` });
  }
  if (e.name === 'AbortError') return new AirlockError('interrupted', `${cmd} was stopped`, { cause: e });
  return e;
}

export interface RunOptions extends ChildOptions {
  /** fed to the child's stdin, which is closed at the end; without it the child gets no stdin */
  input?: Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
  /** receives stdout as it comes; without it (and without `capture`) stdout is discarded */
  onStdout?: (chunk: Buffer) => void;
  /** keeps the whole stdout in the result: only for programs whose output is known to be small */
  capture?: boolean;
}

export interface RunResult extends ChildExit {
  /** the child's stdout when `capture` was set, else empty */
  stdout: Buffer;
}

/**
 * Runs `cmd args` to completion and resolves with how it ended, whatever its exit status (see
 * childFailed). Rejects with `not-found`, `interrupted`, or the error that stopped feeding `input`
 * to a child that exited 0.
 */
export async function runChild(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const { child, exit } = startChild(cmd, args, { ...opts, stdin: opts.input !== undefined });
  const out: Buffer[] = [];
  child.stdout?.on('data', (d: Buffer) => {
    opts.onStdout?.(d);
    if (opts.capture) out.push(d);
  });
  const sent =
    opts.input && child.stdin
      ? pipeline(Readable.from(opts.input), child.stdin).then(
          () => undefined,
          (e: unknown) => e as Error,
        )
      : undefined;
  const ended = await exit;
  const sendError = await sent;
  // a child that stopped reading and failed says why in its exit status; one that exited 0 without
  // reading all of its input did not do its job
  if (sendError !== undefined && ended.code === 0) throw sendError;
  return { ...ended, stdout: Buffer.concat(out) };
}

/**
 * The `child-failed` error for a child that did not exit 0: its name, its exit status or signal,
 * and its last stderr line (its last `lines` lines, joined, for a program whose message spans lines).
 */
export function childFailed(cmd: string, exit: ChildExit, opts: { hint?: string; lines?: number } = {}): AirlockError {
  const last = lastLines(exit.stderr, opts.lines ?? 1);
  const how = exit.signal ? `was killed by ${exit.signal}` : `exited with status ${exit.code}`;
  return new AirlockError('child-failed', `${cmd} ${how}${last ? `: ${last}` : ''}`, opts.hint !== undefined ? { hint: opts.hint } : {});
}

/** The last non-empty line of a program's output, for an error message. */
export function lastLine(text: string): string {
  return lastLines(text, 1);
}

function lastLines(text: string, n: number): string {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .slice(-n)
    .join(' / ');
}

/**
 * Returns a Duplex that feeds its input to `cmd args` and yields the child's stdout. Errors with
 * `child-failed` (exit status and the child's last stderr line), `not-found` when `cmd` is missing,
 * `interrupted` when `signal` fires.
 */
export function childStage(cmd: string, args: readonly string[], signal?: AbortSignal): Duplex {
  const { child, exit } = startChild(cmd, args, { stdin: true, ...(signal ? { signal } : {}) });
  const stdin = child.stdin;
  const stdout = child.stdout;
  if (!stdin || !stdout) throw new AirlockError('internal', `${cmd} was spawned without pipes`);
  // stdout goes through a PassThrough so the readable side ends only after the exit status is known
  const out = new PassThrough({ highWaterMark: 1024 * 1024 });
  let exited = false;
  let stdoutEnded = false;
  let failure: Error | undefined;
  const finish = () => {
    if (failure) out.destroy(failure);
    else if (exited && stdoutEnded) out.end();
  };
  stdout.on('data', (d: Buffer) => {
    if (!out.write(d)) {
      stdout.pause();
      out.once('drain', () => stdout.resume());
    }
  });
  stdout.on('end', () => {
    stdoutEnded = true;
    finish();
  });
  exit.then(
    (ended) => {
      exited = true;
      if (ended.code !== 0 && !failure) failure = childFailed(cmd, ended);
      finish();
    },
    (e: unknown) => {
      failure = e instanceof Error ? e : new Error(String(e));
      finish();
    },
  );
  return Duplex.from({ writable: stdin, readable: out });
}
