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
 * What changed since on what they hold is carried as records among the key's records: a
 * `version-changed` record for a version whose tags (or, with object lock, legal hold or retention)
 * changed (each held version's tags, and lock headers, are read again and compared with the
 * fingerprint the catalog remembers; S3 keeps no other trace of such a change), and
 * a `version-removed` record for a version or delete marker the catalog holds that the listing no
 * longer has (deleted for good, with its version id). The catalog's versions are walked in key byte
 * order beside the listing, a page at a time, so a key that is gone entirely is found too.
 * The key is never a tar path: it lives in the index record and in the entry's AIRLOCK.key pax record.
 *
 * The S3 requests (listing, GET of a version, tags, bucket documents) are in s3/objects.ts.
 *
 * Reading: the tar is written in listing order while the small objects (up to 1 MiB) of a window of
 * the next 4 x 32 listed items are fetched, 32 requests in flight, each read whole; at most 64 MiB of
 * them is held. A larger object is requested only when it is next and streams through.
 * Every object's bytes are counted and MD5-hashed as they pass and checked against the listed size
 * and, for a single-part upload, the ETag; the sha256 is the writer's. A multipart ETag (`...-N`)
 * cannot be checked from the bytes, and radosgw may list it empty, so the GET's own ETag is recorded.
 *
 * Part layout: a multipart ETag is the MD5 of the parts' MD5s and their count, and S3 has no portable
 * way to ask for the part sizes. Uploaders use one part size for all parts but the last, so the few
 * likely sizes for that count (see partCandidates) are hashed as the bytes pass; the one whose ETag
 * matches is recorded as `parts`, and a restore uploads in those parts, which gives the same ETag.
 */
import { createHash, type Hash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { AirlockError } from '../../manifests/errors.js';
import type { BucketRecord, ObjectRecord, Unplaced } from '../../manifests/records.js';
import type { EntryItem, SourceItem } from '../bundle/writer.js';
import { S3Client, header, headerBytes } from '../s3/client.js';
import {
  BUCKET_RE,
  bucketDocument,
  getVersion,
  listVersions,
  lockHeaders,
  parseTagSet,
  versionLock,
  versionTags,
  versioningOf,
  type ListedVersion,
  type VersionBody,
} from '../s3/objects.js';
import { parseXml } from '../s3/xml.js';
import { gathered } from './gather.js';

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
  /** Incremental export: what the chain of a target holds; undefined exports the target whole. */
  incremental?: (t: BucketTarget) => Incremental | undefined;
  /**
   * Called for every version and delete marker written, with its identity (see versionIdentity) and
   * the fingerprint of its tags and lock (versionFingerprint); for a held version whose tags or lock changed, with the
   * new fingerprint; for a held version found deleted for good, with `removed`.
   */
  onExported?: (t: BucketTarget, key: string, version: string, tags: string, removed?: boolean) => void;
  /** the time a change found by an incremental export is recorded at (default: the clock) */
  now?: () => Date;
}

/** What the bundles of a target's chain hold (the catalog's record of them). */
export interface Incremental {
  /** the seq of the earlier bundle to build on */
  since: number;
  /** the fingerprint (versionFingerprint) of a version the chain holds (null: not remembered), undefined for one it does not hold */
  has: (key: string, version: string) => string | null | undefined;
  /** up to `limit` (key, version) the chain holds, in key byte order, after `after` */
  page: (after: readonly [string, string] | undefined, limit: number) => [string, string][];
}

const sorted = (o: Record<string, string>) => Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

/**
 * A fingerprint of what S3 lets change on a version without a new version: its tags, and in a bucket
 * with object lock its legal hold and retention (`lock`, the x-amz-object-lock-* headers). It does
 * not depend on the order the server gives them in; '' for no tags and no lock.
 */
