/*
 * Restoring the object-storage tier of one verified bundle, into buckets or into a folder.
 *
 *   decrypt into a staging folder (object bodies as files, index records written to a file) ->
 *   check every entry against the inner manifest -> only then touch the target:
 *
 *   bucket: every destination bucket must be new or hold no version at all. Each key's history is
 *           replayed oldest first (the index lists newest first, as S3 does): a version is PUT with
 *           its content type, standard headers, user metadata and tags; a delete marker is a DELETE
 *           without version id, which makes a new marker. The server gives every write a new version
 *           id; the id map (JSON lines: source id -> new id) is how a caller finds its versions again.
 *           Each upload carries its Content-MD5 and its returned ETag is checked (s3/objects.ts), and a
 *           multipart version goes up in the part sizes the bundle recorded, so its ETag comes back.
 *           Versioning is switched on before the first write and back to Suspended after the last
 *           when the source was suspended; lifecycle, object lock rules and bucket tags are put last,
 *           so no lifecycle rule acts on a half-restored bucket. Large objects go up in parts.
 *           Each write is sent once (a retry could write twice); a run that stopped, for whatever
 *           reason, is resumed by running it again: the id map being written is the journal, and a
 *           key's versions already in its destination bucket are the first of its history, in order.
 *   folder: for each key the newest version at `--at` (or now); a key whose newest entry then is a
 *           delete marker is absent. Keys become safe relative paths (see `safeComponents`) under
 *           DIR/<bucket>/, and DIR/.airlock-keys.jsonl maps each path back to bucket, key and version.
 *           The tree is built in staging and renamed onto DIR at the end; files are 0600 and folders
 *           0700, since a bucket's contents carry no mode and may be confidential.
 *
 * Records of one key are contiguous in the index (the source writes them in listing order), so
 * replay holds one key's history in memory at a time, never the whole index. An incremental bundle
 * (`since` in its bucket records) is restored with the bundles it builds on, back to a whole
 * export: each is staged, and their key histories are merged (newer bundle, newer versions); the
 * `version-changed` and `version-removed` records of the newer bundles apply to the versions of older
 * ones (see historyAt).
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, openSync, writeSync, closeSync } from 'node:fs';
import { mkdir, open, readFile, rename, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { writeFileAtomic } from '../../manifests/atomic.js';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import {
  assertIndexRecord,
  type BucketRecord,
  type IndexRecord,
  type DeleteMarkerRecord,
  type ObjectRecord,
  type VersionChangedRecord,
  type VersionRemovedRecord,
} from '../../manifests/records.js';
import type { BundleReport } from '../../verifier/verify.js';
import { faultPoint } from '../faults.js';
import { fsyncDir } from '../fsutil.js';
import { S3Client, utf8Header } from '../s3/client.js';
import {
  bucketState,
  createBucket,
  evenParts,
  putBucketDocument,
  putBucketTags,
  putDeleteMarker,
  putVersion,
  setVersioning,
  taggingHeader,
  versionsOf,
  type PutPlan,
} from '../s3/objects.js';
import { openStaging, promote, requireEmpty, stageBundle, verifiedManifest, type Notes } from './staging.js';

export const KEY_MAP_FILE = '.airlock-keys.jsonl';
/** The message of a restore from a bundle without buckets, which a drill counts as nothing to check. */
export const NO_BUCKET = 'this bundle holds no bucket';

/** Objects above this size are uploaded in parts of PART_SIZE. */
export const MULTIPART_THRESHOLD = 64 * 1024 * 1024;
export const PART_SIZE = 16 * 1024 * 1024;
/** keys replayed at once (each key's history stays in order); S3 latency makes this the throughput */
const CONCURRENT_KEYS = 16;

export interface ObjectRestoreSummary {
  bundle: string;
  site: string;
  seq: number;
  buckets: number;
  versions: number;
  deleteMarkers: number;
  /** folder: objects written; bucket: versions and markers written */
  written: number;
  bytes: number;
  /** where the id map (bucket) or key map (folder) was written */
  map: string;
  /** what was not restored and why, one line each; keys deleted at the chosen time up to DELETED_LISTED, then counted */
  skipped: string[];
  /** bucket: versions that came back with another ETag than the source's (multipart, part layout unknown); the id map gives both */
  etagsChanged: number;
}

/** Keys deleted at the chosen time that a folder restore names one by one; the rest are counted. */
const DELETED_LISTED = 100;

export type ObjectTarget =
  | { kind: 'bucket'; client: S3Client; bucketMap: ReadonlyMap<string, string>; idMap: string; multipartThreshold?: number; partSize?: number }
  | { kind: 'folder'; to: string };

interface Staged {
  dir: string;
  entries: string;
  records: string;
}

/** Told the bytes of each step as they pass: bundles decrypted into staging, object versions written to S3. */
export type Progress = (step: 'decrypt' | 'write', bytes: number) => void;

