/*
 * Shell text airlock writes for people and for PostgreSQL: the commands in RESTORE.txt, the
 * verifier's report and the runbook, and restore_command (which PostgreSQL runs through /bin/sh).
 * A word that holds only characters no POSIX shell treats specially is written as it is, so the
 * common case stays readable; any other word is single-quoted, inside which a POSIX shell takes
 * every byte literally (newlines and control bytes included) except the quote itself, written as
 * '\''. Shell text is data: whoever shows it on a terminal escapes it there (escapeText).
 */
import { AirlockError } from './errors.js';

/** Characters no POSIX shell expands, splits on or globs; a word of only these needs no quotes. */
const PLAIN = /^[A-Za-z0-9_./:=@%+,-]+$/;

/**
 * `s` as one POSIX shell word that denotes exactly `s`. A word that starts with `-` is quoted too,
 * though quoting does not stop a program reading it as an option: a caller that passes a name as
 * an operand puts `--` before it. Throws `internal` for a NUL, which no argument can hold.
 */
export function shellQuote(s: string): string {
  if (s.includes('\0')) throw new AirlockError('internal', 'a shell word cannot hold a NUL byte');
  if (PLAIN.test(s) && !s.startsWith('-')) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
