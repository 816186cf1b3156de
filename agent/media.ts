/*
 * Removable media: the label that gives a medium its identity, the free-space check before writing,
 * the read-back after writing, and copying bundles from one medium to another.
 *
 * A medium is counted by the UUID in its label (`AIRLOCK-MEDIUM.json` at its root), never by its
 * mount path: the same stick is mounted at different places, and two sticks at the same place. A
 * copy of a bundle counts (for retention) only after it was read back from that medium, past the page
 * cache where the kernel allows it, and verified keyless: a write that the medium only pretended to
 * keep must not let the spool drop anything.
 */
import { randomUUID } from 'node:crypto';
import { lstat, mkdir, open, opendir, readdir, rename, statfs, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { AllowedSigner } from '../manifests/allowed-signers.js';
import type { SigningKey } from '../manifests/sshkey.js';
import { canonicalJson, parseCanonical } from '../manifests/canonical.js';
import { AirlockError, fromSystemError } from '../manifests/errors.js';
import { digestFile, readChunks, readSmall, type Digest } from '../manifests/hash.js';
import { HashWorker } from '../manifests/hash-worker.js';
import { parseSums, SUMS, SUMS_LIMIT, SUMS_SIG } from '../manifests/sums.js';
import { human } from '../verifier/human.js';
import { verifyKeyless, type BundleReport } from '../verifier/verify.js';
import { Catalog } from './catalog.js';
import { fsyncDir, removeTree, writeFileDurable } from './fsutil.js';
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
  if (!LABEL_RE.test(label)) throw new AirlockError('usage', `label ${JSON.stringify(label)} is not valid`, { hint: 'use 1 to 63 letters, digits, spaces, ".", "_" and "-", starting with a letter or digit' });
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
  const bad = (why: string) => new AirlockError('malformed', `${file}: ${why}`, { hint: 'the medium label is damaged; label the medium again with airlock media init --force (its copies are then counted under a new id)' });
  let v: unknown;
  try {
    v = parseCanonical(bytes, LABEL_FILE, LABEL_LIMIT);
  } catch (e) {
    throw bad((e as Error).message);
  }
  const o = v as Partial<MediumLabel> | null;
  if (typeof o !== 'object' || o === null || o.format !== LABEL_FORMAT || o.version !== 1) throw bad(`not an ${LABEL_FORMAT} version 1 label`);
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
    throw new AirlockError('target-exists', `${medium} is already labelled ${JSON.stringify(old.label)} (${old.uuid})`, { hint: 'a medium keeps its label; add --force only to give it a new identity (copies recorded under the old one no longer count)' });
  }
  if (!force && (await holdsBundles(medium))) {
    throw new AirlockError('target-exists', `${medium} already holds bundles but no label`, { hint: 'add --force to label it as it is; its bundles count as copies once verified there (airlock media copy)' });
  }
  const value: MediumLabel = { format: LABEL_FORMAT, version: 1, uuid: randomUUID(), label, created: now.toISOString() };
  const file = path.join(medium, LABEL_FILE);
  const temp = `${file}.partial`;
  await unlink(temp).catch(() => {});
  try {
    await writeFileDurable(temp, canonicalJson(value));
    await rename(temp, file);
    await fsyncDir(medium);
  } catch (e) {
    await unlink(temp).catch(() => {});
    throw fromSystemError(e, file, 'io');
  }
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
 * hash must be `sums` (the identity of the bundle that was written). Throws `verification-failed`
 * or `io`.
 */
