/*
 * The object-storage tier: buckets (or prefixes of buckets) of an S3 server, with their history.
 *
 * For each bucket the source yields, in order:
 *   1. a `bucket` record: versioning state, object lock, lifecycle and bucket tags (raw XML where S3
 *      defines the document, so a restore can send it back unchanged);
 *   2. per key (byte order, as S3 lists), per version newest first as S3 lists them: an `object`
 *      entry named `objects/NNNNNNNN` for a version, a `delete-marker` record for a delete marker;
 *   3. a `bucket-summary` record with the counts (the manifest schema has no object fields yet).
 * An incremental export (a `since` seq in the bucket record) leaves out the versions and markers
 * that the bundles of its chain already hold; a restore reads the chain back to a whole export.
 * The key is never a tar path: it lives in the index record and in the entry's AIRLOCK.key pax record.
 *
 * Listing: ListObjectVersions pages of 1,000, asked for with `encoding-type=url` (so keys with control
 * characters survive XML) and paged with the last entry's key and version id as markers, escaped by
 * our own client: one page in memory at a time, whatever the bucket holds. An unversioned bucket
 * lists the same way (every version id is "null"), which is its current objects.
 *
 * Reading: the tar is written in listing order while the small objects (up to 1 MiB) of a window of
 * the next 4 x 32 listed items are fetched, 32 requests in flight, each read whole; at most 64 MiB of
 * them is held. A larger object is requested only when it is next and streams through.
 * Every object's bytes are counted and MD5-hashed as they pass and checked against the listed size
 * and, for a single-part upload, the ETag; the sha256 is the writer's. A multipart ETag (`...-N`)
 * cannot be checked from the bytes, and radosgw may list it empty, so the GET's own ETag is recorded.
 */
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { AirlockError, isAirlockError } from '../../manifests/errors.js';
import type { BucketRecord, ObjectRecord, Unplaced } from '../../manifests/records.js';
import type { EntryItem, SourceItem } from '../bundle/writer.js';
import { S3Client, header, headerBytes, readBody, type S3Response } from '../s3/client.js';
import { child, parseXml, textOf, type XmlNode } from '../s3/xml.js';

/** A bucket, or the part of it under a prefix. */
export interface BucketTarget {
  bucket: string;
  prefix: string;
}

export interface ObjectSourceOptions {
  client: S3Client;
  targets: readonly BucketTarget[];
  /** requests in flight for the objects ahead of the one being written (default 32: S3 answers each request after tens of milliseconds, so throughput comes from requests in flight) */
  prefetch?: number;
  /** objects up to this size are read whole ahead of time (default 1 MiB) */
  smallObject?: number;
  /** first number for objects/NNNNNNNN (default 1) */
  firstNumber?: number;
  signal?: AbortSignal;
  /** totals over all targets, filled in as the items are yielded */
  stats?: ObjectStats;
  /**
   * Incremental export: for a target, the seq of the earlier bundle to build on and a check for the
   * versions the chain already holds (those are left out); undefined exports the target whole.
   */
  incremental?: (t: BucketTarget) => { since: number; has: (key: string, version: string) => boolean } | undefined;
  /** called for every version and delete marker written, with its identity (see versionIdentity) */
  onExported?: (t: BucketTarget, key: string, version: string) => void;
}

/**
 * What identifies a version across exports: its version id, or in an unversioned bucket (where every
 * id is "null") its time and ETag, so an overwritten object counts as new.
 */
export function versionIdentity(v: ListedVersion): string {
  return v.versionId === 'null' ? `null@${v.lastModified}@${v.etag ?? ''}` : v.versionId;
}

export interface ObjectStats {
  versions: number;
  deleteMarkers: number;
  bytes: number;
}

