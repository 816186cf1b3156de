/*
 * Base backups of clusters with tablespaces.
 *
 * pg_basebackup writes one tablespace to stdout, never more; with tablespaces it writes base.tar, one
 * <OID>.tar per tablespace and backup_manifest into a folder. Such a backup therefore goes into a
 * private scratch folder (0700, beside the catalog in the state folder, removed afterwards, failure
 * included), which costs the backup's size in scratch space once, and is then cut into parts like a
 * streamed one:
 *
 *   pg/base/NNNNNN          base.tar with backup_manifest appended as its last member, which is what
 *                           pg_basebackup itself sends to stdout, so the parts still concatenate to
 *                           one tar that unpacks into a data folder with its backup_manifest
 *   pg/tblspc/<OID>/NNNNNN  <OID>.tar: the tablespace folder's contents (PG_<major>_<catversion>/...)
 *
 * base.tar carries tablespace_map ("OID LOCATION" lines) and an empty pg_tblspc/, never links; a
 * restore maps each tablespace to a folder of its own (restore/tablespaces.ts).
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { childFailed, runChild } from '../../../manifests/child.js';
import type { Tablespace } from '../../../manifests/coverage.js';
import { AirlockError } from '../../../manifests/errors.js';
import type { UnplacedRecord } from '../../../manifests/records.js';
import { END_OF_ARCHIVE, encodeHeader, paddingFor } from '../../../manifests/tar.js';
import type { SourceItem } from '../../bundle/writer.js';
import { removeTree } from '../../fsutil.js';
import { clientEnv } from '../../postgres/programs.js';
import { program, queryJson, type Connection } from './server.js';

/**
 * The tablespaces besides pg_default and pg_global, sorted by OID. One JSON value, so a name with a
 * newline or any other byte comes back whole.
 */
export async function listTablespaces(conn: Connection, signal?: AbortSignal): Promise<Tablespace[]> {
  const sql = `SELECT coalesce(json_agg(json_build_object('oid', oid::int8, 'name', spcname, 'location', pg_tablespace_location(oid)) ORDER BY oid), '[]') FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')`;
  const list = await queryJson<unknown>(conn, sql, signal);
  if (!Array.isArray(list)) throw new AirlockError('pg-failed', 'postgresql: unexpected answer when listing tablespaces');
  return list as Tablespace[];
}

/** A piece of a part: a byte range of a scratch file, or bytes made here (tar headers, padding). */
type Piece = { file: string; start: number; end: number } | { bytes: Buffer };

const pieceSize = (p: Piece) => ('bytes' in p ? p.bytes.byteLength : p.end - p.start);

/** The bytes `from` to `to` of the stream the pieces form, read when the writer asks for them. */
async function* readRange(pieces: readonly Piece[], from: number, to: number): AsyncGenerator<Buffer> {
  let at = 0;
  for (const p of pieces) {
    const size = pieceSize(p);
    const a = Math.max(from, at);
    const b = Math.min(to, at + size);
    at += size;
    if (a >= b) continue;
    if ('bytes' in p) yield p.bytes.subarray(a - (at - size), b - (at - size));
    else yield* createReadStream(p.file, { start: p.start + a - (at - size), end: p.start + b - (at - size) - 1 }) as AsyncIterable<Buffer>;
  }
}

export interface StreamEnd {
  parts: number;
  bytes: number;
}

/** The stream `pieces` form as entries `<prefix>/NNNNNN` of at most `partSize` bytes (one empty part for an empty stream). */
function* partsOf(
  pieces: readonly Piece[],
  prefix: string,
  record: (part: number) => UnplacedRecord,
  partSize: number,
  mtime: number,
  end: StreamEnd,
): Generator<SourceItem> {
  const total = pieces.reduce((a, p) => a + pieceSize(p), 0);
  for (let from = 0, part = 1; from < total || part === 1; from += partSize, part++) {
    const to = Math.min(total, from + partSize);
    end.parts = part;
    end.bytes = to;
    yield {
      kind: 'entry',
      name: `${prefix}/${String(part).padStart(6, '0')}`,
      size: to - from,
      mode: 0o600,
      mtime,
      open: () => readRange(pieces, from, to),
      record: record(part),
    };
  }
}

/**
 * base.tar with backup_manifest as its last member: the tar without its end-of-archive blocks, the
 * member, then the end again. Throws `pg-failed` when base.tar does not end as a tar does.
 */
