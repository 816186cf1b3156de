/*
 * The restore side of WAL: `airlock wal-fetch %f %p --from DIR` as PostgreSQL's restore_command.
 *
 * DIR holds WAL files under their own names, extracted from bundles into staging (`pg/wal/<name>`).
 * A file is handed to PostgreSQL only once its sha256 matches a known one: its sidecar
 * `<name>.sha256` beside it, or its line in a sha256sum-format index (`--sums`, e.g. the bundle's
 * MANIFEST.sha256, whose paths are relative to its own folder). The copy goes to a temporary name
 * beside %p and is renamed only after the hash matched, so PostgreSQL never sees a wrong file.
 *
 * Whether a file is absent is a result, not an error: only a missing file may end recovery
 * (exit 1); every failure, including a missing folder, exits above 125 so PostgreSQL aborts
 * recovery instead of stopping short with data missing (see WAL_FETCH_EXIT).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, lstatSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import { LONG_PAGE_HEADER_SIZE, checkSegmentHeader, parseWalFileName } from '../sources/postgres/wal.js';
import { hashFileSync } from '../spool.js';

const SIDECAR_SUFFIX = '.sha256';

export interface FetchOptions {
  /** the folder holding the WAL files */
  from: string;
  /** a sha256sum-format index whose paths are relative to its folder */
  sums?: string;
}

function knownSha256(name: string, src: string, opts: FetchOptions): string {
  const sidecar = `${src}${SIDECAR_SUFFIX}`;
  let text: string | undefined;
  try {
    text = readFileSync(sidecar, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(e, sidecar);
  }
  if (text !== undefined) {
    const m = text.match(/^([0-9a-f]{64})  (\S+)\n$/);
    if (!m || m[2] !== name) throw new AirlockError('malformed', `${sidecar}: not a sha256sum line for ${name}`, { hint: 'extract the file and its sidecar again from the bundle' });
    return m[1] as string;
  }
  if (opts.sums !== undefined) {
    let sums: string;
    try {
      sums = readFileSync(opts.sums, 'utf8');
    } catch (e) {
      throw fromSystemError(e, opts.sums);
    }
    const base = path.dirname(path.resolve(opts.sums));
    const want = path.resolve(src);
    for (const line of sums.split('\n')) {
      const m = line.match(/^([0-9a-f]{64}) [ *](.+)$/);
      if (m && path.resolve(base, m[2] as string) === want) return m[1] as string;
    }
  }
  throw new AirlockError('bad-wal', `${name}: no known sha256 for it`, {
    hint: `put ${name}${SIDECAR_SUFFIX} beside it, or give --sums with the bundle's MANIFEST.sha256; an unverified file is never handed to postgresql`,
  });
}

/**
 * Copies WAL file `name` from `opts.from` to `target` after checking it. Returns 'absent' when the
 * folder exists but the file is not in it. Throws `usage` for a name that is not a WAL file name,
 * `not-found` for a missing folder, `checksum-mismatch` when the bytes do not match the known hash,
 * `bad-wal` when no hash is known or a segment's header does not fit its name, `malformed` for a bad
 * sidecar, and typed system errors. On any failure `target` is left untouched.
 */
export function fetchWal(name: string, target: string, opts: FetchOptions): 'copied' | 'absent' {
  const parsed = parseWalFileName(name);
  if (!parsed) throw new AirlockError('usage', `${JSON.stringify(name)} is not a wal file name`, { hint: "restore_command must pass %f then %p: restore_command = 'airlock wal-fetch %f %p --from DIR'" });
  try {
    if (!statSync(opts.from).isDirectory()) throw new Error('not a folder');
  } catch (e) {
    throw new AirlockError('not-found', `the wal folder ${opts.from} is not a folder`, { hint: 'give --from the folder the bundles were extracted to (…/pg/wal)', cause: e });
  }
  const src = path.join(opts.from, name);
  try {
    lstatSync(src);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(e, src);
    // absent ends recovery, so only a file nothing vouches for may be absent: one with a sidecar
    // or a line in --sums was extracted incompletely or deleted, and recovery must stop instead
    let vouched = false;
    try {
      knownSha256(name, src, opts);
      vouched = true;
    } catch {
      // unknown: truly absent
    }
    if (vouched) throw new AirlockError('not-found', `${name}: its checksum is known but the file is missing from ${opts.from}`, { hint: 'extract the WAL of the bundles again; recovery was stopped so it does not end early' });
    return 'absent';
  }
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
  let out: number | undefined;
  try {
    const expected = knownSha256(name, src, opts);
    out = openSync(tmp, 'wx', 0o600);
    const fd = out;
    const { sha256, size, first } = hashFileSync(src, LONG_PAGE_HEADER_SIZE, (chunk) => {
      let off = 0;
      while (off < chunk.byteLength) off += writeSync(fd, chunk, off, chunk.byteLength - off);
    });
    if (sha256 !== expected) {
      throw new AirlockError('checksum-mismatch', `${name}: sha256 ${sha256} does not match the known ${expected}`, {
        hint: 'the restored wal file is damaged; extract it again from the bundle (airlock-verify the bundle first)',
      });
    }
    if (parsed.kind === 'segment') checkSegmentHeader(name, first, { fileSize: size });
    // no fsync: PostgreSQL fsyncs a restored file itself when it keeps it, and a crash here only
    // means the fetch runs again
    closeSync(out);
    out = undefined;
    renameSync(tmp, target);
    return 'copied';
  } catch (e) {
    if (out !== undefined) closeSync(out);
    try {
      unlinkSync(tmp);
    } catch {
      // never created
    }
    throw e instanceof AirlockError ? e : fromSystemError(e, target);
  }
}
