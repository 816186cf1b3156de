/*
 * Restoring the configuration and secrets tier of one bundle into a folder.
 *
 *   verify (keyless) -> decrypt into a staging folder beside the target and check every entry
 *   against the inner manifest (staging.ts) -> lay the files out under their original paths inside
 *   the staging tree -> recreate folders, modes, times, hard links and symbolic links -> rename the
 *   staging tree onto the target (staging.ts).
 *
 * Nothing reaches the target before the last volume's hash matched the signed SHA256SUMS and the
 * inner manifest checked out; any failure removes the staging folder. Symbolic links are created
 * last, so no file is ever written through one, and every path is checked to stay inside the tree.
 */
import { chmod, chown, lchown, link, lstat, lutimes, mkdir, rename, symlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import { isSourcePath, type SourceRecord } from '../../manifests/inner.js';
import type { DirRecord, HardlinkRecord, IndexRecord, SymlinkRecord } from '../../manifests/records.js';
import type { BundleReport } from '../../verifier/verify.js';
import { fsyncDir } from '../fsutil.js';
import { openStaging, promote, requireEmpty, stageBundle, verifiedManifest, type Notes } from './staging.js';

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
 * Restores the files of the verified bundle `bundle` into `to`. Throws `target-exists` when `to` is
 * not empty, `verification-failed` when the payload does not match its manifests, `decrypt-failed`,
 * `unsafe-entry`, volume check errors, and typed system errors; the target is untouched on failure.
 */
export async function restoreFiles(
  bundle: BundleReport,
  identities: readonly Uint8Array[],
  to: string,
  opts: { signal?: AbortSignal; onBytes?: (n: number) => void; notes?: Notes } = {},
): Promise<RestoreSummary> {
  const manifest = verifiedManifest(bundle);
  const target = path.resolve(to);
  await requireEmpty(target);
  const staging = await openStaging(target, opts.notes ? { notes: opts.notes } : {});
  const entriesDir = path.join(staging.dir, 'entries');
  const tree = path.join(staging.dir, 'tree');
  const summary: RestoreSummary = {
    bundle: bundle.path,
    site: manifest.site,
    seq: manifest.seq,
    to: target,
    files: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    skipped: [],
  };

  try {
    await mkdir(tree, { mode: 0o700 });
    const records: IndexRecord[] = [];
    await stageBundle(bundle, identities, entriesDir, {
      onRecord: (r) => records.push(r),
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onBytes ? { onBytes: opts.onBytes } : {}),
    });

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
      if (
        !first ||
        !(await lstat(first).then(
          (st) => st.isFile(),
          () => false,
        ))
      ) {
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
    await promote(tree, target);
    return summary;
  } catch (e) {
    throw fromSystemError(e, target);
  } finally {
    await staging.close();
  }
}
