/*
 * What every command shares: how errors are printed (manifests/print-error.ts: `airlock: error: ...`
 * then `airlock: hint: ...` on stderr, stdout kept for data), and progress on a TTY. Options are read
 * in options.ts.
 */
import { fstatSync } from 'node:fs';
import path from 'node:path';
import { AirlockError } from '../../manifests/errors.js';
import { escapeText } from '../../manifests/escape.js';
import { printError as printErrorOf } from '../../manifests/print-error.js';
import { human } from '../../verifier/human.js';
import type { BundleReport } from '../../verifier/verify.js';

/**
 * Prints an error as `airlock` (as one JSON object with `json`) and returns its exit code; under the
 * journal its lines carry the error priority.
 */
export function printError(e: unknown, json = false): number {
  return printErrorOf('airlock', e, json, JOURNAL ? '<3>' : '');
}

/**
 * Whether stderr is the systemd journal: systemd names the stream it connected in JOURNAL_STREAM
 * (`device:inode`), and only a match counts (a child of the service may have stderr elsewhere).
 * There a `<N>` prefix sets a line's priority (sd-daemon(3)): errors 3, warnings 4, the rest info.
 */
function underJournal(): boolean {
  const m = /^(\d+):(\d+)$/.exec(process.env.JOURNAL_STREAM ?? '');
  if (!m) return false;
  try {
    const st = fstatSync(2, { bigint: true });
    return String(st.dev) === m[1] && String(st.ino) === m[2];
  } catch {
    return false;
  }
}
const JOURNAL = underJournal();

/**
 * One line for people on stderr, `airlock: LINE`. Lines quote names and messages from media, tars,
 * buckets and servers (a source setting, a finding's file, a server's log), so the whole line goes
 * through escapeText.
 */
export function note(line: string): void {
  process.stderr.write(`${JOURNAL && line.startsWith('warning:') ? '<4>' : ''}airlock: ${escapeText(line)}\n`);
}

/** Says whether the bundle a restore takes verified, or is damaged and will be repaired from its recovery data. */
export function announceBundle(bundle: BundleReport): void {
  const name = path.basename(bundle.path);
  if (bundle.findings.length > 0)
    note(`${name} is damaged on the medium (${bundle.findings.map((f) => `${f.result} ${f.file}`).join(', ')}); repairing from its recovery data`);
  else note(`${name} verified (signed by ${bundle.signer}); restoring`);
}

/**
 * Runs `work` with an AbortSignal that SIGINT and SIGTERM fire; an abort surfaces as `interrupted`
 * once `work` has cleaned up (removed its partial output, or left what a rerun resumes from, which
 * `message` then says) and returned.
 */
export async function interruptible<T>(work: (signal: AbortSignal) => Promise<T>, message = 'interrupted; nothing half-written was left'): Promise<T> {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    return await work(controller.signal);
  } catch (e) {
    if (controller.signal.aborted) throw new AirlockError('interrupted', message, { cause: e });
    throw e;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

/**
 * A progress line on stderr when it is a TTY, silent otherwise: bytes and rate, and with a known
 * `total` the share done and the time left.
 */
export function progressReporter(label: string, total?: number): { update: (bytes: number) => void; done: () => void } {
  if (!process.stderr.isTTY) return { update: () => {}, done: () => {} };
  const start = Date.now();
  let last = 0;
  let shown = false;
  return {
    update: (bytes) => {
      const now = Date.now();
      if (now - last < 250) return;
      last = now;
      shown = true;
      const rate = bytes / Math.max((now - start) / 1000, 0.001);
      const left =
        total !== undefined && total > 0 && rate > 0
          ? `, ${Math.min(100, (bytes / total) * 100).toFixed(0)}%, ${eta(Math.max(0, total - bytes) / rate)} left`
          : '';
      process.stderr.write(`\r${label}: ${human(bytes)}${total !== undefined ? ` of ${human(total)}` : ''} at ${human(rate)}/s${left}\x1b[K`);
    },
    done: () => {
      if (shown) process.stderr.write('\n');
    },
  };
}

function eta(seconds: number): string {
  if (seconds < 90) return `${Math.ceil(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export { human };

/**
 * A tiny argument parser for the commands PostgreSQL runs once per WAL file (wal-push, wal-fetch):
 * they must start without loading commander. Takes exactly `positionals` plain arguments and
 * `--name VALUE` or `--name=VALUE` for each name in `options`, each at most once. Throws `usage`.
 */
export function parseSimpleArgs(
  command: string,
  args: readonly string[],
  positionals: number,
  options: readonly string[],
  booleans: readonly string[] = [],
): { positional: string[]; options: Map<string, string | true> } {
  const positional: string[] = [];
  const opts = new Map<string, string | true>();
  const hint = `see airlock ${command} --help`;
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a.startsWith('--') && a.length > 2) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      if (!options.includes(name)) throw new AirlockError('usage', `unknown option --${name}`, { hint });
      if (booleans.includes(name)) {
        if (eq >= 0) throw new AirlockError('usage', `--${name} takes no value`, { hint });
        opts.set(name, true);
        continue;
      }
      const value = eq < 0 ? args[++i] : a.slice(eq + 1);
      if (value === undefined || value === '') throw new AirlockError('usage', `--${name} needs a value`, { hint });
      if (opts.has(name)) throw new AirlockError('usage', `--${name} given twice`, { hint });
      opts.set(name, value);
    } else if (a === '--') {
      positional.push(...args.slice(i + 1));
      break;
    } else {
      positional.push(a);
    }
  }
  if (positional.length !== positionals) throw new AirlockError('usage', `${command} takes ${positionals} argument(s), got ${positional.length}`, { hint });
  return { positional, options: opts };
}
