/*
 * The tablespaces of a restored base backup.
 *
 * The signed manifest names each one (coverage.postgres.base.tablespaces: OID, name, source location),
 * so before anything is decrypted every tablespace must have a folder (`--tablespace-map
 * OID_OR_NAME=DIR`), which obeys the data folder's rules: new or empty, not a symbolic link, none
 * inside another or inside the data folder. Each one's parts (pg/tblspc/<OID>/NNNNNN) are unpacked as
 * they are decrypted into `.<name>.airlock-partial` beside its folder, by the same strict unpacker as
 * the data folder; then pg_tblspc/<OID> in the data folder becomes a link to the mapped folder, and
 * tablespace_map, which would make recovery create links to the paths it names (the source's), is
 * checked against the manifest and removed. The partial folders are promoted with the data folder and
 * removed with it on failure.
 */
import { lstat, mkdir, readFile, rm, symlink } from 'node:fs/promises';
import path from 'node:path';
import type { Tablespace } from '../../manifests/coverage.js';
import { AirlockError } from '../../manifests/errors.js';
import type { Digest } from '../../manifests/hash.js';
import type { ReadEntry } from '../../manifests/tar.js';
import { removeTree } from '../fsutil.js';
import { isEmptyOrAbsent, promote } from './staging.js';
import { BaseBackupSink } from './unpack.js';

/** One `--tablespace-map` value: a tablespace's OID or name, and the folder it goes to. */
export interface TablespaceMapping {
  key: string;
  dir: string;
}

/** Parses `--tablespace-map OID_OR_NAME=DIR` values (split at the last `=`, so a name may hold one). Throws `usage`. */
export function parseTablespaceMaps(values: readonly string[]): TablespaceMapping[] {
  return values.map((v) => {
    const at = v.lastIndexOf('=');
    const key = v.slice(0, Math.max(at, 0));
    const dir = v.slice(at + 1);
    if (at <= 0 || dir === '')
      throw new AirlockError('usage', `--tablespace-map ${JSON.stringify(v)}: not OID_OR_NAME=DIR`, {
        hint: 'e.g. --tablespace-map 16384=/srv/pg/fast or --tablespace-map fast=/srv/pg/fast',
      });
    return { key, dir: path.resolve(dir) };
  });
}

/** A tablespace of the base backup and where it goes. */
export interface TablespaceTarget extends Tablespace {
  dir: string;
  /** where it is unpacked until it is promoted */
  partial: string;
}

const listed = (spaces: readonly Tablespace[]) => spaces.map((t) => `${t.oid} (${JSON.stringify(t.name)}, was ${t.location})`).join(', ');

const inside = (a: string, b: string) => a === b || a.startsWith(`${b}${path.sep}`);

/**
 * Matches the manifest's tablespaces with the mappings, before anything is decrypted. Throws
 * `tablespace-unmapped` for a tablespace no mapping names (the hint lists them all), `usage` for a
 * mapping that names no tablespace or one twice, or folders that nest, `target-exists` for a folder
 * that is not empty, `unsafe-target` for a link or a file.
 */
export async function planTablespaces(spaces: readonly Tablespace[], maps: readonly TablespaceMapping[], pgdata: string): Promise<TablespaceTarget[]> {
  const hint = `the base backup has the tablespace(s) ${listed(spaces)}: give --tablespace-map OID_OR_NAME=DIR for each`;
  const chosen = new Map<number, string>();
  for (const m of maps) {
    const t = spaces.find((x) => String(x.oid) === m.key) ?? spaces.find((x) => x.name === m.key);
    if (!t)
      throw new AirlockError('usage', `--tablespace-map ${JSON.stringify(m.key)}: the base backup has no tablespace of that OID or name`, {
        hint: spaces.length > 0 ? hint : 'the base backup has no tablespaces: leave --tablespace-map out',
      });
    if (chosen.has(t.oid)) throw new AirlockError('usage', `--tablespace-map: tablespace ${t.oid} (${JSON.stringify(t.name)}) is mapped twice`, { hint });
    chosen.set(t.oid, m.dir);
  }
  const missing = spaces.filter((t) => !chosen.has(t.oid));
  if (missing.length > 0)
    throw new AirlockError(
      'tablespace-unmapped',
      `the base backup has ${missing.length === 1 ? 'a tablespace' : 'tablespaces'} with no --tablespace-map: ${listed(missing)}`,
      { hint },
    );
  const targets = spaces.map((t) => {
    const dir = chosen.get(t.oid) as string;
    return { ...t, dir, partial: path.join(path.dirname(dir), `.${path.basename(dir)}.airlock-partial`) };
  });
  const taken = [pgdata, `${pgdata}.wal`];
  for (const t of targets) {
    const clash = [...taken, ...targets.filter((o) => o !== t).map((o) => o.dir)].find((o) => inside(t.dir, o) || inside(o, t.dir));
    if (clash !== undefined)
      throw new AirlockError('usage', `--tablespace-map: ${t.dir} overlaps ${clash}`, {
        hint: 'give each tablespace a folder of its own, outside the data folder',
      });
    if (!(await isEmptyOrAbsent(t.dir)))
      throw new AirlockError('target-exists', `${t.dir} (tablespace ${JSON.stringify(t.name)}) is not empty`, {
        hint: 'map each tablespace to a new or empty folder',
      });
  }
  return targets;
}

