/*
 * airlock media: label a medium (init), copy bundles onto a second medium and verify them there
 * (copy), show what a medium holds (list). Also what an export prints about the medium it wrote to.
 */
import { statfs } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { parseAllowedSigners, type AllowedSigner } from '../../manifests/allowed-signers.js';
import { parseCanonical } from '../../manifests/canonical.js';
import { AirlockError } from '../../manifests/errors.js';
import { readSmall } from '../../manifests/hash.js';
import { MANIFEST_FILE, MANIFEST_LIMIT, assertManifest } from '../../manifests/manifest.js';
import { isRecoveryFile } from '../../manifests/recovery.js';
import type { SigningKey } from '../../manifests/sshkey.js';
import { SUMS, SUMS_LIMIT, parseSums } from '../../manifests/sums.js';
import { findBundles, readAllowedSigners } from '../../verifier/verify.js';
import { Catalog, resolveStateDir } from '../catalog.js';
import { recordRun } from '../jobs.js';
import { loadSigningKey } from '../keys.js';
import { confirmOnMedium, copyMedium, initMedium, readLabel, selfSigner, type MediumLabel, type ReadBackNotes } from '../media.js';
import { human, interruptible, note, progressReporter } from './common.js';
import { command, resolveOptions, type Flags } from './options.js';

function noteCached(medium: string, notes: ReadBackNotes): void {
  if (notes.cached) process.stderr.write(`airlock: note: the file system of ${medium} refuses direct reads; the read-back went through the page cache\n`);
}

/** After an export: read the bundle back, record the verified copy, and say what was done. */
export async function confirmExport(
  written: { path: string; sumsSha256: string; site: string; seq: number },
  label: MediumLabel | undefined,
  key: SigningKey,
  stateDir: string,
): Promise<void> {
  const notes = await confirmOnMedium(written, label, key, stateDir, new Date());
  const medium = path.dirname(path.dirname(written.path));
  noteCached(medium, notes);
  if (label) process.stderr.write(`airlock: read back and verified on medium "${label.label}" (${label.uuid})\n`);
  else
    process.stderr.write(
      `airlock: note: read back and verified, but ${medium} has no label, so this copy does not count for retention; label media with airlock media init\n`,
    );
}

interface InitFlags {
  label: string;
  force?: boolean;
  stateDir?: string;
  json?: boolean;
}

async function initCommand(medium: string, flags: InitFlags): Promise<void> {
  const now = new Date();
  // a relabelled medium is a new identity: the copies recorded under the old one stop counting
  const before = flags.force ? await readLabel(medium).catch(() => undefined) : undefined;
  const label = await initMedium(medium, flags.label, flags.force === true, now);
  const catalog = Catalog.open(resolveStateDir(flags.stateDir));
  try {
    if (before) catalog.retireMedium(before.uuid);
    catalog.recordMedium(label.uuid, label.label, now);
  } finally {
    catalog.close();
  }
  if (flags.json) process.stdout.write(`${JSON.stringify(label)}\n`);
  else {
    process.stderr.write(`airlock: labelled ${medium} "${label.label}"\n`);
    process.stdout.write(`${label.uuid}\n`);
  }
}

interface CopyFlags {
  signingKey?: string;
  allowedSigners?: string;
  stateDir?: string;
  json?: boolean;
}

async function signersFrom(flags: CopyFlags): Promise<AllowedSigner[]> {
  const { allowedSigners: allowed, signingKey: key } = flags;
  if (allowed !== undefined) return parseAllowedSigners(await readAllowedSigners(allowed));
  if (key !== undefined) return [selfSigner(await loadSigningKey(key))];
  throw new AirlockError('usage', 'media copy needs --signing-key or --allowed-signers', {
    hint: 'give the appliance signing key (only its public half is used) or an allowed_signers file, to verify the bundles before and after copying',
  });
}

async function copyCommand(src: string, dst: string, flags: CopyFlags): Promise<void> {
  const stateDir = resolveStateDir(flags.stateDir);
  try {
    await copyAndPrint(src, dst, flags, stateDir);
    recordRun(stateDir, 'media copy', undefined, undefined, new Date(), note);
  } catch (e) {
    recordRun(stateDir, 'media copy', undefined, e, new Date(), note);
    throw e;
  }
}