/** The records a restore reads: buckets, the versions and markers of each key, and later changes to them. */
const STAGED_TYPES = new Set(['bucket', 'object', 'delete-marker', 'version-changed', 'version-removed']);

/** Decrypts and checks the bundle into `dir` (staging.ts); the records go to a file, the bodies to entries/. */
async function stage(bundle: BundleReport, identities: readonly Uint8Array[], dir: string, signal?: AbortSignal, progress?: Progress): Promise<Staged> {
  const entries = path.join(dir, 'entries');
  const records = path.join(dir, 'records.jsonl');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const fd = openSync(records, 'wx', 0o600);
  let pending = '';
  try {
    await stageBundle(bundle, identities, entries, {
      onRecord: (r) => {
        if (!STAGED_TYPES.has(r.type)) return;
        pending += `${JSON.stringify(r)}\n`;
        if (pending.length > 1024 * 1024) {
          writeSync(fd, pending);
          pending = '';
        }
      },
      ...(signal ? { signal } : {}),
      ...(progress ? { onBytes: (n: number) => progress('decrypt', n) } : {}),
    });
    writeSync(fd, pending);
  } finally {
    closeSync(fd);
  }
  return { dir, entries, records };
}

/** What staging keeps of the index (STAGED_TYPES): the bucket records, every version and delete marker, and later changes to them. */
type KeptRecord = BucketRecord | ObjectRecord | DeleteMarkerRecord | VersionChangedRecord | VersionRemovedRecord;
/** A version or delete marker as a restore reads it; an object's staged body is `file`. */
type StagedVersion = (ObjectRecord & { file: string }) | DeleteMarkerRecord;
/** What a key's group holds: its versions and delete markers, and the changes to them. */
type KeyRecord = StagedVersion | VersionChangedRecord | VersionRemovedRecord;

function isKept(r: IndexRecord): r is KeptRecord {
  return STAGED_TYPES.has(r.type);
}

async function* readRecords(file: string): AsyncGenerator<KeptRecord> {
  const rl = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
  let n = 0;
  for await (const line of rl) {
    n++;
    if (line === '') continue;
    const r: unknown = JSON.parse(line);
    assertIndexRecord(r, `${file} line ${n}`);
    if (!isKept(r)) throw new AirlockError('internal', `${file} line ${n}: a ${r.type} record was spooled`);
    yield r;
  }
}

/** Runs of records with the same bucket and key, in index order (newest first within a run). */
async function* keyGroups(records: AsyncIterable<KeyRecord>): AsyncGenerator<KeyRecord[]> {
  let group: KeyRecord[] = [];
  for await (const r of records) {
    const head = group[0];
    if (head && (head.bucket !== r.bucket || head.key !== r.key)) {
      yield group;
      group = [];
    }
    group.push(r);
  }
  if (group.length > 0) yield group;
}

/** What a restore reads: the buckets of the chosen bundle, and the key histories of its chain. */
interface Chain {
  /** the `bucket` records of the chosen (newest) bundle: what is restored, with which settings */
  buckets: BucketRecord[];
  /** one group per key, newest first, in S3 key order per bucket */
  groups: () => AsyncIterable<KeyRecord[]>;
}

const keyOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

/**
 * Stages `bundle` and, when its buckets were exported incrementally (`since`), every bundle of the
 * chain back to a whole export, taking those from `verified`. Throws `no-bundle` when a bundle of
 * the chain is not among them, and what staging throws.
 */
