/*
 * The restore side of WAL: `airlock wal-fetch %f %p --from DIR` as PostgreSQL's restore_command.
 *
 * DIR holds WAL files under their own names, extracted from bundles into staging (`pg/wal/<name>`).
 * A file is handed to PostgreSQL only once its sha256 matches a known one: its sidecar
 * `<name>.sha256` beside it, or its line in a sha256sum-format index (`--sums`, e.g. the bundle's
 * MANIFEST.sha256, whose paths are relative to its own folder). The copy goes to a temporary name
 * beside %p and is renamed only after the hash matched, so PostgreSQL never sees a wrong file.
 *
 * A matching hash proves only that the bundle's signer put these bytes under this name, and a signer
 * (an appliance taken over) can put anything there. So what the bytes say must also agree with the
 * name before PostgreSQL sees them, or recovery could replay another segment in this one's place and
 * silently diverge: a segment's (or .partial's) first page must name it (page address, segment size,
 * and the name's timeline, or an ancestor for the segment the timeline began in, as the name
 * timeline's own checked history file says), a history file must parse with every ancestor below its
 * own timeline, and a backup history file must start in the segment its name says.
 *
 * Whether a file is absent is a result, not an error: only a missing file may end recovery
 * (exit 1); every failure, including a missing folder, exits above 125 so PostgreSQL aborts
 * recovery instead of stopping short with data missing (see WAL_FETCH_EXIT). A standby (--standby)
 * is the one exception: there, a file announced by its sidecar but not placed yet is absent too.
 */
import { lstatSync, readFileSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomicSync } from '../../manifests/atomic.js';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import { INNER_MANIFEST } from '../../manifests/inner.js';
import { parseSumLine } from '../../manifests/sums.js';
import {
  LONG_PAGE_HEADER_SIZE,
  checkSegmentHeader,
  parseBackupLabel,
  parseHistory,
  parseLsn,
  parseWalFileName,
  type TimelineHistory,
  type WalFileName,
} from '../postgres/wal.js';
import { hashFileSync, readSmallSync, sidecarSha256 } from '../spool.js';

const SIDECAR_SUFFIX = '.sha256';
/** A sidecar is one sha256sum line. */
const SIDECAR_LIMIT = 4096;
/** History and backup history files are a few lines; anything larger is not one. */
const TEXT_LIMIT = 1024 * 1024;

export interface FetchOptions {
  /** the folder holding the WAL files */
  from: string;
  /** a sha256sum-format index whose paths are relative to its folder */
  sums?: string;
  /**
   * The server is a warm standby that `standby apply` feeds while it runs: a file whose sidecar is
   * there but which is not (yet) is absent, since apply places the sidecar first. A standby never ends
   * recovery on an absent file, it asks again later; a restore would end early, so it is refused there.
   */
  standby?: boolean;
}

function knownSha256(name: string, src: string, opts: FetchOptions): string {
  const sidecar = `${src}${SIDECAR_SUFFIX}`;
  let text: string | undefined;
  try {
    // never through a link, never blocking on a FIFO: PostgreSQL would wait on recovery forever
    text = readSmallSync(sidecar, SIDECAR_LIMIT);
  } catch (e) {
    if (e instanceof AirlockError)
      throw new AirlockError('malformed', `${sidecar}: not a regular file of at most ${SIDECAR_LIMIT} bytes`, {
        hint: 'extract the file and its sidecar again from the bundle',
      });
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(e, sidecar);
  }
  if (text !== undefined) {
    const sha256 = sidecarSha256(name, text);
    if (sha256 === undefined)
      throw new AirlockError('malformed', `${sidecar}: not a sha256sum line for ${name}`, { hint: 'extract the file and its sidecar again from the bundle' });
    return sha256;
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
      const l = parseSumLine(line, true);
      if (l && path.resolve(base, l.name) === want) return l.sha256;
    }
  }
  throw new AirlockError('bad-wal', `${name}: no known sha256 for it`, {
    hint: `put ${name}${SIDECAR_SUFFIX} beside it, or give --sums with the bundle's ${INNER_MANIFEST}; an unverified file is never handed to postgresql`,
  });
}

/**
 * The history of `timeline` from the folder, checked against its own known sha256, or undefined when
 * the folder has none. Throws as fetchWal does for a bad one.
 */
