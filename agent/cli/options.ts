/*
 * The table of options (../options.ts) made into commands: each command's options and --help come
 * from it, and a command's action gets one typed object, each option read from the flag, else the
 * config file, else the default. Values are parsed and checked here, once, by the option's kind;
 * a bad one is a `usage` error (exit 2) naming the option, before the command starts. Commander is
 * only ever passed in: wal-push and wal-fetch use this module without loading it.
 */
import type { Command } from 'commander';
import { AirlockError } from '../../manifests/errors.js';
import { loadConfig, type Config } from '../config.js';
import { KINDS, optionsOf, parseValue, type CommandPath, type Taken } from '../options.js';

function flagsText(t: Taken): string {
  const kind = KINDS[t.spec.kind];
  if ('boolean' in kind) return `--${t.flag}`;
  return `--${t.flag} <${t.spec.arg ?? 'value'}${'list' in kind && kind.list === 'variadic' ? '...' : ''}>`;
}

function helpText(t: Taken): string {
  return `${t.use.help ?? t.spec.help}${t.spec.default !== undefined ? ` (default ${t.spec.default})` : ''}`;
}

/** Adds the command `path` (its last word) under `parent`, with every option the table gives it. */
export function command(parent: Command, path: CommandPath, description: string): Command {
  const cmd = parent.command(path.split(' ').at(-1) as string).description(description);
  const taken = optionsOf(path);
  for (const t of taken) {
    if (t.flag === undefined) continue;
    const kind = KINDS[t.spec.kind];
    const option = cmd.createOption(flagsText(t), helpText(t));
    if ('list' in kind && kind.list === 'repeat') option.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
    else if (!('boolean' in kind) && !('list' in kind)) option.argParser((v: string) => parseValue(t, v, path));
    cmd.addOption(option);
  }
  const keys = [...new Set(taken.flatMap((t) => (t.key !== undefined ? [t.key] : [])))];
  if (keys.length > 0)
    cmd.addHelpText(
      'after',
      `\nConfig file keys (--config FILE; a flag given wins):\n${wrap(keys.join(', '), 76)
        .map((l) => `  ${l}`)
        .join('\n')}`,
    );
  return cmd;
}

/** Lines of at most `width` characters, broken at spaces. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  return [...lines, line];
}

/** The names a command without commander (wal-push, wal-fetch) accepts as --NAME VALUE, or as --NAME alone (`booleans`). */
export function flagNames(path: CommandPath): string[] {
  return optionsOf(path).flatMap((t) => (t.flag !== undefined ? [t.flag] : []));
}

/** The flags of `path` that take no value. */
export function booleanFlagNames(path: CommandPath): string[] {
  return optionsOf(path).flatMap((t) => (t.flag !== undefined && 'boolean' in KINDS[t.spec.kind] ? [t.flag] : []));
}

/** Commander's parsed flags, as an action receives them. */
export type Flags = Readonly<Record<string, unknown>>;

const given = (v: unknown) => v !== undefined && !(Array.isArray(v) && v.length === 0);

function fromConfig(t: Taken, config: Config, path: CommandPath): unknown {
  const values = t.key === undefined ? undefined : config.get(t.key);
  if (values === undefined) return undefined;
  const kind = KINDS[t.spec.kind];
  return 'list' in kind ? values.map((v) => parseValue(t, v, path)) : parseValue(t, values[0] as string, path);
}

/**
 * The options of `path`, typed at this one boundary as `T`: each flag given (parsed by commander
 * through the option's kind), else the config file's value, else the default. Throws `usage` for
 * a required one that is missing, and what loadConfig throws.
 */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the one place the table's values become a command's typed options
export function resolveOptions<T>(path: CommandPath, flags: Flags): T {
  const configFile = flags.config;
  const config: Config = typeof configFile === 'string' ? loadConfig(configFile) : new Map<string, string[]>();
  const out: Record<string, unknown> = { ...flags };
  for (const t of optionsOf(path)) {
    let v = t.flag !== undefined && given(flags[t.name]) ? flags[t.name] : fromConfig(t, config, path);
    if (v === undefined && t.spec.default !== undefined) v = parseValue(t, t.spec.default, path);
    if (v === undefined && t.use.required !== undefined) {
      throw new AirlockError('usage', t.flag !== undefined ? `--${t.flag} is required` : `the config file sets no ${t.key}`, { hint: t.use.required });
    }
    if (v !== undefined) out[t.name] = v;
  }
  return out as T;
}