async function stageChain(
  bundle: BundleReport,
  verified: readonly BundleReport[],
  identities: readonly Uint8Array[],
  dir: string,
  signal?: AbortSignal,
  progress?: Progress,
): Promise<Chain> {
  const bucketsOf = async (st: Staged) => {
    const out: BucketRecord[] = [];
    for await (const r of readRecords(st.records)) if (r.type === 'bucket') out.push(r);
    return out;
  };
  const seqOf = (b: BundleReport) => b.manifest?.seq ?? 0;
  const staged = new Map<number, Staged>();
  const first = await stage(bundle, identities, path.join(dir, `b${seqOf(bundle)}`), signal, progress);
  staged.set(seqOf(bundle), first);
  const buckets = await bucketsOf(first);
  const targets = buckets.map((r) => ({ bucket: r.bucket, prefix: r.prefix }));
  const queue = buckets.map((r) => r.since).filter((x) => x !== undefined);
  const bucketRecords = new Map<number, BucketRecord[]>([[seqOf(bundle), buckets]]);
  while (queue.length > 0) {
    const seq = queue.shift() as number;
    if (staged.has(seq)) continue;
    const b = verified.find((x) => seqOf(x) === seq);
    if (!b) {
      throw new AirlockError(
        'no-bundle',
        `bundle ${seq} of ${bundle.manifest?.site ?? '?'} is not here, and ${path.basename(bundle.path)} builds on it (an incremental export)`,
        {
          hint: 'give --from a folder that holds the whole chain back to a full export of the buckets',
        },
      );
    }
    const st = await stage(b, identities, path.join(dir, `b${seq}`), signal, progress);
    staged.set(seq, st);
    const bs = await bucketsOf(st);
    bucketRecords.set(seq, bs);
    for (const r of bs) {
      if (r.since !== undefined && targets.some((t) => t.bucket === r.bucket && t.prefix === r.prefix)) queue.push(r.since);
    }
  }
  // each bucket merges only the bundles of its own chain: a bucket exported whole in the newest
  // bundle must not get back keys from older bundles that were staged for another bucket
  const chainOf = new Map<string, Set<number>>();
  for (const r of buckets) {
    const seqs = chainOf.get(r.bucket) ?? new Set<number>([seqOf(bundle)]);
    let since = r.since;
    while (since !== undefined && !seqs.has(since)) {
      seqs.add(since);
      since = bucketRecords.get(since)?.find((x) => x.bucket === r.bucket && x.prefix === r.prefix)?.since;
    }
    chainOf.set(r.bucket, seqs);
  }
  const wanted = (r: StagedVersion | KeptRecord) => targets.some((t) => t.bucket === r.bucket && 'key' in r && r.key.startsWith(t.prefix));
  const newestFirst = [...staged.entries()].sort((a, b) => b[0] - a[0]);

  async function* ofBucket(st: Staged, bucket: string): AsyncGenerator<KeyRecord> {
    for await (const r of readRecords(st.records)) {
      if (r.type === 'bucket' || r.bucket !== bucket || !wanted(r)) continue;
      yield r.type === 'object' ? { ...r, file: path.join(st.entries, r.path) } : r;
    }
  }
  // a k-way merge of the bundles' key groups: every bundle lists keys in S3 order; for one key the
  // newer bundle's versions are newer (they did not exist when the older bundle listed that key)
  async function* groups(): AsyncGenerator<KeyRecord[]> {
    for (const bucket of [...new Set(targets.map((t) => t.bucket))]) {
      const iters = newestFirst.filter(([seq]) => chainOf.get(bucket)?.has(seq)).map(([, st]) => keyGroups(ofBucket(st, bucket)));
      const heads = await Promise.all(iters.map((it) => it.next()));
      for (;;) {
        let min: string | undefined;
        for (const h of heads) {
          const key = h.done ? undefined : h.value[0]?.key;
          if (key !== undefined && (min === undefined || keyOrder(key, min) < 0)) min = key;
        }
        if (min === undefined) break;
        const group: KeyRecord[] = [];
        const seen = new Set<string>();
        for (const [i, h] of heads.entries()) {
          if (h.done || h.value[0]?.key !== min) continue;
          for (const r of h.value) {
            if (r.type !== 'object' && r.type !== 'delete-marker') {
              group.push(r);
              continue;
            }
            // an unversioned bucket's versions are all "null": told apart by time and ETag (none for a delete marker)
            const id = r.versionId === 'null' ? `null@${r.lastModified}@${r.type === 'object' ? r.etag : 'delete-marker'}` : r.versionId;
            if (!seen.has(id)) group.push(r); // a version in two bundles (an interrupted catalog update) counts once
            seen.add(id);
          }
          heads[i] = await (iters[i] as AsyncGenerator<KeyRecord[]>).next();
        }
        yield group;
      }
    }
  }
  return { buckets, groups };
}

function at(r: StagedVersion): number {
  return Date.parse(r.lastModified);
}

/**
 * A key's history as it stood at `until`, oldest first: its versions and delete markers written by
 * then, without those found deleted for good by then (`version-removed`), each version with the tags
 * and object lock it had then (the newest `version-changed` record found by then, else its own).
 * `group` is the key's records newest first, newer bundles before older ones. A change is dated when
 * an export found it, so `until` between two exports sees the state of the earlier one.
 */
function historyAt(group: readonly KeyRecord[], until: number): StagedVersion[] {
  const removed = new Set<string>();
  const changes = new Map<string, VersionChangedRecord>();
  for (const r of group) {
    if (r.type !== 'version-removed' && r.type !== 'version-changed') continue;
    if (Date.parse(r.detected) > until) continue;
    if (r.type === 'version-removed') removed.add(r.versionId);
    else if (!changes.has(r.versionId)) changes.set(r.versionId, r);
  }
  const history: StagedVersion[] = [];
  for (const r of group) {
    if ((r.type !== 'object' && r.type !== 'delete-marker') || at(r) > until || removed.has(r.versionId)) continue;
    const later = changes.get(r.versionId);
    history.push(r.type === 'object' && later !== undefined ? changed(r, later) : r);
  }
  return history.reverse();
}

/** Version `r` with the tags and object lock of `change` (a `version-changed` record). */
function changed<R extends ObjectRecord>(r: R, change: VersionChangedRecord): R {
  if (change.lock === undefined) return { ...r, tags: change.tags };
  // the lock headers now present replace all the version had: a legal hold lifted is absent
  const headers = Object.fromEntries(Object.entries(r.headers).filter(([k]) => !k.startsWith('x-amz-object-lock-')));
  return { ...r, tags: change.tags, headers: { ...headers, ...change.lock } };
}

