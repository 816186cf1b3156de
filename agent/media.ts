/*
 * Removable media: the label that gives a medium its identity, the free-space check before writing,
 * the read-back after writing, and copying bundles from one medium to another.
 *
 * A medium is counted by the UUID in its label (`AIRLOCK-MEDIUM.json` at its root), never by its
 * mount path: the same stick is mounted at different places, and two sticks at the same place. A
 * copy of a bundle counts (for retention) only after it was read back from that medium, past the page
 * cache where the kernel allows it, and verified keyless: a write that the medium only pretended to
 * keep must not let the spool drop anything.
 *
 * Links: a medium is not trusted to be laid out as it looks. A site folder that is a symbolic link
 * would take a copy somewhere else, and a bundle folder that is a link to (or a mount of) the source
 * would read back fine and count as a second medium that does not exist. So every folder below the
 * medium's root that media code writes into or counts is checked with lstat (a real folder, never a
 * link) and must be on the medium's own file system (the st_dev of its label file), files are opened
 * with O_NOFOLLOW, and a bundle counts only when each of its files is a regular file on that file
 * system too. The root itself is the operator's choice and may be reached through a link.
 */
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, opendir, readdir, rename, stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import type { AllowedSigner } from '../manifests/allowed-signers.js';
import { writeFileAtomic } from '../manifests/atomic.js';
import type { SigningKey } from '../manifests/sshkey.js';
import { canonicalJson, parseCanonical } from '../manifests/canonical.js';
import { AirlockError, fromSystemError } from '../manifests/errors.js';
import { digestFile, readChunks, readSmall, type Digest } from '../manifests/hash.js';
import { HashWorker } from '../manifests/hash-worker.js';
import { bundleName, PARTIAL_SUFFIX } from '../manifests/manifest.js';
import { parseSums, SUMS, SUMS_LIMIT, SUMS_SIG } from '../manifests/sums.js';
import { human } from '../verifier/human.js';
import { findBundles, verifyKeyless, type BundleReport } from '../verifier/verify.js';
import { Catalog } from './catalog.js';
import { removeTree } from './fsutil.js';
import { digestDirect } from './direct.js';

export const LABEL_FILE = 'AIRLOCK-MEDIUM.json';
export const LABEL_FORMAT = 'airlock-medium';
const LABEL_LIMIT = 4096;
const LABEL_RE = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface MediumLabel {
  format: typeof LABEL_FORMAT;
  version: 1;
  uuid: string;
  label: string;
  created: string;
}

/** Throws `usage` for a label text that is not 1 to 63 letters, digits, spaces, ".", "_", "-". */
export function checkLabelText(label: string): void {
  if (!LABEL_RE.test(label))
    throw new AirlockError('usage', `label ${JSON.stringify(label)} is not valid`, {
      hint: 'use 1 to 63 letters, digits, spaces, ".", "_" and "-", starting with a letter or digit',
    });
}

/** A medium's root and the file system its bytes must be on to count (see the top of this file). */
export interface MediumRoot {
  root: string;
  /** st_dev of the label file (of the root when there is no label) */
  dev: number;
  /** how messages name it: "the medium", "the target medium" */
  name: string;
}

const unsafe = (message: string) =>
  new AirlockError('unsafe-target', message, {
    hint: 'airlock writes and counts only real folders on the medium itself, never through a link or onto another mount; remove the link or mount (or use another medium) and run the command again',
  });

/**
 * The root of the medium at `root` for the checks below. Throws `not-found` when it is not there and
 * `unsafe-target` when its label file is on another file system than the root.
 */
export async function mediumRoot(root: string, name = 'the medium'): Promise<MediumRoot> {
  const abs = path.resolve(root);
  let dev: number;
  try {
    dev = (await stat(abs)).dev;
  } catch (e) {
    throw fromSystemError(e, abs, 'io');
  }
  const label = await lstat(path.join(abs, LABEL_FILE)).catch(() => undefined);
  if (label && label.dev !== dev) throw unsafe(`${path.join(abs, LABEL_FILE)} on ${name} is on another file system than the medium`);
  return { root: abs, dev, name };
}

