/*
 * The table of options (agent/options.ts) is the one declaration: every command's --help lists
 * exactly the options the table gives it, the README's table documents each of them (and nothing
 * else), the config file knows exactly the table's keys, and a value is checked by its kind
 * whether it comes from a flag or from the file.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildProgram } from '../../agent/cli/program.js';
import { flagNames } from '../../agent/cli/options.js';
import { parseConfig } from '../../agent/config.js';
import { AirlockError, EXIT } from '../../manifests/errors.js';
import { KINDS, OPTIONS, optionsOf, type CommandPath, type OptionSpec } from '../../agent/options.js';
import { ROOT } from '../helpers.js';

/** Every command that runs (not a group such as `restore`), by its path. */
function leaves(cmd: Command, prefix: string[] = []): [string, Command][] {
  return cmd.commands.flatMap((c) => {
    const p = [...prefix, c.name()];
    return c.commands.length > 0 ? leaves(c, p) : [[p.join(' '), c] as [string, Command]];
  });
}

const program = buildProgram();
const commands = leaves(program);
const PATHS = commands.map(([p]) => p as CommandPath);

/** What `airlock ... --help` prints, the text added after the options included. */
function fullHelp(cmd: Command): string {
  let out = '';
  cmd.configureOutput({ writeOut: (s) => void (out += s) });
  cmd.outputHelp();
  return out;
}

/** The long flags in the Options section of a help text. */
function helpFlags(help: string): string[] {
  const section = help.split('\nOptions:\n')[1]?.split('\n\n')[0] ?? '';
  return [...section.matchAll(/^ {2}(?:-\w, )?--([a-z0-9-]+)/gm)].map((m) => m[1] as string).sort();
}

test('the table names exactly the commands the program has', () => {
  const inTable = new Set(OPTIONS.flatMap((o) => Object.keys(o.commands)));
  assert.equal([...inTable].sort(), [...PATHS].sort());
  assert.ok(PATHS.length >= 17);
});

test('--help of every command lists exactly its options from the table, and the config keys it reads', () => {
  for (const [p, cmd] of commands) {
    const help = fullHelp(cmd);
    assert.equal(helpFlags(help), [...flagNames(p as CommandPath), 'help'].sort(), p);
    const keys = [...new Set(optionsOf(p as CommandPath).flatMap((t) => (t.key === undefined ? [] : [t.key])))];
    const listed = /Config file keys \(--config FILE; a flag given wins\):\n((?: {2}.*\n?)+)/.exec(help)?.[1];
    assert.equal(listed?.trim().split(/,\s+/) ?? [], keys, p);
  }
  // the check can fail: a help with an option the table does not give
  assert.equal(helpFlags('Usage: x\n\nOptions:\n  --to <dir>  x\n  -h, --help  y\n\nmore'), ['help', 'to']);
});

test('no command takes a flag or a config key twice; options that share a key read its values alike', () => {
  for (const p of PATHS) {
    const taken = optionsOf(p);
    const flags = taken.flatMap((t) => (t.flag === undefined ? [] : [t.flag]));
    const keys = taken.flatMap((t) => (t.key === undefined ? [] : [t.key]));
    const names = taken.map((t) => t.name);
    assert.is(new Set(flags).size, flags.length, p);
    assert.is(new Set(keys).size, keys.length, p);
    assert.is(new Set(names).size, names.length, p);
  }
  // one kind, as one value or a list of them (medium: one for export and the restores, the list for run)
  const whatOf = new Map<string, string>();
  for (const o of OPTIONS) {
    if (o.key === undefined) continue;
    assert.is(whatOf.get(o.key) ?? KINDS[o.kind].what, KINDS[o.kind].what, o.key);
    whatOf.set(o.key, KINDS[o.kind].what);
  }
  // every default is a value of its option's kind
  for (const o of OPTIONS) if (o.default !== undefined) assert.ok(KINDS[o.kind].parse(o.default) !== undefined, `${o.flag ?? o.key} default ${o.default}`);
});

/** How the README writes the commands that take an option. */
function commandsCell(o: OptionSpec): string[] {
  const entries = Object.entries(o.commands);
  if (entries.length === PATHS.length && entries.every(([, use]) => use.source === undefined)) return ['every command'];
  return entries
    .map(
      ([c, use]) =>
        `${c}${o.flag !== undefined && o.key !== undefined && use.source === 'flag' ? ' (flag only)' : o.flag !== undefined && use.source === 'file' ? ' (file only)' : ''}`,
    )
    .sort();
}

const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

test("the README's table documents every option and key of the table, and nothing else", () => {
  const section = readme.split('### Options and config keys')[1]?.split('\n### ')[0] ?? '';
  const rows = section.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| option') && !l.startsWith('| ---'));
  const code = (cell: string) => cell.replace(/^`|`$/g, '');
  const documented = rows.map((r) => {
    const [option = '', key = '', cmds = '', def = ''] = r
      .slice(2)
      .split(' | ')
      .map((c) => c.trim());
    return JSON.stringify([code(option), code(key), cmds.split(', ').sort(), code(def)]);
  });
  const declared = OPTIONS.map((o) => JSON.stringify([o.flag !== undefined ? `--${o.flag}` : '', o.key ?? '', commandsCell(o), o.default ?? '']));
  assert.equal(
    documented.filter((d) => !declared.includes(d)),
    [],
    'documented in the README, not in the table (or different there)',
  );
  assert.equal(
    declared.filter((d) => !documented.includes(d)),
    [],
    'in the table, missing from the README (or different there)',
  );
  assert.is(documented.length, declared.length);
});