/** Whether a version's object-lock retention date lies in the past. */
function retentionEnded(r: ObjectRecord): boolean {
  const until = r.headers['x-amz-object-lock-retain-until-date'];
  return until !== undefined && Date.parse(until) <= Date.now();
}

/** The headers an object record may carry (what an export reads, SPEC.md 6.3); a restore sends no other. */
const RECORD_HEADERS = new Set([
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
]);
/** A user metadata name as S3 keeps it: an HTTP token (RFC 9110), lower case. */
const METADATA_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
/** Bytes no header value may hold: every control byte but tab (CR and LF would start another header), and DEL. */
const CONTROL_BYTE = /[\x00-\x08\x0a-\x1f\x7f]/;
/** Half of a UTF-16 surrogate pair on its own: not text, so no UTF-8 for it exists to sign or send. */
const LONE_SURROGATE = /\p{Cs}/u;

/** The `unsafe-entry` error for version `r` that cannot be sent as recorded, saying `why`. */
function unsendable(r: ObjectRecord | DeleteMarkerRecord, why: string): AirlockError {
  return new AirlockError('unsafe-entry', `${r.bucket}/${JSON.stringify(r.key)} version ${r.versionId}: ${why}`);
}

/** A header value (a byte string) that stays one header on the wire. Throws `unsafe-entry`. */
function headerValue(r: ObjectRecord, name: string, bytes: string): string {
  if (CONTROL_BYTE.test(bytes))
    throw unsendable(
      r,
      `${name} holds a control byte (0x${(CONTROL_BYTE.exec(bytes)?.[0] ?? '').charCodeAt(0).toString(16).padStart(2, '0')}), which no http header can carry`,
    );
  return bytes;
}

/** The UTF-8 bytes of a record's text as a byte string. Throws `unsafe-entry` for text that has none. */
function textBytes(r: ObjectRecord, name: string, v: string): string {
  if (LONE_SURROGATE.test(v)) throw unsendable(r, `${name} is not valid unicode text`);
  return utf8Header(v);
}

/**
 * The object's headers for a PUT, as byte strings, each checked so the request carries exactly one
 * header per field, as recorded: only the headers an export records (a record naming another, such as
 * x-amz-acl or x-amz-copy-source, would make the server do something else than store this version),
 * metadata names that are lower-case tokens and given once, and values without control bytes.
 * Throws `unsafe-entry` naming the version otherwise.
 */
function putHeaders(r: ObjectRecord, lock: boolean): Record<string, string> {
  const h: Record<string, string> = {};
  const key = r.key;
  if (key === '' || LONE_SURROGATE.test(key)) throw unsendable(r, 'the key is not valid unicode text');
  const ct = r.contentType;
  if (ct !== '') h['content-type'] = headerValue(r, 'its content type', textBytes(r, 'its content type', ct));
  for (const [k, v] of Object.entries(r.headers)) {
    if (!RECORD_HEADERS.has(k)) throw unsendable(r, `its record names the header ${JSON.stringify(k)}, which an export never records`);
    if (k.startsWith('x-amz-object-lock-') && !lock) continue;
    // S3 refuses a retention that already ended; the version is no longer locked anyway
    if ((k === 'x-amz-object-lock-retain-until-date' || k === 'x-amz-object-lock-mode') && retentionEnded(r)) continue;
    if (k === 'x-amz-server-side-encryption') continue; // the destination decides its own encryption
    h[k] = headerValue(r, k, textBytes(r, k, v));
  }
  const meta = (k: string, bytes: string) => {
    const name = `x-amz-meta-${k}`;
    if (!METADATA_NAME.test(k)) throw unsendable(r, `the metadata name ${JSON.stringify(k)} is not a lower-case http token`);
    if (name in h) throw unsendable(r, `the metadata ${JSON.stringify(k)} is given twice`);
    h[name] = headerValue(r, `the metadata ${JSON.stringify(k)}`, bytes);
  };
  for (const [k, v] of Object.entries(r.metadata)) meta(k, textBytes(r, `the metadata ${JSON.stringify(k)}`, v));
  for (const [k, v] of Object.entries(r.metadataBase64 ?? {})) meta(k, Buffer.from(v, 'base64').toString('latin1'));
  const tags = Object.entries(r.tags);
  for (const [k, v] of tags)
    if (LONE_SURROGATE.test(k) || LONE_SURROGATE.test(v)) throw unsendable(r, `the tag ${JSON.stringify(k)} is not valid unicode text`);
  if (tags.length > 0) h['x-amz-tagging'] = taggingHeader(Object.fromEntries(tags));
  if (r.storageClass !== undefined && r.storageClass !== '' && r.storageClass !== 'STANDARD') {
    if (!/^[A-Z0-9_]{1,64}$/.test(r.storageClass)) throw unsendable(r, `the storage class ${JSON.stringify(r.storageClass)} is not one`);
    h['x-amz-storage-class'] = r.storageClass;
  }
  return h;
}

