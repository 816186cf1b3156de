/*
 * What `restore objects --bucket-map` puts on the wire, against the real radosgw through a proxy that
 * keeps every request's head: one header per field, exactly as the bundle records it, for keys that
 * stress SigV4's canonical forms; and a bundle signed by the site key whose records hold values no
 * header can carry (CR, LF, NUL), headers an export never records (x-amz-acl, x-amz-copy-source),
 * bad metadata names or keys that are not text: refused, naming the versions, before anything is
 * written.
 */
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { escapeText } from '../../manifests/escape.js';
import type { ObjectRecord, Unplaced } from '../../manifests/records.js';
import { parsePrivateKey } from '../../manifests/sshkey.js';
import { writeBundle, type SourceItem } from '../../agent/bundle/writer.js';
import { S3Client, utf8Header } from '../../agent/s3/client.js';
import { airlock, airlockAsync, exportArgs, makeKeys, tmp, restoreObjectsArgs } from '../helpers.js';
import { ACCESS_KEY, SECRET_KEY, bucketName, s3, versionedBucket } from '../s3.js';
import { EXIT } from '../../manifests/errors.js';

const keys = makeKeys('site-w');
const ENV = { ...process.env, AWS_ACCESS_KEY_ID: ACCESS_KEY, AWS_SECRET_ACCESS_KEY: SECRET_KEY };

/** A proxy to `port` on 127.0.0.1 that keeps the head (request line and headers) of every request sent through it. */
async function recordingProxy(port: number): Promise<{ endpoint: string; heads: string[]; close: () => void; server: Server }> {
  const heads: string[] = [];
  const server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    let pending = Buffer.alloc(0);
    let body = 0;
    client.on('data', (d: Buffer) => {
      upstream.write(d);
      // split the stream into requests: a head, then content-length bytes of body
      pending = Buffer.concat([pending, d]);
      for (;;) {
        if (body > 0) {
          const n = Math.min(body, pending.length);
          pending = pending.subarray(n);
          body -= n;
          if (body > 0) return;
        }
        const end = pending.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = pending.subarray(0, end).toString('latin1');
        heads.push(head);
        body = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        pending = pending.subarray(end + 4);
      }
    });
    upstream.pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { endpoint: `http://127.0.0.1:${address.port}`, heads, server, close: () => server.close() };
}

/** The header lines of a request head, name lower-cased. */
function headerLines(head: string): [string, string][] {
  return head
    .split('\r\n')
    .slice(1)
    .map((l) => {
      const i = l.indexOf(':');
      return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()] as [string, string];
    });
}

function restoreArgs(medium: string, endpoint: string, map: string, idMap: string): string[] {
  return restoreObjectsArgs(keys, medium, endpoint, map, idMap);
}