test('the config file knows exactly the keys of the table; an unknown key is refused with its line', () => {
  const keys = [...new Set(OPTIONS.flatMap((o) => (o.key === undefined ? [] : [o.key])))];
  const text = keys.map((k) => {
    const o = OPTIONS.find((x) => x.key === k) as OptionSpec;
    const sample: Record<string, string> = {
      site: 'plant-7',
      recipient: `age1${'q'.repeat(58)}`,
      's3-endpoint': 'http://127.0.0.1:7480',
      's3-region': 'us-east-1',
      's3-addressing': 'path',
    };
    return `${k} = ${sample[k] ?? o.default ?? ({ flag: 'true', share: '5', copies: '2', seconds: '30', duration: '1h', percent: '20%', volumeSize: '1G', compression: 'none' } as Record<string, string>)[o.kind] ?? '/x'}`;
  });
  const config = parseConfig(text.join('\n'), 'f.conf');
  assert.equal([...config.keys()].sort(), [...keys].sort());
  try {
    parseConfig('site = plant-7\ncolour = blue\n', 'f.conf');
    assert.unreachable('an unknown key was accepted');
  } catch (e) {
    assert.instance(e, AirlockError);
    assert.is((e as AirlockError).code, 'config-invalid');
    assert.match((e as AirlockError).message, 'f.conf:2: unknown key colour');
  }
});

/** Runs `airlock ARGS` through the program in this process; resolves the error it ends with. */
async function refusal(args: string[]): Promise<AirlockError> {
  try {
    await buildProgram().parseAsync(['node', 'airlock', ...args]);
  } catch (e) {
    assert.instance(e, AirlockError, String(e));
    return e as AirlockError;
  }
  throw new Error(`airlock ${args.join(' ')} was accepted`);
}

test('a numeric option that is not a number is a usage error naming it, from a flag or from the file', async () => {
  const cases: [string[], string][] = [
    [['restore', 'files', '--seq', 'abc'], '--seq abc: not a bundle number'],
    [['restore', 'objects', '--seq', 'NaN'], '--seq NaN: not a bundle number'],
    [['restore', 'pg', '--seq', '0'], '--seq 0: not a bundle number'],
    [['restore', 'pg', '--port', '65536'], '--port 65536: not a port'],
    [['restore', 'pg', '--timeout', '1e3'], '--timeout 1e3: not a number of seconds'],
    [['drill', '--timeout', '-5'], '--timeout -5: not a number of seconds'],
    [['check', '--max-archive-timeout', 'soon'], '--max-archive-timeout soon: not a number of seconds'],
    [['prune', '--min-copies', '2.5'], '--min-copies 2.5: not a number of media from 1 to 99'],
    [['prune', '--retention', 'forever'], '--retention forever: not a duration'],
    [['export', '--volume-size', '512K'], '--volume-size 512K: not a size of at least 1M'],
    [['export', '--recovery-percent', '101'], '--recovery-percent 101: not a whole number from 1 to 100'],
    [['export', '--wal-timeout', ''], '--wal-timeout : not a number of seconds'],
    [['export', '--compress', 'lz4'], '--compress lz4: not zstd or none'],
  ];
  for (const [args, message] of cases) {
    const e = await refusal(args);
    assert.is(e.code, 'usage', args.join(' '));
    assert.is(e.exitCode, EXIT.usage);
    assert.match(e.message, message);
    assert.match(e.hint ?? '', `see airlock ${args[0] === 'restore' ? `restore ${args[1]}` : args[0]} --help`);
  }
  // the same kinds check the file's values, every bad line at once
  try {
    parseConfig('min-copies = abc\nwal-timeout = NaN\nvolume-size = 10\nretention = 0d\n', 'f.conf');
    assert.unreachable('bad numbers were accepted');
  } catch (e) {
    assert.is((e as AirlockError).code, 'config-invalid');
    for (const want of [
      'f.conf:1: min-copies: not a number of media',
      'f.conf:2: wal-timeout: not a number of seconds',
      'f.conf:3: volume-size: not a size',
      'f.conf:4: retention: not a duration',
    ])
      assert.match((e as AirlockError).message, want);
  }
});

test('a required option missing from the flags and the file is a usage error with its hint', async () => {
  const e = await refusal(['restore', 'files', '--identity', 'id.txt', '--allowed-signers', 'as', '--to', 'out']);
  assert.is(e.code, 'usage');
  assert.is(e.message, '--from is required');
  assert.match(e.hint ?? '', 'medium = ... in the file given with --config');
});

test.run();