/** S3 bucket naming rules (the DNS-compatible subset every server accepts). */
export const BUCKET_RE = /^(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * Parses `NAME[/prefix]`. Throws `usage` for a name S3 would refuse. The prefix is taken as is:
 * `b/logs/` exports keys starting with `logs/`.
 */
export function parseBucketSpec(spec: string): BucketTarget {
  const slash = spec.indexOf('/');
  const bucket = slash < 0 ? spec : spec.slice(0, slash);
  const prefix = slash < 0 ? '' : spec.slice(slash + 1);
  if (!BUCKET_RE.test(bucket) || bucket.includes('..')) {
    throw new AirlockError('usage', `--bucket ${JSON.stringify(spec)}: ${JSON.stringify(bucket)} is not a bucket name`, { hint: 'give --bucket NAME or NAME/prefix; names are 3 to 63 lowercase letters, digits, "." and "-"' });
  }
  return { bucket, prefix };
}

/**
 * Checks that no two targets overlap (the same bucket twice, or a prefix inside another), which
 * would export the same versions twice. Throws `usage`.
 */
export function checkTargets(targets: readonly BucketTarget[]): void {
  for (const [i, a] of targets.entries()) {
    for (const b of targets.slice(i + 1)) {
      if (a.bucket === b.bucket && (a.prefix.startsWith(b.prefix) || b.prefix.startsWith(a.prefix))) {
        const show = (t: BucketTarget) => (t.prefix === '' ? t.bucket : `${t.bucket}/${t.prefix}`);
        throw new AirlockError('usage', `--bucket ${show(a)} and --bucket ${show(b)} overlap`, { hint: 'name each bucket or prefix once; a whole bucket includes all its prefixes' });
      }
    }
  }
}

/** One entry of a version listing. */
export interface ListedVersion {
  kind: 'version' | 'delete-marker';
  key: string;
  versionId: string;
  isLatest: boolean;
  lastModified: string;
  etag?: string;
  size?: number;
  storageClass?: string;
}

function decodeKey(s: string, encoded: boolean): string {
  if (!encoded) return s;
  try {
    // AWS writes a space as "+" in url-encoded listings and always escapes a real "+" as %2B
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    throw new AirlockError('s3-failed', `the server listed a key that is not valid url-encoded UTF-8: ${JSON.stringify(s)}`);
  }
}

function parseListed(node: XmlNode, encoded: boolean, bucket: string): ListedVersion {
  const key = textOf(node, 'Key');
  const versionId = textOf(node, 'VersionId');
  const lastModified = textOf(node, 'LastModified');
  if (key === undefined || versionId === undefined || lastModified === undefined || Number.isNaN(Date.parse(lastModified))) {
    throw new AirlockError('s3-failed', `the version listing of ${bucket} has an entry without key, version id or time`);
  }
  const v: ListedVersion = { kind: node.name === 'DeleteMarker' ? 'delete-marker' : 'version', key: decodeKey(key, encoded), versionId, isLatest: textOf(node, 'IsLatest') === 'true', lastModified: new Date(lastModified).toISOString() };
  if (v.kind === 'version') {
    const size = Number(textOf(node, 'Size'));
    if (!Number.isSafeInteger(size) || size < 0) throw new AirlockError('s3-failed', `the version listing of ${bucket} gives ${JSON.stringify(v.key)} no valid size`);
    v.size = size;
    const etag = textOf(node, 'ETag');
    if (etag) v.etag = etag;
    const sc = textOf(node, 'StorageClass');
    if (sc) v.storageClass = sc;
  }
  return v;
}

/**
 * Every version and delete marker under `prefix` in `bucket`, in listing order, at most two pages in
 * memory: the next one is fetched while this one is consumed. Throws what the client throws, and `s3-failed` when the server's paging makes no progress.
 */
export async function* listVersions(client: S3Client, bucket: string, prefix: string, signal?: AbortSignal, pageSize = 1000): AsyncGenerator<ListedVersion> {
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  const fetchPage = () => {
    const query: [string, string][] = [['versions', ''], ['encoding-type', 'url'], ['max-keys', String(pageSize)]];
    if (prefix !== '') query.push(['prefix', prefix]);
    if (keyMarker !== undefined) query.push(['key-marker', keyMarker]);
    if (versionMarker !== undefined) query.push(['version-id-marker', versionMarker]);
    const p = client.xml({ method: 'GET', bucket, query, ...(signal ? { signal } : {}) });
    // awaited below; a page fetched ahead for a consumer that stopped must not count as unhandled
    p.catch(() => {});
    return p;
  };
  let page = fetchPage();
  for (;;) {
    const doc = await page;
    const encoded = textOf(doc, 'EncodingType') === 'url';
    const entries: ListedVersion[] = [];
    for (const node of doc.children) {
      if (node.name !== 'Version' && node.name !== 'DeleteMarker') continue;
      const v = parseListed(node, encoded, bucket);
      // a server that repeats the marker entry at the top of the next page must not double it
      if (keyMarker !== undefined && v.key === keyMarker && v.versionId === versionMarker) continue;
      entries.push(v);
    }
    const truncated = textOf(doc, 'IsTruncated') === 'true';
    if (truncated) {
      const last = entries.at(-1);
      let nextKey = last?.key;
      let nextVersion = last?.versionId;
      if (last === undefined) {
        const k = textOf(doc, 'NextKeyMarker');
        nextKey = k === undefined ? undefined : decodeKey(k, encoded);
        nextVersion = textOf(doc, 'NextVersionIdMarker');
      }
      if (nextKey === undefined || (nextKey === keyMarker && nextVersion === versionMarker)) {
        throw new AirlockError('s3-failed', `the version listing of ${bucket} does not advance after ${JSON.stringify(keyMarker)}`, { hint: 'the S3 server pages listings wrongly; report it with the server version' });
      }
      keyMarker = nextKey;
      versionMarker = nextVersion;
      // the next page is fetched while this one is consumed
      page = fetchPage();
    }
    yield* entries;
    if (!truncated) return;
  }
}

/** Headers stored with an object (besides user metadata), as S3 names them. */
const STANDARD_HEADERS = ['cache-control', 'content-disposition', 'content-encoding', 'content-language', 'expires', 'x-amz-website-redirect-location', 'x-amz-object-lock-mode', 'x-amz-object-lock-retain-until-date', 'x-amz-object-lock-legal-hold', 'x-amz-server-side-encryption'];

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** User metadata: UTF-8 values as text; a value that is not UTF-8 goes to `metadataBase64`. */
function userMetadata(h: IncomingHttpHeaders): { metadata: Record<string, string>; metadataBase64?: Record<string, string> } {
  const metadata: Record<string, string> = {};
  const b64: Record<string, string> = {};
  for (const name of Object.keys(h).sort()) {
    if (!name.startsWith('x-amz-meta-')) continue;
    const bytes = headerBytes(header(h, name) ?? '');
    try {
      metadata[name.slice('x-amz-meta-'.length)] = utf8.decode(bytes);
    } catch {
      b64[name.slice('x-amz-meta-'.length)] = bytes.toString('base64');
    }
  }
  return Object.keys(b64).length > 0 ? { metadata, metadataBase64: b64 } : { metadata };
}

/** Parses a <Tagging> document into name -> value. */
export function parseTagSet(doc: XmlNode): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const t of child(doc, 'TagSet')?.children ?? []) {
    if (t.name !== 'Tag') continue;
    const k = textOf(t, 'Key');
    if (k !== undefined) tags[k] = textOf(t, 'Value') ?? '';
  }
  return tags;
}

