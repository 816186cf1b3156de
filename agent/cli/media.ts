/*
 * airlock media: label a medium (init), copy bundles onto a second medium and verify them there
 * (copy), show what a medium holds (list). Also what an export prints about the medium it wrote to.
 */
import { lstat, readdir, statfs } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { parseAllowedSigners, type AllowedSigner } from '../../manifests/allowed-signers.js';
import { parseCanonical } from '../../manifests/canonical.js';
import { AirlockError } from '../../manifests/errors.js';
import { readSmall } from '../../manifests/hash.js';
import { MANIFEST_FILE, MANIFEST_LIMIT, assertManifest, bundleName } from '../../manifests/manifest.js';
import { isRecoveryFile } from '../../manifests/recovery.js';
import type { SigningKey } from '../../manifests/sshkey.js';
import { SUMS, SUMS_LIMIT, parseSums } from '../../manifests/sums.js';
import { findBundles, readAllowedSigners, verifyKeyless, type BundleReport } from '../../verifier/verify.js';
import { Catalog, resolveStateDir } from '../catalog.js';
import { recordRun } from '../jobs.js';
import { loadSigningKey } from '../keys.js';
import {
  SPACE_FLOOR,
  assertOnMedium,
  bundleBytes,
  bundleFiles,
  bundleOnMedium,
  confirmOnMedium,
  copyBundle,
  initMedium,
  mediumRoot,
  readBack,
  readLabel,
  requireSpace,
  selfSigner,
  type MediumLabel,
  type ReadBackNotes,
} from '../media.js';
import { human, interruptible, note, progressReporter } from './common.js';
import { command, resolveOptions, type Flags } from './options.js';

function noteCached(medium: string, notes: ReadBackNotes): void {
  if (notes.cached) process.stderr.write(`airlock: note: the file system of ${medium} refuses direct reads; the read-back went through the page cache\n`);
}

/** After an export: read the bundle back, record the verified copy, and say what was done. */
export async function confirmExport(written: { path: string; sumsSha256: string; site: string; seq: number }, label: MediumLabel | undefined, key: SigningKey, stateDir: string): Promise<void> {
  const notes = await confirmOnMedium(written, label, key, stateDir, new Date());
  const medium = path.dirname(path.dirname(written.path));
  noteCached(medium, notes);
  if (label) process.stderr.write(`airlock: read back and verified on medium "${label.label}" (${label.uuid})\n`);
  else process.stderr.write(`airlock: note: read back and verified, but ${medium} has no label, so this copy does not count for retention; label media with airlock media init\n`);
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

interface CopyResult {
  site: string;
  seq: number;
  from: string;
  to: string;
  sums: string;
  /** false when the target medium held the bundle already (it was verified there again) */
  copied: boolean;
  /** the media UUIDs the bundle is now recorded as verified on by this run */
  verifiedOn: string[];
}

async function signersFrom(flags: CopyFlags): Promise<AllowedSigner[]> {
  const { allowedSigners: allowed, signingKey: key } = flags;
  if (allowed !== undefined) return parseAllowedSigners(await readAllowedSigners(allowed));
  if (key !== undefined) return [selfSigner(await loadSigningKey(key))];
  throw new AirlockError('usage', 'media copy needs --signing-key or --allowed-signers', { hint: 'give the appliance signing key (only its public half is used) or an allowed_signers file, to verify the bundles before and after copying' });
}

async function copyCommand(src: string, dst: string, flags: CopyFlags): Promise<void> {
  const stateDir = resolveStateDir(flags.stateDir);
  try {
    await copyAll(src, dst, flags, stateDir);
    recordRun(stateDir, 'media copy', undefined, undefined, new Date(), note);
  } catch (e) {
    recordRun(stateDir, 'media copy', undefined, e, new Date(), note);
    throw e;
  }
}

/**
 * Symbolic links where site or bundle folders are under `src`. Bundles are found without following
 * links (findBundles), so these would be skipped without a word; they are named instead, and the
 * copy fails once the rest is done.
 */
async function linksUnder(src: string): Promise<string[]> {
  const links: string[] = [];
  const scan = async (dir: string, depth: number) => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    // inside a bundle folder a link is a finding of its own verification
    if (entries.some((e) => e.name === SUMS)) return;
    for (const e of entries) {
      if (e.isSymbolicLink()) links.push(path.join(dir, e.name));
      else if (e.isDirectory() && depth < 2) await scan(path.join(dir, e.name), depth + 1);
    }
  };
  await scan(path.resolve(src), 1);
  return links.sort();
}