export function versionFingerprint(tags: Record<string, string>, lock: Record<string, string> = {}): string {
  const t = sorted(tags);
  const l = sorted(lock);
  if (t.length === 0 && l.length === 0) return '';
  return createHash('sha256')
    .update(JSON.stringify(l.length === 0 ? t : [t, l]))
    .digest('hex')
    .slice(0, 32);
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

/**
 * Parses `NAME[/prefix]`. Throws `usage` for a name S3 would refuse. The prefix is taken as is:
 * `b/logs/` exports keys starting with `logs/`.
 */
export function parseBucketSpec(spec: string): BucketTarget {
  const slash = spec.indexOf('/');
  const bucket = slash < 0 ? spec : spec.slice(0, slash);
  const prefix = slash < 0 ? '' : spec.slice(slash + 1);
  if (!BUCKET_RE.test(bucket) || bucket.includes('..')) {
    throw new AirlockError('usage', `--bucket ${JSON.stringify(spec)}: ${JSON.stringify(bucket)} is not a bucket name`, {
      hint: 'give --bucket NAME or NAME/prefix; names are 3 to 63 lowercase letters, digits, "." and "-"',
    });
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
        throw new AirlockError('usage', `--bucket ${show(a)} and --bucket ${show(b)} overlap`, {
          hint: 'name each bucket or prefix once; a whole bucket includes all its prefixes',
        });
      }
    }
  }
}

/** Headers stored with an object (besides user metadata), as S3 names them. */
const STANDARD_HEADERS = [
  'cache-control',
  'content-disposition',
  'content-encoding',
  'content-language',
  'expires',
  'x-amz-website-redirect-location',
  'x-amz-object-lock-mode',
  'x-amz-object-lock-retain-until-date',
  'x-amz-object-lock-legal-hold',
  'x-amz-server-side-encryption',
];

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

/**
 * Checks that every target bucket exists and the credentials may list it, before any bundle is
 * started. Throws `bucket-not-found`, `s3-denied`, `s3-unreachable` or `s3-failed`.
 */
export async function preflight(client: S3Client, targets: readonly BucketTarget[], signal?: AbortSignal): Promise<void> {
  for (const t of targets) {
    await versioningOf(client, t.bucket, signal);
  }
}

/** The bucket's settings as an index record. Throws what the client throws. */
async function bucketRecord(client: S3Client, t: BucketTarget, since: number | undefined, signal?: AbortSignal): Promise<BucketRecord> {
  const versioning = await versioningOf(client, t.bucket, signal);
  const lifecycle = await bucketDocument(client, t.bucket, 'lifecycle', signal);
  const objectLock = await bucketDocument(client, t.bucket, 'object-lock', signal);
  const tagging = await bucketDocument(client, t.bucket, 'tagging', signal);
  return {
    type: 'bucket',
    endpoint: client.endpoint.origin,
    bucket: t.bucket,
    prefix: t.prefix,
    versioning,
    lifecycle,
    objectLock,
    tags: tagging === null ? null : parseTagSet(parseXml(tagging)),
    ...(since !== undefined ? { since } : {}),
  };
}

async function* once(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}

/** `body`, then `end()` once it was read to its end. */
async function* withEnd(body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, end: () => void): AsyncGenerator<Uint8Array> {
  yield* body;
  end();
}

interface Fetched {
  got: VersionBody;
  /** hashes the likely part layouts of a multipart version as its bytes pass */
  layout?: PartLayout;
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
      ? new AirlockError('source-changed', `${bucket}/${v.key}: ${why}; the object changed while it was exported`, {
          hint: 'run the export again when the bucket is quiet, or enable versioning on it',
        })
      : new AirlockError('source-corrupt', `${bucket}/${v.key} version ${v.versionId}: ${why}`, {
          hint: 'the S3 server returned other bytes than it stores; check the server, nothing was written',
        });
  if (size !== v.size) throw fail(`read ${size} bytes, the listing says ${String(v.size)}`);
  const m = SINGLE_PART_ETAG.exec(etag);
  if (m && m[1] !== md5) throw fail(`the bytes hash to md5 ${md5}, the ETag is ${etag}`);
}

/** Reads a small body whole; more bytes than the listing says fail as a size mismatch. */
async function readSmall(bucket: string, v: ListedVersion, md5Etag: string, body: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    n += c.byteLength;
    if (n > (v.size ?? 0)) checkBytes(bucket, v, md5Etag, n, '');
    parts.push(c);
  }
  return Buffer.concat(parts);
}