/** A bucket sub-resource document as text, or null when the server says it is not set (404). */
async function optionalDocument(client: S3Client, bucket: string, what: string, signal?: AbortSignal): Promise<string | null> {
  // 404: not set; 501: a server without the feature (then it cannot be set either)
  const res = await client.request({ method: 'GET', bucket, query: [[what, '']], accept: [404, 501], ...(signal ? { signal } : {}) });
  const body = (await readBody(res.body)).toString('utf8');
  if (res.status === 404 || res.status === 501) {
    if (/<Code>NoSuchBucket<\/Code>/.test(body)) throw new AirlockError('bucket-not-found', `bucket ${bucket} does not exist on ${client.endpoint.origin}`, { hint: 'check the bucket name and the endpoint' });
    return null;
  }
  return body;
}

/**
 * Checks that every target bucket exists and the credentials may list it, before any bundle is
 * started. Throws `bucket-not-found`, `s3-denied`, `s3-unreachable` or `s3-failed`.
 */
export async function preflight(client: S3Client, targets: readonly BucketTarget[], signal?: AbortSignal): Promise<void> {
  for (const t of targets) {
    await client.xml({ method: 'GET', bucket: t.bucket, query: [['versioning', '']], ...(signal ? { signal } : {}) });
  }
}

/** The bucket's settings as an index record. Throws what the client throws. */
async function bucketRecord(client: S3Client, t: BucketTarget, since: number | undefined, signal?: AbortSignal): Promise<BucketRecord> {
  const versioning = await client.xml({ method: 'GET', bucket: t.bucket, query: [['versioning', '']], ...(signal ? { signal } : {}) });
  const lifecycle = await optionalDocument(client, t.bucket, 'lifecycle', signal);
  const objectLock = await optionalDocument(client, t.bucket, 'object-lock', signal);
  const tagging = await optionalDocument(client, t.bucket, 'tagging', signal);
  return {
    type: 'bucket',
    endpoint: client.endpoint.origin,
    bucket: t.bucket,
    prefix: t.prefix,
    versioning: textOf(versioning, 'Status') ?? '',
    lifecycle,
    objectLock,
    tags: tagging === null ? null : parseTagSet(parseXml(tagging)),
    ...(since !== undefined ? { since } : {}),
  };
}