async function baseWithManifest(dir: string, mtime: number): Promise<Piece[]> {
  const base = path.join(dir, 'base.tar');
  const manifest = path.join(dir, 'backup_manifest');
  const size = (await stat(base)).size;
  const tail = Buffer.alloc(END_OF_ARCHIVE.byteLength);
  const fh = await open(base, 'r');
  try {
    if (
      size % 512 !== 0 ||
      size < tail.byteLength ||
      (await fh.read(tail, 0, tail.byteLength, size - tail.byteLength)).bytesRead !== tail.byteLength ||
      !tail.equals(END_OF_ARCHIVE)
    ) {
      throw new AirlockError('pg-failed', 'pg_basebackup wrote a base.tar that does not end as a tar does', {
        hint: 'nothing was written; export again, and report it if it stays',
      });
    }
  } finally {
    await fh.close();
  }
  const manifestSize = (await stat(manifest)).size;
  return [
    { file: base, start: 0, end: size - tail.byteLength },
    { bytes: encodeHeader({ path: 'backup_manifest', type: 'file', size: manifestSize, mode: 0o600, mtime }) },
    { file: manifest, start: 0, end: manifestSize },
    { bytes: Buffer.from(paddingFor(manifestSize)) },
    { bytes: END_OF_ARCHIVE },
  ];
}

/** Runs pg_basebackup to its end; throws `child-failed` with its last stderr line, `not-found`. */
async function runToEnd(cmd: string, args: readonly string[], signal?: AbortSignal): Promise<void> {
  const r = await runChild(cmd, args, {
    env: clientEnv(),
    install: "install the PostgreSQL client programs of the server's major version, or give --pg-bin",
    ...(signal ? { signal } : {}),
  });
  if (r.code !== 0) throw childFailed(cmd, r, { hint: 'nothing was written; fix the cause and export again' });
}

const SCRATCH_PREFIX = '.pg-base-';

export interface TablespaceBackupOptions {
  conn: Connection;
  /** the tablespaces listed before the backup */
  tablespaces: readonly Tablespace[];
  /** the folder the private scratch folder is made in: the state folder, whose export lock is held */
  scratch: string;
  label: string;
  partSize: number;
  mtime: number;
  signal?: AbortSignal;
}

/**
 * Takes a base backup of a cluster with tablespaces into scratch and yields its entries: base.tar's
 * parts, then each tablespace's parts and its `pg-tblspc-end` record. Returns base.tar's part count
 * and bytes and the tablespaces the backup holds. Throws `child-failed` when pg_basebackup fails,
 * `pg-failed` when a tablespace was created while it ran (its name and location are unknown).
 */
export async function* tablespaceBackup(opts: TablespaceBackupOptions): AsyncGenerator<SourceItem, { base: StreamEnd; tablespaces: Tablespace[] }> {
  // a killed export's copy: this export holds the state folder's export lock, so none is in use
  for (const n of await readdir(opts.scratch)) if (n.startsWith(SCRATCH_PREFIX)) await removeTree(path.join(opts.scratch, n));
  const scratch = await mkdtemp(path.join(opts.scratch, SCRATCH_PREFIX));
  try {
    const dir = path.join(scratch, 'backup');
    const args = ['-d', opts.conn.conninfo, '-w', '-Ft', '-D', dir, '-X', 'none', '--checkpoint=fast', '--label', opts.label];
    await runToEnd(program(opts.conn, 'pg_basebackup'), args, opts.signal);
    const oids = (await readdir(dir))
      .map((n) => /^([1-9][0-9]*)\.tar$/.exec(n)?.[1])
      .filter((n) => n !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    const held = oids.map((oid) => {
      const t = opts.tablespaces.find((x) => x.oid === oid);
      if (!t) throw new AirlockError('pg-failed', `tablespace ${oid} was created while the base backup ran`, { hint: 'nothing was written; export again' });
      return t;
    });
    const base: StreamEnd = { parts: 0, bytes: 0 };
    yield* partsOf(await baseWithManifest(dir, opts.mtime), 'pg/base', (part) => ({ type: 'pg-base', part }), opts.partSize, opts.mtime, base);
    for (const t of held) {
      const file = path.join(dir, `${t.oid}.tar`);
      const prefix = `pg/tblspc/${t.oid}`;
      const end: StreamEnd = { parts: 0, bytes: 0 };
      yield* partsOf(
        [{ file, start: 0, end: (await stat(file)).size }],
        prefix,
        (part) => ({ type: 'pg-tblspc', oid: t.oid, part }),
        opts.partSize,
        opts.mtime,
        end,
      );
      yield { kind: 'record', record: { type: 'pg-tblspc-end', oid: t.oid, name: t.name, location: t.location, prefix, parts: end.parts, bytes: end.bytes } };
    }
    return { base, tablespaces: held };
  } finally {
    await removeTree(scratch);
  }
}