async function fetchObject(client: S3Client, bucket: string, v: ListedVersion, small: boolean, signal?: AbortSignal): Promise<Fetched> {
  const got = await getVersion(client, bucket, v.key, v.versionId, signal, v.etag);
  try {
    const h = got.headers;
    const length = Number(header(h, 'content-length'));
    const sse = header(h, 'x-amz-server-side-encryption') ?? '';
    const md5Etag = sse.startsWith('aws:kms') || header(h, 'x-amz-server-side-encryption-customer-algorithm') !== undefined ? '' : got.etag;
    if (length !== v.size) checkBytes(bucket, v, md5Etag, length, '');
    const tags = Number(header(h, 'x-amz-tagging-count') ?? '0') > 0 ? await versionTags(client, bucket, v.key, v.versionId, signal) : {};
    const f: Fetched = { got, headers: h, tags, etag: got.etag, md5Etag };
    const layout = PartLayout.for(got.etag, v.size ?? 0);
    if (layout) f.layout = layout;
    if (small) {
      const body = await readSmall(bucket, v, md5Etag, got.body);
      checkBytes(bucket, v, md5Etag, body.byteLength, createHash('md5').update(body).digest('hex'));
      f.body = body;
      f.layout?.update(body);
    }
    return f;
  } catch (e) {
    got.discard();
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
    for await (const b of gathered(f.got.body)) {
      n += b.byteLength;
      f.layout?.update(b);
      yield b;
    }
  } finally {
    f.got.discard();
  }
  if (n !== v.size) checkBytes(bucket, v, '', n, '');
}

/** For a large object whose ETag is the MD5 of its bytes: the check the writer calls with that MD5. */
function md5Check(bucket: string, v: ListedVersion, f: Fetched): ((hex: string) => void) | undefined {
  if (f.body || !SINGLE_PART_ETAG.test(f.md5Etag)) return undefined;
  return (hex) => checkBytes(bucket, v, f.md5Etag, v.size ?? 0, hex);
}

const MiB = 1024 * 1024;
/** Part sizes uploaders commonly use (the AWS CLI 8 MiB, minio-js and rclone 5 to 64 MiB, others 100 MiB and up). */
const COMMON_PART_SIZES = [5, 8, 10, 15, 16, 32, 50, 64, 100, 128, 256, 512].map((m) => m * MiB);
/** Layouts hashed at most per multipart version: each costs one more MD5 pass over its bytes. */
const MAX_CANDIDATES = 6;

/**
 * The part sizes an upload of `size` bytes in `count` parts of one size (the last one shorter) may
 * have used: `size / count` rounded up, then common sizes, then whole MiB, among the sizes that
 * give `count` parts; at most MAX_CANDIDATES.
 */
export function partCandidates(size: number, count: number): number[] {
  if (count < 1 || size < count) return [];
  if (count === 1) return [size];
  // ceil(size / p) === count  <=>  size / count <= p < size / (count - 1)
  const low = Math.ceil(size / count);
  const high = Math.ceil(size / (count - 1)) - 1;
  const fits = (p: number) => p >= low && p <= high;
  const out = new Set<number>([low]);
  for (const p of COMMON_PART_SIZES) if (fits(p)) out.add(p);
  for (let p = Math.ceil(low / MiB) * MiB; p <= high && out.size < MAX_CANDIDATES * 2; p += MiB) out.add(p);
  return [...out].slice(0, MAX_CANDIDATES);
}

/** The MD5s of each candidate layout's parts, fed the bytes in order; `parts` is the layout whose ETag is the recorded one. */
class PartLayout {
  private readonly layouts: { size: number; md5s: Buffer[]; h: Hash; filled: number }[];

  private constructor(
    private readonly etag: string,
    private readonly total: number,
    sizes: number[],
  ) {
    this.layouts = sizes.map((size) => ({ size, md5s: [], h: createHash('md5'), filled: 0 }));
  }

  /** A finder for a multipart ETag (`"<md5>-N"`), else undefined. */
  static for(etag: string, size: number): PartLayout | undefined {
    const m = /^"?([0-9a-f]{32})-(\d+)"?$/.exec(etag);
    const sizes = m ? partCandidates(size, Number(m[2])) : [];
    return sizes.length > 0 ? new PartLayout(m?.[1] ?? '', size, sizes) : undefined;
  }

  update(chunk: Buffer): void {
    for (const l of this.layouts) {
      for (let off = 0; off < chunk.byteLength;) {
        const n = Math.min(l.size - l.filled, chunk.byteLength - off);
        l.h.update(chunk.subarray(off, off + n));
        l.filled += n;
        off += n;
        if (l.filled === l.size) {
          l.md5s.push(l.h.digest());
          l.h = createHash('md5');
          l.filled = 0;
        }
      }
    }
  }

