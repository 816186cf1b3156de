/*
 * Object storage against a real radosgw (test/s3.ts): export of versioned and unversioned buckets,
 * keyless and deep verification, stock-tool decryption, restore into fresh buckets (history compared
 * through the id map) and into folders at a past time, listings of more than 1,000 versions whose
 * pages turn on keys that need escaping, and the failures that must leave no bundle behind.
 *
 * Buckets are filled with independent clients (`minio`, and `curl --aws-sigv4` where minio cannot
 * send raw UTF-8 metadata), so airlock's own S3 client is checked against other implementations.
 */
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as Minio from 'minio';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../../agent/port.js';
import { S3Client } from '../../agent/s3/client.js';
import { listVersions } from '../../agent/s3/objects.js';
import { safeComponents } from '../../agent/restore/objects.js';
import { AIRLOCK, airlock, airlockAsync, airlockVerify, exportArgs, makeKeys, run, tmp, type Ran, restoreObjectsArgs } from '../helpers.js';
import { ACCESS_KEY, SECRET_KEY, bucketName, s3, versionedBucket, type S3Server } from '../s3.js';
import { EXIT } from '../../manifests/errors.js';

const keys = makeKeys('site-s3');
const ENV = { ...process.env, AWS_ACCESS_KEY_ID: ACCESS_KEY, AWS_SECRET_ACCESS_KEY: SECRET_KEY };
// "à" is C3 A0 in UTF-8: byte A0 is whitespace to JavaScript's \s, not to SigV4
const NOTE = 'grüße aus 日本 – ünïcode, voilà';

/** Keys that must never become tar paths and must survive every request unchanged. */
const ODD_KEYS = ['..', 'a/../b', 'with space', 'plus+sign', 'percent%41%', 'ünïcödé/日本語.txt', '/leading', 'trailing/', 'dir//double', 'q?x#y&z=1'];

function exportBuckets(medium: string, state: string, srv: S3Server, buckets: string[], extra: string[] = []): string[] {
  return exportArgs(keys, medium, state, ['--s3-endpoint', srv.endpoint, '--bucket', ...buckets, ...extra]);
}

/** `restore objects` of the bundles on `medium` into an S3 server: buckets as `map` says (SRC=DST), the id map at `idMap`. */
function restoreToBuckets(medium: string, endpoint: string, map: string, idMap: string): string[] {
  return restoreObjectsArgs(keys, medium, endpoint, map, idMap);
}