/**
 * Before anything is written: every version the restore would send must be sendable as recorded
 * (putHeaders), and every key valid text. Throws `unsafe-entry` naming up to three and counting the rest.
 */
async function checkSendable(chain: Chain, plans: ReadonlyMap<string, BucketPlan>, until: number): Promise<void> {
  const problems: string[] = [];
  for await (const group of chain.groups()) {
    const plan = plans.get(String(group[0]?.bucket));
    if (!plan) continue;
    for (const r of historyAt(group, until)) {
      try {
        if (r.type === 'object') putHeaders(r, plan.lock);
        else if (LONE_SURROGATE.test(r.key)) throw unsendable(r, 'the key is not valid unicode text');
      } catch (e) {
        if (!(e instanceof AirlockError)) throw e;
        problems.push(e.message);
      }
    }
  }
  if (problems.length > 0) {
    throw new AirlockError(
      'unsafe-entry',
      `${problems.length} version(s) cannot be sent to the S3 server as the bundle records them: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? '; ...' : ''}`,
      {
        hint: 'an export never records such values, so the bundle was not made by an honest airlock; nothing was written',
      },
    );
  }
}

interface BucketPlan {
  source: BucketRecord;
  dest: string;
  lock: boolean;
}

/**
 * How a version goes up: in the parts the bundle recorded (so a multipart version gets its ETag
 * back), else in parts of `partSize` above the threshold, else in one PUT.
 */
function putPlan(r: ObjectRecord, size: number, target: { multipartThreshold?: number; partSize?: number }): PutPlan {
  const parts = r.parts;
  if (parts !== undefined && parts.length > 0 && parts.length <= 10_000 && parts.every((p) => p > 0) && parts.reduce((a, p) => a + p, 0) === size)
    return { parts };
  return size > (target.multipartThreshold ?? MULTIPART_THRESHOLD) ? { parts: evenParts(size, target.partSize ?? PART_SIZE) } : {};
}

/**
 * Checks and prepares the destination buckets; throws `target-exists` for one that holds anything,
 * unless `resuming` (an interrupted restore's journal says what it already wrote there).
 */
async function prepareBuckets(client: S3Client, plans: readonly BucketPlan[], resuming: boolean, signal?: AbortSignal): Promise<void> {
  for (const p of plans) {
    const state = await bucketState(client, p.dest, signal);
    if (state === 'absent') await createBucket(client, p.dest, p.lock, signal);
    if (state === 'used' && !resuming)
      throw new AirlockError('target-exists', `bucket ${p.dest} is not empty`, {
        hint: 'restore into a new or empty bucket (--bucket-map SOURCE=NEW); nothing was written',
      });
    const v = p.source.versioning;
    if (v === 'Enabled' || v === 'Suspended') await setVersioning(client, p.dest, 'Enabled', signal);
  }
}

async function finishBuckets(client: S3Client, plans: readonly BucketPlan[], signal?: AbortSignal): Promise<void> {
  for (const p of plans) {
    if (p.source.versioning === 'Suspended') await setVersioning(client, p.dest, 'Suspended', signal);
    const tags = p.source.tags;
    if (tags && typeof tags === 'object' && Object.keys(tags).length > 0) await putBucketTags(client, p.dest, tags, signal);
    if (typeof p.source.objectLock === 'string' && p.source.objectLock.includes('<Rule>'))
      await putBucketDocument(client, p.dest, 'object-lock', p.source.objectLock, signal);
    if (typeof p.source.lifecycle === 'string') await putBucketDocument(client, p.dest, 'lifecycle', p.source.lifecycle, signal);
  }
}

const journalKey = (bucket: string, key: string, sourceVersionId: string) => JSON.stringify([bucket, key, sourceVersionId]);

/**
 * The versions an interrupted restore journaled, or undefined when there is no journal. The journal
 * is synced only at the end, so a crash can leave a line cut short, or lost, or garbled: such lines
 * are dropped (the file is rewritten without them, so the id map ends up clean), and the versions
 * they named are found again in the destination bucket.
 */
async function readJournal(file: string): Promise<Set<string> | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystemError(e, file);
  }
  const done = new Set<string>();
  const kept: string[] = [];
  const lines = text.split('\n');
  // the text after the last newline is a line cut short (or nothing)
  for (const line of lines.slice(0, -1)) {
    try {
      const m = JSON.parse(line) as { bucket: unknown; key: unknown; sourceVersionId: unknown };
      if (typeof m.bucket !== 'string' || typeof m.key !== 'string' || typeof m.sourceVersionId !== 'string') continue;
      done.add(journalKey(m.bucket, m.key, m.sourceVersionId));
      kept.push(`${line}\n`);
    } catch {
      // garbled by the crash
    }
  }
  if (kept.length !== lines.length - 1 || lines.at(-1) !== '') {
    await writeFileAtomic(file, kept.join(''));
  }
  return done;
}

