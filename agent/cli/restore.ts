/*
 * airlock restore files: verify first, then decrypt and lay out a bundle's config and secret files.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { parseIdentities } from '../../manifests/age/keys.js';
import { fromSystemError } from '../../manifests/errors.js';
import { restoreFiles } from '../restore/files.js';
import { pickVerifiedBundle } from '../restore/pick.js';
import { withRepairedBundle } from '../restore/repair.js';
import { refuseUnsafeTarget } from '../restore/staging.js';
import { announceBundle, interruptible, note, progressReporter } from './common.js';
import { command, resolveOptions, type Flags } from './options.js';

interface RestoreFlags {
  from: string[];
  identity: string;
  allowedSigners: string;
  to: string;
  site?: string;
  seq?: number;
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
  await refuseUnsafeTarget(flags.to);
  const identities = parseIdentities(await readText(flags.identity));
  const bundle = await pickVerifiedBundle(flags.from, flags.allowedSigners, flags.site, flags.seq, undefined, { allowRepair: true });
  announceBundle(bundle);
  const progress = progressReporter('airlock: restore files', bundle.manifest?.payload.size);
  let read = 0;
  const s = await interruptible((signal) =>
    withRepairedBundle(bundle, flags.to, (b) => restoreFiles(b, identities, flags.to, { signal, onBytes: (n) => progress.update((read += n)), notes: note }), {
      signal,
      notes: note,
    }),
  );
  progress.done();
  s.bundle = bundle.path;
  for (const k of s.skipped) note(`warning: ${k}`);
  if (flags.json) process.stdout.write(`${JSON.stringify(s)}\n`);
  else {
    process.stderr.write(
      `airlock: restored ${s.files} file(s), ${s.dirs} folder(s), ${s.symlinks} symbolic link(s), ${s.hardlinks} hard link(s) from seq ${s.seq}\n`,
    );
    process.stdout.write(`${s.to}\n`);
  }
}

/** Adds `restore` and its `restore files`; restore-objects.ts and restore-pg.ts add theirs under it. */
export function register(program: Command): Command {
  const restore = program.command('restore').description('verify, then restore from bundles');
  command(restore, 'restore files', 'restore the config and secret files of a bundle into an empty folder').action((flags: Flags) =>
    restoreFilesCommand(resolveOptions<RestoreFlags>('restore files', flags)),
  );
  return restore;
}