async function* once(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}

interface Fetched {
  res: S3Response;
  headers: IncomingHttpHeaders;
  tags: Record<string, string>;
  /** the whole body when it was read ahead */
  body?: Buffer;
  etag: string;
  /** the ETag to check the bytes' MD5 against: '' when the server's ETag is not an MD5 (SSE-KMS, SSE-C) */
  md5Etag: string;
}

const SINGLE_PART_ETAG = /^"?([0-9a-f]{32})"?$/;

/** Checks `size` and `md5` of the bytes against the listing and the ETag. */
function checkBytes(bucket: string, v: ListedVersion, etag: string, size: number, md5: string): void {
  const changed = v.versionId === 'null';
  const fail = (why: string) =>
    changed
      ? new AirlockError('source-changed', `${bucket}/${v.key}: ${why}; the object changed while it was exported`, { hint: 'run the export again when the bucket is quiet, or enable versioning on it' })
      : new AirlockError('source-corrupt', `${bucket}/${v.key} version ${v.versionId}: ${why}`, { hint: 'the S3 server returned other bytes than it stores; check the server, nothing was written' });
  if (size !== v.size) throw fail(`read ${size} bytes, the listing says ${String(v.size)}`);
  const m = etag.match(SINGLE_PART_ETAG);
  if (m && m[1] !== md5) throw fail(`the bytes hash to md5 ${md5}, the ETag is ${etag}`);
}

async function fetchObject(client: S3Client, bucket: string, v: ListedVersion, small: boolean, signal?: AbortSignal): Promise<Fetched> {
  // always the listed version, the null one included: without versionId S3 answers with the newest
  const vq: [string, string][] = [['versionId', v.versionId]];
  const res = await client.request({ method: 'GET', bucket, key: v.key, query: vq, ...(signal ? { signal } : {}) });
  try {
    const h = res.headers;
    let etag = header(h, 'etag') ?? v.etag ?? '';
    if (etag === '') {
      const head = await client.call({ method: 'HEAD', bucket, key: v.key, query: vq, ...(signal ? { signal } : {}) });
      etag = header(head.headers, 'etag') ?? '';
    }
    const length = Number(header(h, 'content-length'));
    const sse = header(h, 'x-amz-server-side-encryption') ?? '';
    const md5Etag = sse.startsWith('aws:kms') || header(h, 'x-amz-server-side-encryption-customer-algorithm') !== undefined ? '' : etag;
    if (length !== v.size) checkBytes(bucket, v, md5Etag, length, '');
    let tags: Record<string, string> = {};
    if (Number(header(h, 'x-amz-tagging-count') ?? '0') > 0) {
      const t = await client.request({ method: 'GET', bucket, key: v.key, query: [['tagging', ''], ...vq], ...(signal ? { signal } : {}) });
      tags = parseTagSet(parseXml((await readBody(t.body)).toString('utf8')));
    }
    const f: Fetched = { res, headers: h, tags, etag, md5Etag };
    if (small) {
      const body = await readBody(res.body, v.size ?? 0);
      checkBytes(bucket, v, md5Etag, body.byteLength, createHash('md5').update(body).digest('hex'));
      f.body = body;
    }
    return f;
  } catch (e) {
    res.body.destroy();
    throw e;
  }
}