async function copyAndPrint(src: string, dst: string, flags: CopyFlags, stateDir: string): Promise<void> {
  const signers = await signersFrom(flags);
  let progress: ReturnType<typeof progressReporter> | undefined;
  const r = await interruptible((signal) =>
    copyMedium(src, dst, signers, stateDir, {
      signal,
      progress: (bytes, total) => (progress ??= progressReporter('airlock: media copy', total)).update(bytes),
      notes: (line) => note(`warning: ${line}`),
    }),
  ).finally(() => progress?.done());
  noteCached(dst, r.readBack);
  if (flags.json) process.stdout.write(`${JSON.stringify({ from: r.from ?? null, to: r.to ?? null, bundles: r.bundles, failed: r.failed })}\n`);
  else {
    for (const b of r.bundles) process.stdout.write(`${b.to}\n`);
    const n = r.bundles.filter((b) => b.copied).length;
    process.stderr.write(
      `airlock: copied ${n} bundle(s), ${r.bundles.length - n} already there; all ${r.bundles.length} read back and verified on ${r.to ? `medium "${r.to.label}" (${r.to.uuid})` : dst}\n`,
    );
    if (!r.to) process.stderr.write(`airlock: note: ${dst} has no label, so these copies do not count for retention; label it with airlock media init\n`);
  }
  if (r.failed.length > 0) {
    throw new AirlockError('verification-failed', `${r.failed.length} bundle(s) under ${src} were not copied: ${r.failed.slice(0, 3).join('; ')}`, {
      hint: 'run airlock-verify on the source for the full list; media copy never follows a symbolic link',
    });
  }
}

interface ListFlags {
  json?: boolean;
}

interface ListedBundle {
  path: string;
  site?: string;
  seq?: number;
  created?: string;
  payloadBytes?: number;
  volumes?: number;
  recovery: boolean;
  problem?: string;
}

/** What a bundle folder says about itself, unverified (list is an inventory, not an audit). */
async function describeBundle(dir: string): Promise<ListedBundle> {
  const out: ListedBundle = { path: dir, recovery: false };
  try {
    const m = parseCanonical(await readSmall(path.join(dir, MANIFEST_FILE), MANIFEST_LIMIT), MANIFEST_FILE, MANIFEST_LIMIT);
    assertManifest(m);
    Object.assign(out, { site: m.site, seq: m.seq, created: m.created, payloadBytes: m.payload.size, volumes: m.payload.volumes.length });
    out.recovery = parseSums(await readSmall(path.join(dir, SUMS), SUMS_LIMIT)).some((l) => isRecoveryFile(l.name));
  } catch (e) {
    out.problem = (e as Error).message;
  }
  return out;
}

async function listCommand(medium: string, flags: ListFlags): Promise<void> {
  const label = await readLabel(medium);
  const found = await findBundles([medium]);
  const bundles: ListedBundle[] = [];
  for (const b of found.bundles) bundles.push(await describeBundle(b));
  const fs = await statfs(medium);
  const space = { free: fs.bavail * fs.bsize, size: fs.blocks * fs.bsize };
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ medium: path.resolve(medium), label: label ?? null, space, bundles, partials: found.partials })}\n`);
    return;
  }
  const lines = [
    label ? `medium "${label.label}" ${label.uuid}, labelled ${label.created}` : `${medium}: no label (airlock media init labels it)`,
    `space: ${human(space.free)} free of ${human(space.size)}`,
  ];
  for (const b of bundles) {
    lines.push(
      b.problem !== undefined
        ? `${b.path}: unreadable manifest: ${b.problem}`
        : `${b.site} seq ${b.seq}  ${b.created}  ${human(b.payloadBytes ?? 0)} in ${b.volumes} volume(s)${b.recovery ? ', recovery data' : ''}`,
    );
  }
  for (const p of found.partials) lines.push(`${p}: partial (an interrupted write; not a bundle)`);
  lines.push(`${bundles.length} bundle(s); not verified here: run airlock-verify to check them`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

export function register(program: Command): void {
  const media = program.command('media').description('label media, copy bundles between media, list what a medium holds');
  command(media, 'media init', 'write a label with a new UUID at the root of a medium (media are counted by UUID, not mount path)')
    .argument('<path>', 'the mount point of the medium')
    .action((medium: string, flags: Flags) => initCommand(medium, resolveOptions<InitFlags>('media init', flags)));
  command(media, 'media copy', 'copy every bundle of a medium onto a second medium, then read them back there and verify them')
    .argument('<src>', 'the medium (or folder) holding the bundles')
    .argument('<dst>', 'the mount point of the second medium')
    .action((src: string, dst: string, flags: Flags) => copyCommand(src, dst, resolveOptions<CopyFlags>('media copy', flags)));
  // the config file is read (and so checked) like every command's, though list needs nothing from it
  command(media, 'media list', 'show the label, free space and bundles of a medium (unverified; airlock-verify checks them)')
    .argument('<path>', 'the mount point of the medium')
    .action((medium: string, flags: Flags) => listCommand(medium, resolveOptions<ListFlags>('media list', flags)));
}