async function copyAll(src: string, dst: string, flags: CopyFlags, stateDir: string): Promise<void> {
  const signers = await signersFrom(flags);
  if (!(await lstat(dst).then((s) => s.isDirectory(), () => false))) throw new AirlockError('not-found', `medium ${dst} is not there`, { hint: 'mount the second medium and give its mount point' });
  const from = await readLabel(src);
  const to = await readLabel(dst);
  if (from && to && from.uuid === to.uuid) throw new AirlockError('usage', `${src} and ${dst} are the same medium (${to.uuid})`, { hint: 'copy onto another medium' });
  if (path.resolve(src) === path.resolve(dst)) throw new AirlockError('usage', 'the source and the target are the same folder');
  const target = await mediumRoot(dst, 'the target medium');
  const source = await mediumRoot(src, 'the source medium');
  const found = await findBundles([src]);
  const links = await linksUnder(src);
  if (found.bundles.length === 0 && links.length === 0) throw new AirlockError('no-bundle', `no bundle under ${src}`);
  for (const p of found.partials) process.stderr.write(`airlock: warning: ${p} is a leftover partial bundle; not copied\n`);

  // verify every bundle where it is first: a damaged bundle is not spread to a second medium
  const now = new Date();
  const good: { report: BundleReport; name: string; exists: boolean }[] = [];
  const bad: string[] = links.map((l) => `${path.relative(path.resolve(src), l)}: a symbolic link, not followed`);
  for (const dir of found.bundles) {
    const report = await verifyKeyless(dir, { allowedSigners: signers, now, tool: 'airlock' });
    if (report.findings.length > 0 || report.site === undefined || report.seq === undefined || report.sums === undefined) {
      bad.push(`${path.basename(dir)}: ${report.findings.map((f) => `${f.result}${f.file ? ` ${f.file}` : ''}`).join(', ')}`);
      continue;
    }
    // before anything is written: a link or mount where the copy would go refuses the whole copy
    const name = bundleName(report.site, report.seq);
    good.push({ report, name, exists: await bundleOnMedium(target, report.site, name) });
  }
  let needed = SPACE_FLOOR;
  for (const g of good) if (!g.exists) needed += await bundleBytes(g.report.path);
  const copies = good.filter((g) => !g.exists).length;
  if (copies > 0) await requireSpace(path.resolve(dst), needed, `copying ${copies} bundle(s)`);

  const results: CopyResult[] = [];
  const notes: ReadBackNotes = { cached: false };
  const progress = progressReporter('airlock: media copy', needed - SPACE_FLOOR);
  let before = 0;
  await interruptible(async (signal) => {
    for (const g of good) {
      const { report, name } = g;
      const site = report.site as string;
      const seq = report.seq as number;
      const sums = report.sums as string;
      const copy = path.join(target.root, site, name);
      if (!g.exists) {
        await copyBundle(report.path, target, site, name, (n) => progress.update(before + n), signal);
        before += await bundleBytes(copy);
      }
      // read back from the target, past the page cache, before the copy may count
      await readBack(copy, sums, signers, new Date(), notes, signal, target);
      // the source counts too, but only for a bundle on the source medium's own file system
      const onSource = from ? await assertOnMedium(source, report.path, await bundleFiles(report.path)).then(() => true, (e: unknown) => {
        process.stderr.write(`airlock: warning: ${(e as Error).message}; not counted as a copy on medium "${from.label}"\n`);
        return false;
      }) : false;
      const verifiedOn: string[] = [];
      const catalog = Catalog.open(stateDir);
      try {
        for (const [label, where] of [[onSource ? from : undefined, report.path], [to, copy]] as const) {
          if (!label) continue;
          catalog.recordMedium(label.uuid, label.label, now);
          catalog.recordVerifiedCopy(site, seq, sums, label.uuid, where, new Date());
          verifiedOn.push(label.uuid);
        }
      } finally {
        catalog.close();
      }
      results.push({ site, seq, from: report.path, to: copy, sums, copied: !g.exists, verifiedOn });
    }
  });
  progress.done();
  noteCached(dst, notes);
  if (flags.json) process.stdout.write(`${JSON.stringify({ from: from ?? null, to: to ?? null, bundles: results, failed: bad })}\n`);
  else {
    for (const r of results) process.stdout.write(`${r.to}\n`);
    const n = results.filter((r) => r.copied).length;
    process.stderr.write(`airlock: copied ${n} bundle(s), ${results.length - n} already there; all ${results.length} read back and verified on ${to ? `medium "${to.label}" (${to.uuid})` : dst}\n`);
    if (!to) process.stderr.write(`airlock: note: ${dst} has no label, so these copies do not count for retention; label it with airlock media init\n`);
  }
  if (bad.length > 0) {
    throw new AirlockError('verification-failed', `${bad.length} bundle(s) under ${src} were not copied: ${bad.slice(0, 3).join('; ')}`, { hint: 'run airlock-verify on the source for the full list; media copy never follows a symbolic link' });
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
  const lines = [label ? `medium "${label.label}" ${label.uuid}, labelled ${label.created}` : `${medium}: no label (airlock media init labels it)`, `space: ${human(space.free)} free of ${human(space.size)}`];
  for (const b of bundles) {
    lines.push(b.problem !== undefined ? `${b.path}: unreadable manifest: ${b.problem}` : `${b.site} seq ${b.seq}  ${b.created}  ${human(b.payloadBytes ?? 0)} in ${b.volumes} volume(s)${b.recovery ? ', recovery data' : ''}`);
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