/** Unpacks the tablespaces' parts into their partial folders as the bundle is decrypted. */
export class TablespaceSinks {
  private readonly sinks = new Map<number, BaseBackupSink>();

  constructor(
    private readonly targets: readonly TablespaceTarget[],
    signal?: AbortSignal,
  ) {
    for (const t of targets) this.sinks.set(t.oid, new BaseBackupSink(t.partial, signal));
  }

  /** Makes the partial folders (empty). */
  async open(): Promise<void> {
    for (const t of this.targets) {
      await removeTree(t.partial);
      await mkdir(path.dirname(t.partial), { recursive: true });
      await mkdir(t.partial, { mode: 0o700 });
    }
  }

  /** The consumer of a `pg/tblspc/<OID>/NNNNNN` entry; throws `unsafe-entry` for a tablespace the manifest does not name. */
  take(entry: ReadEntry): ((body: AsyncIterable<Buffer>) => Promise<Digest>) | undefined {
    const m = /^pg\/tblspc\/([0-9]+)\/[0-9]+$/.exec(entry.path);
    if (!m) return undefined;
    const sink = this.sinks.get(Number(m[1]));
    if (!sink)
      throw new AirlockError('unsafe-entry', `${entry.path}: a tablespace the manifest does not name`, {
        hint: 'the bundle was not written by a complete export; nothing of it is used',
      });
    return sink.take(entry);
  }

  /** Waits until every tablespace is unpacked; throws what unpacking threw. */
  async finish(): Promise<void> {
    for (const sink of this.sinks.values()) await sink.finish();
  }

  async abort(): Promise<void> {
    for (const sink of this.sinks.values()) await sink.abort();
  }
}

/**
 * In the unpacked data folder `data`: checks that tablespace_map names exactly the tablespaces of
 * `targets` (by OID), removes it, and links pg_tblspc/<OID> to each mapped folder. Throws
 * `unsafe-entry` when the base backup disagrees with its manifest.
 */
export async function linkTablespaces(data: string, targets: readonly TablespaceTarget[]): Promise<void> {
  const map = path.join(data, 'tablespace_map');
  const text = await readFile(map, 'utf8').catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw e;
  });
  const oids = text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => Number(/^([0-9]+) /.exec(l)?.[1] ?? NaN))
    .sort((a, b) => a - b);
  const want = targets.map((t) => t.oid).sort((a, b) => a - b);
  if (oids.join(',') !== want.join(',')) {
    throw new AirlockError(
      'unsafe-entry',
      `the base backup's tablespace_map names tablespace(s) ${oids.join(', ') || 'none'}, its manifest ${want.join(', ') || 'none'}`,
      { hint: 'the bundle was not written by airlock export; nothing of it is used' },
    );
  }
  await rm(map, { force: true });
  if (targets.length === 0) return;
  const links = path.join(data, 'pg_tblspc');
  if (!(await lstat(links)).isDirectory()) throw new AirlockError('unsafe-entry', "the base backup's pg_tblspc is not a folder");
  for (const t of targets) await symlink(t.dir, path.join(links, String(t.oid)));
}

/** Renames each partial folder onto its mapped folder. */
export async function promoteTablespaces(targets: readonly TablespaceTarget[]): Promise<void> {
  for (const t of targets) await promote(t.partial, t.dir);
}

/** Removes the partial folders, and with `promoted` the mapped folders too (they were empty or absent before). */
export async function removeTablespaces(targets: readonly TablespaceTarget[], promoted: boolean): Promise<void> {
  for (const t of targets) {
    await removeTree(t.partial).catch(() => {});
    if (
      promoted &&
      (await lstat(t.dir).then(
        (s) => s.isDirectory(),
        () => false,
      ))
    )
      await removeTree(t.dir).catch(() => {});
  }
}