/**
 * Checks the folders `parts` below the medium's root, one after the other, without following links:
 * each must be a real folder on the medium's file system. Returns how many of them exist (checking
 * stops at the first absent one). Throws `unsafe-target` for a link, anything but a folder, or
 * another file system.
 */
async function realFolders(m: MediumRoot, parts: readonly string[]): Promise<number> {
  let at = m.root;
  for (const [i, part] of parts.entries()) {
    if (part === '' || part === '.' || part === '..' || part.includes('/')) throw new AirlockError('internal', `${JSON.stringify(part)} is not a folder name`);
    at = path.join(at, part);
    let s;
    try {
      s = await lstat(at);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return i;
      throw fromSystemError(e, at, 'io');
    }
    if (s.isSymbolicLink()) throw unsafe(`${at} on ${m.name} is a symbolic link`);
    if (!s.isDirectory()) throw unsafe(`${at} on ${m.name} is not a folder`);
    if (s.dev !== m.dev) throw unsafe(`${at} on ${m.name} is on another file system than the medium`);
  }
  return parts.length;
}

/** The folders from the medium's root to `dir`, which must lie below it. Throws `unsafe-target`. */
function below(m: MediumRoot, dir: string): string[] {
  const rel = path.relative(m.root, path.resolve(dir));
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) throw unsafe(`${dir} is not inside ${m.name} at ${m.root}`);
  return rel.split(path.sep);
}

/**
 * Whether the bundle folder `dir` is a real folder on the medium `m`, reached through real folders
 * only, and each of `files` in it a regular file on the medium's file system: what makes its bytes
 * count as a copy on that medium. Throws `unsafe-target` naming what is not.
 */
export async function assertOnMedium(m: MediumRoot, dir: string, files: readonly string[]): Promise<void> {
  const parts = below(m, dir);
  if ((await realFolders(m, parts)) < parts.length) throw new AirlockError('not-found', `${dir}: no such folder on ${m.name}`);
  for (const name of files) {
    const file = path.join(dir, name);
    const s = await lstat(file).catch((e: unknown) => {
      throw fromSystemError(e, file, 'io');
    });
    if (!s.isFile()) throw unsafe(`${file} on ${m.name} is ${s.isSymbolicLink() ? 'a symbolic link' : 'not a regular file'}`);
    if (s.dev !== m.dev) throw unsafe(`${file} on ${m.name} is on another file system than the medium`);
  }
}

/**
 * Whether the bundle `site/name` is on the medium already. Throws `unsafe-target` when its site
 * folder or its own folder is a link, not a folder, or on another file system.
 */
export async function bundleOnMedium(m: MediumRoot, site: string, name: string): Promise<boolean> {
  return (await realFolders(m, [site, name])) === 2;
}

/** fsyncs a real folder, never one a link leads to. */
async function fsyncRealDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** The label of the medium mounted at `medium`, or undefined when it has none. Throws `malformed` for a damaged label. */
export async function readLabel(medium: string): Promise<MediumLabel | undefined> {
  const file = path.join(medium, LABEL_FILE);
  let bytes: Buffer;
  try {
    bytes = await readSmall(file, LABEL_LIMIT);
  } catch (e) {
    if (e instanceof AirlockError && e.code === 'not-found') return undefined;
    throw e instanceof AirlockError ? e : fromSystemError(e, file, 'io');
  }
  const bad = (why: string) =>
    new AirlockError('malformed', `${file}: ${why}`, {
      hint: 'the medium label is damaged; label the medium again with airlock media init --force (its copies are then counted under a new id)',
    });
  let v: unknown;
  try {
    v = parseCanonical(bytes, LABEL_FILE, LABEL_LIMIT);
  } catch (e) {
    throw bad((e as Error).message);
  }
  const o = v as Partial<MediumLabel> | null;
  if (typeof o !== 'object' || o?.format !== LABEL_FORMAT || o.version !== 1) throw bad(`not an ${LABEL_FORMAT} version 1 label`);
  if (typeof o.uuid !== 'string' || !UUID_RE.test(o.uuid)) throw bad('uuid is not a lowercase UUID');
  if (typeof o.label !== 'string' || !LABEL_RE.test(o.label)) throw bad('label is not valid');
  if (typeof o.created !== 'string' || Number.isNaN(Date.parse(o.created))) throw bad('created is not a time');
  return { format: LABEL_FORMAT, version: 1, uuid: o.uuid, label: o.label, created: o.created };
}

