/*
 * Verified staging: the one way every restore lays anything down (files, objects into a folder or
 * into buckets, PostgreSQL, a repaired copy of damaged volumes).
 *
 *   the command verified the set -> openStaging: a private folder (0700) beside the target, on its
 *   file system, once what killed runs left there is removed -> stageBundle: decrypt into it, every
 *   entry hashed and checked against the inner manifest, nothing used before the whole payload
 *   checked out -> the restore lays out what it restores inside the folder -> promote: one rename
 *   onto the target -> the staging folder is removed, whatever happened.
 *
 * A staging folder holds decrypted data, so what a killed run left must go, and what a live run uses
 * must stay. Each staging folder holds its run's kernel lock (lock.ts) for as long as the run lives,
 * and the kernel drops it when the process ends, however it ends. A run that can take the lock of a
 * staging folder of its target knows the owner is dead and removes the folder, holding the lock, so
 * nobody takes it for live meanwhile. A folder is made under a name no run looks at and gets its
 * staging name only once its lock is held: a staging folder without a lock file was left by an
 * older airlock, and goes too.
 *
 * Two restores into one target: a run that finds a live staging folder of its target with a smaller
 * name refuses (`locked`) before it decrypts anything, so of runs that start together the one with
 * the smallest name goes on. Runs that each looked before the other's folder existed both go on, and
 * the second to promote finds the target filled (`target-exists`): the target is one restore's.
 */
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readdir, rename, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import type { Digest } from '../../manifests/hash.js';
import { ENTRY_PATH_RE, type IndexRecord } from '../../manifests/records.js';
import { checkInner } from '../../manifests/inner-check.js';
import type { Manifest } from '../../manifests/manifest.js';
import { openPlaintext } from '../../manifests/payload.js';
import { readTar, type ReadEntry } from '../../manifests/tar.js';
import type { BundleReport } from '../../verifier/verify.js';
import { faultPoint } from '../faults.js';
import { fsyncDir, removeTree } from '../fsutil.js';
import { acquireLock, takeIfFree } from '../lock.js';

/** Lines for the operator (a warning, what a restore resumed or repaired); the command prints them. */
export type Notes = (line: string) => void;

/** What a staging folder holds: decrypted data, or a repaired copy of a bundle's ciphertext. */
export type StagingKind = 'staging' | 'repair';

export interface StagingOptions {
  kind?: StagingKind;
  /** whether a live staging folder of the same target refuses this run (default); false where runs share a folder, not a target */
  exclusive?: boolean;
  notes?: Notes;
}

/** The lock every staging folder holds while its run lives: `restore.lock` inside it. */
const LOCK = 'restore';

/** An open staging folder: `dir`, and `close`, which removes it and lets its lock go. */
export interface Staging {
  readonly dir: string;
  close: () => Promise<void>;
}

/**
 * Makes a new staging folder beside `target`, having removed the staging folders of `target` that
 * killed runs left; the caller must close() it however it ends (which says through `notes` when it
 * cannot remove it). Throws `locked` when another live run stages for the same target (see the top
 * of this file), and system errors typed with the target's name.
 */
export async function openStaging(target: string, opts: StagingOptions = {}): Promise<Staging> {
  try {
    return await create(target, opts);
  } catch (e) {
    throw fromSystemError(e, target);
  }
}

async function create(target: string, opts: StagingOptions): Promise<Staging> {
  const kind = opts.kind ?? 'staging';
  const parent = path.dirname(target);
  await mkdir(parent, { recursive: true });
  const suffix = randomBytes(6).toString('hex');
  const prefix = `.${path.basename(target)}.airlock-${kind}-`;
  const name = `${prefix}${suffix}`;
  const dir = path.join(parent, name);
  const release = await born(path.join(parent, `.${path.basename(target)}.airlock-new-${suffix}`), dir);
  const close = async () => {
    // removed before the lock goes, so no other run ever sees this folder unlocked
    await removeTree(dir).catch(() => opts.notes?.(`warning: could not remove ${dir}; delete it${kind === 'staging' ? ', it may hold decrypted data' : ''}`));
    release();
  };
  try {
    const live = await sweep(parent, prefix, name);
    if (opts.exclusive !== false && live.some((n) => n < name)) {
      throw new AirlockError('locked', `another airlock restore into ${target} is running`, {
        hint: 'wait for it to finish; a restore that was killed does not stop the next one',
      });
    }
  } catch (e) {
    await close();
    throw e;
  }
  return { dir, close };
}

/** Runs `work` in a staging folder beside `target` (openStaging), and closes it however `work` ends. */
export async function withStaging<T>(target: string, work: (dir: string) => Promise<T>, opts: StagingOptions = {}): Promise<T> {
  const staging = await openStaging(target, opts);
  try {
    return await work(staging.dir);
  } finally {
    await staging.close();
  }
}

/** Makes the folder `dir` with its lock held, under the name `tmp` first; returns the lock's release. */
async function born(tmp: string, dir: string): Promise<() => void> {
  await mkdir(tmp, { mode: 0o700 });
  let release: (() => void) | undefined;
  try {
    release = acquireLock(tmp, LOCK);
    await rename(tmp, dir);
    return release;
  } catch (e) {
    release?.();
    await removeTree(tmp);
    throw e;
  }
}

/**
 * Removes the folders in `parent` whose names begin with `prefix` and whose runs ended, and returns
 * the names of the live ones, but `own`.
 */
async function sweep(parent: string, prefix: string, own: string): Promise<string[]> {
  const live: string[] = [];
  for (const n of await readdir(parent)) {
    if (!n.startsWith(prefix) || n === own) continue;
    const lock = takeIfFree(path.join(parent, n, `${LOCK}.lock`));
    if (lock === 'held') {
      live.push(n);
      continue;
    }
    try {
      await removeTree(path.join(parent, n));
    } finally {
      if (lock !== 'absent') lock();
    }
  }
  return live;
}