function historyOf(timeline: number, opts: FetchOptions): TimelineHistory | undefined {
  const name = `${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
  const src = path.join(opts.from, name);
  try {
    lstatSync(src);
  } catch {
    return undefined;
  }
  const expected = knownSha256(name, src, opts);
  const { sha256, first } = hashFileSync(src, TEXT_LIMIT + 1);
  if (sha256 !== expected)
    throw new AirlockError('checksum-mismatch', `${name}: sha256 ${sha256} does not match the known ${expected}`, {
      hint: 'the restored wal file is damaged; extract it again from the bundle (airlock-verify the bundle first)',
    });
  return checkText(name, first);
}

/** Parses a history or backup history file's bytes (see parseHistory, parseBackupLabel). Throws `bad-wal`. */
function checkText(name: string, bytes: Buffer): TimelineHistory | undefined {
  if (bytes.byteLength > TEXT_LIMIT)
    throw new AirlockError('bad-wal', `${name}: over ${TEXT_LIMIT} bytes, too large for a history file`, {
      hint: 'the bundle carries a file that is not what its name says; recovery was stopped',
    });
  const text = bytes.toString('utf8');
  if (name.endsWith('.history')) return parseHistory(name, text);
  parseBackupLabel(name, text);
  return undefined;
}

/**
 * Checks that a segment's first page (`first`, of a file of `size` bytes) is the segment `parsed`
 * names: see the top of this file. Throws `bad-wal`.
 */
function checkSegment(parsed: WalFileName & { kind: 'segment' | 'partial' }, first: Buffer, size: number, opts: FetchOptions): void {
  // the first segment of a timeline begins with its parent's pages: only the timeline's history vouches for them
  const older = first.byteLength >= 8 && first.readUInt32LE(4) < parsed.timeline;
  const history = older ? historyOf(parsed.timeline, opts) : undefined;
  const c = checkSegmentHeader(parsed.name, first, { fileSize: size, ...(history ? { history } : {}) });
  const parent = history?.parents.find((p) => p.timeline === c.header.timeline);
  if (parent && parseLsn(parent.end) >= parseLsn(c.startLsn) + BigInt(c.header.long.segmentSize)) {
    // a timeline's pages at the start of a later timeline's segment only where that timeline ended
    throw new AirlockError('bad-wal', `${parsed.name}: its first page is of timeline ${c.header.timeline}, which ended at ${parent.end}, after this segment`, {
      hint: "only the segment a timeline begins in starts with its parent's pages; the bundle carries a file that is not what its name says, and recovery was stopped",
    });
  }
}

/**
 * Copies WAL file `name` from `opts.from` to `target` after checking it. Returns 'absent' when the
 * folder exists but the file is not in it. Throws `usage` for a name that is not a WAL file name,
 * `not-found` for a missing folder, `checksum-mismatch` when the bytes do not match the known hash,
 * `bad-wal` when no hash is known or the bytes do not fit the name (see the top of this file), `malformed` for a bad
 * sidecar, and typed system errors. On any failure `target` is left untouched.
 */
export function fetchWal(name: string, target: string, opts: FetchOptions): 'copied' | 'absent' {
  const parsed = parseWalFileName(name);
  if (!parsed)
    throw new AirlockError('usage', `${JSON.stringify(name)} is not a wal file name`, {
      hint: "restore_command must pass %f then %p: restore_command = 'airlock wal-fetch %f %p --from DIR'",
    });
  try {
    if (!statSync(opts.from).isDirectory()) throw new Error('not a folder');
  } catch (e) {
    throw new AirlockError('not-found', `the wal folder ${opts.from} is not a folder`, {
      hint: 'give --from the folder the bundles were extracted to (…/pg/wal)',
      cause: e,
    });
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
    } catch (e) {
      // unknown: truly absent; but a sidecar that cannot be read is there, so recovery must stop
      if (!(e instanceof AirlockError && e.code === 'bad-wal')) throw e;
    }
    if (vouched && opts.standby !== true)
      throw new AirlockError('not-found', `${name}: its checksum is known but the file is missing from ${opts.from}`, {
        hint: 'extract the WAL of the bundles again; recovery was stopped so it does not end early',
      });
    return 'absent';
  }
  try {
    const expected = knownSha256(name, src, opts);
    // no fsync: PostgreSQL fsyncs a restored file itself when it keeps it, and a crash here only
    // means the fetch runs again
    writeFileAtomicSync(
      target,
      (fd) => {
        const segment = parsed.kind === 'segment' || parsed.kind === 'partial';
        const { sha256, size, first } = hashFileSync(src, segment ? LONG_PAGE_HEADER_SIZE : TEXT_LIMIT + 1, (chunk) => {
          let off = 0;
          while (off < chunk.byteLength) off += writeSync(fd, chunk, off, chunk.byteLength - off);
        });
        if (sha256 !== expected) {
          throw new AirlockError('checksum-mismatch', `${name}: sha256 ${sha256} does not match the known ${expected}`, {
            hint: 'the restored wal file is damaged; extract it again from the bundle (airlock-verify the bundle first)',
          });
        }
        if (parsed.kind === 'segment' || parsed.kind === 'partial') checkSegment(parsed, first, size, opts);
        else checkText(name, first);
      },
      { mode: 0o600, durable: false },
    );
    return 'copied';
  } catch (e) {
    throw e instanceof AirlockError ? e : fromSystemError(e, target);
  }
}