/** Whether the folder holds anything that looks like airlock bundles (a site folder of them). */
async function holdsBundles(medium: string): Promise<boolean> {
  for (const site of await readdir(medium, { withFileTypes: true })) {
    if (!site.isDirectory()) continue;
    const names = await readdir(path.join(medium, site.name)).catch(() => [] as string[]);
    if (names.some((n) => n.startsWith(`${site.name}-`))) return true;
  }
  return false;
}

/**
 * Writes a new label with a fresh UUID onto the medium at `medium`. Throws `not-found` for a missing
 * folder, `target-exists` when the medium has a label or bundles already (unless `force`), typed
 * system errors when writing fails. With `force` an existing label is replaced atomically.
 */
export async function initMedium(medium: string, label: string, force: boolean, now: Date): Promise<MediumLabel> {
  checkLabelText(label);
  try {
    if (!(await lstat(medium)).isDirectory()) throw new AirlockError('usage', `${medium}: not a folder`, { hint: 'give the mount point of the medium' });
  } catch (e) {
    if (e instanceof AirlockError) throw e;
    throw new AirlockError('not-found', `medium ${medium} is not there`, { hint: 'mount the medium and give its mount point', cause: e });
  }
  const old = await readLabel(medium).catch((e: unknown) => {
    if (force) return undefined;
    throw e;
  });
  if (!force && old) {
    throw new AirlockError('target-exists', `${medium} is already labelled ${JSON.stringify(old.label)} (${old.uuid})`, {
      hint: 'a medium keeps its label; add --force only to give it a new identity (copies recorded under the old one no longer count)',
    });
  }
  if (!force && (await holdsBundles(medium))) {
    throw new AirlockError('target-exists', `${medium} already holds bundles but no label`, {
      hint: 'add --force to label it as it is; its bundles count as copies once verified there (airlock media copy)',
    });
  }
  const value: MediumLabel = { format: LABEL_FORMAT, version: 1, uuid: randomUUID(), label, created: now.toISOString() };
  const file = path.join(medium, LABEL_FILE);
  await writeFileAtomic(file, canonicalJson(value));
  return value;
}

/** Bytes an unprivileged writer may still use on the file system holding `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  try {
    const s = await statfs(dir);
    return s.bavail * s.bsize;
  } catch (e) {
    throw fromSystemError(e, dir, 'io');
  }
}

/**
 * Room kept free beyond what a bundle is expected to take: the cleartext files, folder entries, and
 * sources whose size is only known while they are read (bucket listings).
 */
export const SPACE_FLOOR = 1024 * 1024;

/**
 * Throws `medium-full` naming the size needed when the medium at `medium` has less than `needed`
 * bytes free; nothing has been written then.
 */
export async function requireSpace(medium: string, needed: number, what: string): Promise<void> {
  const free = await freeBytes(medium);
  if (free < needed) {
    throw new AirlockError('medium-full', `${what} needs about ${human(needed)} on ${medium} but only ${human(free)} is free`, {
      hint: `free ${human(needed - free)} on the medium or use a larger one; nothing was written`,
    });
  }
}

