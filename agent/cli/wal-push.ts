/*
 * airlock wal-push: PostgreSQL's archive_command. It runs as the database's OS user, once per WAL
 * segment, so it does one thing: copy the file durably into the spool with its sha256 sidecar, and
 * exit 0 only when both are on disk. It takes no lock, never waits for an export and never opens the
 * catalog; the agent checks and ingests the spool later as its own user.
 *
 *   archive_command = 'airlock wal-push %p --spool /var/spool/airlock-wal'
 *
 * main.ts loads this module alone, before commander, because it runs for every 16 MiB of WAL.
 */
import type { Command } from 'commander';
import { AirlockError } from '../../manifests/errors.js';
import { pushToSpool } from '../spool.js';
import { parseSimpleArgs, printError } from './common.js';
import { command, flagNames, resolveOptions } from './options.js';

/** The spool: --spool or the config's `spool` (resolved), else AIRLOCK_SPOOL. Throws `usage` when none is set. */
export function resolveSpool(resolved: string | undefined): string {
  const spool = resolved ?? process.env.AIRLOCK_SPOOL;
  if (spool === undefined || spool === '') {
    throw new AirlockError('usage', 'no wal spool given', { hint: 'give --spool DIR, spool = DIR in --config, or AIRLOCK_SPOOL' });
  }
  return spool;
}

/** Runs wal-push on its arguments (after the command name); returns the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  try {
    const a = parseSimpleArgs('wal-push', args, 1, flagNames('wal-push'));
    const flags = resolveOptions<{ spool?: string }>('wal-push', Object.fromEntries(a.options));
    pushToSpool(a.positional[0] as string, resolveSpool(flags.spool));
    return 0;
  } catch (e) {
    return printError(e);
  }
}

export function register(program: Command): void {
  command(program, 'wal-push', "archive_command: copy one WAL file (PostgreSQL's %p) durably into the spool with its sha256")
    .argument('<path>', "the WAL file, as PostgreSQL's %p")
    .action(async () => {
      // normally main.ts runs this before commander loads; same code either way
      const code = await main(process.argv.slice(3));
      if (code !== 0) process.exit(code);
    });
}
