/*
 * Checking a decrypted tar against its inner manifest and its cleartext manifest (inner.ts has the
 * rules). The checker reads the tar once: it hashes every entry (or lets the caller consume the body,
 * e.g. into a staging file, and report the digest), reads index.jsonl and MANIFEST.sha256 itself,
 * and collects every problem instead of stopping at the first, so an auditor sees all of them. A
 * restore uses the same checker and refuses to promote anything when the list is not empty.
 */
import { createHash } from 'node:crypto';
import { BoundedFindings, clip, moreMessage } from './bounded.js';
import { coverageAgainstIndex, isTablespace } from './coverage.js';
import { AirlockError } from './errors.js';
import { digestStream, type Digest } from './hash.js';
import { INNER_MANIFEST, INNER_MANIFEST_LIMIT, SALT, SALT_SIZE, checkSources, isSourceRecord, objectChangeProblem, type SourceRecord } from './inner.js';
import { ENTRY_PATH_RE, INDEX, INDEX_LINE_LIMIT, hasEntry, parseIndexLine, type IndexRecord, type PgTablespaceEndRecord } from './records.js';
import { LIMITS } from './limits.js';
import { MANIFEST_FILE, type Manifest } from './manifest.js';
import type { Result } from './results.js';
import { parseSumLine } from './sums.js';
import { entryProblem, type ReadEntry } from './tar.js';

export type InnerResult = Extract<Result, 'missing' | 'extra' | 'checksum-mismatch' | 'size-mismatch' | 'unsafe-entry' | 'malformed'>;

export interface InnerProblem {
  result: InnerResult;
  /** the tar entry (or index.jsonl / MANIFEST.sha256) concerned; empty on a summary */
  file: string;
  message: string;
  /** on a summary: how many more problems of this result were found and not named */
  more?: number;
}

export interface InnerCheckOptions {
  /** consumes a payload entry's body (the default hashes it) and returns its digest */
  onEntry?: (entry: ReadEntry, body: AsyncIterable<Buffer>) => Promise<Digest>;
  /** receives every index record after the bundle record, in order */
  onRecord?: (record: IndexRecord) => void;
}

/** What is kept per entry: a name airlock writes (at most 807 bytes), its digest, two flags. */
interface Seen {
  name: string;
  size: number;
  sha256: string;
  referenced: boolean;
  listed: boolean;
}

async function readAll(body: AsyncIterable<Buffer>, limit: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const c of body) {
    size += c.byteLength;
    if (size > limit) throw new AirlockError('malformed', `${what}: over the ${limit}-byte limit`);
    parts.push(c);
  }
  return Buffer.concat(parts);
}

/**
 * What checkSources and coverageAgainstIndex need of a record, and no more, so that memory per record
 * stays bounded whatever else a (signed) index line carries: the type, a `source` (cut past the
 * longest valid one, so it stays invalid), a WAL record's kind and name when they can be valid, and a
 * tablespace's OID, name and location when they are valid.
 */
function slim(r: IndexRecord): Slim | undefined {
  if (isSourceRecord(r)) return { type: r.type, source: r.source.slice(0, LIMITS.tarPathBytes + 1) };
  if (r.type === 'pg-wal') return { type: r.type, kind: r.kind, ...(r.name.length <= 64 ? { name: r.name } : {}) };
  // coverage names each tablespace; a record that could not be valid keeps only its type
  if (r.type === 'pg-tblspc-end') return isTablespace(r) ? { type: r.type, oid: r.oid, name: r.name, location: r.location } : { type: r.type };
  if (r.type.startsWith('pg-')) return { type: r.type };
  return undefined;
}

type Slim =
  | Pick<SourceRecord, 'type' | 'source'>
  | { type: 'pg-wal'; kind: string; name?: string }
  | Pick<PgTablespaceEndRecord, 'type' | 'oid' | 'name' | 'location'>
  | { type: Exclude<IndexRecord['type'], SourceRecord['type']> };

/**
 * The signed bounds of the tar's parts, known before its first byte: the payload entries together
 * hold `contents.bytes` (the manifest's), index.jsonl has one line per record (`inner.entries` minus
 * SALT and itself, plus `contents.metadata`, plus the bundle record), MANIFEST.sha256 has
 * `inner.entries` lines, and the tar holds `inner.entries + 1` entries (a few more are reported
 * before reading stops). An entry whose tar header claims more is refused before its body is read,
 * so a restore never stages a byte past what the manifest signs.
 */