/**
 * The tar bytes that `paths` will take: each regular file's size rounded up to 512 bytes plus a
 * header, without following links. Unreadable parts count as nothing: the export reports them itself.
 */
export async function estimateFiles(paths: readonly string[]): Promise<number> {
  let total = 0;
  const seen = new Set<string>();
  const walk = async (p: string): Promise<void> => {
    const s = await lstat(p).catch(() => undefined);
    if (!s) return;
    if (s.isFile()) {
      const id = `${s.dev}:${s.ino}`;
      if (s.nlink > 1 && seen.has(id)) return;
      seen.add(id);
      total += 1024 + Math.ceil(s.size / 512) * 512;
    } else if (s.isDirectory()) {
      const dir = await opendir(p).catch(() => undefined);
      if (!dir) return;
      for await (const e of dir) await walk(path.join(p, e.name));
    }
  };
  for (const p of paths) await walk(path.resolve(p));
  return total;
}

/**
 * What a bundle of `tarBytes` (uncompressed, the worst case) takes on the medium: age adds 16 bytes
 * per 64 KiB chunk, recovery data `percent` percent of the volumes, and SPACE_FLOOR on top.
 */
export function bundleNeeds(tarBytes: number, recoveryPercent = 0): number {
  const payload = tarBytes + Math.ceil(tarBytes / 65536) * 16 + 4096;
  const recovery = recoveryPercent > 0 ? Math.ceil((payload * recoveryPercent) / 100) + 64 * 1024 : 0;
  return payload + recovery + SPACE_FLOOR;
}

/** Notes from reading back, printed once by the caller. */
export interface ReadBackNotes {
  /** the file system refused direct reads: the page cache was read instead */
  cached: boolean;
}

/**
 * Hashes a file read past the page cache, falling back to a normal read when the file system refuses
 * direct I/O (noted in `notes`). Throws typed system errors when the medium cannot be read.
 */
async function digestOnMedium(file: string, notes: ReadBackNotes, signal?: AbortSignal, worker?: HashWorker): Promise<Digest> {
  const direct = notes.cached ? undefined : await digestDirect(file, signal, worker);
  if (direct) return direct;
  notes.cached = true;
  return digestFile(file);
}

/**
 * Reads the bundle at `dir` back from its medium and checks it: the keyless verification by
 * `signers`, then every file of it read past the page cache against the signed SHA256SUMS, whose own
 * hash must be `sums` (the identity of the bundle that was written). With `medium`, the bundle must
 * also be on that medium itself (assertOnMedium), before and after it is read. Throws
 * `verification-failed`, `unsafe-target` or `io`.
 */
