/*
 * The S3 requests airlock makes about buckets, objects and versions, so that an export (sources/)
 * and a restore (restore/) speak in versions and never in query strings, XML or headers.
 *
 * Listing: ListObjectVersions pages of 1,000, asked for with `encoding-type=url` (so keys with control
 * characters survive XML) and paged with the last entry's key and version id as markers, escaped by
 * our own client: one page in memory at a time, whatever the bucket holds. An unversioned bucket
 * lists the same way (every version id is "null"), which is its current objects.
 *
 * Reading: a version's body is a stream that resumes a broken download where it broke (a Range
 * request for the rest, If-Match on the ETag so no other bytes are spliced in).
 *
 * Writing: every body goes up with its Content-MD5, and the ETag the server returns is compared with
 * the one those bytes must have, so a body changed on the way fails the write instead of landing.
 * Writes are sent once (a retry after a lost answer could write twice, see S3Request.retry).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { AirlockError } from '../../manifests/errors.js';
import { S3Client, header, readBody, uriEscape, type S3Response } from './client.js';
import { child, escapeXml, textOf, type XmlNode } from './xml.js';

/** S3 bucket naming rules (the DNS-compatible subset every server accepts). */
export const BUCKET_RE = /^(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

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

const sig = (signal?: AbortSignal) => (signal ? { signal } : {});

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
  const v: ListedVersion = {
    kind: node.name === 'DeleteMarker' ? 'delete-marker' : 'version',
    key: decodeKey(key, encoded),
    versionId,
    isLatest: textOf(node, 'IsLatest') === 'true',
    lastModified: new Date(lastModified).toISOString(),
  };
  if (v.kind === 'version') {
    const size = Number(textOf(node, 'Size'));
    if (!Number.isSafeInteger(size) || size < 0)
      throw new AirlockError('s3-failed', `the version listing of ${bucket} gives ${JSON.stringify(v.key)} no valid size`);
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
    const query: [string, string][] = [
      ['versions', ''],
      ['encoding-type', 'url'],
      ['max-keys', String(pageSize)],
    ];
    if (prefix !== '') query.push(['prefix', prefix]);
    if (keyMarker !== undefined) query.push(['key-marker', keyMarker]);
    if (versionMarker !== undefined) query.push(['version-id-marker', versionMarker]);
    const p = client.xml({ method: 'GET', bucket, query, ...sig(signal) });
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
        throw new AirlockError('s3-failed', `the version listing of ${bucket} does not advance after ${JSON.stringify(keyMarker)}`, {
          hint: 'the S3 server pages listings wrongly; report it with the server version',
        });
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

/** Every version and delete marker of exactly `key` in `bucket`, oldest first. */
export async function versionsOf(client: S3Client, bucket: string, key: string, signal?: AbortSignal): Promise<ListedVersion[]> {
  const found: ListedVersion[] = [];
  // `key` lists before the keys it is a prefix of; a key rarely has more than a page of versions
  const listing = listVersions(client, bucket, key, signal, 100);
  try {
    for await (const v of listing) {
      if (v.key !== key) break;
      found.push(v);
    }
  } finally {
    await listing.return(undefined);
  }
  return found.reverse();
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

function tagSetXml(tags: Record<string, string>): string {
  const set = Object.entries(tags)
    .map(([k, v]) => `<Tag><Key>${escapeXml(k)}</Key><Value>${escapeXml(v)}</Value></Tag>`)
    .join('');
  return `<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>${set}</TagSet></Tagging>`;
}

/** Tags as the x-amz-tagging header of a PUT carries them. */
export function taggingHeader(tags: Record<string, string>): string {
  return Object.entries(tags)
    .map(([k, v]) => `${uriEscape(k)}=${uriEscape(v)}`)
    .join('&');
}

/** The versioning status of `bucket`: "Enabled", "Suspended" or "" (never enabled). Also a cheap check that the bucket may be listed. */
export async function versioningOf(client: S3Client, bucket: string, signal?: AbortSignal): Promise<string> {
  return textOf(await client.xml({ method: 'GET', bucket, query: [['versioning', '']], ...sig(signal) }), 'Status') ?? '';
}

/** A bucket sub-resource document (`lifecycle`, `object-lock`, `tagging`) as text, or null when the server says it is not set (404). */
export async function bucketDocument(client: S3Client, bucket: string, what: string, signal?: AbortSignal): Promise<string | null> {
  // 404: not set; 501: a server without the feature (then it cannot be set either)
  const res = await client.request({ method: 'GET', bucket, query: [[what, '']], accept: [404, 501], ...sig(signal) });
  const body = (await readBody(res.body)).toString('utf8');
  if (res.status === 404 || res.status === 501) {
    if (body.includes('<Code>NoSuchBucket</Code>'))
      throw new AirlockError('bucket-not-found', `bucket ${bucket} does not exist on ${client.endpoint.origin}`, {
        hint: 'check the bucket name and the endpoint',
      });
    return null;
  }
  return body;
}

/** The tags of one version. Throws what the client throws. */
export async function versionTags(client: S3Client, bucket: string, key: string, versionId: string, signal?: AbortSignal): Promise<Record<string, string>> {
  return parseTagSet(
    await client.xml({
      method: 'GET',
      bucket,
      key,
      query: [
        ['tagging', ''],
        ['versionId', versionId],
      ],
      ...sig(signal),
    }),
  );
}

/** The object lock headers (legal hold, retention mode and date) among a version's response headers. */
export function lockHeaders(h: IncomingHttpHeaders): Record<string, string> {
  const lock: Record<string, string> = {};
  for (const name of ['x-amz-object-lock-legal-hold', 'x-amz-object-lock-mode', 'x-amz-object-lock-retain-until-date']) {
    const v = header(h, name);
    if (v !== undefined) lock[name] = v;
  }
  return lock;
}

/** The object lock headers of one version, from a HEAD. Throws what the client throws. */
export async function versionLock(client: S3Client, bucket: string, key: string, versionId: string, signal?: AbortSignal): Promise<Record<string, string>> {
  return lockHeaders((await client.call({ method: 'HEAD', bucket, key, query: [['versionId', versionId]], ...sig(signal) })).headers);
}

/** An open GET of one version: its headers, and its body as a stream that resumes where it broke. */
export interface VersionBody {
  headers: IncomingHttpHeaders;
  /** the ETag of the version (asked for with HEAD when the GET carried none) */
  etag: string;
  body: AsyncIterable<Buffer>;
  /** releases the connection of a body that will not be read */
  discard: () => void;
}

/** Breaks of one download resumed before it counts as failed. */
const RESUMES = 5;

/**
 * GETs version `versionId` of `key` (always by id, the null one included: without it S3 answers with
 * the newest); its ETag is the GET's, else the listed one, else a HEAD's. The body resumes after a broken connection with a Range request for the rest, on the
 * condition that the ETag is unchanged. Throws what the client throws; the body throws `s3-failed`
 * when the connection breaks more than RESUMES times.
 */
export async function getVersion(
  client: S3Client,
  bucket: string,
  key: string,
  versionId: string,
  signal?: AbortSignal,
  listedEtag?: string,
): Promise<VersionBody> {
  const vq: [string, string][] = [['versionId', versionId]];
  let res: S3Response = await client.request({ method: 'GET', bucket, key, query: vq, ...sig(signal) });
  let etag = header(res.headers, 'etag') ?? listedEtag ?? '';
  if (etag === '') {
    try {
      etag = header((await client.call({ method: 'HEAD', bucket, key, query: vq, ...sig(signal) })).headers, 'etag') ?? '';
    } catch (e) {
      res.body.destroy();
      throw e;
    }
  }
  const length = Number(header(res.headers, 'content-length'));
  const first = res;
  async function* body(): AsyncGenerator<Buffer> {
    let n = 0;
    for (let breaks = 0; ;) {
      try {
        for await (const chunk of res.body) {
          n += (chunk as Buffer).byteLength;
          yield chunk as Buffer;
        }
        return;
      } catch (e) {
        res.body.destroy();
        if (signal?.aborted || e instanceof AirlockError || ++breaks > RESUMES || !Number.isSafeInteger(length) || n >= length) {
          if (e instanceof AirlockError) throw e;
          throw new AirlockError('s3-failed', `reading ${bucket}/${key} failed: ${(e as Error).message}`, { cause: e });
        }
      } finally {
        res.body.destroy();
      }
      // the rest of the same bytes, or nothing: If-Match refuses another version's bytes
      res = await client.request({
        method: 'GET',
        bucket,
        key,
        query: vq,
        headers: { range: `bytes=${n}-`, ...(etag ? { 'if-match': etag } : {}) },
        ...sig(signal),
      });
      if (res.status !== 206) {
        res.body.destroy();
        throw new AirlockError('s3-failed', `resuming the download of ${bucket}/${key} at byte ${n}: the server answered ${res.status}, not a range`);
      }
    }
  }
  return { headers: first.headers, etag, body: body(), discard: () => res.body.destroy() };
}

/** The MD5 of `size` bytes of `file` from `start`. */
async function fileMd5(file: string, start: number, size: number): Promise<Buffer> {
  const h = createHash('md5');
  if (size > 0) for await (const c of createReadStream(file, { start, end: start + size - 1 })) h.update(c as Buffer);
  return h.digest();
}

const unquote = (etag: string) => etag.replace(/^"|"$/g, '');

/** The `s3-failed` error of a write whose ETag says the server stored other bytes than were sent. */
function mismatch(bucket: string, key: string, what: string, expected: string, got: string): AirlockError {
  return new AirlockError(
    's3-failed',
    `${bucket}/${key}: the server stored ${what} with ETag ${got || '(none)'}, the bytes sent have ${expected}; the body changed on the way`,
    {
      hint: 'check the network path to the S3 server (a proxy or middlebox that alters bodies); run the same command again to resume',
    },
  );
}

/** A PUT or UploadPart of `size` bytes of `file` from `start`, with Content-MD5, checked against the ETag returned. Returns the response headers. */
async function putChecked(
  client: S3Client,
  bucket: string,
  key: string,
  file: string,
  start: number,
  size: number,
  headers: Record<string, string>,
  query: [string, string][],
  what: string,
  signal?: AbortSignal,
): Promise<{ headers: IncomingHttpHeaders; md5: Buffer }> {
  const md5 = await fileMd5(file, start, size);
  const res = await client.call({
    method: 'PUT',
    bucket,
    key,
    query,
    headers: { ...headers, 'content-md5': md5.toString('base64') },
    body: size > 0 ? createReadStream(file, { start, end: start + size - 1 }) : Buffer.alloc(0),
    contentLength: size,
    retry: false,
    ...sig(signal),
  });
  const got = unquote(header(res.headers, 'etag') ?? '');
  // a server that encrypts (SSE-KMS, SSE-C) answers an ETag that is no MD5: Content-MD5 checked those bytes
  if (/^[0-9a-f]{32}$/.test(got) && got !== md5.toString('hex')) throw mismatch(bucket, key, what, md5.toString('hex'), got);
  return { headers: res.headers, md5 };
}

/** How one version goes up: in one PUT, or in parts of these sizes. */
export interface PutPlan {
  /** part sizes in order (their sum is the object's size); undefined for one PUT */
  parts?: readonly number[];
}

/** The part sizes that upload `size` bytes in parts of `partSize`. */
export function evenParts(size: number, partSize: number): number[] {
  const parts: number[] = [];
  for (let off = 0; off < size; off += partSize) parts.push(Math.min(partSize, size - off));
  return parts;
}

/**
 * Uploads `size` bytes of `file` as a new version of `key`, in one PUT or in the parts of `plan`,
 * each with its Content-MD5 and its ETag checked. Returns the new version id ('' when the bucket is
 * unversioned) and the ETag. Throws `s3-failed` when the server stored other bytes than were sent,
 * and what the client throws.
 */
export async function putVersion(
  client: S3Client,
  bucket: string,
  key: string,
  file: string,
  size: number,
  headers: Record<string, string>,
  plan: PutPlan,
  signal?: AbortSignal,
): Promise<{ versionId: string; etag: string }> {
  if (!plan.parts) {
    const res = await putChecked(client, bucket, key, file, 0, size, headers, [], 'the object', signal);
    return { versionId: header(res.headers, 'x-amz-version-id') ?? '', etag: header(res.headers, 'etag') ?? '' };
  }
  const init = await client.xml({ method: 'POST', bucket, key, query: [['uploads', '']], headers, retry: false, ...sig(signal) });
  const uploadId = textOf(init, 'UploadId');
  if (!uploadId) throw new AirlockError('s3-failed', `the server started no multipart upload for ${bucket}/${key}`);
  try {
    const parts: string[] = [];
    const md5s: Buffer[] = [];
    let off = 0;
    for (const [i, len] of plan.parts.entries()) {
      const n = i + 1;
      const res = await putChecked(
        client,
        bucket,
        key,
        file,
        off,
        len,
        {},
        [
          ['partNumber', String(n)],
          ['uploadId', uploadId],
        ],
        `part ${n}`,
        signal,
      );
      md5s.push(res.md5);
      parts.push(`<Part><PartNumber>${n}</PartNumber><ETag>${escapeXml(header(res.headers, 'etag') ?? '')}</ETag></Part>`);
      off += len;
    }
    const body = Buffer.from(`<CompleteMultipartUpload>${parts.join('')}</CompleteMultipartUpload>`);
    const res = await client.request({ method: 'POST', bucket, key, query: [['uploadId', uploadId]], body, retry: false, ...sig(signal) });
    const text = (await readBody(res.body)).toString('utf8');
    // S3 may answer 200 and still report an error in the body
    if (text.includes('<Error>')) throw new AirlockError('s3-failed', `completing the upload of ${bucket}/${key} failed: ${text.slice(0, 200)}`);
    const etag = header(res.headers, 'etag') ?? /<ETag>([^<]*)<\/ETag>/.exec(text)?.[1]?.replace(/&quot;/g, '"') ?? '';
    const expected = `${createHash('md5').update(Buffer.concat(md5s)).digest('hex')}-${plan.parts.length}`;
    const got = unquote(etag);
    if (/^[0-9a-f]{32}-\d+$/.test(got) && got !== expected) throw mismatch(bucket, key, 'the assembled object', expected, got);
    return { versionId: header(res.headers, 'x-amz-version-id') ?? '', etag };
  } catch (e) {
    await client.call({ method: 'DELETE', bucket, key, query: [['uploadId', uploadId]] }).catch(() => {});
    throw e;
  }
}

/** The ETag an upload of `file` in `parts` gives (multipart: the MD5 of the parts' MD5s, and the count). */
export async function multipartEtag(file: string, parts: readonly number[]): Promise<string> {
  const md5s: Buffer[] = [];
  let off = 0;
  for (const len of parts) {
    md5s.push(await fileMd5(file, off, len));
    off += len;
  }
  return `"${createHash('md5').update(Buffer.concat(md5s)).digest('hex')}-${parts.length}"`;
}

/** Makes a delete marker on `key` (a DELETE without version id); returns its version id. Sent once. */
export async function putDeleteMarker(client: S3Client, bucket: string, key: string, signal?: AbortSignal): Promise<string> {
  const res = await client.call({ method: 'DELETE', bucket, key, retry: false, ...sig(signal) });
  return header(res.headers, 'x-amz-version-id') ?? '';
}

/** Whether `bucket` is absent, holds no version or delete marker, or holds some. */
export async function bucketState(client: S3Client, bucket: string, signal?: AbortSignal): Promise<'absent' | 'empty' | 'used'> {
  const head = await client.request({ method: 'HEAD', bucket, accept: [404], ...sig(signal) });
  await readBody(head.body);
  if (head.status === 404) return 'absent';
  const list = await client.xml({
    method: 'GET',
    bucket,
    query: [
      ['versions', ''],
      ['max-keys', '1'],
    ],
    ...sig(signal),
  });
  return list.children.some((c) => c.name === 'Version' || c.name === 'DeleteMarker') ? 'used' : 'empty';
}

/** Creates `bucket`, with object lock enabled when `lock`. */
export async function createBucket(client: S3Client, bucket: string, lock: boolean, signal?: AbortSignal): Promise<void> {
  await client.call({ method: 'PUT', bucket, headers: lock ? { 'x-amz-bucket-object-lock-enabled': 'true' } : {}, ...sig(signal) });
}

export async function setVersioning(client: S3Client, bucket: string, status: 'Enabled' | 'Suspended', signal?: AbortSignal): Promise<void> {
  const body = Buffer.from(`<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>${status}</Status></VersioningConfiguration>`);
  await client.call({ method: 'PUT', bucket, query: [['versioning', '']], body, ...sig(signal) });
}

/** Puts a bucket sub-resource document (`lifecycle`, `object-lock`) as given. */
export async function putBucketDocument(client: S3Client, bucket: string, what: string, doc: string, signal?: AbortSignal): Promise<void> {
  const body = Buffer.from(doc);
  await client.call({
    method: 'PUT',
    bucket,
    query: [[what, '']],
    body,
    headers: { 'content-md5': createHash('md5').update(body).digest('base64') },
    ...sig(signal),
  });
}

export async function putBucketTags(client: S3Client, bucket: string, tags: Record<string, string>, signal?: AbortSignal): Promise<void> {
  await putBucketDocument(client, bucket, 'tagging', tagSetXml(tags), signal);
}