function bounds(manifest: Manifest): { entries: number; index: number; inner: number } {
  const lines = manifest.inner.entries - 1 + manifest.contents.metadata;
  return {
    entries: manifest.inner.entries + 1 + LIMITS.surplusEntries,
    index: Math.min(lines * (INDEX_LINE_LIMIT + 1), Number.MAX_SAFE_INTEGER),
    inner: Math.min(manifest.inner.entries * LIMITS.innerLineBytes, INNER_MANIFEST_LIMIT),
  };
}

/** The most bytes the entry `name` may hold here, and what says so. */
function boundOf(name: string, skippedEntry: boolean, limit: ReturnType<typeof bounds>, manifest: Manifest, bytes: number, skipped: number): [number, string] {
  if (skippedEntry) return [LIMITS.skippedBytes - skipped, `the ${LIMITS.skippedBytes} bytes all entries that are not payload entries may hold`];
  if (name === INNER_MANIFEST) return [limit.inner, `inner.entries lines can hold`];
  if (name === INDEX) return [limit.index, 'its records can take'];
  if (name === SALT) return [SALT_SIZE, `a ${SALT} holds`];
  return [manifest.contents.bytes - bytes, `what is left of the ${manifest.contents.bytes} bytes manifest.json signs for the payload entries`];
}

/**
 * Reads every entry of `entries` and returns the problems found against `manifest`, at most
 * LIMITS.findingsNamed of each result named and the rest counted in a summary (`more`). At an entry
 * larger than the manifest allows (see bounds), or past the entries it signs, it adds that problem
 * and stops reading (ending the stream), so no caller reads or stages a byte past the bound.
 * Throws what reading the tar throws (`malformed` structure, `decrypt-failed`, volume checks).
 */
