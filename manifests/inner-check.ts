/*
 * Checking a decrypted tar against its inner manifest and its cleartext manifest (inner.ts has the
 * rules). The checker reads the tar once: it hashes every entry (or lets the caller consume the body,
 * e.g. into a staging file, and report the digest), reads index.jsonl and MANIFEST.sha256 itself,
 * and collects every problem instead of stopping at the first, so an auditor sees all of them. A
 * restore uses the same checker and refuses to promote anything when the list is not empty.
 */
import { createHash } from 'node:crypto';
import { coverageAgainstIndex } from './coverage.js';
import { AirlockError } from './errors.js';
import { digestStream, type Digest } from './hash.js';
import { ENTRY_PATH_RE, INDEX, INDEX_LINE_LIMIT, INNER_MANIFEST, SALT, SALT_SIZE, checkSources, parseIndexLine, parseInnerManifest, type BundleRecord, type IndexRecord } from './inner.js';
import type { Manifest } from './manifest.js';
import { entryProblem, type ReadEntry } from './tar.js';

export type InnerResult = 'missing' | 'extra' | 'checksum-mismatch' | 'size-mismatch' | 'unsafe-entry' | 'malformed';

export interface InnerProblem {
  result: InnerResult;
  /** the tar entry (or index.jsonl / MANIFEST.sha256) concerned */
  file: string;
  message: string;
}

export interface InnerCheckOptions {
  /** consumes a payload entry's body (the default hashes it) and returns its digest */
  onEntry?: (entry: ReadEntry, body: AsyncIterable<Buffer>) => Promise<Digest>;
  /** receives every index record after the bundle record, in order */
  onRecord?: (record: IndexRecord) => void;
}

interface Seen {
  name: string;
  size: number;
  sha256: string;
  referenced: boolean;
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
 * Reads every entry of `entries` and returns the problems found against `manifest`. Throws only what
 * reading the tar throws (`malformed` structure, `decrypt-failed`, volume checks): those end the stream.
 */
export async function checkInner(
  entries: AsyncIterable<{ entry: ReadEntry; body: AsyncIterable<Buffer> }>,
  manifest: Manifest,
  options: InnerCheckOptions = {},
): Promise<InnerProblem[]> {
  const problems: InnerProblem[] = [];
  const add = (result: InnerResult, file: string, message: string) => problems.push({ result, file, message });
  const seenNames = new Set<string>();
  const observed: Seen[] = [];
  const byName = new Map<string, Seen>();
  let position = 0;
  let innerDone = false;
  let indexSeen = false;
  let files = 0;
  let metadata = 0;
  const sources: IndexRecord[] = [];
  let bytes = 0;

  for await (const { entry, body } of entries) {
    position++;
    const name = entry.path;
    const unsafe = entryProblem(entry, seenNames) ?? (entry.typeflag === '5' ? 'a folder entry (airlock writes folders as index records)' : undefined);
    if (unsafe) {
      add('unsafe-entry', name, `tar entry ${JSON.stringify(name)} (type ${entry.typeflag}) is unsafe: ${unsafe}`);
      continue;
    }
    if (innerDone) {
      add('extra', name, `entry after ${INNER_MANIFEST}`);
      continue;
    }
    if (position === 1 && name !== SALT) add('malformed', name, `the first entry must be ${SALT}`);
    if (name === SALT && position !== 1) add('malformed', name, `${SALT} must be the first entry`);

    if (name === INNER_MANIFEST) {
      innerDone = true;
      const text = await readAll(body, 1024 ** 3, INNER_MANIFEST);
      const sha256 = createHash('sha256').update(text).digest('hex');
      if (sha256 !== manifest.inner.sha256) add('checksum-mismatch', name, 'sha256 differs from manifest.json inner.sha256');
      let listed;
      try {
        listed = parseInnerManifest(text);
      } catch (e) {
        add('malformed', name, (e as Error).message);
        continue;
      }
      if (listed.length !== manifest.inner.entries) add('malformed', name, `${listed.length} lines, manifest.json says ${manifest.inner.entries}`);
      const listedNames = new Set(listed.map((l) => l.name));
      for (const l of listed) {
        const o = byName.get(l.name);
        if (!o) add('missing', l.name, `listed in ${INNER_MANIFEST} but not in the tar`);
        else if (o.sha256 !== l.sha256) add('checksum-mismatch', l.name, `sha256 differs from ${INNER_MANIFEST}`);
      }
      for (const o of observed) if (!listedNames.has(o.name)) add('extra', o.name, `in the tar but not in ${INNER_MANIFEST}`);
      const order = listed.map((l) => l.name).join('\n');
      if (order !== observed.map((o) => o.name).join('\n') && problems.length === 0) add('malformed', name, 'lines are not in tar order');
      continue;
    }
    if (!ENTRY_PATH_RE.test(name)) add('malformed', name, 'not a name airlock writes');

    let digest: Digest;
    if (name === INDEX) {
      indexSeen = true;
      const h = createHash('sha256');
      let size = 0;
      let n = 0;
      const handle = (line: string) => {
        n++;
        let r: IndexRecord;
        try {
          r = parseIndexLine(line, n);
        } catch (e) {
          add('malformed', INDEX, (e as Error).message);
          return;
        }
        if (n === 1) {
          const b = r as unknown as BundleRecord;
          if (b.site !== manifest.site || b.seq !== manifest.seq) add('malformed', INDEX, `belongs to ${b.site} seq ${b.seq}, not to this bundle`);
          return;
        }
        sources.push(r);
        if (r.path === undefined) metadata++;
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
    } else if (name === SALT) {
      digest = await digestStream(body);
      if (digest.size !== SALT_SIZE) add('size-mismatch', SALT, `${digest.size} bytes, must be ${SALT_SIZE}`);
    } else {
      if (indexSeen) add('malformed', name, `payload entry after ${INDEX}`);
      digest = options.onEntry ? await options.onEntry(entry, body) : await digestStream(body);
      bytes += digest.size;
    }
    const seen: Seen = { name, size: digest.size, sha256: digest.sha256, referenced: false };
    observed.push(seen);
    byName.set(name, seen);
  }

  for (const p of checkSources(sources)) add('unsafe-entry', INDEX, p);
  if (!indexSeen) add('missing', INDEX, 'the tar has no index');
  if (!innerDone) add('missing', INNER_MANIFEST, 'the tar does not end with the inner manifest');
  const c = manifest.contents;
  if (indexSeen && (c.files !== files || c.metadata !== metadata || c.bytes !== bytes)) {
    add('malformed', 'manifest.json', `contents claims ${c.files} files, ${c.metadata} metadata records, ${c.bytes} bytes; the payload has ${files}, ${metadata}, ${bytes}`);
  }
  if (indexSeen) for (const p of coverageAgainstIndex(manifest.coverage, sources)) add('malformed', 'manifest.json', p);
  return problems;
}