export async function readBack(
  dir: string,
  sums: string,
  signers: readonly AllowedSigner[],
  now: Date,
  notes: ReadBackNotes,
  signal?: AbortSignal,
  medium?: MediumRoot,
): Promise<BundleReport> {
  if (medium) await assertOnMedium(medium, dir, []);
  // every check but the volumes' bytes, which are read once below, past the page cache
  const report = await verifyKeyless(dir, { allowedSigners: signers, now, tool: 'airlock', volumes: 'size', ...(signal ? { signal } : {}) });
  const fail = (why: string) =>
    new AirlockError('verification-failed', `${dir} does not read back as written: ${why}`, {
      hint: 'the medium may be failing: this copy does not count; copy the bundle to another medium (airlock media copy)',
    });
  if (report.findings.length > 0) throw fail(report.findings.map((f) => `${f.result}${f.file ? ` ${f.file}` : ''}: ${f.message}`).join('; '));
  if (report.sums !== sums) throw fail(`its ${SUMS} is not the one written`);
  const onMedium = async (name: string, worker?: HashWorker) => {
    try {
      return await digestOnMedium(path.join(dir, name), notes, signal, worker);
    } catch (e) {
      if (signal?.aborted) throw e;
      throw new AirlockError('io', `${path.join(dir, name)}: cannot be read back from the medium: ${(e as Error).message}`, {
        hint: 'the medium may be failing; copy the bundle to another medium',
      });
    }
  };
  if ((await onMedium(SUMS)).sha256 !== sums) throw fail(`${SUMS} differs on the medium from what was written`);
  const lines = parseSums(await readSmall(path.join(dir, SUMS), SUMS_LIMIT));
  const files = [...lines.map((l) => l.name), SUMS, SUMS_SIG];
  if (medium) await assertOnMedium(medium, dir, files);
  // two files at a time, one hashed here and one on a worker: the export is done, both cores are free
  const worker = lines.length > 1 ? new HashWorker() : undefined;
  let next = 0;
  let failed = false;
  const lane = async (hasher?: HashWorker) => {
    for (let i = next++; i < lines.length && !failed; i = next++) {
      const l = lines[i];
      if (l === undefined) break;
      const got = await onMedium(l.name, hasher).catch((e: unknown) => {
        failed = true;
        throw e;
      });
      if (got.sha256 !== l.sha256) {
        failed = true;
        throw fail(`${l.name}: sha256 read back from the medium differs from ${SUMS}`);
      }
    }
  };
  try {
    const lanes = await Promise.allSettled([lane(), ...(worker ? [lane(worker)] : [])]);
    const first = lanes.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (first) throw first.reason;
  } finally {
    await worker?.close();
  }
  if ((await onMedium(SUMS_SIG)).sha256 !== (await digestFile(path.join(dir, SUMS_SIG))).sha256)
    throw fail(`${SUMS_SIG} differs on the medium from what was written`);
  // again after reading: a link put in place meanwhile must not make what was read count
  if (medium) await assertOnMedium(medium, dir, files);
  return report;
}

/** The files of a verified bundle: the listed ones, SHA256SUMS and its signature. */
export async function bundleFiles(dir: string): Promise<string[]> {
  const lines = parseSums(await readSmall(path.join(dir, SUMS), SUMS_LIMIT));
  return [...lines.map((l) => l.name), SUMS, SUMS_SIG];
}

/** The bytes a bundle folder's files take. */
export async function bundleBytes(dir: string): Promise<number> {
  let total = 0;
  for (const n of await bundleFiles(dir)) total += (await lstat(path.join(dir, n))).size;
  return total;
}

/**
 * Copies the (verified) bundle folder `src` to `site/name` on the medium `m`, durably: into
 * `name.partial`, every file and folder fsynced, then renamed. Nothing is written through a link or
 * onto another file system: the site folder is made or checked as a real folder of the medium, the
 * partial folder is checked again after it was made, and files are created with O_EXCL | O_NOFOLLOW.
 * `progress` gets the bytes copied so far. Throws `target-exists` when the bundle is there already,
 * `unsafe-target` (see realFolders), `medium-full` / `io` for the target medium (the partial copy is
 * removed).
 */