/** PUT with curl's own SigV4, raw UTF-8 header bytes and all. */
function curlPut(srv: S3Server, bucket: string, key: string, body: string, headers: Record<string, string>): void {
  const dir = tmp();
  const file = path.join(dir, 'body');
  writeFileSync(file, body);
  const sha = run('sha256sum', [file]).stdout.split(' ')[0] as string;
  const url = `${srv.endpoint}/${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
  const args = [
    '-sS',
    '-f',
    '--aws-sigv4',
    'aws:amz:us-east-1:s3',
    '--user',
    `${ACCESS_KEY}:${SECRET_KEY}`,
    '-X',
    'PUT',
    '-H',
    `x-amz-content-sha256: ${sha}`,
    '--data-binary',
    `@${file}`,
    '-o',
    '/dev/null',
  ];
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  const r = run('curl', [...args, url]);
  if (r.code !== 0) throw new Error(`curl PUT ${key}: ${r.stderr}`);
}

/** Response headers of a HEAD by curl, as raw UTF-8 text. */
function curlHead(srv: S3Server, bucket: string, key: string, versionId?: string): string {
  const url = `${srv.endpoint}/${bucket}/${key.split('/').map(encodeURIComponent).join('/')}${versionId ? `?versionId=${encodeURIComponent(versionId)}` : ''}`;
  const r = run('curl', [
    '-sS',
    '-f',
    '-I',
    '--aws-sigv4',
    'aws:amz:us-east-1:s3',
    '--user',
    `${ACCESS_KEY}:${SECRET_KEY}`,
    '-H',
    'x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    url,
  ]);
  if (r.code !== 0) throw new Error(`curl HEAD ${key}: ${r.stderr}`);
  return r.stdout;
}

interface Listed {
  name: string;
  versionId: string;
  isDeleteMarker: boolean;
  lastModified: Date;
}

async function listAll(c: Minio.Client, bucket: string): Promise<Listed[]> {
  const out: Listed[] = [];
  for await (const o of c.listObjects(bucket, '', true, { IncludeVersion: true })) {
    const x = o as { name?: string; versionId?: string | null; isDeleteMarker?: boolean; lastModified?: Date };
    out.push({ name: x.name ?? '', versionId: x.versionId ?? 'null', isDeleteMarker: x.isDeleteMarker === true, lastModified: x.lastModified ?? new Date(0) });
  }
  return out;
}

/** The versions of `bucket` as listed now, and a medium holding an export of it. */
async function exported(srv: S3Server, bucket: string): Promise<{ src: Listed[]; medium: string }> {
  const src = await listAll(srv.client, bucket);
  const medium = tmp();
  ok(airlock(exportBuckets(medium, tmp(), srv, [bucket]), { env: ENV }), 'export');
  return { src, medium };
}

async function bytesOf(c: Minio.Client, bucket: string, key: string, versionId?: string): Promise<Buffer> {
  const s = await c.getObject(bucket, key, versionId ? { versionId } : {});
  const parts: Buffer[] = [];
  for await (const p of s) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

interface Fixture {
  bucket: string;
  plain: string;
  /** a time after the first round of writes and before the second */
  past: string;
}

/** A versioned bucket with history, odd keys, metadata and tags; and a small unversioned bucket. */
async function fixture(srv: S3Server): Promise<Fixture> {
  const c = srv.client;
  const bucket = await versionedBucket(c, 'hist');
  await c.setBucketTagging(bucket, { owner: 'platform', tier: 'gold' });
  await c.putObject(bucket, 'docs/report.txt', Buffer.from('one'), 3, { 'Content-Type': 'text/plain', 'Cache-Control': 'no-cache' });
  await c.putObject(bucket, 'docs/report.txt', Buffer.from('two'), 3, { 'Content-Type': 'text/plain', 'Cache-Control': 'max-age=60' });
  await c.putObject(bucket, 'deleted.txt', Buffer.from('soon gone'), 9, { 'Content-Type': 'text/plain' });
  await c.putObject(bucket, 'resurrected', Buffer.from('first life'), 10);
  await c.putObject(bucket, 'empty.bin', Buffer.alloc(0), 0, { 'Content-Type': 'application/octet-stream' });
  curlPut(srv, bucket, 'meta/ünï x.bin', 'metadata carrier', {
    'x-amz-meta-note': NOTE,
    'x-amz-meta-plain': 'ascii',
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Language': 'de',
  });
  const tagged = await c.putObject(bucket, 'tagged.json', Buffer.from('{"a":1}'), 7, { 'Content-Type': 'application/json' });
  await c.setObjectTagging(bucket, 'tagged.json', { project: 'airlock', 'ümlaut key': 'wert mit ü' }, { versionId: tagged.versionId as string });
  for (const k of ODD_KEYS) await c.putObject(bucket, k, Buffer.from(`body of ${k}`));
  await sleep(60);
  const mid = new Date();
  await sleep(60);
  await c.putObject(bucket, 'docs/report.txt', Buffer.from('three'), 5, { 'Content-Type': 'text/markdown' });
  await c.removeObject(bucket, 'deleted.txt');
  await c.removeObject(bucket, 'resurrected');
  await c.putObject(bucket, 'resurrected', Buffer.from('second life'), 11);

  const plain = bucketName('plain');
  await c.makeBucket(plain);
  await c.putObject(plain, 'p1', Buffer.from('old'), 3);
  await c.putObject(plain, 'p1', Buffer.from('new'), 3);
  await c.putObject(plain, 'p2', Buffer.from('only'), 4);
  return { bucket, plain, past: mid.toISOString() };
}

function decryptTo(bundle: string, compressed = true): string {
  const out = tmp();
  const sh = run('bash', [
    '-c',
    `set -o pipefail; cat "$1"/payload.* | age -d -i "$2" | ${compressed ? 'zstd -d -q |' : ''} tar --warning=no-unknown-keyword -x -f - -C "$3"`,
    'x',
    bundle,
    keys.identity,
    out,
  ]);
  if (sh.code !== 0) throw new Error(sh.stderr);
  return out;
}

function indexOf(out: string): Record<string, unknown>[] {
  return readFileSync(path.join(out, 'index.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function ok(r: Ran, what: string): void {
  assert.is(r.code, 0, `${what}: ${r.stderr}${r.stdout}`);
}

test('versioned bucket: export, verify, stock decrypt, restore into a fresh bucket with the same history', async () => {
  const srv = await s3();
  const f = await fixture(srv);
  const medium = tmp();
  const state = tmp();
  const conf = tmp();
  writeFileSync(path.join(conf, 'app.conf'), 'x = 1\n');
  const r = airlock(exportBuckets(medium, state, srv, [f.bucket, f.plain], ['--files', conf, '--json']), { env: ENV });
  ok(r, 'export');
  const res = JSON.parse(r.stdout);
  assert.is(res.contents.files, 1);
  const src = await listAll(srv.client, f.bucket);
  const versions = src.filter((v) => !v.isDeleteMarker).length;
  assert.equal(res.objects, { versions: versions + 2, deleteMarkers: 2, bytes: res.objects.bytes });

  ok(airlockVerify(['--allowed-signers', keys.allowedSigners, medium]), 'keyless verify');
  const deep = airlockVerify(['--allowed-signers', keys.allowedSigners, '--identity', keys.identity, medium]);
  ok(deep, 'deep verify');
  assert.match(deep.stdout, 'status: ok');

  // inside: generated tar paths only; keys live in the index
  const out = decryptTo(res.path);
  ok(run('sha256sum', ['--strict', '-c', 'MANIFEST.sha256'], { cwd: out }), 'inner sums');
  const listed = run('bash', ['-c', 'set -o pipefail; cat "$1"/payload.* | age -d -i "$2" | zstd -d -q | tar -t', 'x', res.path, keys.identity]);
  for (const name of listed.stdout.trim().split('\n')) assert.match(name, /^(SALT|index\.jsonl|MANIFEST\.sha256|files\/\d{6}|objects\/\d{8})$/);
  const index = indexOf(out);
  const objects = index.filter((x) => x.type === 'object' && x.bucket === f.bucket);
  const markers = index.filter((x) => x.type === 'delete-marker');
  assert.is(objects.length, versions);
  assert.equal(markers.map((m) => m.key).sort(), ['deleted.txt', 'resurrected']);
  assert.equal([...new Set(objects.map((o) => o.key))].sort(), [...new Set(src.map((s) => s.name))].sort());
  const meta = objects.find((o) => o.key === 'meta/ünï x.bin') as Record<string, unknown>;
  assert.equal(meta.metadata, { note: NOTE, plain: 'ascii' });
  assert.is(meta.contentType, 'text/plain; charset=utf-8');
  assert.equal(meta.headers, { 'content-language': 'de' });
  assert.equal((objects.find((o) => o.key === 'tagged.json') as Record<string, unknown>).tags, { project: 'airlock', 'ümlaut key': 'wert mit ü' });
  const empty = objects.find((o) => o.key === 'empty.bin') as Record<string, unknown>;
  assert.is(empty.size, 0);
  assert.is(empty.sha256, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  const bucketRec = index.find((x) => x.type === 'bucket' && x.bucket === f.bucket) as Record<string, unknown>;
  assert.is(bucketRec.versioning, 'Enabled');
  assert.equal(bucketRec.tags, { owner: 'platform', tier: 'gold' });
  // the unversioned bucket: its current objects only
  const plainObjects = index.filter((x) => x.type === 'object' && x.bucket === f.plain);
  assert.equal(
    plainObjects.map((o) => [o.key, o.versionId]),
    [
      ['p1', 'null'],
      ['p2', 'null'],
    ],
  );
  assert.is(readFileSync(path.join(out, String(plainObjects[0]?.path))).toString(), 'new');
  const summary = index.find((x) => x.type === 'bucket-summary' && x.bucket === f.bucket) as Record<string, unknown>;
  assert.is(summary.versions, versions);
  assert.is(summary.deleteMarkers, 2);

  // restore into a fresh bucket
  const dest = bucketName('back');
  const idMap = path.join(tmp(), 'ids.jsonl');
  const restoreArgs = restoreToBuckets(medium, srv.endpoint, `${f.bucket}=${dest}`, idMap);
  // on a terminal (script(1) gives it one) each step shows its progress
  const rs = run('script', ['-qec', [process.execPath, ...AIRLOCK, ...restoreArgs].join(' '), '/dev/null'], { env: ENV });
  assert.is(rs.code, 0, `restore into a bucket: ${rs.stdout}`);
  assert.match(rs.stdout, /airlock: restore objects: decrypting: [\d.]+ (B|KiB|MiB) at .*\/s/);
  assert.match(rs.stdout, /airlock: restore objects: writing: [\d.]+ (B|KiB|MiB) at .*\/s/);
  assert.match(rs.stdout, `${f.plain}: not named in --bucket-map`);
  assert.is(rs.stdout.trim().split('\n').at(-1)?.trim(), idMap);
  const ids = new Map<string, { versionId: string; deleteMarker: boolean }>();
  for (const line of readFileSync(idMap, 'utf8').trim().split('\n')) {
    const m = JSON.parse(line);
    assert.is(m.destBucket, dest);
    ids.set(`${m.key}\n${m.sourceVersionId}`, m);
  }
  assert.is(ids.size, src.length);
  const back = await listAll(srv.client, dest);
  const expected = src.map((s) => {
    const m = ids.get(`${s.name}\n${s.versionId}`);
    assert.ok(m, `no id for ${s.name} ${s.versionId}`);
    assert.is(m.deleteMarker, s.isDeleteMarker);
    return [s.name, m.versionId, s.isDeleteMarker];
  });
  assert.equal(
    back.map((b) => [b.name, b.versionId, b.isDeleteMarker]),
    expected,
    'same keys, versions and delete markers in the same order',
  );
  for (const s of src.filter((x) => !x.isDeleteMarker)) {
    const m = ids.get(`${s.name}\n${s.versionId}`) as { versionId: string };
    assert.ok((await bytesOf(srv.client, f.bucket, s.name, s.versionId)).equals(await bytesOf(srv.client, dest, s.name, m.versionId)), `bytes of ${s.name}`);
    const a = await srv.client.statObject(f.bucket, s.name, { versionId: s.versionId });
    const b = await srv.client.statObject(dest, s.name, { versionId: m.versionId });
    assert.is(b.metaData['content-type'], a.metaData['content-type'], `content type of ${s.name}`);
    assert.is(b.metaData['cache-control'], a.metaData['cache-control'], `cache-control of ${s.name}`);
    assert.is(b.etag, a.etag, `etag of ${s.name}`);
  }
  const metaVersion = ids.get(`meta/ünï x.bin\n${String(meta.versionId)}`) as { versionId: string };
  const head = curlHead(srv, dest, 'meta/ünï x.bin', metaVersion.versionId);
  assert.match(head, `x-amz-meta-note: ${NOTE}`);
  assert.match(head, 'x-amz-meta-plain: ascii');
  assert.match(head, /content-language: de/i);
  const taggedSrc = src.find((s) => s.name === 'tagged.json') as Listed;
  const tags = await srv.client.getObjectTagging(dest, 'tagged.json', {
    versionId: (ids.get(`tagged.json\n${taggedSrc.versionId}`) as { versionId: string }).versionId,
  });
  assert.equal(Object.fromEntries(tags.map((t: { Key: string; Value: string }) => [t.Key, t.Value])), { project: 'airlock', 'ümlaut key': 'wert mit ü' });
  assert.is((await srv.client.getBucketVersioning(dest)).Status, 'Enabled');

  // a second restore into the now non-empty bucket is refused and writes nothing
  const again = airlock(restoreToBuckets(medium, srv.endpoint, `${f.bucket}=${dest}`, path.join(tmp(), 'ids2.jsonl')), { env: ENV });
  assert.is(again.code, EXIT.conflict, again.stderr);
  assert.match(again.stderr, `airlock: error: bucket ${dest} is not empty`);
  assert.is((await listAll(srv.client, dest)).length, src.length);

  // into a folder: now, and at a past time
  const now = path.join(tmp(), 'now');
  ok(
    airlock(['restore', 'objects', '--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', now]),
    'restore into a folder',
  );
  const b = path.join(now, f.bucket);
  assert.is(readFileSync(path.join(b, 'docs/report.txt'), 'utf8'), 'three');
  assert.is(readFileSync(path.join(b, 'resurrected'), 'utf8'), 'second life');
  assert.not.ok(existsSync(path.join(b, 'deleted.txt')));
  assert.is(statSync(path.join(b, 'empty.bin')).size, 0);
  assert.is(readFileSync(path.join(b, 'meta', 'ünï x.bin'), 'utf8'), 'metadata carrier');
  assert.is(readFileSync(path.join(b, '%2E%2E'), 'utf8'), 'body of ..');
  assert.is(readFileSync(path.join(b, 'a', '%2E%2E', 'b'), 'utf8'), 'body of a/../b');
  assert.is(readFileSync(path.join(b, 'percent%2541%25'), 'utf8'), 'body of percent%41%');
  assert.is(readFileSync(path.join(b, '%', 'leading'), 'utf8'), 'body of /leading');
  assert.is(readFileSync(path.join(b, 'trailing', '%'), 'utf8'), 'body of trailing/');
  assert.is(readFileSync(path.join(now, f.plain, 'p1'), 'utf8'), 'new');
  const keyMap = readFileSync(path.join(now, '.airlock-keys.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  for (const k of ODD_KEYS) {
    const e = keyMap.find((m) => m.key === k && m.bucket === f.bucket);
    assert.ok(e, `key map has ${k}`);
    assert.is(readFileSync(path.join(now, e.path), 'utf8'), `body of ${k}`);
  }
  assert.equal(readdirSync(path.dirname(now)), ['now'], 'no staging folder left');

  const past = path.join(tmp(), 'past');
  ok(
    airlock(['restore', 'objects', '--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', past, '--at', f.past]),
    'restore at a past time',
  );
  const p = path.join(past, f.bucket);
  assert.is(readFileSync(path.join(p, 'docs/report.txt'), 'utf8'), 'two');
  assert.is(readFileSync(path.join(p, 'deleted.txt'), 'utf8'), 'soon gone');
  assert.is(readFileSync(path.join(p, 'resurrected'), 'utf8'), 'first life');
});

test('a bucket restore killed halfway resumes from its journal without duplicating a version', async () => {
  const srv = await s3();
  const c = srv.client;
  const bucket = await versionedBucket(c, 'resume');
  for (let k = 0; k < 6; k++) {
    for (let v = 0; v < 3; v++) await c.putObject(bucket, `k${k}/x`, Buffer.from(`key ${k} version ${v}`));
  }
  await c.removeObject(bucket, 'k2/x');
  const { src, medium } = await exported(srv, bucket);
  const dest = bucketName('resumed');
  const idMap = path.join(tmp(), 'ids.jsonl');
  const args = restoreToBuckets(medium, srv.endpoint, `${bucket}=${dest}`, idMap);
  // killed after a version landed and before its journal line: the worst moment
  const killed = airlock(args, { env: { ...ENV, AIRLOCK_FAULT: 'restore:after-write', AIRLOCK_FAULT_SKIP: '7' } });
  assert.is(killed.code, 137, killed.stderr);
  assert.ok(existsSync(`${idMap}.partial`), 'the journal is left');
  assert.not.ok(existsSync(idMap), 'no finished id map');
  const partway = (await listAll(c, dest)).length;
  assert.ok(partway >= 8 && partway < src.length, `${partway} of ${src.length} written before the kill`);
  const again = airlock(args, { env: ENV });
  ok(again, 'resumed restore');
  assert.match(again.stderr, 'resuming an interrupted restore');
  const back = await listAll(c, dest);
  assert.is(back.length, src.length, 'no version written twice');
  const lines = readFileSync(idMap, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { key: string; sourceVersionId: string; versionId: string; deleteMarker: boolean });
  assert.is(lines.length, src.length);
  assert.equal(new Set(lines.map((l) => `${l.key} ${l.sourceVersionId}`)).size, src.length);
  const destIds = new Set(back.map((b) => b.versionId));
  for (const l of lines) assert.ok(destIds.has(l.versionId), `${l.key}: mapped to a version the bucket has`);
  assert.equal(
    back.map((b) => [b.name, b.isDeleteMarker]),
    src.map((x) => [x.name, x.isDeleteMarker]),
    'same keys and delete markers in the same order',
  );
  for (let k = 0; k < 6; k++) {
    if (k === 2) continue;
    assert.is((await bytesOf(c, dest, `k${k}/x`)).toString(), `key ${k} version 2`);
  }
});

test('a bucket restore killed after any write resumes to the same history: equal versions in a row, a delete marker, a multipart source, a journal line lost, garbled or cut short', async () => {
  const srv = await s3();
  const c = srv.client;
  const bucket = await versionedBucket(c, 'resume-all');
  // versions a resume cannot tell apart by content, and a source ETag that is not an MD5
  for (let v = 0; v < 3; v++) await c.putObject(bucket, 'same', Buffer.from('the same bytes'));
  await c.putObject(bucket, 'markers', Buffer.from('soon deleted'));
  await c.removeObject(bucket, 'markers');
  const parted = new Minio.Client({
    endPoint: '127.0.0.1',
    port: srv.port,
    useSSL: false,
    accessKey: ACCESS_KEY,
    secretKey: SECRET_KEY,
    region: 'us-east-1',
    pathStyle: true,
    partSize: 5 * 1024 * 1024,
  });
  const big = randomBytes(11 * 1024 * 1024);
  // a stream (a buffer always goes up whole) in parts of 5 MiB
  await parted.putObject(bucket, 'parts', Readable.from([big]), big.byteLength);
  assert.match((await c.statObject(bucket, 'parts')).etag, /-\d+"?$/, 'a multipart ETag, not the MD5 of the bytes');
  await c.putObject(bucket, 'parts', Buffer.from('small after big'));
  const { src, medium } = await exported(srv, bucket);
  assert.is(src.length, 7);

  for (let skip = 0; skip < src.length; skip++) {
    const dest = bucketName('resumed');
    const idMap = path.join(tmp(), 'ids.jsonl');
    const args = restoreToBuckets(medium, srv.endpoint, `${bucket}=${dest}`, idMap);
    const killed = airlock(args, { env: { ...ENV, AIRLOCK_FAULT: 'restore:after-write', AIRLOCK_FAULT_SKIP: String(skip) } });
    assert.is(killed.code, 137, killed.stderr);
    const journal = `${idMap}.partial`;
    const lines = readFileSync(journal, 'utf8')
      .split('\n')
      .filter((l) => l !== '');
    // as a power cut would leave it: a line lost whole, one garbled, or one cut short
    if (skip % 3 === 0 && lines.length > 0)
      writeFileSync(
        journal,
        lines
          .slice(0, -1)
          .map((l) => `${l}\n`)
          .join(''),
      );
    else if (skip % 3 === 1 && lines.length > 0)
      writeFileSync(journal, [...lines.slice(0, -1), '\0'.repeat(lines.at(-1)!.length)].map((l) => `${l}\n`).join(''));
    else writeFileSync(journal, `${lines.map((l) => `${l}\n`).join('')}{"bucket":"${bucket}","ke`);
    const again = airlock(args, { env: ENV });
    ok(again, `resumed after write ${skip + 1}`);
    const back = await listAll(c, dest);
    assert.equal(
      back.map((b) => [b.name, b.isDeleteMarker]),
      src.map((x) => [x.name, x.isDeleteMarker]),
      `after write ${skip + 1}: the same history, nothing written twice`,
    );
    const map = readFileSync(idMap, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { sourceVersionId: string; versionId: string });
    assert.equal(map.map((l) => l.sourceVersionId).sort(), src.map((x) => x.versionId).sort(), `after write ${skip + 1}: every source version mapped once`);
    assert.equal(map.map((l) => l.versionId).sort(), back.map((b) => b.versionId).sort(), `after write ${skip + 1}: onto every version of the bucket`);
  }
});