export async function checkInner(
  entries: AsyncIterable<{ entry: ReadEntry; body: AsyncIterable<Buffer> }>,
  manifest: Manifest,
  options: InnerCheckOptions = {},
): Promise<InnerProblem[]> {
  const problems = new BoundedFindings<InnerProblem>([]);
  const add = (result: InnerResult, file: string, message: string) => problems.add({ result, file: clip(file), message });
  const limit = bounds(manifest);
  const seenNames = new Set<string>();
  const observed: Seen[] = [];
  const byName = new Map<string, Seen>();
  let position = 0;
  let innerDone = false;
  let indexSeen = false;
  let files = 0;
  let metadata = 0;
  const sources: Slim[] = [];
  let bytes = 0;
  // bodies of entries that are not payload entries (unsafe ones, any after MANIFEST.sha256), skipped
  let skipped = 0;
  // reading stopped at a bound: what is missing after that point is no news
  let stopped = false;
  // entries whose names airlock never writes: the first few names, and how many
  const unkept = { names: [] as string[], count: 0 };

  for await (const { entry, body } of entries) {
    position++;
    const name = entry.path;
    // reading stops at the first entry past what the manifest signs; what was found so far is kept
    if (position > limit.entries) {
      add(
        'malformed',
        '',
        `the tar holds more than ${limit.entries} entries, ${LIMITS.surplusEntries} past the ${manifest.inner.entries + 1} manifest.json signs (inner.entries, and MANIFEST.sha256); nothing after them was read`,
      );
      stopped = true;
      break;
    }
    const kept = ENTRY_PATH_RE.test(name);
    const unsafe = entryProblem(entry, seenNames) ?? (entry.typeflag === '5' ? 'a folder entry (airlock writes folders as index records)' : undefined);
    // entryProblem keeps every good path to find duplicates; one that airlock never writes (up to
    // 4 KiB) is reported below and never kept, so memory per entry stays within a generated name
    if (!kept) seenNames.delete(name);
    const [bound, why] = boundOf(name, unsafe !== undefined || innerDone, limit, manifest, bytes, skipped);
    if (entry.size > bound) {
      add('size-mismatch', name, `the tar says ${entry.size} bytes, more than ${why} (${bound}); nothing of it was read`);
      stopped = true;
      break;
    }
    if (unsafe) {
      add('unsafe-entry', name, `tar entry ${JSON.stringify(clip(name))} (type ${entry.typeflag}) is unsafe: ${unsafe}`);
      skipped += entry.size;
      continue;
    }
    if (innerDone) {
      add('extra', name, `entry after ${INNER_MANIFEST}`);
      skipped += entry.size;
      continue;
    }
    if (position === 1 && name !== SALT) add('malformed', name, `the first entry must be ${SALT}`);
    if (name === SALT && position !== 1) add('malformed', name, `${SALT} must be the first entry`);

    if (name === INNER_MANIFEST) {
      innerDone = true;
      const text = await readAll(body, limit.inner, INNER_MANIFEST);
      const sha256 = createHash('sha256').update(text).digest('hex');
      if (sha256 !== manifest.inner.sha256) add('checksum-mismatch', name, 'sha256 differs from manifest.json inner.sha256');
      checkListed(text, observed, byName, manifest.inner.entries, problems);
      if (unkept.count > 0)
        problems.addUnnamed('extra', unkept.count, (file) => ({ result: 'extra', file, message: `in the tar but not in ${INNER_MANIFEST}` }), unkept.names);
      continue;
    }
    if (!kept) add('malformed', name, 'not a name airlock writes');

    let digest: Digest;
    if (name === INDEX) {
      indexSeen = true;
      const h = createHash('sha256');
      let size = 0;
      let n = 0;
      const handle = (line: string) => {
        n++;
        let r;
        try {
          r = parseIndexLine(line, n);
        } catch (e) {
          add('malformed', INDEX, (e as Error).message);
          return;
        }
        if (r.type === 'bundle') {
          if (r.site !== manifest.site || r.seq !== manifest.seq) add('malformed', INDEX, `belongs to ${r.site} seq ${r.seq}, not to this bundle`);
          return;
        }
        const change = r.type === 'version-changed' || r.type === 'version-removed' ? objectChangeProblem(r) : undefined;
        if (change !== undefined) add('malformed', INDEX, `line ${n}: ${change}`);
        const s = slim(r);
        if (s) sources.push(s);
        if (!hasEntry(r)) metadata++;
        else {
          if (r.type === 'file') files++;
          const o = byName.get(r.path);
          if (!o) add('missing', r.path, `named by ${INDEX} line ${n} but not in the tar`);
          else if (o.referenced) add('malformed', r.path, `named twice in ${INDEX}`);
          else {
            o.referenced = true;
            if (o.size !== r.size) add('size-mismatch', r.path, `${o.size} bytes, ${INDEX} says ${String(r.size)}`);
            else if (o.sha256 !== r.sha256) add('checksum-mismatch', r.path, `sha256 differs from ${INDEX}`);
          }
        }
        options.onRecord?.(r);
      };
      // split raw bytes on LF and decode whole lines: a character may straddle two chunks
      let rest: Buffer = Buffer.alloc(0);
      for await (const c of body) {
        h.update(c);
        size += c.byteLength;
        let buf = rest.byteLength > 0 ? Buffer.concat([rest, c]) : c;
        for (let nl = buf.indexOf(0x0a); nl >= 0; nl = buf.indexOf(0x0a)) {
          handle(buf.subarray(0, nl).toString('utf8'));
          buf = buf.subarray(nl + 1);
        }
        if (buf.byteLength > INDEX_LINE_LIMIT) throw new AirlockError('malformed', `${INDEX}: line ${n + 1} is over ${INDEX_LINE_LIMIT} bytes`);
        rest = Buffer.from(buf);
      }
      if (rest.byteLength > 0) add('malformed', INDEX, 'last line has no LF');
      if (n === 0) add('malformed', INDEX, 'empty');
      digest = { sha256: h.digest('hex'), size };
      for (const o of observed) {
        if (o.name !== SALT && !o.referenced) add('extra', o.name, `in the tar but not named by ${INDEX}`);
      }
      if (unkept.count > 0)
        problems.addUnnamed('extra', unkept.count, (file) => ({ result: 'extra', file, message: `in the tar but not named by ${INDEX}` }), unkept.names);
    } else if (name === SALT) {
      digest = await digestStream(body);
      if (digest.size !== SALT_SIZE) add('size-mismatch', SALT, `${digest.size} bytes, must be ${SALT_SIZE}`);
    } else {
      if (indexSeen) add('malformed', name, `payload entry after ${INDEX}`);
      digest = options.onEntry ? await options.onEntry(entry, body) : await digestStream(body);
      bytes += digest.size;
    }
    if (!kept) {
      // never listed (MANIFEST.sha256 and index.jsonl name only names airlock writes): counted, not kept
      if (unkept.names.length < LIMITS.findingsNamed) unkept.names.push(clip(name));
      unkept.count++;
      continue;
    }
    const seen: Seen = { name, size: digest.size, sha256: digest.sha256, referenced: false, listed: false };
    observed.push(seen);
    byName.set(name, seen);
  }

  for (const p of checkSources(sources.filter((s): s is Pick<SourceRecord, 'type' | 'source'> => 'source' in s))) add('unsafe-entry', INDEX, p);
  if (!indexSeen && !stopped) add('missing', INDEX, 'the tar has no index');
  if (!innerDone && !stopped) add('missing', INNER_MANIFEST, 'the tar does not end with the inner manifest');
  const c = manifest.contents;
  if (indexSeen && !stopped && (c.files !== files || c.metadata !== metadata || c.bytes !== bytes)) {
    add(
      'malformed',
      MANIFEST_FILE,
      `contents claims ${c.files} files, ${c.metadata} metadata records, ${c.bytes} bytes; the payload has ${files}, ${metadata}, ${bytes}`,
    );
  }
  if (indexSeen && !stopped) for (const p of coverageAgainstIndex(manifest.coverage, sources)) add('malformed', MANIFEST_FILE, p);
  return problems.finish((result, more) => ({ result, file: '', message: moreMessage(result, more), more }));
}

