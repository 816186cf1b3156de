/*
 * airlock restore files: verify first, then decrypt and lay out a bundle's config and secret files.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { parseIdentities } from '../../manifests/age/keys.js';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import { restoreFiles } from '../restore/files.js';
import { pickVerifiedBundle } from '../restore/pick.js';
import { withRepairedBundle } from '../restore/repair.js';
import { refuseUnsafeTarget } from '../restore/staging.js';
import { announceBundle, interruptible, note, progressReporter, withRecoverySettings, type Unresolved } from './common.js';

interface RestoreFlags {
  from: string;
  identity: string;
  allowedSigners: string;
  to: string;
  site?: string;
  seq?: string;
  json?: boolean;
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw fromSystemError(e, file);
  }
}

async function restoreFilesCommand(flags: RestoreFlags): Promise<void> {
  const seq = flags.seq === undefined || !/^[1-9]\d{0,15}$/.test(flags.seq) ? undefined : Number(flags.seq);
  if (flags.seq !== undefined && seq === undefined) throw new AirlockError('usage', `--seq ${flags.seq}: not a bundle number`);
  await refuseUnsafeTarget(flags.to);
  const identities = parseIdentities(await readText(flags.identity));
  const bundle = await pickVerifiedBundle(flags.from, flags.allowedSigners, flags.site, seq, undefined, { allowRepair: true });
  announceBundle(bundle);
  const progress = progressReporter('airlock: restore files', bundle.manifest?.payload.size);
  let read = 0;
  const s = await interruptible((signal) => withRepairedBundle(bundle, flags.to, (b) => restoreFiles(b, identities, flags.to, { signal, onBytes: (n) => progress.update((read += n)), notes: note }), { signal, notes: note }));
  progress.done();
  s.bundle = bundle.path;
  for (const k of s.skipped) note(`warning: ${k}`);
  if (flags.json) process.stdout.write(`${JSON.stringify(s)}\n`);
  else {
    process.stderr.write(`airlock: restored ${s.files} file(s), ${s.dirs} folder(s), ${s.symlinks} symbolic link(s), ${s.hardlinks} hard link(s) from seq ${s.seq}\n`);
    process.stdout.write(`${s.to}\n`);
  }
}

/** Adds `restore files` to the `restore` command. */
export function register(restore: Command): void {
  restore
    .command('files')
    .description('restore the config and secret files of a bundle into an empty folder')
    .option('--from <path>', 'a bundle, or a folder holding bundles (the newest is used)')
    .option('--identity <file>', 'the age identity file of the recovery site')
    .option('--allowed-signers <file>', 'OpenSSH allowed_signers naming the site key')
    .option('--config <file>', 'read medium, identity and allowed-signers from this config file (flags win)')
    .requiredOption('--to <dir>', 'a new or empty folder; files go to DIR/<original path>')
    .option('--site <site>', 'the site, when the folder holds bundles of several')
    .option('--seq <n>', 'restore this bundle instead of the newest')
    .option('--json', 'print the result as JSON')
    .action((flags: Unresolved<RestoreFlags>) => restoreFilesCommand(withRecoverySettings(flags)));
}