/** Runs `work` on the items of `source` with at most `limit` at once; stops at the first failure. */
async function forEachLimited<T>(source: AsyncIterable<T>, limit: number, work: (item: T) => Promise<void>): Promise<void> {
  const running = new Set<Promise<void>>();
  let failure: { e: unknown } | undefined;
  for await (const item of source) {
    if (failure) break;
    const p = work(item).then(
      () => {
        running.delete(p);
      },
      (e: unknown) => {
        running.delete(p);
        failure ??= { e };
      },
    );
    running.add(p);
    if (running.size >= limit) await Promise.race(running);
  }
  await Promise.all(running);
  if (failure) throw failure.e;
}

async function restoreToBuckets(
  chain: Chain,
  target: Extract<ObjectTarget, { kind: 'bucket' }>,
  until: number,
  summary: ObjectRestoreSummary,
  signal?: AbortSignal,
  progress?: Progress,
  notes?: Notes,
): Promise<void> {
  const { client } = target;
  const plans = new Map<string, BucketPlan>();
  const inBundle: string[] = [];
  for (const r of chain.buckets) {
    const src = r.bucket;
    inBundle.push(src);
    const dest = target.bucketMap.get(src);
    if (dest === undefined) {
      summary.skipped.push(`bucket ${src}: not named in --bucket-map, not restored`);
      continue;
    }
    if (plans.has(src)) continue; // two prefixes of one bucket: one destination, set up once
    plans.set(src, { source: r, dest, lock: !!r.objectLock?.includes('<ObjectLockEnabled>Enabled</ObjectLockEnabled>') });
  }
  for (const src of target.bucketMap.keys()) {
    if (!plans.has(src))
      throw new AirlockError('usage', `--bucket-map names ${src}, which is not in this bundle`, {
        hint: `the bundle holds ${inBundle.join(', ') || 'no bucket'}`,
      });
  }
  const dests = [...plans.values()].map((p) => p.dest);
  if (new Set(dests).size !== dests.length)
    throw new AirlockError('usage', 'two source buckets map to the same destination', { hint: 'give each source bucket its own destination in --bucket-map' });
  summary.buckets = plans.size;
  // the id map, while it is written, is the journal: a run that finds it resumes where it stopped
  const partial = `${target.idMap}.partial`;
  const journal = await readJournal(partial);
  await checkSendable(chain, plans, until);
  if (journal) notes?.(`resuming an interrupted restore: ${journal.size} version(s) already written`);
  await prepareBuckets(client, [...plans.values()], journal !== undefined, signal);

  const out = createWriteStream(partial, { flags: journal ? 'a' : 'wx', mode: 0o644 });
  const outDone = new Promise<void>((resolve, reject) => {
    out.on('error', reject);
    out.on('close', resolve);
  });
  const writeLine = (o: object) => {
    out.write(`${JSON.stringify(o)}\n`);
  };
  try {
    await forEachLimited(chain.groups(), CONCURRENT_KEYS, async (group) => {
      const plan = plans.get(String(group[0]?.bucket));
      if (!plan) return;
      const history = historyAt(group, until);
      const journaled = (r: StagedVersion) => journal?.has(journalKey(plan.source.bucket, r.key, r.versionId)) ?? false;
      // Resuming: the destination was empty and each key's versions are written one after another,
      // oldest first, so the key's versions there are the first records of its history, in order.
      // They count as written whether or not their journal line made it (killed between the write
      // and the line, or lines lost with the page cache). A key whose every version is journaled is
      // done and needs no listing.
      const listed = journal !== undefined && !history.every(journaled);
      const groupKey = group[0]?.key ?? '';
      const landed = listed ? await versionsOf(client, plan.dest, groupKey, signal) : [];
      if (landed.length > history.length) throw historyDiffers(plan.dest, groupKey);
      for (const [i, r] of history.entries()) {
        const key = r.key;
        const sourceVersionId = r.versionId;
        const there = landed[i];
        if (there) {
          const same = r.type === 'delete-marker' ? there.kind === 'delete-marker' : there.kind === 'version' && there.size === r.size;
          if (!same) throw historyDiffers(plan.dest, key);
          if (!journaled(r))
            writeLine({
              bucket: plan.source.bucket,
              key,
              sourceVersionId,
              destBucket: plan.dest,
              versionId: there.versionId,
              deleteMarker: there.kind === 'delete-marker',
              lastModified: r.lastModified,
              ...(there.kind === 'delete-marker' || r.type !== 'object' ? {} : { etag: r.etag }),
            });
          continue;
        }
        if (journaled(r)) {
          // journaled, yet not in the bucket: somebody removed it
          if (listed) throw historyDiffers(plan.dest, key);
          continue;
        }
        if (r.type === 'delete-marker') {
          const versionId = await putDeleteMarker(client, plan.dest, key, signal);
          summary.deleteMarkers++;
          faultPoint('restore:after-write');
          writeLine({ bucket: plan.source.bucket, key, sourceVersionId, destBucket: plan.dest, versionId, deleteMarker: true, lastModified: r.lastModified });
        } else {
          const size = r.size;
          const { versionId, etag } = await putVersion(client, plan.dest, key, r.file, size, putHeaders(r, plan.lock), putPlan(r, size, target), signal);
          summary.versions++;
          summary.bytes += size;
          progress?.('write', size);
          faultPoint('restore:after-write');
          // a multipart version whose part layout the bundle does not know comes back with another ETag: the map says which
          const changed = etag !== '' && etag !== r.etag;
          if (changed) summary.etagsChanged++;
          writeLine({
            bucket: plan.source.bucket,
            key,
            sourceVersionId,
            destBucket: plan.dest,
            versionId,
            deleteMarker: false,
            lastModified: r.lastModified,
            etag: r.etag,
            ...(changed ? { newEtag: etag } : {}),
          });
        }
        summary.written++;
      }
    });
    await finishBuckets(client, [...plans.values()], signal);
  } finally {
    out.end();
    await outDone;
  }
  const fh = await open(partial, 'r');
  await fh.sync();
  await fh.close();
  await rename(partial, target.idMap);
  await fsyncDir(path.dirname(target.idMap));
}