export async function copyBundle(
  src: string,
  m: MediumRoot,
  site: string,
  name: string,
  progress?: (bytes: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  const siteDir = path.join(m.root, site);
  const dst = path.join(siteDir, name);
  const partialName = `${name}${PARTIAL_SUFFIX}`;
  const partial = path.join(siteDir, partialName);
  if ((await realFolders(m, [site, name])) === 2) throw new AirlockError('target-exists', `${dst} already exists`);
  let copied = 0;
  let made = false;
  try {
    if ((await realFolders(m, [site])) === 0) {
      // not recursive: the root is there, and mkdir fails on anything put in its place meanwhile
      await mkdir(siteDir, { mode: 0o755 });
      await fsyncRealDir(m.root);
      await realFolders(m, [site]);
    }
    // a leftover partial copy (or a link by its name: rm removes the link, not what it leads to)
    await removeTree(partial);
    await mkdir(partial);
    made = true;
    await realFolders(m, [site, partialName]);
    for (const file of await bundleFiles(src)) {
      const fh = await open(path.join(partial, file), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
      try {
        for await (const chunk of readChunks(path.join(src, file))) {
          signal?.throwIfAborted();
          let at = 0;
          while (at < chunk.byteLength) at += (await fh.write(chunk, at, chunk.byteLength - at)).bytesWritten;
          copied += chunk.byteLength;
          progress?.(copied);
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    await fsyncRealDir(partial);
    await rename(partial, dst);
    await fsyncRealDir(siteDir);
  } catch (e) {
    // only a folder this call made is removed: never what a link put in its place leads to
    if (made) await removeTree(partial).catch(() => {});
    throw e instanceof AirlockError ? e : fromSystemError(e, dst, 'io');
  }
}

/** An allowed signer for this appliance's own key, for any site. */
export function selfSigner(key: SigningKey): AllowedSigner {
  return { principals: ['*'], publicKey: key.publicKey, certAuthority: false, line: 0 };
}

/**
 * Before an export: the medium's label (undefined for an unlabelled medium, which still works but
 * whose copies do not count), the site's folder on it a real folder of the medium when it is there
 * already (nothing is written through a link), and enough free space for `needed` bytes. Throws
 * `malformed` for a damaged label, `unsafe-target` as realFolders and `medium-full` as requireSpace.
 */
export async function prepareMedium(medium: string, needed: number, site?: string): Promise<MediumLabel | undefined> {
  // a medium that is not there is reported by the export itself, with its hint
  if (
    !(await lstat(medium).then(
      (st) => st.isDirectory(),
      () => false,
    ))
  )
    return undefined;
  if (site !== undefined) await realFolders(await mediumRoot(medium), [site]);
  const label = await readLabel(medium);
  await requireSpace(medium, needed, 'the bundle');
  return label;
}

/**
 * After an export: reads the new bundle back from the medium and verifies it (see readBack), then,
 * on a labelled medium, records it in the catalog as a verified copy on that medium's UUID (when it
 * is on that medium itself: see assertOnMedium). Throws as readBack; nothing is recorded then.
 */
export async function confirmOnMedium(
  written: { path: string; sumsSha256: string; site: string; seq: number },
  label: MediumLabel | undefined,
  key: SigningKey,
  stateDir: string,
  now: Date,
  signal?: AbortSignal,
): Promise<ReadBackNotes> {
  const notes: ReadBackNotes = { cached: false };
  // a copy counts on the label's UUID only for bytes on that labelled medium itself
  const medium = label ? await mediumRoot(path.dirname(path.dirname(written.path))) : undefined;
  await readBack(written.path, written.sumsSha256, [selfSigner(key)], now, notes, signal, medium);
  if (label) {
    const catalog = Catalog.open(stateDir);
    try {
      catalog.recordMedium(label.uuid, label.label, now);
      catalog.recordVerifiedCopy(written.site, written.seq, written.sumsSha256, label.uuid, written.path, now);
    } finally {
      catalog.close();
    }
  }
  return notes;
}

/** One bundle of a media copy, and where it went. */
export interface CopyResult {
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

export interface MediumCopy {
  from: MediumLabel | undefined;
  to: MediumLabel | undefined;
  bundles: CopyResult[];
  /** what was not copied, one line each: bundles that did not verify, links where folders should be */
  failed: string[];
  readBack: ReadBackNotes;
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

/**
 * Copies every bundle under `src` that verifies (keyless, signed by one of `signers`) onto the
 * medium `dst`, reads each back there and verifies it again, and records the verified copies (on
 * `dst`, and on the source medium when the bundle is on its file system) in the catalog of
 * `stateDir`. Bundles that do not verify are not copied and are listed in `failed`; the caller
 * decides what that means. Throws `not-found` when `dst` is not there, `usage` when both are one
 * medium, `no-bundle`, `medium-full` before anything is written, and what copying and reading back
 * throw. `notes` hears what is not copied or not counted, `progress` the bytes copied of the total.
 */
export async function copyMedium(
  src: string,
  dst: string,
  signers: readonly AllowedSigner[],
  stateDir: string,
  opts: { signal?: AbortSignal; progress?: (bytes: number, total: number) => void; notes?: (line: string) => void } = {},
): Promise<MediumCopy> {
  if (
    !(await lstat(dst).then(
      (s) => s.isDirectory(),
      () => false,
    ))
  )
    throw new AirlockError('not-found', `medium ${dst} is not there`, { hint: 'mount the second medium and give its mount point' });
  const from = await readLabel(src);
  const to = await readLabel(dst);
  if (from && from.uuid === to?.uuid)
    throw new AirlockError('usage', `${src} and ${dst} are the same medium (${to.uuid})`, { hint: 'copy onto another medium' });
  if (path.resolve(src) === path.resolve(dst)) throw new AirlockError('usage', 'the source and the target are the same folder');
  const target = await mediumRoot(dst, 'the target medium');
  const source = await mediumRoot(src, 'the source medium');
  const found = await findBundles([src]);
  const links = await linksUnder(src);
  if (found.bundles.length === 0 && links.length === 0) throw new AirlockError('no-bundle', `no bundle under ${src}`);
  for (const p of found.partials) opts.notes?.(`${p} is a leftover partial bundle; not copied`);

  // verify every bundle where it is first: a damaged bundle is not spread to a second medium
  const now = new Date();
  const good: { report: BundleReport; name: string; exists: boolean }[] = [];
  const failed: string[] = links.map((l) => `${path.relative(path.resolve(src), l)}: a symbolic link, not followed`);
  for (const dir of found.bundles) {
    const report = await verifyKeyless(dir, { allowedSigners: signers, now, tool: 'airlock' });
    if (report.findings.length > 0 || report.site === undefined || report.seq === undefined || report.sums === undefined) {
      failed.push(`${path.basename(dir)}: ${report.findings.map((f) => `${f.result}${f.file ? ` ${f.file}` : ''}`).join(', ')}`);
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

  const bundles: CopyResult[] = [];
  const readBackNotes: ReadBackNotes = { cached: false };
  let before = 0;
  for (const g of good) {
    const { report, name } = g;
    const site = report.site as string;
    const seq = report.seq as number;
    const sums = report.sums as string;
    const copy = path.join(target.root, site, name);
    if (!g.exists) {
      await copyBundle(report.path, target, site, name, (n) => opts.progress?.(before + n, needed - SPACE_FLOOR), opts.signal);
      before += await bundleBytes(copy);
    }
    // read back from the target, past the page cache, before the copy may count
    await readBack(copy, sums, signers, new Date(), readBackNotes, opts.signal, target);
    // the source counts too, but only for a bundle on the source medium's own file system
    const onSource = from
      ? await assertOnMedium(source, report.path, await bundleFiles(report.path)).then(
          () => true,
          (e: unknown) => {
            opts.notes?.(`${(e as Error).message}; not counted as a copy on medium "${from.label}"`);
            return false;
          },
        )
      : false;
    const verifiedOn: string[] = [];
    const catalog = Catalog.open(stateDir);
    try {
      for (const [label, where] of [
        [onSource ? from : undefined, report.path],
        [to, copy],
      ] as const) {
        if (!label) continue;
        catalog.recordMedium(label.uuid, label.label, now);
        catalog.recordVerifiedCopy(site, seq, sums, label.uuid, where, new Date());
        verifiedOn.push(label.uuid);
      }
    } finally {
      catalog.close();
    }
    bundles.push({ site, seq, from: report.path, to: copy, sums, copied: !g.exists, verifiedOn });
  }
  return { from, to, bundles, failed, readBack: readBackNotes };
}