  /** The part sizes whose ETag is the recorded one, once every byte was fed; undefined when none matches. */
  parts(): number[] | undefined {
    for (const l of this.layouts) {
      const md5s = l.filled > 0 ? [...l.md5s, l.h.copy().digest()] : l.md5s;
      if (createHash('md5').update(Buffer.concat(md5s)).digest('hex') !== this.etag) continue;
      const parts = md5s.map(() => l.size);
      parts[parts.length - 1] = this.total - l.size * (parts.length - 1);
      return parts;
    }
    return undefined;
  }
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

/**
 * An item in the window ahead of the one being written: a listed version or delete marker to carry,
 * a held version whose tags are read again, or a held version found deleted for good.
 */
type Slot =
  | {
      kind: 'item';
      v: ListedVersion;
      fetch?: Promise<Fetched>;
      /** the bytes of its body held in memory once fetched (a small object's size, else 0) */
      held: number;
    }
  | { kind: 'held'; v: ListedVersion; known: string | null; fetch?: Promise<{ tags: Record<string, string>; lock?: Record<string, string> }> }
  | { kind: 'removed'; key: string; versionId: string };

const keyOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

/** The versions an incremental export's chain holds, walked in key byte order a page at a time. */
class HeldVersions {
  private page: [string, string][] = [];
  private i = 0;
  private last: [string, string] | undefined;
  private done = false;

  constructor(private readonly inc: Incremental) {}

  private peek(): [string, string] | undefined {
    if (this.i >= this.page.length && !this.done) {
      this.page = this.inc.page(this.last, 1000);
      this.i = 0;
      this.done = this.page.length < 1000;
    }
    return this.page[this.i];
  }

  /** The held versions of keys before `key` (all of them when undefined), which the listing has passed. */
  *before(key: string | undefined): Generator<[string, string]> {
    for (let p = this.peek(); p && (key === undefined || keyOrder(p[0], key) < 0); p = this.peek()) {
      this.i++;
      this.last = p;
      yield p;
    }
  }