test('restore objects: keys that stress SigV4 and metadata with runs of spaces and unicode go out one header per field, exactly as recorded', async () => {
  const srv = await s3();
  const src = await versionedBucket(srv.client, 'wire-src');
  const keysToTry = ['tilde~x', 'a%2Fb', 'x/./y', 'sp ace+plus', '100%', 'ünï/ключ', 'dbl//slash', 'trailing/', '=&?#'];
  // two spaces inside a value: SigV4 signs them as one, and the server stores both
  const meta = { 'x-amz-meta-note': 'grüße  aus 日本', 'x-amz-meta-plain': 'a=b; c' };
  // put with airlock's own client, which keeps the UTF-8 bytes of a value as they are
  const client = new S3Client({ endpoint: srv.endpoint, credentials: { accessKey: ACCESS_KEY, secretKey: SECRET_KEY } });
  try {
    for (const k of keysToTry) {
      await client.call({
        method: 'PUT',
        bucket: src,
        key: k,
        body: Buffer.from(`body of ${k}`),
        headers: { 'content-type': 'text/plain; charset=utf-8', ...Object.fromEntries(Object.entries(meta).map(([n, v]) => [n, utf8Header(v)])) },
      });
    }
  } finally {
    client.close();
  }
  const medium = tmp();
  const e = airlock(exportArgs(keys, medium, tmp(), ['--s3-endpoint', srv.endpoint, '--bucket', src]), { env: ENV });
  assert.is(e.code, EXIT.ok, e.stderr);

  const proxy = await recordingProxy(srv.port);
  try {
    const dst = bucketName('wire-dst');
    const r = await airlockAsync(restoreArgs(medium, proxy.endpoint, `${src}=${dst}`, path.join(tmp(), 'ids.jsonl')), { env: ENV });
    assert.is(r.code, EXIT.ok, r.stderr);
    const puts = proxy.heads.filter((h) => h.startsWith(`PUT /${dst}/`));
    assert.is(puts.length, keysToTry.length, proxy.heads.map((h) => h.split('\r\n')[0]).join('\n'));
    for (const head of puts) {
      const lines = headerLines(head);
      const names = lines.map(([n]) => n);
      assert.equal(names.length, new Set(names).size, `one header per field: ${head}`);
      for (const [n, v] of lines) assert.not.match(v, /[\x00-\x08\x0a-\x1f\x7f]/, `${n} has no control byte`);
      const get = (n: string) => lines.find(([x]) => x === n)?.[1];
      assert.is(Buffer.from(get('x-amz-meta-note') ?? '', 'latin1').toString('utf8'), 'grüße  aus 日本');
      assert.is(get('x-amz-meta-plain'), 'a=b; c');
      assert.is(get('content-type'), 'text/plain; charset=utf-8');
    }
    // the server took every signature and stored every key as it was
    const got: string[] = [];
    for await (const o of srv.client.listObjectsV2(dst, '', true) as AsyncIterable<{ name: string }>) got.push(o.name);
    assert.equal(got.sort(), [...keysToTry].sort());
    for (const k of keysToTry) {
      const st = await srv.client.statObject(dst, k);
      assert.is(Buffer.from(String(st.metaData.note), 'latin1').toString('utf8'), 'grüße  aus 日本', k);
    }
  } finally {
    proxy.close();
  }
});

/** An object record as an export writes one, with `over` on top. */
function objectRecord(bucket: string, key: string, over: Partial<Unplaced<ObjectRecord>> = {}): Unplaced<ObjectRecord> {
  return {
    type: 'object',
    bucket,
    key,
    versionId: randomBytes(8).toString('hex'),
    isLatest: true,
    lastModified: '2026-01-01T00:00:00.000Z',
    etag: '"0"',
    contentType: 'text/plain',
    headers: {},
    metadata: {},
    tags: {},
    ...over,
  };
}

/** A bundle of one bucket with `records`, written and signed with the site key, as a taken-over appliance could. */
async function hostileBundle(bucket: string, records: Unplaced<ObjectRecord>[]): Promise<string> {
  const medium = tmp();
  const items: SourceItem[] = [
    {
      kind: 'record',
      record: { type: 'bucket', endpoint: 'http://127.0.0.1:1', bucket, prefix: '', versioning: 'Enabled', lifecycle: null, objectLock: null, tags: null },
    },
    ...records.map((record, i): SourceItem => {
      const body = Buffer.from(`body ${i}`);
      return {
        kind: 'entry',
        name: `objects/${String(i + 1).padStart(8, '0')}`,
        size: body.length,
        mode: 0o600,
        mtime: 1767225600,
        pax: { 'AIRLOCK.bucket': bucket, 'AIRLOCK.key': record.key.replace(/\p{Cs}/gu, '\ufffd'), 'AIRLOCK.version_id': record.versionId },
        open: async function* () {
          yield body;
        },
        record,
      };
    }),
  ];
  async function* all() {
    yield* items;
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
    all(),
  );
  return medium;
}