/**
 * Checks MANIFEST.sha256 (`text`) against the entries seen, line by line, without a second copy of
 * the list: each line well-formed and naming an entry with that hash, none twice, every entry listed,
 * in tar order, as many lines as manifest.json says. A line that is not well-formed ends the check.
 */
function checkListed(
  text: Buffer,
  observed: readonly Seen[],
  byName: ReadonlyMap<string, Seen>,
  entries: number,
  problems: BoundedFindings<InnerProblem>,
): void {
  const add = (result: InnerResult, file: string, message: string) => problems.add({ result, file: clip(file), message });
  if (text.byteLength > 0 && text[text.byteLength - 1] !== 0x0a) {
    add('malformed', INNER_MANIFEST, `${INNER_MANIFEST}: last line has no LF`);
    return;
  }
  let lines = 0;
  let inOrder = true;
  for (let at = 0; at < text.byteLength; lines++) {
    const nl = text.indexOf(0x0a, at);
    const row = text.toString('utf8', at, nl);
    at = nl + 1;
    const where = `${INNER_MANIFEST} line ${lines + 1}`;
    const parsed = parseSumLine(row);
    if (!parsed || row.includes('\r')) {
      add('malformed', INNER_MANIFEST, `${where}: not "<sha256>  <name>" with LF line ends`);
      return;
    }
    const { sha256, name } = parsed;
    if (!ENTRY_PATH_RE.test(name)) {
      add('malformed', INNER_MANIFEST, `${where}: ${JSON.stringify(clip(name))} is not an allowed name`);
      return;
    }
    if (observed[lines]?.name !== name) inOrder = false;
    const o = byName.get(name);
    if (!o) add('missing', name, `listed in ${INNER_MANIFEST} but not in the tar`);
    else if (o.listed) {
      add('malformed', INNER_MANIFEST, `${where}: ${name} listed twice`);
      return;
    } else {
      o.listed = true;
      if (o.sha256 !== sha256) add('checksum-mismatch', name, `sha256 differs from ${INNER_MANIFEST}`);
    }
  }
  if (lines !== entries) add('malformed', INNER_MANIFEST, `${lines} lines, ${MANIFEST_FILE} says ${entries}`);
  for (const o of observed) if (!o.listed) add('extra', o.name, `in the tar but not in ${INNER_MANIFEST}`);
  if (!inOrder && problems.total() === 0) add('malformed', INNER_MANIFEST, 'lines are not in tar order');
}
