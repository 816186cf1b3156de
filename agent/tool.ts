/*
 * Running a stock tool to completion (par2, dd): an argument list, never a shell string; its exit
 * status checked; its stdout handed to the caller as it comes, so nothing is held in memory whole.
 */
import { spawn } from 'node:child_process';
import { AirlockError } from '../manifests/errors.js';

export interface ToolOptions {
  cwd?: string;
  signal?: AbortSignal;
  /** receives stdout; without it stdout is discarded */
  onStdout?: (chunk: Buffer) => void;
}

export interface ToolResult {
  code: number;
  /** the last 4 KiB of stderr */
  stderr: string;
}

/**
 * Runs `cmd args` and resolves with its exit status and stderr, whatever the status. Rejects with
 * `not-found` (with an install hint) when the tool is missing, `interrupted` when `signal` fires.
 */
export function runTool(cmd: string, args: readonly string[], opts: ToolOptions = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(opts.cwd ? { cwd: opts.cwd } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      stderr = (stderr + d).slice(-4096);
    });
    child.stdout.on('data', (d: Buffer) => opts.onStdout?.(d));
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') reject(new AirlockError('not-found', `${cmd}: command not found`, { hint: `install ${cmd} (Debian: apt-get install ${cmd})` }));
      else if (e.name === 'AbortError') reject(new AirlockError('interrupted', `${cmd} was stopped`, { cause: e }));
      else reject(e);
    });
    child.on('close', (code, sig) => resolve({ code: code ?? 128 + (sig ? 9 : 0), stderr }));
  });
}

/** The last non-empty line of a tool's stderr, for an error message. */
export function lastLine(text: string): string {
  return text.trim().split('\n').map((l) => l.trim()).filter((l) => l !== '').at(-1) ?? '';
}