test('restore into a folder: a key that is also a folder of later keys becomes NAME%, whatever sorts between them', async () => {
  const srv = await s3();
  const c = srv.client;
  const bucket = await versionedBucket(c, 'folders');
  // "a!b" and "a.b" sort between "a" and "a/b"; "a0" after all of "a/..."
  const names = ['a', 'a!b', 'a.b', 'a/b', 'a/b/c', 'a/b!', 'a0', 'x/', 'x/y', 'gone', 'gone/z'];
  for (const k of names) await c.putObject(bucket, k, Buffer.from(`body of ${k}`));
  await c.removeObject(bucket, 'gone');
  // 102 keys deleted in all: the restore names 100 and counts the rest
  for (let i = 0; i < 101; i++) {
    await c.putObject(bucket, `del/${i}`, Buffer.from('short-lived'));
    await c.removeObject(bucket, `del/${i}`);
  }
  const medium = tmp();
  ok(airlock(exportBuckets(medium, tmp(), srv, [bucket]), { env: ENV }), 'export');
  const to = path.join(tmp(), 'folders');
  const restored = airlock(['restore', 'objects', '--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', to]);
  ok(restored, 'restore into a folder');
  assert.is(restored.stderr.split('\n').filter((l) => l.endsWith(': deleted at that time')).length, 100);
  assert.match(restored.stderr, 'airlock: note: 2 more keys deleted at that time');
  const files = (dir: string, at = ''): string[] =>
    readdirSync(path.join(dir, at), { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? files(dir, path.join(at, d.name)) : [path.join(at, d.name)]));
  assert.equal(files(path.join(to, bucket)).sort(), ['a!b', 'a%', 'a.b', 'a/b%', 'a/b!', 'a/b/c', 'a0', 'gone/z', 'x/%', 'x/y'].sort());
  const keyMap = readFileSync(path.join(to, '.airlock-keys.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { path: string; key: string });
  assert.is(keyMap.length, names.length - 1, 'every key but the deleted one');
  for (const e of keyMap) assert.is(readFileSync(path.join(to, e.path), 'utf8'), `body of ${e.key}`, e.key);
});

test('safe paths: every key shape maps to distinct relative components', () => {
  const all = [...ODD_KEYS, '.', '%', '%25', 'a\u0001b', 'x'.repeat(300), `${'y'.repeat(300)}/z`];
  const seen = new Set<string>();
  for (const k of all) {
    const parts = safeComponents(k);
    for (const c of parts) {
      assert.ok(
        c !== '' && c !== '.' && c !== '..' && !c.includes('/') && !c.includes('\0') && Buffer.byteLength(c) <= 255,
        `${JSON.stringify(k)} -> ${JSON.stringify(c)}`,
      );
    }
    const joined = parts.join('/');
    assert.not.ok(seen.has(joined), `two keys map to ${joined}`);
    seen.add(joined);
  }
});

test('more than 1,000 versions: listing pages turn on keys that need escaping', async () => {
  const srv = await s3();
  const c = srv.client;
  const bucket = await versionedBucket(c, 'many');
  const keysMade: string[] = [];
  for (let i = 0; i < 400; i++) keysMade.push(`esc/ä ö+%2F ${String(i).padStart(3, '0')} &<>`);
  const expected = new Set<string>();
  const queue = keysMade.flatMap((k) => [k, k, k]);
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let k = queue.shift(); k !== undefined; k = queue.shift()) {
        const r = await c.putObject(bucket, k, Buffer.from(`${k} ${expected.size}`));
        expected.add(`${k}\n${String(r.versionId)}`);
      }
    }),
  );
  for (let i = 0; i < 400; i += 10) await c.removeObject(bucket, keysMade[i] as string);
  await c.putObject(bucket, 'outside/prefix', Buffer.from('not exported'));
  assert.is(expected.size, 1200);

  // our listing, in small pages (many turns) and in the default 1,000
  const client = new S3Client({ endpoint: srv.endpoint, credentials: { accessKey: ACCESS_KEY, secretKey: SECRET_KEY } });
  try {
    const small: string[] = [];
    for await (const v of listVersions(client, bucket, 'esc/', undefined, 7)) small.push(`${v.kind} ${v.key}\n${v.versionId}`);
    const big: string[] = [];
    for await (const v of listVersions(client, bucket, 'esc/')) big.push(`${v.kind} ${v.key}\n${v.versionId}`);
    assert.is(small.length, 1240);
    assert.equal(small, big);
    assert.is(new Set(small).size, 1240, 'no entry twice');
  } finally {
    client.close();
  }

  const medium = tmp();
  const r = airlock(exportBuckets(medium, tmp(), srv, [`${bucket}/esc/`], ['--json']), { env: ENV });
  ok(r, 'export');
  const index = indexOf(decryptTo(JSON.parse(r.stdout).path));
  const got = index.filter((x) => x.type === 'object').map((x) => `${String(x.key)}\n${String(x.versionId)}`);
  assert.is(got.length, 1200);
  assert.equal(new Set(got), expected);
  assert.is(index.filter((x) => x.type === 'delete-marker').length, 40);
  // within each key, newest first, and keys contiguous
  const order = index.filter((x) => x.type === 'object' || x.type === 'delete-marker').map((x) => String(x.key));
  const runs = order.filter((k, i) => i === 0 || order[i - 1] !== k);
  assert.is(runs.length, 400);
  ok(airlockVerify(['--allowed-signers', keys.allowedSigners, '--identity', keys.identity, medium]), 'deep verify');
});