function historyDiffers(bucket: string, key: string): AirlockError {
  return new AirlockError('target-exists', `bucket ${bucket}: the versions of ${JSON.stringify(key)} there are not the ones this restore wrote`, {
    hint: 'something else wrote to the destination bucket since the interrupted run; restore into a new bucket',
  });
}

const MAX_COMPONENT = 255;

/**
 * An object key as path components that are safe on a POSIX file system: `%` and control
 * characters become %XX, an empty component (from `//` or a leading `/`) becomes `%`, `.` and `..`
 * become `%2E` and `%2E%2E`, and a component over 255 bytes is cut and ends in `%~` and a hash.
 * Since every `%` the encoder writes is followed by two hex digits or one of those forms, no two
 * keys map to the same path, and a trailing `%` stays free for file/folder clashes.
 */
export function safeComponents(key: string): string[] {
  return key.split('/').map((c) => {
    if (c === '') return '%';
    if (c === '.' || c === '..') return c.replace(/\./g, '%2E');

    let e = c.replace(/[%\x00-\x1f\x7f]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
    if (Buffer.byteLength(e) > MAX_COMPONENT) {
      const hash = createHash('sha256').update(c).digest('hex').slice(0, 16);
      let cut = e.slice(0, 200);
      while (Buffer.byteLength(cut) > 200) cut = cut.slice(0, -1);
      // never cut inside a %XX escape or a surrogate pair
      cut = cut.replace(/%[0-9A-F]?$/, '').replace(/[\ud800-\udbff]$/, '');
      e = `${cut}%~${hash}`;
    }
    return e;
  });
}

async function restoreToFolder(chain: Chain, to: string, tree: string, until: number, summary: ObjectRestoreSummary): Promise<void> {
  const buckets = new Set(chain.buckets.map((r) => r.bucket));
  if (buckets.size === 0)
    throw new AirlockError('not-found', NO_BUCKET, { hint: 'choose a bundle exported with --bucket (--seq), or use airlock restore files' });
  summary.buckets = buckets.size;
  const choose = (group: KeyRecord[]) => historyAt(group, until).at(-1);
  const bucketDir = (b: string) => {
    if (!/^[a-z0-9][a-z0-9.-]{1,62}$/.test(b) || b.includes('..')) throw new AirlockError('unsafe-entry', `index names an unsafe bucket ${JSON.stringify(b)}`);
    return b;
  };
  const map = createWriteStream(path.join(tree, KEY_MAP_FILE), { flags: 'wx', mode: 0o600 });
  const mapDone = new Promise<void>((resolve, reject) => {
    map.on('error', reject);
    map.on('close', resolve);
  });
  // A key that is also a folder of later keys ("a" and "a/b") becomes the file "a%". Keys come in
  // byte order, and the keys below "a/" come after "a" and before "a0", so a written file waits on
  // this stack until a later key settles it: one below it makes it a folder (the file moves to its
  // `%` name), one past "a0" leaves it a file. The stack holds files whose keys are prefixes of one
  // another's neighbours, not every key.
  const pending: { bucket: string; key: string; rel: string; r: ObjectRecord }[] = [];
  let deleted = 0;
  const settle = async (next?: { bucket: string; key: string }) => {
    for (let top = pending.at(-1); top; top = pending.at(-1)) {
      const below = `${top.key}/`;
      const same = next?.bucket === top.bucket;
      if (same && keyOrder(next.key, below) < 0) return; // keys below it may still come
      let rel = top.rel;
      if (same && next.key.startsWith(below)) {
        rel += '%';
        await rename(path.join(tree, top.rel), path.join(tree, rel));
      }
      pending.pop();
      const r = top.r;
      map.write(
        `${JSON.stringify({ path: rel, bucket: r.bucket, key: r.key, versionId: r.versionId, lastModified: r.lastModified, size: r.size, sha256: r.sha256, etag: r.etag, contentType: r.contentType, headers: r.headers, metadata: r.metadata, tags: r.tags })}\n`,
      );
    }
  };
  try {
    for await (const group of chain.groups()) {
      const r = choose(group);
      for (const x of group) if (x.type === 'object' || x.type === 'delete-marker') summary[x.type === 'delete-marker' ? 'deleteMarkers' : 'versions']++;
      if (!r) continue;
      if (r.type !== 'object') {
        if (++deleted <= DELETED_LISTED) summary.skipped.push(`${r.bucket}/${r.key}: deleted at that time`);
        continue;
      }
      const bucket = bucketDir(r.bucket);
      const key = r.key;
      await settle({ bucket, key });
      const rel = [bucket, ...safeComponents(key)].join('/');
      const dest = path.join(tree, rel);
      await mkdir(path.dirname(dest), { recursive: true, mode: 0o700 });
      await rename(r.file, dest); // stays 0600: bucket contents are nobody else's business
      const t = new Date(at(r));
      await utimes(dest, t, t);
      summary.written++;
      summary.bytes += r.size;
      pending.push({ bucket, key, rel, r });
    }
    await settle();
  } finally {
    map.end();
    await mapDone;
  }
  if (deleted > DELETED_LISTED) summary.skipped.push(`${deleted - DELETED_LISTED} more keys deleted at that time (${KEY_MAP_FILE} lists what was restored)`);
  summary.map = path.join(to, KEY_MAP_FILE);
}

export interface ObjectRestoreOptions {
  /** history up to this time (ms since the epoch); Infinity (the default) for all */
  until?: number;
  signal?: AbortSignal;
  /** bundles of the same site that passed verification, where an incremental bundle finds its chain */
  verified?: readonly BundleReport[];
  progress?: Progress;
  notes?: Notes;
}

/**
 * Restores the objects of the verified `bundle` to `target`, with history up to `opts.until`. An
 * incremental bundle takes the rest of its chain from `opts.verified`. Throws `no-bundle` for a
 * missing link, `verification-failed` (payload does not match its manifests, nothing touched),
 * `target-exists` (a non-empty destination bucket or folder, or an existing id map), `locked`
 * (another restore into the same folder or id map runs), `usage` for a bucket map that names no
 * bucket of the bundle, the S3 client's errors, and typed system errors. A failure during a bucket
 * restore leaves what was written so far, and the id map of it as `<id map>.partial`; the id map
 * gets its final name only when everything succeeded.
 */
export async function restoreObjects(
  bundle: BundleReport,
  identities: readonly Uint8Array[],
  target: ObjectTarget,
  opts: ObjectRestoreOptions = {},
): Promise<ObjectRestoreSummary> {
  const manifest = verifiedManifest(bundle);
  const summary: ObjectRestoreSummary = {
    bundle: bundle.path,
    site: manifest.site,
    seq: manifest.seq,
    buckets: 0,
    versions: 0,
    deleteMarkers: 0,
    written: 0,
    bytes: 0,
    map: '',
    skipped: [],
    etagsChanged: 0,
  };
  const { until = Infinity, signal, verified = [], progress } = opts;
  const exists = (p: string) =>
    stat(p).then(
      () => true,
      () => false,
    );
  const notes = opts.notes ? { notes: opts.notes } : {};

  if (target.kind === 'bucket') {
    const idMap = path.resolve(target.idMap);
    if (await exists(idMap)) throw new AirlockError('target-exists', `${idMap} already exists`, { hint: 'give --id-map a new file name' });
    const parent = path.dirname(idMap);
    await mkdir(parent, { recursive: true }).catch((e: unknown) => {
      throw fromSystemError(e, parent);
    });
    // a wrong endpoint or key should fail now, not after the whole payload was decrypted
    await target.client.call({ method: 'GET', ...(signal ? { signal } : {}) });
    const staging = await openStaging(idMap, notes);
    try {
      const chain = await stageChain(bundle, verified, identities, staging.dir, signal, progress);
      await restoreToBuckets(chain, { ...target, idMap }, until, summary, signal, progress, opts.notes);
      summary.map = idMap;
      return summary;
    } catch (e) {
      throw fromSystemError(e, idMap);
    } finally {
      await staging.close();
    }
  }

  const to = path.resolve(target.to);
  await requireEmpty(to);
  const staging = await openStaging(to, notes);
  try {
    const chain = await stageChain(bundle, verified, identities, staging.dir, signal, progress);
    const tree = path.join(staging.dir, 'tree');
    await mkdir(tree, { mode: 0o700 });
    await restoreToFolder(chain, to, tree, until, summary);
    await promote(tree, to);
    return summary;
  } catch (e) {
    throw fromSystemError(e, to);
  } finally {
    await staging.close();
  }
}