/**
 * The body of a large object, counted as it streams and checked for its size at the end; its MD5 is
 * computed by the bundle writer beside the sha256 (see md5Check).
 */
async function* streamChecked(bucket: string, v: ListedVersion, f: Fetched): AsyncGenerator<Buffer> {
  let n = 0;
  try {
    for await (const chunk of f.res.body) {
      const b = chunk as Buffer;
      n += b.byteLength;
      yield b;
    }
  } catch (e) {
    if (isAirlockError(e)) throw e;
    throw new AirlockError('s3-failed', `reading ${bucket}/${v.key} failed: ${(e as Error).message}`, { cause: e });
  } finally {
    f.res.body.destroy();
  }
  if (n !== v.size) checkBytes(bucket, v, '', n, '');
}

/** For a large object whose ETag is the MD5 of its bytes: the check the writer calls with that MD5. */
function md5Check(bucket: string, v: ListedVersion, f: Fetched): ((hex: string) => void) | undefined {
  if (f.body || !SINGLE_PART_ETAG.test(f.md5Etag)) return undefined;
  return (hex) => checkBytes(bucket, v, f.md5Etag, v.size ?? 0, hex);
}

function objectRecord(t: BucketTarget, v: ListedVersion, f: Fetched): Unplaced<ObjectRecord> {
  const headers: Record<string, string> = {};
  for (const name of STANDARD_HEADERS) {
    const value = header(f.headers, name);
    if (value !== undefined) headers[name] = headerBytes(value).toString('utf8');
  }
  return {
    type: 'object',
    bucket: t.bucket,
    key: v.key,
    versionId: v.versionId,
    isLatest: v.isLatest,
    lastModified: v.lastModified,
    etag: f.etag,
    contentType: headerBytes(header(f.headers, 'content-type') ?? '').toString('utf8'),
    ...(v.storageClass ? { storageClass: v.storageClass } : {}),
    headers,
    ...userMetadata(f.headers),
    tags: f.tags,
  };
}

/** A listed version or delete marker in the window ahead of the one being written. */
interface Slot {
  v: ListedVersion;
  fetch?: Promise<Fetched>;
  /** the bytes of its body held in memory once fetched (a small object's size, else 0) */
  held: number;
}

/** Listed items the window holds per request in flight, so requests go on past a slow one. */
const WINDOW_PER_REQUEST = 4;
/** At most this many bytes of small objects fetched ahead and not yet written. */
const HELD_LIMIT = 64 * 1024 * 1024;

/**
 * Yields the items for `opts.targets` (see the top of this file). Throws `bucket-not-found`,
 * `s3-denied`, `s3-unreachable`, `s3-failed` from the server, `source-corrupt` when an object's
 * bytes disagree with its size or ETag, and `source-changed` when an unversioned object changes
 * while it is read.
 */
