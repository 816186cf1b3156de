/*
 * The whole history of a bucket across incremental exports, against the real radosgw: tag changes
 * (and legal holds) on versions an earlier bundle holds, versions and delete markers deleted for good (DELETE with a
 * version id), and a key gone entirely are carried by the next export as records, so a restore of
 * the chain reproduces the bucket as it was at the last export and `--at T` as it was at T; the
 * verifier checks the new records. Multipart versions come back with their part layout (the same
 * ETag), or, when the layout cannot be found, with the ETag mapping reported.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import * as Minio from 'minio';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { MetadataRecord } from '../../manifests/records.js';
import { parsePrivateKey } from '../../manifests/sshkey.js';
import { writeBundle, type SourceItem } from '../../agent/bundle/writer.js';
import { S3Client } from '../../agent/s3/client.js';
import { putVersion } from '../../agent/s3/objects.js';
import { partCandidates } from '../../agent/sources/objects.js';
import { airlock, airlockVerify, exportArgs, makeKeys, run, tmp, type Ran, restoreObjectsArgs } from '../helpers.js';
import { EXIT } from '../../manifests/errors.js';
import { ACCESS_KEY, SECRET_KEY, bucketName, s3, versionedBucket, type S3Server } from '../s3.js';

const keys = makeKeys('site-h');
const ENV = { ...process.env, AWS_ACCESS_KEY_ID: ACCESS_KEY, AWS_SECRET_ACCESS_KEY: SECRET_KEY };
const MiB = 1024 * 1024;
/** `body` as a stream of 1 MiB chunks (minio-js cuts a stream of one big chunk into a single part). */
const inMiB = (body: Buffer) => Readable.from(Array.from({ length: Math.ceil(body.length / MiB) }, (_, i) => body.subarray(i * MiB, (i + 1) * MiB)));

function exportIncremental(medium: string, state: string, srv: S3Server, bucket: string): string[] {
  return exportArgs(keys, medium, state, ['--s3-endpoint', srv.endpoint, '--bucket', bucket, '--incremental', '--json']);
}

function restoreArgs(medium: string, srv: S3Server, map: string, idMap: string, extra: string[] = []): string[] {
  return restoreObjectsArgs(keys, medium, srv.endpoint, map, idMap, extra);
}

function ok(r: Ran, what: string): void {
  assert.is(r.code, EXIT.ok, `${what}: ${r.stderr}${r.stdout}`);
}

