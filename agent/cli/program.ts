/*
 * airlock: the appliance agent and the restore side. One command per file in this folder; this file
 * puts them together, prints errors the one way (manifests/print-error.ts, as JSON when --json is
 * given, commander's usage errors included), and appends the exit-code table to every help.
 * main.ts loads it for every command except the per-WAL-file ones (wal-push, wal-fetch).
 */
import { Command, CommanderError } from 'commander';
import { AirlockError, EXIT, formatExitTable } from '../../manifests/errors.js';
import { wantsJson } from '../../manifests/print-error.js';
import { VERSION } from '../../manifests/version.js';
import { printError } from './common.js';
import { register as registerCheck } from './check.js';
import { register as registerDrill } from './drill.js';
import { register as registerExport } from './export.js';
import { register as registerKeygen } from './keygen.js';
import { register as registerMedia } from './media.js';
import { register as registerRestore } from './restore.js';
import { register as registerRestoreObjects } from './restore-objects.js';
import { register as registerRestorePg } from './restore-pg.js';
import { register as registerStandby } from './standby.js';
import { register as registerStatus } from './status.js';
import { register as registerPrune } from './prune.js';
import { register as registerRun } from './run.js';
import { register as registerRunbook } from './runbook.js';
import { register as registerWalFetch } from './wal-fetch.js';
import { register as registerWalIngest } from './wal-ingest.js';
import { register as registerWalPush } from './wal-push.js';

/** `airlock media list` for the command `list` under `media`. */
function commandPath(c: Command): string {
  return c.parent ? `${commandPath(c.parent)} ${c.name()}` : c.name();
}

/**
 * The whole command tree. `usageError` receives commander's own errors (unknown option, missing
 * argument) as an AirlockError; by default they are printed as text.
 */
export function buildProgram(usageError: (e: AirlockError) => void = (e) => printError(e)): Command {
  const program = new Command('airlock')
    .description('Backs up PostgreSQL, S3 buckets and config files into encrypted, signed bundles on removable media')
    .version(VERSION, '--version')
    .showHelpAfterError(false);
  registerKeygen(program);
  registerExport(program);
  registerCheck(program);
  const restore = registerRestore(program);
  registerRestoreObjects(restore);
  registerMedia(program);
  registerRestorePg(restore);
  registerDrill(program);
  registerStandby(program);
  registerStatus(program);
  registerPrune(program);
  registerRun(program);
  registerRunbook(program);
  registerWalPush(program);
  registerWalIngest(program);
  registerWalFetch(program);
  const configure = (c: Command) => {
    c.exitOverride();
    c.configureOutput({
      writeErr: (s) => {
        if (!s.startsWith('error: ')) return process.stderr.write(s);
        usageError(new AirlockError('usage', s.slice('error: '.length).trimEnd(), { hint: `see ${commandPath(c)} --help` }));
        return true;
      },
    });
    c.addHelpText('after', `\n${formatExitTable()}\n`);
    for (const sub of c.commands) configure(sub);
  };
  configure(program);
  return program;
}

/** Parses `argv` (process.argv) and runs the command; returns the exit code. */
export async function runProgram(argv: readonly string[]): Promise<number> {
  const json = wantsJson(argv.slice(2));
  try {
    await buildProgram((e) => printError(e, json)).parseAsync([...argv]);
    // a command with exit codes of its own (status: Nagios levels) leaves them in process.exitCode
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return EXIT.ok;
      return EXIT.usage;
    }
    return printError(e, json);
  }
}