/**
 * Whether a restore target is absent or an empty folder. Throws `unsafe-target` when it is a
 * symbolic link (even to an empty folder: the restore would land wherever it points, and the final
 * rename cannot replace it) or not a folder, before anything is decrypted; typed system errors.
 */
export async function isEmptyOrAbsent(dir: string): Promise<boolean> {
  try {
    const st = await lstat(dir);
    if (st.isSymbolicLink())
      throw new AirlockError('unsafe-target', `${dir} is a symbolic link`, { hint: 'restore into a new or empty folder, named by its real path' });
    if (!st.isDirectory()) throw new AirlockError('unsafe-target', `${dir} is not a folder`, { hint: 'restore into a new or empty folder' });
    return (await readdir(dir)).length === 0;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw fromSystemError(e, dir);
  }
}

/** Throws `target-exists` (with `hint`) when `dir` is not absent or empty, and what isEmptyOrAbsent throws. */
export async function requireEmpty(dir: string, hint = 'restore into a new or empty folder'): Promise<void> {
  if (!(await isEmptyOrAbsent(dir))) throw new AirlockError('target-exists', `${dir} is not empty`, { hint });
}

/**
 * Refuses a restore target that is a symbolic link or not a folder (`unsafe-target`). Commands call
 * it first, before the set is verified or anything decrypted; whether the target is empty is checked
 * where the restore begins.
 */
export async function refuseUnsafeTarget(dir: string): Promise<void> {
  await isEmptyOrAbsent(path.resolve(dir));
}

/** The manifest of a bundle that verified. Throws `verification-failed` for one that did not. */
export function verifiedManifest(bundle: BundleReport): Manifest {
  if (!bundle.manifest || bundle.findings.length > 0) throw new AirlockError('verification-failed', `${bundle.path} did not verify; nothing restored`);
  return bundle.manifest;
}

/** Writes one payload entry into the staging folder while hashing it. Throws `unsafe-entry` for a name airlock does not write, and system errors. */
async function stageEntry(dir: string, entry: ReadEntry, body: AsyncIterable<Buffer>): Promise<Digest> {
  if (!ENTRY_PATH_RE.test(entry.path)) throw new AirlockError('unsafe-entry', `tar entry ${JSON.stringify(entry.path)} is not a name airlock writes`);
  const file = path.join(dir, entry.path);
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const fh = await open(file, 'wx', 0o600);
  const h = createHash('sha256');
  let size = 0;
  try {
    for await (const chunk of body) {
      h.update(chunk);
      size += chunk.byteLength;
      await fh.write(chunk);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return { sha256: h.digest('hex'), size };
}

export interface StageHooks {
  /** claims an entry for a consumer that hashes what it takes, instead of a file in the folder */
  divert?: (entry: ReadEntry) => ((body: AsyncIterable<Buffer>) => Promise<Digest>) | undefined;
  /** receives every index record after the bundle record, in order */
  onRecord?: (r: IndexRecord) => void;
  signal?: AbortSignal;
  /** told the bundle bytes read as they are read */
  onBytes?: (n: number) => void;
}

/**
 * Decrypts the verified `bundle` into `dir` (each payload entry a 0600 file under its own name),
 * checking every entry against the inner manifest as it is read; the caller uses nothing of it
 * before this returned. Throws `verification-failed` when the bundle did not verify or its payload
 * does not match its manifests, `decrypt-failed`, `unsafe-entry`, volume check errors, and system
 * errors.
 */
export async function stageBundle(bundle: BundleReport, identities: readonly Uint8Array[], dir: string, hooks: StageHooks = {}): Promise<void> {
  const manifest = verifiedManifest(bundle);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const plain = openPlaintext(bundle.path, manifest.payload, identities, hooks.signal, hooks.onBytes);
  const problems = await checkInner(readTar(plain), manifest, {
    onEntry: (entry, body) => hooks.divert?.(entry)?.(body) ?? stageEntry(dir, entry, body),
    ...(hooks.onRecord ? { onRecord: hooks.onRecord } : {}),
  });
  if (problems.length > 0) {
    const first = problems
      .slice(0, 3)
      .map((p) => `${p.result} ${p.file}: ${p.message}`)
      .join('; ');
    throw new AirlockError(
      'verification-failed',
      `the payload of ${path.basename(bundle.path)} does not match its manifests (${problems.length} problem(s)): ${first}`,
      { hint: 'run airlock-verify with --identity for the full list; nothing was restored' },
    );
  }
  if (!plain.readableEnded) throw new AirlockError('internal', 'the payload was not read to its end');
  faultPoint('restore:after-stage');
}

/**
 * Makes a finished tree the target in one rename (replacing an empty target folder) and makes that
 * durable. Throws `unsafe-target` when the target became a symbolic link since it was checked (rmdir
 * would follow it), `target-exists` when it was filled meanwhile (another restore promoted first),
 * system errors otherwise; the target is either untouched or complete.
 */
export async function promote(tree: string, target: string): Promise<void> {
  await fsyncDir(tree);
  const st = await lstat(target).catch(() => undefined);
  if (st?.isSymbolicLink())
    throw new AirlockError('unsafe-target', `${target} is a symbolic link`, { hint: 'restore into a new or empty folder, named by its real path' });
  try {
    if (st) await rmdir(target);
    await rename(tree, target);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR') {
      throw new AirlockError('target-exists', `${target} was filled while this restore ran`, {
        hint: 'another restore into it finished first; nothing of this one was promoted',
      });
    }
    throw e;
  }
  await fsyncDir(path.dirname(target));
}
