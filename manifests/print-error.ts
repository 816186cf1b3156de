/*
 * How `airlock` and `airlock-verify` end on an error, the one way: on stderr (stdout is for data only)
 *
 *   <tool>: error: <message>
 *   <tool>: hint: <what to do>
 *
 * or, with --json, one JSON object on one line: {"code":...,"message":...,"hint":...,"exit":...},
 * `hint` null when there is none. Messages quote names from media, tars, buckets and servers, so the
 * text goes through escapeText; JSON carries the exact strings. Anything that is not an AirlockError
 * is a bug: code `internal`, its stack in the message.
 */
import { AirlockError, EXIT, type Code, type ExitCode } from './errors.js';
import { escapeStack, escapeText } from './escape.js';

/** What --json prints for an error. */
export interface ErrorJson {
  code: Code;
  message: string;
  hint: string | null;
  exit: ExitCode;
}

const BUG_HINT = 'this is a bug; please report it with the lines above';

export function errorJson(e: unknown): ErrorJson {
  if (e instanceof AirlockError) return { code: e.code, message: e.message, hint: e.hint ?? null, exit: e.exitCode };
  const text = e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : String(e);
  return { code: 'internal', message: `internal error: ${text}`, hint: BUG_HINT, exit: EXIT.internal };
}

/**
 * The lines printed for `e` by `tool`, with their LFs. `priority` goes before the error and the hint
 * line (`<3>`, the error priority, when stderr is the systemd journal).
 */
export function formatError(tool: string, e: unknown, json: boolean, priority = ''): string {
  if (json) return `${priority}${JSON.stringify(errorJson(e))}\n`;
  const lead = `${priority}${tool}:`;
  if (!(e instanceof AirlockError)) return `${lead} error: internal error: ${escapeStack(e)}\n${lead} hint: ${BUG_HINT}\n`;
  return `${lead} error: ${escapeText(e.message)}\n${e.hint ? `${lead} hint: ${escapeText(e.hint)}\n` : ''}`;
}

/** Prints `e` on stderr (see the top of this file and formatError) and returns its exit code. */
export function printError(tool: string, e: unknown, json = false, priority = ''): ExitCode {
  process.stderr.write(formatError(tool, e, json, priority));
  return errorJson(e).exit;
}

/** Whether a command line asks for JSON output: `--json` before any `--`. */
export function wantsJson(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).includes('--json');
}
