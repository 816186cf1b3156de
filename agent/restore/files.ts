/*
 * Restoring the configuration and secrets tier of one bundle into a folder.
 *
 *   verify (keyless) -> decrypt into a staging folder beside the target, hashing the ciphertext as it
 *   is read -> check every entry against the inner manifest -> lay the files out under their original
 *   paths inside the staging tree -> recreate folders, modes, times, hard links and symbolic links ->
 *   rename the staging tree onto the target.
 *
 * Nothing reaches the target before the last volume's hash matched the signed SHA256SUMS and the
 * inner manifest checked out; any failure removes the staging folder. Symbolic links are created
 * last, so no file is ever written through one, and every path is checked to stay inside the tree.
 */
import { randomBytes, createHash } from 'node:crypto';
import { chmod, chown, lchown, link, lstat, lutimes, mkdir, open, readdir, rename, symlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import type { Digest } from '../../manifests/hash.js';
import { isSourcePath, type SourceRecord } from '../../manifests/inner.js';
import { ENTRY_PATH_RE, type DirRecord, type HardlinkRecord, type IndexRecord, type SymlinkRecord } from '../../manifests/records.js';
import { checkInner } from '../../manifests/inner-check.js';
import { openPlaintext } from '../../manifests/payload.js';
import { readTar, type ReadEntry } from '../../manifests/tar.js';
import { fsyncDir, promoteTree, removeTree } from '../fsutil.js';
import type { BundleReport } from '../../verifier/verify.js';

export interface RestoreSummary {
  bundle: string;
  site: string;
  seq: number;
  to: string;
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  /** records that were not restored, with why */
  skipped: string[];
}

/** A `source` from the index as a relative path inside the tree; throws `unsafe-entry` otherwise. */
function treePath(source: string): string {
  if (!isSourcePath(source)) throw new AirlockError('unsafe-entry', `index names an unsafe source path ${JSON.stringify(source)}`);
  return source.slice(1);
}

/**
 * Creates the folders above `rel` inside `tree` and checks that each is a real folder, so nothing is
 * ever placed through a symbolic link (the index was checked for this; this is the second lock).
 */
async function parentsInside(tree: string, rel: string): Promise<string> {
  const dest = path.join(tree, rel);
  await mkdir(path.dirname(dest), { recursive: true, mode: 0o700 });
  let at = tree;
  for (const c of rel.split('/').slice(0, -1)) {
    at = path.join(at, c);
    const st = await lstat(at);
    if (!st.isDirectory()) throw new AirlockError('unsafe-entry', `${rel}: ${path.relative(tree, at)} is not a folder`);
  }
  return dest;
}

/**
 * Sets a restored item's owner (when running as root), mode (not for links) and times, in that
 * order: the kernel clears the setuid and setgid bits of a file whose owner changes, even for root,
 * so a mode set before the chown would lose them.
 */
async function applyMeta(dest: string, r: SourceRecord, link: boolean): Promise<void> {
  if (process.getuid?.() === 0) await (link ? lchown : chown)(dest, r.uid, r.gid);
  const mode = modeOf(r);
  if (!link && mode !== undefined) await chmod(dest, mode);
  const t = new Date(r.mtime);
  if (!Number.isNaN(t.getTime())) await (link ? lutimes : utimes)(dest, t, t);
}

function modeOf(r: SourceRecord): number | undefined {
  return /^[0-7]{3,4}$/.test(r.mode) ? parseInt(r.mode, 8) : undefined;
}

/**
 * Whether a restore target is absent or an empty folder. Throws `unsafe-target` when it is a
 * symbolic link (even to an empty folder: the restore would land wherever it points, and the final
 * rename cannot replace it) or not a folder, before anything is decrypted; typed system errors.
 */
export async function isEmptyOrAbsent(dir: string): Promise<boolean> {
  try {
    const st = await lstat(dir);
    if (st.isSymbolicLink()) throw new AirlockError('unsafe-target', `${dir} is a symbolic link`, { hint: 'restore into a new or empty folder, named by its real path' });
    if (!st.isDirectory()) throw new AirlockError('unsafe-target', `${dir} is not a folder`, { hint: 'restore into a new or empty folder' });
    return (await readdir(dir)).length === 0;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw fromSystemError(e, dir);
  }
}

/**
 * Refuses a restore target that is a symbolic link or not a folder (`unsafe-target`). Commands call
 * it first, before the set is verified or anything decrypted; whether the target is empty is checked
 * where the restore begins.
 */
export async function refuseUnsafeTarget(dir: string): Promise<void> {
  await isEmptyOrAbsent(path.resolve(dir));
}

/** Writes one payload entry into the staging folder while hashing it. Throws `unsafe-entry` for a name airlock does not write, and system errors. */
export async function stageEntry(entriesDir: string, entry: ReadEntry, body: AsyncIterable<Buffer>): Promise<Digest> {
  if (!ENTRY_PATH_RE.test(entry.path)) throw new AirlockError('unsafe-entry', `tar entry ${JSON.stringify(entry.path)} is not a name airlock writes`);
  const file = path.join(entriesDir, entry.path);
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

/**
 * Restores the files of the verified bundle `bundle` into `to`. Throws `target-exists` when `to` is
 * not empty, `verification-failed` when the payload does not match its manifests, `decrypt-failed`,
 * `unsafe-entry`, volume check errors, and typed system errors; the target is untouched on failure.
 */
export async function restoreFiles(bundle: BundleReport, identities: readonly Uint8Array[], to: string, signal?: AbortSignal, onBytes?: (n: number) => void): Promise<RestoreSummary> {
  const manifest = bundle.manifest;
  if (!manifest || bundle.findings.length > 0) throw new AirlockError('verification-failed', `${bundle.path} did not verify; nothing restored`);
  const target = path.resolve(to);
  if (!(await isEmptyOrAbsent(target))) throw new AirlockError('target-exists', `${target} is not empty`, { hint: 'restore into a new or empty folder' });
  const parent = path.dirname(target);
  await mkdir(parent, { recursive: true });
  // a restore that was killed leaves decrypted data in its staging folder: remove it now
  const stagingPrefix = `.${path.basename(target)}.airlock-staging-`;
  for (const n of await readdir(parent)) if (n.startsWith(stagingPrefix)) await removeTree(path.join(parent, n));
  const staging = path.join(parent, `${stagingPrefix}${randomBytes(6).toString('hex')}`);
  const entriesDir = path.join(staging, 'entries');
  const tree = path.join(staging, 'tree');
  const summary: RestoreSummary = { bundle: bundle.path, site: manifest.site, seq: manifest.seq, to: target, files: 0, dirs: 0, symlinks: 0, hardlinks: 0, skipped: [] };

  try {
    await mkdir(entriesDir, { recursive: true, mode: 0o700 });
    await mkdir(tree, { mode: 0o700 });
    const records: IndexRecord[] = [];
    const plain = openPlaintext(bundle.path, manifest.payload, identities, signal, onBytes);
    const problems = await checkInner(readTar(plain), manifest, {
      onEntry: (entry, body) => stageEntry(entriesDir, entry, body),
      onRecord: (r) => records.push(r),
    });
    if (problems.length > 0) {
      const first = problems.slice(0, 3).map((p) => `${p.result} ${p.file}: ${p.message}`).join('; ');
      throw new AirlockError('verification-failed', `the payload of ${path.basename(bundle.path)} does not match its manifests (${problems.length} problem(s)): ${first}`, { hint: 'run airlock-verify with --identity for the full list; nothing was restored' });
    }
    if (!plain.readableEnded) throw new AirlockError('internal', 'the payload was not read to its end');

    // lay out: folders and files now, links after, folder modes and times last (deepest first)
    const placed = new Map<string, string>(); // source -> path in the tree
    const place = async (r: SourceRecord) => {
      const rel = treePath(r.source);
      if (placed.has(rel)) throw new AirlockError('unsafe-entry', `index names ${r.source} twice`);
      const dest = await parentsInside(tree, rel);
      placed.set(rel, dest);
      return dest;
    };
    const dirs: { dest: string; r: DirRecord }[] = [];
    const links: (SymlinkRecord | HardlinkRecord)[] = [];
    for (const r of records) {
      if (r.type === 'dir') {
        const dest = await place(r);
        await mkdir(dest, { recursive: true, mode: 0o700 });
        dirs.push({ dest, r });
        summary.dirs++;
      } else if (r.type === 'file') {
        const dest = await place(r);
        await rename(path.join(entriesDir, r.path), dest);
        await applyMeta(dest, r, false);
        summary.files++;
      } else if (r.type === 'symlink' || r.type === 'hardlink') {
        links.push(r);
      } else if (r.type === 'special') {
        summary.skipped.push(`${r.source}: ${r.type} (${r.kind}) recorded, not recreated`);
      }
    }
    // hard links first: a symbolic link must never be in place while anything else is still created
    for (const r of links.filter((x) => x.type === 'hardlink')) {
      const first = isSourcePath(r.target) ? placed.get(treePath(r.target)) : undefined;
      if (!first || !(await lstat(first).then((st) => st.isFile(), () => false))) {
        summary.skipped.push(`${r.source}: hard link to ${r.target}, which is not in this bundle`);
        continue;
      }
      await link(first, await place(r));
      summary.hardlinks++;
    }
    for (const r of links.filter((x) => x.type === 'symlink')) {
      if (r.target.includes('\0') || r.target.length === 0) throw new AirlockError('unsafe-entry', `symlink ${r.source} has no valid target`);
      const dest = await place(r);
      await symlink(r.target, dest);
      await applyMeta(dest, r, true);
      summary.symlinks++;
    }
    dirs.sort((a, b) => b.dest.length - a.dest.length);
    for (const { dest, r } of dirs) {
      await fsyncDir(dest);
      await applyMeta(dest, r, false);
    }

    // promote: the tree becomes the target in one rename
    await chmod(tree, 0o755);
    await promoteTree(tree, target);
    return summary;
  } catch (e) {
    throw fromSystemError(e, target);
  } finally {
    await removeTree(staging).catch(() => process.stderr.write(`airlock: warning: could not remove ${staging}; delete it, it may hold decrypted data\n`));
  }
}
