/*
 * airlock restore files: verify first, then decrypt and lay out a bundle's config and secret files.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { parseIdentities } from '../../manifests/age/keys.js';
import { parseAllowedSigners } from '../../manifests/allowed-signers.js';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import { allFindings, readAllowedSigners, verifyPaths, type BundleReport } from '../../verifier/verify.js';
import { refuseUnsafeTarget, restoreFiles } from '../restore/files.js';
import { mayRepair, withRepairedBundle } from '../restore/repair.js';
import { announceBundle, interruptible, note, progressReporter } from './common.js';
import { command, resolveOptions, type Flags } from './options.js';

interface RestoreFlags {
  from: string;
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

/**
 * Verifies everything under `from` and picks the bundle to restore: `seq`, or the newest. When
 * `verified` is given, every bundle of the (clean) set is pushed onto it, for restores that need a
 * chain of bundles.
 */
export async function pickVerifiedBundle(from: string, allowedSignersFile: string, site: string | undefined, seq: number | undefined, verified?: BundleReport[], opts: { allowRepair?: boolean; volumes?: 'hash' | 'size' } = {}): Promise<BundleReport> {
  const allowedSigners = parseAllowedSigners(await readAllowedSigners(allowedSignersFile));
  const report = await verifyPaths([from], { allowedSigners, now: new Date(), tool: 'airlock', ...(opts.volumes ? { volumes: opts.volumes } : {}) });
  const sites = [...new Set(report.bundles.map((b) => b.site).filter((s) => s !== undefined))];
  const chosenSite = site ?? (sites.length === 1 ? sites[0] : undefined);
  if (chosenSite === undefined) {
    throw new AirlockError(sites.length === 0 ? 'no-bundle' : 'usage', sites.length === 0 ? `no verifiable bundle under ${from}` : `${from} holds bundles of ${sites.join(', ')}`, {
      hint: sites.length === 0 ? 'run airlock-verify on it to see why' : 'choose one with --site',
    });
  }
  const candidates = report.bundles.filter((b) => b.site === chosenSite && (seq === undefined || b.seq === seq)).sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
  const chosen = candidates.at(-1);
  if (!chosen) throw new AirlockError('no-bundle', `no bundle of ${chosenSite}${seq !== undefined ? ` with seq ${seq}` : ''} under ${from}`);
  // damaged volumes with recovery data beside them: the caller repairs them (withRepairedBundle)
  if (chosen.findings.length > 0 && !(opts.allowRepair === true && (await mayRepair(chosen)))) {
    const lines = chosen.findings.map((f) => `${f.result}${f.file ? ` ${f.file}` : ''}: ${f.message}`).join('; ');
    throw new AirlockError('verification-failed', `${path.basename(chosen.path)} failed verification: ${lines}`, { hint: 'nothing was restored; restore from another copy, or an older bundle with --seq' });
  }
  // verify first means the whole set: a damaged or forked neighbour casts doubt on the medium
  const others = allFindings(report).filter((f) => !chosen.findings.includes(f));
  if (others.length > 0) {
    const lines = others.slice(0, 3).map((f) => `${f.result} ${path.basename(f.bundle)}${f.file ? `/${f.file}` : ''}: ${f.message}`).join('; ');
    throw new AirlockError('verification-failed', `${from} does not verify (${others.length} finding(s)): ${lines}`, {
      hint: `nothing was restored; run airlock-verify for the full list, or give --from ${chosen.path} to restore that bundle alone`,
    });
  }
  verified?.push(...report.bundles.filter((b) => b.site === chosenSite));
  return chosen;
}

async function restoreFilesCommand(flags: RestoreFlags): Promise<void> {
  await refuseUnsafeTarget(flags.to);
  const identities = parseIdentities(await readText(flags.identity));
  const bundle = await pickVerifiedBundle(flags.from, flags.allowedSigners, flags.site, flags.seq, undefined, { allowRepair: true });
  announceBundle(bundle);
  const progress = progressReporter('airlock: restore files', bundle.manifest?.payload.size);
  let read = 0;
  const s = await interruptible((signal) => withRepairedBundle(bundle, flags.to, (b) => restoreFiles(b, identities, flags.to, signal, (n) => progress.update((read += n))), signal));
  progress.done();
  s.bundle = bundle.path;
  for (const k of s.skipped) note(`warning: ${k}`);
  if (flags.json) process.stdout.write(`${JSON.stringify(s)}\n`);
  else {
    process.stderr.write(`airlock: restored ${s.files} file(s), ${s.dirs} folder(s), ${s.symlinks} symbolic link(s), ${s.hardlinks} hard link(s) from seq ${s.seq}\n`);
    process.stdout.write(`${s.to}\n`);
  }
}

/** Adds `restore` and its `restore files`; restore-objects.ts and restore-pg.ts add theirs under it. */
export function register(program: Command): Command {
  const restore = program.command('restore').description('verify, then restore from bundles');
  command(restore, 'restore files', 'restore the config and secret files of a bundle into an empty folder')
    .action((flags: Flags) => restoreFilesCommand(resolveOptions<RestoreFlags>('restore files', flags)));
  return restore;
}