export async function* objectItems(opts: ObjectSourceOptions): AsyncGenerator<SourceItem> {
  const { client, signal } = opts;
  const prefetch = Math.max(1, opts.prefetch ?? 32);
  const smallLimit = opts.smallObject ?? 1024 * 1024;
  let n = (opts.firstNumber ?? 1) - 1;

  for (const t of opts.targets) {
    let inc = opts.incremental?.(t);
    let record = await bucketRecord(client, t, inc?.since, signal);
    if (inc && record.versioning !== 'Enabled') {
      // without versioning an overwrite or a delete leaves no trace to carry: export it whole
      inc = undefined;
      record = await bucketRecord(client, t, undefined, signal);
    }
    yield { kind: 'record', record };
    const counts = { versions: 0, deleteMarkers: 0, latestObjects: 0, bytes: 0, alreadyExported: 0 };
    const listing = listVersions(client, t.bucket, t.prefix, signal);
    const window: Slot[] = [];
    let listingDone = false;
    let inFlight = 0;
    let held = 0;
    let stopped = false;
    const start = (w: Slot, small: boolean) => {
      inFlight++;
      w.held = small ? (w.v.size ?? 0) : 0;
      held += w.held;
      w.fetch = fetchObject(client, t.bucket, w.v, small, signal);
      // awaited in order below; this only keeps a failure ahead from being "unhandled"
      w.fetch.catch(() => {}).finally(() => {
        inFlight--;
        pump();
      });
    };
    // `prefetch` requests in flight as long as the window has small objects not yet asked for: a
    // slow one at the head does not hold back the requests behind it
    const pump = () => {
      if (stopped) return;
      for (const w of window) {
        if (inFlight >= prefetch) return;
        if (w.fetch || w.v.kind !== 'version' || (w.v.size ?? 0) > smallLimit) continue;
        if (held > 0 && held + (w.v.size ?? 0) > HELD_LIMIT) return;
        start(w, true);
      }
    };
    try {
      for (;;) {
        while (!listingDone && window.length < prefetch * WINDOW_PER_REQUEST) {
          const next = await listing.next();
          if (next.done) listingDone = true;
          else if (inc?.has(next.value.key, versionIdentity(next.value))) counts.alreadyExported++;
          else window.push({ v: next.value, held: 0 });
        }
        pump();
        const head = window.shift();
        if (!head) break;
        const v = head.v;
        if (v.kind === 'delete-marker') {
          counts.deleteMarkers++;
          yield { kind: 'record', record: { type: 'delete-marker', bucket: t.bucket, key: v.key, versionId: v.versionId, isLatest: v.isLatest, lastModified: v.lastModified } };
          opts.onExported?.(t, v.key, versionIdentity(v));
          continue;
        }
        // a large object is asked for when it is next, and streams through
        if (!head.fetch) start(head, (v.size ?? 0) <= smallLimit);
        const f = await (head.fetch as Promise<Fetched>);
        const size = v.size ?? 0;
        counts.versions++;
        if (v.isLatest) counts.latestObjects++;
        counts.bytes += size;
        n++;
        let opened = false;
        const item: EntryItem = {
          kind: 'entry',
          name: `objects/${String(n).padStart(8, '0')}`,
          size,
          mode: 0o600,
          mtime: Math.floor(Date.parse(v.lastModified) / 1000),
          pax: { 'AIRLOCK.bucket': t.bucket, 'AIRLOCK.key': v.key, 'AIRLOCK.version_id': v.versionId },
          open: () => {
            opened = true;
            return f.body ? once(f.body) : streamChecked(t.bucket, v, f);
          },
          record: objectRecord(t, v, f),
        };
        const md5 = md5Check(t.bucket, v, f);
        if (md5) item.md5 = md5;
        try {
          yield item;
        } finally {
          if (!opened) f.res.body.destroy();
          held -= head.held;
        }
        opts.onExported?.(t, v.key, versionIdentity(v));
      }
    } finally {
      // stopped early (an error further down the pipeline): release what was fetched ahead
      stopped = true;
      for (const w of window) void w.fetch?.then((f) => f.res.body.destroy(), () => {});
      await listing.return(undefined);
    }
    if (opts.stats) {
      opts.stats.versions += counts.versions;
      opts.stats.deleteMarkers += counts.deleteMarkers;
      opts.stats.bytes += counts.bytes;
    }
    yield { kind: 'record', record: { type: 'bucket-summary', bucket: t.bucket, prefix: t.prefix, ...counts } };
  }
}