/** The index records of a bundle, decrypted with stock tools. */
function indexOf(bundle: string): Record<string, unknown>[] {
  const out = tmp();
  const sh = run('bash', [
    '-c',
    'set -o pipefail; cat "$1"/payload.* | age -d -i "$2" | zstd -d -q | tar --warning=no-unknown-keyword -x -f - -C "$3" index.jsonl',
    'x',
    bundle,
    keys.identity,
    out,
  ]);
  if (sh.code !== 0) throw new Error(sh.stderr);
  return readFileSync(path.join(out, 'index.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

interface Version {
  key: string;
  versionId: string;
  marker: boolean;
}

async function versions(c: Minio.Client, bucket: string): Promise<Version[]> {
  const out: Version[] = [];
  for await (const o of c.listObjects(bucket, '', true, { IncludeVersion: true })) {
    const x = o as { name?: string; versionId?: string | null; isDeleteMarker?: boolean };
    out.push({ key: x.name ?? '', versionId: x.versionId ?? 'null', marker: x.isDeleteMarker === true });
  }
  return out;
}

/** Every version of `bucket` as "key marker|tags" lines, in listing order, ids mapped through `ids` (source id -> this bucket's id, reversed). */
async function state(c: Minio.Client, bucket: string, toSource: (key: string, id: string) => string = (_k, id) => id): Promise<string[]> {
  const out: string[] = [];
  for (const v of await versions(c, bucket)) {
    const tags = v.marker ? [] : ((await c.getObjectTagging(bucket, v.key, { versionId: v.versionId })) as unknown as { Key: string; Value: string }[]);
    const t = tags
      .map((x) => `${x.Key}=${x.Value}`)
      .sort()
      .join(',');
    out.push(`${v.key} ${toSource(v.key, v.versionId)} ${v.marker ? 'marker' : `tags[${t}]`}`);
  }
  return out;
}

/** Reads an id map into "restored id -> source id" per key. */
function reverseIds(idMap: string): (key: string, id: string) => string {
  const m = new Map<string, string>();
  for (const l of readFileSync(idMap, 'utf8').trim().split('\n')) {
    const x = JSON.parse(l) as { key: string; versionId: string; sourceVersionId: string };
    m.set(`${x.key}\n${x.versionId}`, x.sourceVersionId);
  }
  return (key, id) => m.get(`${key}\n${id}`) ?? `unmapped ${id}`;
}

test('tag changes and versions deleted for good after an export are carried by the next incremental one; the chain restores the bucket as at the last export, and --at T as at T', async () => {
  const srv = await s3();
  const c = srv.client;
  const bucket = await versionedBucket(c, 'hist2');
  const k1v1 = (await c.putObject(bucket, 'k1', Buffer.from('k1 one'))).versionId as string;
  await c.setObjectTagging(bucket, 'k1', { stage: 'draft' }, { versionId: k1v1 });
  const k1v2 = (await c.putObject(bucket, 'k1', Buffer.from('k1 two'))).versionId as string;
  const k2 = (await c.putObject(bucket, 'k2 ü', Buffer.from('k2'))).versionId as string;
  const gone = (await c.putObject(bucket, 'gone/x', Buffer.from('x'))).versionId as string;
  await c.putObject(bucket, 'k3', Buffer.from('k3'));
  await c.removeObject(bucket, 'k3');
  const k3marker = (await versions(c, bucket)).find((v) => v.key === 'k3' && v.marker)?.versionId as string;
  const medium = tmp();
  const st = tmp();
  const first = airlock(exportIncremental(medium, st, srv, bucket), { env: ENV });
  ok(first, 'first export');
  const atFirst = await state(c, bucket);

  await sleep(50);
  const between = new Date().toISOString();
  await sleep(50);
  await c.setObjectTagging(bucket, 'k1', { stage: 'final', wer: 'ünïcode' }, { versionId: k1v1 });
  await c.setObjectTagging(bucket, 'k2 ü', { added: 'later' }, { versionId: k2 });
  await c.removeObject(bucket, 'k1', { versionId: k1v2 });
  await c.removeObject(bucket, 'gone/x', { versionId: gone });
  await c.removeObject(bucket, 'k3', { versionId: k3marker });
  const second = airlock(exportIncremental(medium, st, srv, bucket), { env: ENV });
  ok(second, 'incremental export after the changes');
  const atSecond = await state(c, bucket);

  const idx = indexOf(JSON.parse(second.stdout).path);
  const changes = idx
    .filter((r) => r.type === 'version-changed' || r.type === 'version-removed')
    .map((r) => `${String(r.type)} ${String(r.key)} ${String(r.versionId)}${r.type === 'version-changed' ? ` ${JSON.stringify(r.tags)}` : ''}`);
  // in key order, among each key's records: a key gone entirely where it would be listed
  assert.equal(changes, [
    `version-removed gone/x ${gone}`,
    `version-changed k1 ${k1v1} {"stage":"final","wer":"ünïcode"}`,
    `version-removed k1 ${k1v2}`,
    `version-changed k2 ü ${k2} {"added":"later"}`,
    `version-removed k3 ${k3marker}`,
  ]);
  const summary = idx.find((r) => r.type === 'bucket-summary') as Record<string, unknown>;
  assert.is(summary.changed, 2);
  assert.is(summary.removed, 3);
  ok(airlockVerify(['--allowed-signers', keys.allowedSigners, '--identity', keys.identity, medium]), 'the chain verifies with the key');

  // nothing changed since: the catalog took the changes in, so nothing is carried again
  const third = airlock(exportIncremental(medium, st, srv, bucket), { env: ENV });
  ok(third, 'incremental export without changes');
  assert.equal(
    indexOf(JSON.parse(third.stdout).path).filter((r) => r.type === 'version-changed' || r.type === 'version-removed'),
    [],
  );

  const dest = bucketName('hist2back');
  const idMap = path.join(tmp(), 'ids.jsonl');
  ok(airlock(restoreArgs(medium, srv, `${bucket}=${dest}`, idMap), { env: ENV }), 'restore of the chain');
  assert.equal(await state(c, dest, reverseIds(idMap)), atSecond, 'as at the last export');

  const past = bucketName('hist2past');
  const pastMap = path.join(tmp(), 'ids.jsonl');
  ok(airlock(restoreArgs(medium, srv, `${bucket}=${past}`, pastMap, ['--at', between]), { env: ENV }), 'restore --at between the exports');
  assert.equal(await state(c, past, reverseIds(pastMap)), atFirst, 'as at the first export');

  const folder = path.join(tmp(), 'f');
  ok(
    airlock(['restore', 'objects', '--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', folder]),
    'folder restore',
  );
  assert.is(readFileSync(path.join(folder, bucket, 'k1'), 'utf8'), 'k1 one', 'the newest version left of k1');
  assert.is(readFileSync(path.join(folder, bucket, 'k3'), 'utf8'), 'k3', 'k3 again, its delete marker gone');
  const map = readFileSync(path.join(folder, '.airlock-keys.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { key: string; tags: unknown });
  assert.equal(
    map.map((m) => m.key),
    ['k1', 'k2 ü', 'k3'],
    'gone/x is gone',
  );
  assert.equal(map.find((m) => m.key === 'k1')?.tags, { stage: 'final', wer: 'ünïcode' });
});

test('object lock: a legal hold set on an exported version (no new version) is carried by the next incremental export and put back by the restore', async () => {
  const srv = await s3();
  const c = srv.client;
  const bucket = bucketName('locked');
  await c.makeBucket(bucket, 'us-east-1', { ObjectLocking: true });
  const v1 = (await c.putObject(bucket, 'held', Buffer.from('keep me'))).versionId as string;
  await c.putObject(bucket, 'free', Buffer.from('free'));
  const medium = tmp();
  const st = tmp();
  ok(airlock(exportIncremental(medium, st, srv, bucket), { env: ENV }), 'first export');
  // minio's types say void; it returns the request's promise
  // eslint-disable-next-line @typescript-eslint/no-confusing-void-expression, @typescript-eslint/await-thenable
  await c.setObjectLegalHold(bucket, 'held', { status: 'ON', versionId: v1 });
  const second = airlock(exportIncremental(medium, st, srv, bucket), { env: ENV });
  ok(second, 'incremental export');
  const changes = indexOf(JSON.parse(second.stdout).path).filter((r) => r.type === 'version-changed');
  assert.equal(
    changes.map((r) => [r.key, r.versionId, r.lock]),
    [['held', v1, { 'x-amz-object-lock-legal-hold': 'ON' }]],
  );

  const dest = bucketName('lockedback');
  const idMap = path.join(tmp(), 'ids.jsonl');
  ok(airlock(restoreArgs(medium, srv, `${bucket}=${dest}`, idMap), { env: ENV }), 'restore of the chain');
  const ids = readFileSync(idMap, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { key: string; versionId: string });
  const held = ids.find((m) => m.key === 'held')?.versionId as string;
  const free = ids.find((m) => m.key === 'free')?.versionId as string;
  assert.equal(await c.getObjectLegalHold(dest, 'held', { versionId: held }), { Status: 'ON' });
  const other = await c.getObjectLegalHold(dest, 'free', { versionId: free }).then(
    (x) => x,
    () => ({ Status: 'OFF' }),
  );
  assert.is((other as { Status?: string }).Status ?? 'OFF', 'OFF');
});

test('the verifier checks the new records: a version-removed or version-changed record without what it needs is malformed', async () => {
  const bucket = 'checked-src';
  for (const [record, why] of [
    [{ type: 'version-removed', bucket, key: 'k', versionId: 'v1' }, 'version-removed record: detected must be a string'],
    [{ type: 'version-removed', bucket, key: 'k', detected: '2026-01-01T00:00:00.000Z' }, 'version-removed record: versionId must be a string'],
    [{ type: 'version-changed', bucket, key: 'k', versionId: 'v1', detected: '2026-01-01T00:00:00.000Z', tags: { a: 1 } }, 'tags must be an object of strings'],
    [
      { type: 'version-changed', bucket, key: 'k', versionId: 'v1', detected: '2026-01-01T00:00:00.000Z', tags: {}, lock: { 'x-amz-acl': 'public-read' } },
      'lock is not an object of x-amz-object-lock-* text values',
    ],
  ] as unknown as [MetadataRecord, string][]) {
    const medium = tmp();
    async function* items(): AsyncGenerator<SourceItem> {
      yield {
        kind: 'record',
        record: { type: 'bucket', endpoint: 'http://127.0.0.1:1', bucket, prefix: '', versioning: 'Enabled', lifecycle: null, objectLock: null, tags: null },
      };
      yield { kind: 'record', record };
    }
    await writeBundle(
      {
        medium,
        site: keys.site,
        seq: 1,
        prev: undefined,
        recipients: [keys.recipient],
        signingKey: parsePrivateKey(readFileSync(keys.signingKey, 'utf8')),
        compression: 'none',
        volumeSize: 1 << 20,
        now: () => new Date(),
      },
      items(),
    );
    const r = airlockVerify(['--allowed-signers', keys.allowedSigners, '--identity', keys.identity, medium]);
    assert.is(r.code, EXIT.failed, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, why);
  }
});

test('multipart versions come back in their part layout, with the source ETag; a layout no candidate matches is reported with both ETags', async () => {
  const srv = await s3();
  const c = srv.client;
  const bucket = await versionedBucket(c, 'parts');
  const body = randomBytes(11 * MiB);
  // minio-js uploads a stream in parts of 6 MiB: 6 + 5
  const sixes = new Minio.Client({
    endPoint: '127.0.0.1',
    port: srv.port,
    useSSL: false,
    accessKey: ACCESS_KEY,
    secretKey: SECRET_KEY,
    region: 'us-east-1',
    pathStyle: true,
    partSize: 6 * MiB,
  });
  await sixes.putObject(bucket, 'eleven', inMiB(body), body.length);
  // 5 + 6 MiB: a first part shorter than the last, which no uploader of one part size makes
  const file = path.join(tmp(), 'odd');
  writeFileSync(file, body);
  const own = new S3Client({ endpoint: srv.endpoint, credentials: { accessKey: ACCESS_KEY, secretKey: SECRET_KEY } });
  await putVersion(own, bucket, 'odd', file, body.length, {}, { parts: [5 * MiB, 6 * MiB] });
  own.close();
  const etagOf = async (b: string, k: string) => (await c.statObject(b, k)).etag;
  assert.match(await etagOf(bucket, 'eleven'), /-2$/);
  assert.ok(partCandidates(11 * MiB, 2).includes(6 * MiB));
  assert.not.ok(partCandidates(11 * MiB, 2).includes(5 * MiB));

  const medium = tmp();
  const e = airlock(exportIncremental(medium, tmp(), srv, bucket), { env: ENV });
  ok(e, 'export');
  const records = indexOf(JSON.parse(e.stdout).path).filter((r) => r.type === 'object');
  assert.equal(records.find((r) => r.key === 'eleven')?.parts, [6 * MiB, 5 * MiB]);
  assert.is(records.find((r) => r.key === 'odd')?.parts, undefined);

  const dest = bucketName('partsback');
  const idMap = path.join(tmp(), 'ids.jsonl');
  const r = airlock(restoreArgs(medium, srv, `${bucket}=${dest}`, idMap), { env: ENV });
  ok(r, 'restore');
  assert.is(await etagOf(dest, 'eleven'), await etagOf(bucket, 'eleven'), 'the same ETag: uploaded in the same parts');
  assert.ok((await etagOf(dest, 'odd')) !== (await etagOf(bucket, 'odd')));
  assert.match(r.stderr, '1 multipart version(s) came back with another ETag');
  const line = readFileSync(idMap, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { key: string; etag: string; newEtag?: string })
    .find((m) => m.key === 'odd');
  assert.is(line?.etag, `"${await etagOf(bucket, 'odd')}"`);
  assert.is(line?.newEtag, `"${await etagOf(dest, 'odd')}"`);
});

test.run();