test('restore objects: records a header cannot carry, headers an export never records, bad names and keys are refused before anything is written', async () => {
  const srv = await s3();
  const src = 'hostile-src';
  const records = [
    objectRecord(src, 'crlf-meta', { metadata: { note: 'a\r\nx-amz-acl: public-read' } }),
    objectRecord(src, 'crlf-type', { contentType: 'text/plain\r\nx-injected: 1' }),
    objectRecord(src, 'nul-meta', { metadata: { nul: 'a\u0000b' } }),
    objectRecord(src, 'lf-header', { headers: { 'cache-control': 'max-age=1\nx-amz-acl: public-read' } }),
    objectRecord(src, 'acl', { headers: { 'x-amz-acl': 'public-read' } }),
    objectRecord(src, 'copy', { headers: { 'x-amz-copy-source': '/other-bucket/secret' } }),
    objectRecord(src, 'bad-name', { metadata: { 'Bad Name': 'x' } }),
    objectRecord(src, 'twice', { metadata: { dup: 'a' }, metadataBase64: { dup: Buffer.from('b').toString('base64') } }),
    objectRecord(src, 'bin-crlf', { metadataBase64: { bin: Buffer.from('\r\nx: y').toString('base64') } }),
    objectRecord(src, 'lone\ud800surrogate'),
    objectRecord(src, 'zz-fine', { metadata: { ok: 'fine' } }),
  ];
  const medium = await hostileBundle(src, records);
  const dst = bucketName('hostile-dst');
  const idMap = path.join(tmp(), 'ids.jsonl');
  const r = airlock(restoreArgs(medium, srv.endpoint, `${src}=${dst}`, idMap), { env: ENV });
  assert.is(r.code, EXIT.failed, r.stderr);
  assert.match(
    r.stderr,
    /\nairlock: error: 10 version\(s\) cannot be sent to the S3 server as the bundle records them: hostile-src\/"crlf-meta" version \w+: the metadata "note" holds a control byte \(0x0d\), which no http header can carry; [^\n]+; \.\.\.\nairlock: hint: [^\n]*nothing was written\n$/,
  );
  assert.is(await srv.client.bucketExists(dst), false, 'no bucket made');
  assert.not.ok(existsSync(idMap) || existsSync(`${idMap}.partial`), 'no id map or journal');

  // each refusal on its own, with its reason
  const reasons: [Unplaced<ObjectRecord>, string][] = [
    [records[0] as Unplaced<ObjectRecord>, 'the metadata "note" holds a control byte (0x0d)'],
    [records[1] as Unplaced<ObjectRecord>, 'its content type holds a control byte (0x0d)'],
    [records[2] as Unplaced<ObjectRecord>, 'the metadata "nul" holds a control byte (0x00)'],
    [records[3] as Unplaced<ObjectRecord>, 'cache-control holds a control byte (0x0a)'],
    [records[4] as Unplaced<ObjectRecord>, 'its record names the header "x-amz-acl", which an export never records'],
    [records[5] as Unplaced<ObjectRecord>, 'its record names the header "x-amz-copy-source"'],
    [records[6] as Unplaced<ObjectRecord>, 'the metadata name "Bad Name" is not a lower-case http token'],
    [records[7] as Unplaced<ObjectRecord>, 'the metadata "dup" is given twice'],
    [records[9] as Unplaced<ObjectRecord>, 'the key is not valid unicode text'],
  ];
  for (const [record, why] of reasons) {
    const one = airlock(restoreArgs(await hostileBundle(src, [record]), srv.endpoint, `${src}=${dst}`, path.join(tmp(), 'ids.jsonl')), { env: ENV });
    assert.is(one.code, EXIT.failed, one.stderr);
    // the message reaches the terminal through escapeText, which shows the backslashes JSON quoting wrote
    assert.match(
      one.stderr,
      `airlock: error: ${escapeText(`1 version(s) cannot be sent to the S3 server as the bundle records them: ${src}/${JSON.stringify(record.key)} version ${record.versionId}: ${why}`)}`,
    );
  }
  assert.is(await srv.client.bucketExists(dst), false, 'no bucket made');

  // the fine version alone goes through, with its metadata
  const fine = airlock(
    restoreArgs(await hostileBundle(src, [records[10] as Unplaced<ObjectRecord>]), srv.endpoint, `${src}=${dst}`, path.join(tmp(), 'ids.jsonl')),
    { env: ENV },
  );
  assert.is(fine.code, EXIT.ok, fine.stderr);
  assert.is((await srv.client.statObject(dst, 'zz-fine')).metaData.ok, 'fine');
});

test.run();