test('a 100 MiB multipart object streams through export in bounded memory and goes back up in parts', async () => {
  const srv = await s3();
  const c = srv.client;
  const bucket = await versionedBucket(c, 'big');
  const MiB = 1024 * 1024;
  const size = 100 * MiB;
  const seed = randomBytes(MiB);
  const chunk = (i: number) => {
    const b = Buffer.from(seed);
    b.writeUInt32BE(i, 0);
    return b;
  };
  const expected = createHash('sha256');
  for (let i = 0; i < 100; i++) expected.update(chunk(i));
  // a stream of 1 MiB chunks, so the minio client uploads it in parts
  await c.putObject(
    bucket,
    'big/ünï.bin',
    Readable.from(
      (function* () {
        for (let i = 0; i < 100; i++) yield chunk(i);
      })(),
    ),
    size,
    { 'Content-Type': 'application/x-big' },
  );
  const stat = await c.statObject(bucket, 'big/ünï.bin');
  assert.match(stat.etag, /-\d+$/, 'uploaded in parts');

  const medium = tmp();
  const timed = run(
    '/usr/bin/time',
    ['-f', 'maxrss=%M', process.execPath, ...AIRLOCK, ...exportBuckets(medium, tmp(), srv, [bucket], ['--compress', 'none', '--volume-size', '32M', '--json'])],
    { env: ENV },
  );
  ok(timed, 'export');
  const rss = Number(/maxrss=(\d+)/.exec(timed.stderr)?.[1]) * 1024;
  process.stderr.write(`  export of 100 MiB: max RSS ${Math.round(rss / MiB)} MiB\n`);
  assert.ok(rss > 0 && rss < 200 * MiB, `export held ${Math.round(rss / MiB)} MiB at most; a 100 MiB object must stream`);
  const out = decryptTo(JSON.parse(timed.stdout.trim().split('\n').at(-1) as string).path, false);
  const rec = indexOf(out).find((x) => x.type === 'object') as Record<string, unknown>;
  assert.is(rec.size, size);
  assert.is(rec.sha256, expected.digest('hex'));
  assert.match(String(rec.etag), /-\d+"?$/);
  ok(airlockVerify(['--allowed-signers', keys.allowedSigners, '--identity', keys.identity, medium]), 'deep verify');

  const dest = bucketName('bigback');
  const idMap = path.join(tmp(), 'ids.jsonl');
  ok(airlock(restoreToBuckets(medium, srv.endpoint, `${bucket}=${dest}`, idMap), { env: ENV }), 'restore');
  const back = await c.statObject(dest, 'big/ünï.bin');
  assert.is(back.size, size);
  assert.match(back.etag, /-\d+$/, 'restored in parts');
  assert.is(back.metaData['content-type'], 'application/x-big');
  const h = createHash('sha256');
  for await (const p of await c.getObject(dest, 'big/ünï.bin')) h.update(p as Buffer);
  assert.is(h.digest('hex'), rec.sha256);
});

test('incremental exports carry only new versions; a restore reads the chain back to the full export', async () => {
  const srv = await s3();
  const c = srv.client;
  const bucket = await versionedBucket(c, 'incr');
  const plain = bucketName('incrplain');
  await c.makeBucket(plain);
  await c.putObject(bucket, 'a key', Buffer.from('a1'));
  await c.putObject(bucket, 'b+key', Buffer.from('b1'));
  await c.putObject(plain, 'p', Buffer.from('p1'));
  await c.putObject(plain, 'gone', Buffer.from('g1'));
  const medium = tmp();
  const state = tmp();
  const first = airlock(exportBuckets(medium, state, srv, [bucket, plain], ['--incremental', '--json']), { env: ENV });
  ok(first, 'first export (nothing to build on: whole)');
  await c.putObject(bucket, 'a key', Buffer.from('a2'));
  await c.removeObject(bucket, 'b+key');
  await c.putObject(bucket, 'c/ü', Buffer.from('c1'));
  await c.putObject(plain, 'p', Buffer.from('p2'));
  await c.removeObject(plain, 'gone');
  const second = airlock(exportBuckets(medium, state, srv, [bucket, plain], ['--incremental', '--json']), { env: ENV });
  ok(second, 'incremental export');
  const third = airlock(exportBuckets(medium, state, srv, [bucket, plain], ['--incremental', '--json']), { env: ENV });
  ok(third, 'incremental export without changes');

  const idx1 = indexOf(decryptTo(JSON.parse(first.stdout).path));
  const idx2 = indexOf(decryptTo(JSON.parse(second.stdout).path));
  const idx3 = indexOf(decryptTo(JSON.parse(third.stdout).path));
  assert.is((idx1.find((x) => x.type === 'bucket' && x.bucket === bucket) as Record<string, unknown>).since, undefined);
  assert.is((idx2.find((x) => x.type === 'bucket' && x.bucket === bucket) as Record<string, unknown>).since, 1);
  // an unversioned bucket leaves no trace of overwrites and deletes, so it is always exported whole
  assert.is((idx3.find((x) => x.type === 'bucket' && x.bucket === plain) as Record<string, unknown>).since, undefined);
  const kinds = (idx: Record<string, unknown>[]) =>
    idx.filter((x) => x.type === 'object' || x.type === 'delete-marker').map((x) => `${String(x.bucket).split('-')[0]} ${String(x.type)} ${String(x.key)}`);
  assert.equal(kinds(idx2), ['incr object a key', 'incr delete-marker b+key', 'incr object c/ü', 'incrplain object p']);
  assert.equal(kinds(idx3), ['incrplain object p']);
  assert.is((idx3.find((x) => x.type === 'bucket-summary' && x.bucket === bucket) as Record<string, unknown>).alreadyExported, 5);
  ok(airlockVerify(['--allowed-signers', keys.allowedSigners, '--identity', keys.identity, medium]), 'the chain verifies');

  // restore the newest: the whole history, from three bundles
  const dest = bucketName('incrback');
  const idMap = path.join(tmp(), 'ids.jsonl');
  ok(airlock(restoreToBuckets(medium, srv.endpoint, `${bucket}=${dest}`, idMap), { env: ENV }), 'restore of the chain');
  const ids = new Map(
    readFileSync(idMap, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .map((m) => [`${m.key}\n${m.sourceVersionId}`, m.versionId as string]),
  );
  const src = await listAll(c, bucket);
  assert.equal(
    (await listAll(c, dest)).map((b) => [b.name, b.versionId, b.isDeleteMarker]),
    src.map((x) => [x.name, ids.get(`${x.name}\n${x.versionId}`), x.isDeleteMarker]),
  );
  const folder = path.join(tmp(), 'f');
  ok(
    airlock(['restore', 'objects', '--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', folder]),
    'folder restore of the chain',
  );
  assert.is(readFileSync(path.join(folder, bucket, 'a key'), 'utf8'), 'a2');
  assert.is(readFileSync(path.join(folder, bucket, 'c', 'ü'), 'utf8'), 'c1');
  assert.not.ok(existsSync(path.join(folder, bucket, 'b+key')));
  assert.is(readFileSync(path.join(folder, plain, 'p'), 'utf8'), 'p2');
  assert.not.ok(existsSync(path.join(folder, plain, 'gone')), 'an object deleted from an unversioned bucket stays deleted');

  // the newest bundle alone cannot be restored: it names the bundle it builds on
  const alone = airlock([
    'restore',
    'objects',
    '--from',
    JSON.parse(third.stdout).path,
    '--identity',
    keys.identity,
    '--allowed-signers',
    keys.allowedSigners,
    '--to',
    path.join(tmp(), 'g'),
  ]);
  assert.is(alone.code, EXIT.input, alone.stderr);
  assert.match(alone.stderr, 'builds on it (an incremental export)');
});

test('an object the server refuses mid-export: typed error, no bundle, the seq is not used up', async () => {
  const srv = await s3();
  const c = srv.client;
  const bucket = await versionedBucket(c, 'denied');
  for (let i = 0; i < 50; i++) await c.putObject(bucket, `open/${i}`, Buffer.from(`${i}`));
  await c.putObject(bucket, 'secret/x', Buffer.from('no'));
  // listing and bucket settings stay allowed, so the refusal comes after the bundle was begun
  await c.setBucketPolicy(
    bucket,
    JSON.stringify({
      Version: '2012-10-17',
      Statement: [
        { Effect: 'Deny', Principal: { AWS: ['*'] }, Action: ['s3:GetObject', 's3:GetObjectVersion'], Resource: [`arn:aws:s3:::${bucket}/secret/*`] },
      ],
    }),
  );
  const medium = tmp();
  const state = tmp();
  const r = airlock(exportBuckets(medium, state, srv, [bucket]), { env: ENV });
  assert.is(r.code, EXIT.source, r.stderr);
  assert.match(r.stderr, `refused the request for ${bucket}/secret/x`);
  assert.equal(readdirSync(path.join(medium, keys.site)), [], 'no bundle and no partial folder');
  // the keys the server does serve export fine, as seq 1: the failed attempt used nothing up
  const again = airlock(exportBuckets(medium, state, srv, [`${bucket}/open/`]), { env: ENV });
  ok(again, 'export of the readable prefix');
  assert.match(again.stdout, `${keys.site}-00000001`);
});

/**
 * An HTTP proxy in front of the S3 server that passes everything through, except:
 * - `corrupt`: in the body of every GET of a key it matches (not its tagging) the byte at offset
 *   1000 is flipped, as a failing disk or controller on the server would;
 * - `hold`: a GET of a key it matches is held back `ms` before it goes on; `servedWhileHeld` counts
 *   the other object GETs answered meanwhile;
 * - `stallObjectWrites`: a write of an object is neither passed on nor answered; `stalled` counts them;
 * - `loseAnswerTo`: the first request it matches reaches the server, which acts on it, and then the
 *   connection closes without the answer, as when a network drops at the wrong moment.
 */
async function s3Proxy(
  target: string,
  opts: { corrupt?: RegExp; hold?: { key: RegExp; ms: number }; stallObjectWrites?: boolean; loseAnswerTo?: { method: string; path: RegExp } },
): Promise<{ endpoint: string; stop: () => Promise<void>; servedWhileHeld: () => number; stalled: () => number }> {
  const http = await import('node:http');
  const to = new URL(target);
  let holding = false;
  let servedWhileHeld = 0;
  let stalled = 0;
  let lost = false;
  const server = http.createServer((req, res) => {
    const url = decodeURIComponent(req.url ?? '');
    // a write of an object (a path below the bucket) is never answered, nor passed on
    if (opts.stallObjectWrites && req.method !== 'GET' && req.method !== 'HEAD' && /^\/[^/?]+\/[^?]/.test(req.url ?? '')) {
      stalled++;
      return;
    }
    const objectGet = req.method === 'GET' && /[?&]versionId=/.test(url) && !/[?&]tagging/.test(url);
    const lose = !lost && opts.loseAnswerTo !== undefined && req.method === opts.loseAnswerTo.method && opts.loseAnswerTo.path.test(url);
    if (lose) lost = true;
    const flip = objectGet && opts.corrupt?.test(url) === true;
    const hold = objectGet && opts.hold?.key.test(url) === true;
    const forward = () => {
      const up = http.request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
        if (lose) {
          ur.resume();
          ur.on('end', () => res.socket?.destroy());
          return;
        }
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        let at = 0;
        ur.on('data', (d: Buffer) => {
          if (flip && at <= 1000 && 1000 < at + d.length) d.writeUInt8(d.readUInt8(1000 - at) ^ 0xff, 1000 - at);
          at += d.length;
          res.write(d);
        });
        ur.on('end', () => {
          if (objectGet && !hold && holding) servedWhileHeld++;
          res.end();
        });
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    };
    if (!hold) {
      forward();
      return;
    }
    holding = true;
    setTimeout(() => {
      holding = false;
      forward();
    }, opts.hold!.ms);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
    servedWhileHeld: () => servedWhileHeld,
    stalled: () => stalled,
  };
}

test('a delete marker whose answer is lost is not sent again: the restore stops, and the same command finishes it with one marker', async () => {
  const srv = await s3();
  const c = srv.client;
  const bucket = await versionedBucket(c, 'lost-answer');
  await c.putObject(bucket, 'k', Buffer.from('one'));
  await c.removeObject(bucket, 'k');
  await c.putObject(bucket, 'k', Buffer.from('two'));
  const { src, medium } = await exported(srv, bucket);
  const dest = bucketName('lost-answer');
  const idMap = path.join(tmp(), 'ids.jsonl');
  const proxy = await s3Proxy(srv.endpoint, { loseAnswerTo: { method: 'DELETE', path: new RegExp(`^/${dest}/k$`) } });
  try {
    const r = await airlockAsync(restoreToBuckets(medium, proxy.endpoint, `${bucket}=${dest}`, idMap), { env: ENV });
    assert.is(r.code, EXIT.source, r.stderr);
  } finally {
    await proxy.stop();
  }
  ok(airlock(restoreToBuckets(medium, srv.endpoint, `${bucket}=${dest}`, idMap), { env: ENV }), 'the same command, run again');
  const back = await listAll(c, dest);
  assert.equal(
    back.map((b) => [b.name, b.isDeleteMarker]),
    src.map((x) => [x.name, x.isDeleteMarker]),
    'one delete marker, where the source has it',
  );
});

test('restore objects stopped by SIGINT exits 130, keeps its journal and says so; the same command then finishes it', async () => {
  const srv = await s3();
  const c = srv.client;
  const bucket = await versionedBucket(c, 'sigint');
  for (let i = 0; i < 5; i++) await c.putObject(bucket, `k${i}`, Buffer.from(`object ${i}`));
  await c.removeObject(bucket, 'k1');
  const { src, medium } = await exported(srv, bucket);
  const dest = bucketName('sigint');
  const idMap = path.join(tmp(), 'ids.jsonl');
  const args = (endpoint: string) => restoreToBuckets(medium, endpoint, `${bucket}=${dest}`, idMap);
  const proxy = await s3Proxy(srv.endpoint, { stallObjectWrites: true });
  try {
    const child = spawn(process.execPath, [...AIRLOCK, ...args(proxy.endpoint)], {
      env: ENV,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    for (let waited = 0; proxy.stalled() === 0; waited += 50) {
      assert.ok(waited < 60_000, `no object write reached the proxy: ${stderr}`);
      await sleep(50);
    }
    child.kill('SIGINT');
    assert.is(await closed, 130, stderr);
    assert.match(stderr, 'run the same command again to resume');
    assert.ok(existsSync(`${idMap}.partial`), 'the journal is kept');
    assert.not.ok(existsSync(idMap), 'no finished id map');
  } finally {
    await proxy.stop();
  }
  ok(airlock(args(srv.endpoint), { env: ENV }), 'the same command, run again');
  const back = await listAll(c, dest);
  assert.equal(
    back.map((b) => [b.name, b.isDeleteMarker]),
    src.map((x) => [x.name, x.isDeleteMarker]),
  );
});

test('a slow object at the head of the export does not hold back the requests behind it', async () => {
  const srv = await s3();
  const c = srv.client;
  const bucket = await versionedBucket(c, 'slow-head');
  const count = 100;
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let i = next++; i < count; i = next++) await c.putObject(bucket, `k${String(i).padStart(3, '0')}`, Buffer.from(`object ${i}`));
    }),
  );
  // the first key in listing order answers after 2 s; the others meanwhile
  const proxy = await s3Proxy(srv.endpoint, { hold: { key: /\/k000\?/, ms: 2000 } });
  try {
    const medium = tmp();
    const r = await airlockAsync(exportBuckets(medium, tmp(), { ...srv, endpoint: proxy.endpoint }, [bucket], ['--json']), { env: ENV });
    ok(r, 'export through the slow proxy');
    assert.is(JSON.parse(r.stdout).objects.versions, count);
    // 32 requests in flight: with the window stuck behind k000, at most 31 others could be answered
    assert.ok(proxy.servedWhileHeld() >= 60, `${proxy.servedWhileHeld()} other objects were fetched while the first was held`);
  } finally {
    await proxy.stop();
  }
});

test('a server that returns other bytes than the ETag says (small and large objects): source-corrupt, no bundle', async () => {
  const srv = await s3();
  const c = srv.client;
  const medium = tmp();
  const state = tmp();
  const proxy = await s3Proxy(srv.endpoint, { corrupt: /corrupt/ });
  try {
    for (const [label, size] of [
      ['small', 5000],
      ['large', 5 * 1024 * 1024],
    ] as const) {
      const bucket = await versionedBucket(c, `corrupt-${label}`);
      await c.putObject(bucket, 'fine', Buffer.from('fine'));
      await c.putObject(bucket, `corrupt-${label}`, randomBytes(size));
      const r = await airlockAsync(exportBuckets(medium, state, { ...srv, endpoint: proxy.endpoint }, [bucket]), { env: ENV });
      assert.is(r.code, EXIT.source, `${label}: ${r.stderr}`);
      assert.match(r.stderr, `${bucket}/corrupt-${label} version`, `${label}: ${r.stderr}`);
      assert.match(r.stderr, 'the bytes hash to md5', label);
      assert.match(r.stderr, 'the S3 server returned other bytes than it stores', label);
      assert.equal(existsSync(path.join(medium, keys.site)) ? readdirSync(path.join(medium, keys.site)) : [], [], `${label}: no bundle and no partial folder`);
    }
  } finally {
    await proxy.stop();
  }
});

test('missing bucket, wrong credentials, unreachable endpoint, readable credentials file: typed errors, no bundle', async () => {
  const srv = await s3();
  const bucket = bucketName('exists');
  await srv.client.makeBucket(bucket);
  await srv.client.putObject(bucket, 'k', Buffer.from('v'));
  const port = await freePort();
  const loose = path.join(tmp(), 'creds');
  writeFileSync(loose, `[default]\naws_access_key_id = ${ACCESS_KEY}\naws_secret_access_key = ${SECRET_KEY}\n`);
  chmodSync(loose, 0o644);
  const cases: { args: (m: string) => string[]; env: NodeJS.ProcessEnv; code: number; message: string | RegExp }[] = [
    {
      args: (m) => exportBuckets(m, tmp(), srv, ['no-such-bucket-here']),
      env: ENV,
      code: EXIT.input,
      message: 'airlock: error: bucket no-such-bucket-here does not exist',
    },
    {
      args: (m) => exportBuckets(m, tmp(), srv, [bucket]),
      env: { ...ENV, AWS_SECRET_ACCESS_KEY: 'not-the-secret' },
      code: EXIT.source,
      message: 'refused the request',
    },
    // radosgw with STS on (test/s3.ts) answers an unknown key with AccessDenied, without it InvalidAccessKeyId
    {
      args: (m) => exportBuckets(m, tmp(), srv, [bucket]),
      env: { ...ENV, AWS_ACCESS_KEY_ID: 'nobody' },
      code: EXIT.source,
      message: /refused the request for bucket exists-\w+: (InvalidAccessKeyId|AccessDenied)/,
    },
    {
      args: (m) => exportBuckets(m, tmp(), { ...srv, endpoint: `http://127.0.0.1:${port}` }, [bucket]),
      env: ENV,
      code: EXIT.source,
      message: 'connection refused',
    },
    { args: (m) => exportBuckets(m, tmp(), srv, [bucket]), env: { PATH: process.env.PATH }, code: EXIT.usage, message: 'no S3 credentials given' },
    {
      args: (m) => exportBuckets(m, tmp(), srv, [bucket], ['--s3-credentials', loose]),
      env: { PATH: process.env.PATH },
      code: EXIT.input,
      message: 'may be read by other users',
    },
  ];
  for (const c of cases) {
    const medium = tmp();
    const r = airlock(c.args(medium), { env: c.env });
    assert.is(r.code, c.code, r.stderr);
    assert.match(r.stderr, c.message);
    assert.match(r.stderr, /\nairlock: hint: /);
    assert.not.match(r.stderr + r.stdout, 'not-the-secret', 'the secret is never printed');
    assert.equal(readdirSync(medium), [], 'nothing on the medium');
  }
  // a private credentials file works
  chmodSync(loose, 0o600);
  const medium = tmp();
  ok(airlock(exportBuckets(medium, tmp(), srv, [bucket], ['--s3-credentials', loose]), { env: { PATH: process.env.PATH } }), 'export with a credentials file');

  // restore: a dead endpoint, bad keys or a bucket missing from the bundle fail before anything is written
  const restoreCases: { endpoint: string; env: NodeJS.ProcessEnv; map: string; code: number; message: string }[] = [
    { endpoint: `http://127.0.0.1:${port}`, env: ENV, map: `${bucket}=${bucketName('never')}`, code: EXIT.source, message: 'connection refused' },
    {
      endpoint: srv.endpoint,
      env: { ...ENV, AWS_SECRET_ACCESS_KEY: 'not-the-secret' },
      map: `${bucket}=${bucketName('never')}`,
      code: EXIT.source,
      message: 'refused the request',
    },
    {
      endpoint: srv.endpoint,
      env: ENV,
      map: `not-in-bundle=${bucketName('never')}`,
      code: EXIT.usage,
      message: 'names not-in-bundle, which is not in this bundle',
    },
  ];
  for (const c of restoreCases) {
    const dir = tmp();
    const r = airlock(restoreToBuckets(medium, c.endpoint, c.map, path.join(dir, 'ids.jsonl')), { env: c.env });
    assert.is(r.code, c.code, r.stderr);
    assert.match(r.stderr, c.message);
    assert.equal(readdirSync(dir), [], 'no id map, no staging left');
  }
  const buckets = (await srv.client.listBuckets()).map((b) => b.name);
  assert.not.ok(
    buckets.some((b) => b.startsWith('never-')),
    'no bucket was created',
  );
});

test.run();