export async function readBack(dir: string, sums: string, signers: readonly AllowedSigner[], now: Date, notes: ReadBackNotes, signal?: AbortSignal): Promise<BundleReport> {
  // every check but the volumes' bytes, which are read once below, past the page cache
  const report = await verifyKeyless(dir, { allowedSigners: signers, now, tool: 'airlock', volumes: 'size', ...(signal ? { signal } : {}) });
  const fail = (why: string) => new AirlockError('verification-failed', `${dir} does not read back as written: ${why}`, { hint: 'the medium may be failing: this copy does not count; copy the bundle to another medium (airlock media copy)' });
  if (report.findings.length > 0) throw fail(report.findings.map((f) => `${f.result}${f.file ? ` ${f.file}` : ''}: ${f.message}`).join('; '));
  if (report.sums !== sums) throw fail('its SHA256SUMS is not the one written');
  const onMedium = async (name: string, worker?: HashWorker) => {
    try {
      return await digestOnMedium(path.join(dir, name), notes, signal, worker);
    } catch (e) {
      if (signal?.aborted) throw e;
      throw new AirlockError('io', `${path.join(dir, name)}: cannot be read back from the medium: ${(e as Error).message}`, { hint: 'the medium may be failing; copy the bundle to another medium' });
    }
  };
  if ((await onMedium(SUMS)).sha256 !== sums) throw fail(`${SUMS} differs on the medium from what was written`);
  const lines = parseSums(await readSmall(path.join(dir, SUMS), SUMS_LIMIT));
  // two files at a time, one hashed here and one on a worker: the export is done, both cores are free
  const worker = lines.length > 1 ? new HashWorker() : undefined;
  let next = 0;
  let failed = false;
  const lane = async (hasher?: HashWorker) => {
    for (let i = next++; i < lines.length && !failed; i = next++) {
      const l = lines[i]!;
      const got = await onMedium(l.name, hasher).catch((e: unknown) => {
        failed = true;
        throw e;
      });
      if (got.sha256 !== l.sha256) {
        failed = true;
        throw fail(`${l.name}: sha256 read back from the medium differs from SHA256SUMS`);
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
  if ((await onMedium(SUMS_SIG)).sha256 !== (await digestFile(path.join(dir, SUMS_SIG))).sha256) throw fail(`${SUMS_SIG} differs on the medium from what was written`);
  return report;
}

/** The files of a verified bundle: the listed ones, SHA256SUMS and its signature. */
async function bundleFiles(dir: string): Promise<string[]> {
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
 * Copies the (verified) bundle folder `src` to `dst`, durably: into `dst.partial`, every file and
 * folder fsynced, then renamed. `progress` gets the bytes copied so far. Throws `target-exists` when
 * `dst` is there already, `medium-full` / `io` for the target medium (the partial copy is removed).
 */
export async function copyBundle(src: string, dst: string, progress?: (bytes: number) => void, signal?: AbortSignal): Promise<void> {
  if (await lstat(dst).then(() => true, () => false)) throw new AirlockError('target-exists', `${dst} already exists`);
  const partial = `${dst}.partial`;
  let copied = 0;
  try {
    const siteDir = path.dirname(dst);
    const made = await mkdir(siteDir, { recursive: true });
    if (made !== undefined) await fsyncDir(path.dirname(siteDir));
    await removeTree(partial);
    await mkdir(partial);
    for (const name of await bundleFiles(src)) {
      const fh = await open(path.join(partial, name), 'wx', 0o644);
      try {
        for await (const chunk of readChunks(path.join(src, name))) {
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
    await fsyncDir(partial);
    await rename(partial, dst);
    await fsyncDir(siteDir);
  } catch (e) {
    await removeTree(partial).catch(() => {});
    throw fromSystemError(e, dst, 'io');
  }
}

/** An allowed signer for this appliance's own key, for any site. */
export function selfSigner(key: SigningKey): AllowedSigner {
  return { principals: ['*'], publicKey: key.publicKey, certAuthority: false, line: 0 };
}

/**
 * Before an export: the medium's label (undefined for an unlabelled medium, which still works but
 * whose copies do not count) and enough free space for `needed` bytes. Throws `malformed` for a
 * damaged label and `medium-full` as requireSpace.
 */
export async function prepareMedium(medium: string, needed: number): Promise<MediumLabel | undefined> {
  // a medium that is not there is reported by the export itself, with its hint
  if (!(await lstat(medium).then((st) => st.isDirectory(), () => false))) return undefined;
  const label = await readLabel(medium);
  await requireSpace(medium, needed, 'the bundle');
  return label;
}

/**
 * After an export: reads the new bundle back from the medium and verifies it (see readBack), then,
 * on a labelled medium, records it in the catalog as a verified copy on that medium's UUID. Throws
 * as readBack; nothing is recorded then.
 */
export async function confirmOnMedium(written: { path: string; sumsSha256: string; site: string; seq: number }, label: MediumLabel | undefined, key: SigningKey, stateDir: string, now: Date, signal?: AbortSignal): Promise<ReadBackNotes> {
  const notes: ReadBackNotes = { cached: false };
  await readBack(written.path, written.sumsSha256, [selfSigner(key)], now, notes, signal);
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
