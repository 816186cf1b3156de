/*
 * airlock wal-fetch: PostgreSQL's restore_command. Copies WAL file %f from a folder of extracted
 * bundle contents to %p after checking its sha256. Exit 1 means only "absent" (PostgreSQL then ends
 * recovery); every other failure exits above 125 so recovery aborts instead of ending early with
 * data missing (WAL_FETCH_EXIT in manifests/errors.ts).
 *
 *   restore_command = 'airlock wal-fetch %f %p --from /restore/staging/pg/wal'
 *
 * main.ts loads this module alone, before commander: it runs once per segment during recovery, and
 * even a command-line error must exit above 125, which commander's own handling would not.
 */
import type { Command } from 'commander';
import { WAL_FETCH_EXIT, walFetchExitCodeOf } from '../../manifests/errors.js';
import { fetchWal } from '../restore/wal.js';
import { parseSimpleArgs, printError } from './common.js';
import { booleanFlagNames, command, flagNames, resolveOptions } from './options.js';

/** Runs wal-fetch on its arguments (after the command name); returns the exit code (WAL_FETCH_EXIT). */
export async function main(args: readonly string[]): Promise<number> {
  try {
    const a = parseSimpleArgs('wal-fetch', args, 2, flagNames('wal-fetch'), booleanFlagNames('wal-fetch'));
    const { from, sums, standby } = resolveOptions<{ from: string; sums?: string; standby?: boolean }>('wal-fetch', Object.fromEntries(a.options));
    const r = fetchWal(a.positional[0] as string, a.positional[1] as string, {
      from,
      ...(sums !== undefined ? { sums } : {}),
      ...(standby === true ? { standby } : {}),
    });
    return r === 'absent' ? WAL_FETCH_EXIT.absent : WAL_FETCH_EXIT.ok;
  } catch (e) {
    printError(e);
    return walFetchExitCodeOf(e);
  }
}

export function register(program: Command): void {
  command(program, 'wal-fetch', 'restore_command: copy WAL file %f to %p from a folder of extracted bundles, after checking its sha256')
    .argument('<name>', "the WAL file name, PostgreSQL's %f")
    .argument('<target>', "where to write it, PostgreSQL's %p")
    .addHelpText('after', '\nwal-fetch exits 0 when copied, 1 only when the file is absent, 126 when it failed its check, 127 on any other error.')
    .action(async () => {
      process.exit(await main(process.argv.slice(3)));
    });
}