  /** The held version ids of exactly `key`. */
  of(key: string): Set<string> {
    const ids = new Set<string>();
    for (let p = this.peek(); p?.[0] === key; p = this.peek()) {
      this.i++;
      this.last = p;
      ids.add(p[1]);
    }
    return ids;
  }
}

/**
 * The window's items in index order: the listing, and with `inc` the held versions merged in (a held
 * version is read again for its tags; one the listing no longer has is `removed`, among its key's
 * records, or where its key would be). Counts what it leaves out in `counts.alreadyExported`.
 */
async function* planned(listing: AsyncIterable<ListedVersion>, inc: Incremental | undefined, counts: { alreadyExported: number }): AsyncGenerator<Slot> {
  const held = inc ? new HeldVersions(inc) : undefined;
  let key: string | undefined;
  let ofKey = new Set<string>();
  const gone = function* (k: string, ids: Iterable<string>): Generator<Slot> {
    for (const versionId of ids) yield { kind: 'removed', key: k, versionId };
  };
  for await (const v of listing) {
    if (v.key !== key) {
      if (key !== undefined) yield* gone(key, ofKey);
      if (held) {
        for (const [k, id] of held.before(v.key)) yield { kind: 'removed', key: k, versionId: id };
        ofKey = held.of(v.key);
      }
      key = v.key;
    }
    const id = versionIdentity(v);
    ofKey.delete(id);
    const known = inc?.has(v.key, id);
    if (known === undefined) yield { kind: 'item', v, held: 0 };
    else if (v.kind === 'version') yield { kind: 'held', v, known };
    else counts.alreadyExported++;
  }
  if (key !== undefined) yield* gone(key, ofKey);
  if (held) for (const [k, id] of held.before(undefined)) yield { kind: 'removed', key: k, versionId: id };
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
    // changes found on held versions are as of the listing's start
    const detected = (opts.now?.() ?? new Date()).toISOString();
    const counts = { versions: 0, deleteMarkers: 0, latestObjects: 0, bytes: 0, alreadyExported: 0, changed: 0, removed: 0 };
    // legal hold and retention change without a new version only where object lock is on
    const locked = typeof record.objectLock === 'string' && record.objectLock.includes('<ObjectLockEnabled>Enabled</ObjectLockEnabled>');
    const listing = listVersions(client, t.bucket, t.prefix, signal);
    const plan = planned(listing, inc, counts);
    const window: Slot[] = [];
    let listingDone = false;
    let inFlight = 0;
    let held = 0;
    let stopped = false;
    const settled = (p: Promise<unknown>) => {
      // awaited in order below; this only keeps a failure ahead from being "unhandled"
      p.catch(() => {}).finally(() => {
        inFlight--;
        pump();
      });
    };
    const start = (w: Extract<Slot, { kind: 'item' }>, small: boolean) => {
      inFlight++;
      w.held = small ? (w.v.size ?? 0) : 0;
      held += w.held;
      w.fetch = fetchObject(client, t.bucket, w.v, small, signal);
      settled(w.fetch);
    };
    const startHeld = (w: Extract<Slot, { kind: 'held' }>) => {
      inFlight++;
      const tags = versionTags(client, t.bucket, w.v.key, w.v.versionId, signal);
      w.fetch = locked
        ? Promise.all([tags, versionLock(client, t.bucket, w.v.key, w.v.versionId, signal)]).then(([tg, lock]) => ({ tags: tg, lock }))
        : tags.then((tg) => ({ tags: tg }));
      settled(w.fetch);
    };
    // `prefetch` requests in flight as long as the window has small objects (or tags) not yet asked
    // for: a slow one at the head does not hold back the requests behind it
    const pump = () => {
      if (stopped) return;
      for (const w of window) {
        if (inFlight >= prefetch) return;
        if (w.kind === 'held' && !w.fetch) startHeld(w);
        if (w.kind !== 'item' || w.fetch || w.v.kind !== 'version' || (w.v.size ?? 0) > smallLimit) continue;
        if (held > 0 && held + (w.v.size ?? 0) > HELD_LIMIT) return;
        start(w, true);
      }
    };
    try {
      for (;;) {
        while (!listingDone && window.length < prefetch * WINDOW_PER_REQUEST) {
          const next = await plan.next();
          if (next.done) listingDone = true;
          else window.push(next.value);
        }
        pump();
        const head = window.shift();
        if (!head) break;
        if (head.kind === 'removed') {
          counts.removed++;
          yield { kind: 'record', record: { type: 'version-removed', bucket: t.bucket, key: head.key, versionId: head.versionId, detected } };
          opts.onExported?.(t, head.key, head.versionId, '', true);
          continue;
        }
        const v = head.v;
        const id = versionIdentity(v);
        if (head.kind === 'held') {
          if (!head.fetch) startHeld(head);
          const now = await (head.fetch as Promise<{ tags: Record<string, string>; lock?: Record<string, string> }>);
          const fp = versionFingerprint(now.tags, now.lock);
          if (fp === head.known) {
            counts.alreadyExported++;
            continue;
          }
          counts.changed++;
          yield {
            kind: 'record',
            record: {
              type: 'version-changed',
              bucket: t.bucket,
              key: v.key,
              versionId: v.versionId,
              tags: now.tags,
              ...(now.lock ? { lock: now.lock } : {}),
              detected,
            },
          };
          opts.onExported?.(t, v.key, id, fp);
          continue;
        }
        if (v.kind === 'delete-marker') {
          counts.deleteMarkers++;
          yield {
            kind: 'record',
            record: { type: 'delete-marker', bucket: t.bucket, key: v.key, versionId: v.versionId, isLatest: v.isLatest, lastModified: v.lastModified },
          };
          opts.onExported?.(t, v.key, id, '');
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
        const record = objectRecord(t, v, f);
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
          record,
        };
        // the writer writes an entry's index line after its bytes, which the layout finder has seen by then
        const layout = f.layout;
        const setParts = () => {
          const parts = layout?.parts();
          if (parts) record.parts = parts;
        };
        if (layout && f.body) setParts();
        else if (layout) {
          const body = item.open;
          item.open = () => withEnd(body(), setParts);
        }
        const md5 = md5Check(t.bucket, v, f);
        if (md5) item.md5 = md5;
        try {
          yield item;
        } finally {
          // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set when the consumer opened the body
          if (!opened) f.got.discard();
          held -= head.held;
        }
        opts.onExported?.(t, v.key, id, versionFingerprint(f.tags, lockHeaders(f.headers)));
      }
    } finally {
      // stopped early (an error further down the pipeline): release what was fetched ahead
      stopped = true;
      for (const w of window)
        if (w.kind === 'item')
          void w.fetch?.then(
            (f) => f.got.discard(),
            () => {},
          );
      await plan.return(undefined);
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
