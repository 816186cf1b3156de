/*
 * The S3 servers sites run, against the real radosgw (through a fault proxy where the network must
 * misbehave): a region in the signature, virtual-hosted addressing, session credentials (STS
 * AssumeRole), https with a private CA made with openssl, retries by the S3 conventions with capped
 * exponential backoff and jitter, a broken download resumed with a Range request, and checked uploads
 * on restore (a byte flipped on the way, or an ETag that does not match, fails the restore with exit
 * 5 and the journal does not record that version).
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import * as Minio from 'minio';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { S3Client, backoff } from '../../agent/s3/client.js';
import { airlock, airlockAsync, exportArgs, makeKeys, tmp, type Ran, restoreObjectsArgs } from '../helpers.js';
import { EXIT } from '../../manifests/errors.js';
import { ACCESS_KEY, SECRET_KEY, bucketName, faultProxy, makeCa, s3, sessionCredentials, versionedBucket, type S3Server } from '../s3.js';

const keys = makeKeys('site-srv');
const ENV = { ...process.env, AWS_ACCESS_KEY_ID: ACCESS_KEY, AWS_SECRET_ACCESS_KEY: SECRET_KEY };
const MiB = 1024 * 1024;
/** `body` as a stream of 1 MiB chunks (minio-js cuts a stream of one big chunk into a single part). */
const inMiB = (body: Buffer) => Readable.from(Array.from({ length: Math.ceil(body.length / MiB) }, (_, i) => body.subarray(i * MiB, (i + 1) * MiB)));

function exportBucket(medium: string, endpoint: string, bucket: string, extra: string[] = []): string[] {
  return exportArgs(keys, medium, tmp(), ['--s3-endpoint', endpoint, '--bucket', bucket, '--json', ...extra]);
}

function restoreArgs(medium: string, endpoint: string, map: string, idMap: string, extra: string[] = []): string[] {
  return restoreObjectsArgs(keys, medium, endpoint, map, idMap, extra);
}

function ok(r: Ran, what: string): void {
  assert.is(r.code, EXIT.ok, `${what}: ${r.stderr}${r.stdout}`);
}

async function bytesOf(srv: S3Server, bucket: string, key: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of await srv.client.getObject(bucket, key)) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

/** A versioned bucket with a few small objects; returns its name. */
async function small(srv: S3Server, label: string): Promise<string> {
  const bucket = await versionedBucket(srv.client, label);
  for (const k of ['a', 'b/ü', 'c']) await srv.client.putObject(bucket, k, Buffer.from(`body of ${k}`));
  return bucket;
}

test('region, virtual-hosted addressing and session credentials (environment and credentials file) go out signed', async () => {
  const srv = await s3();
  const bucket = await small(srv, 'region');
  const proxy = await faultProxy(srv.port);
  try {
    const session = sessionCredentials(srv);
    const env = { ...process.env, AWS_ACCESS_KEY_ID: session.accessKey, AWS_SECRET_ACCESS_KEY: session.secretKey, AWS_SESSION_TOKEN: session.sessionToken };
    const medium = tmp();
    // the bucket goes into the host name; radosgw knows its domain as "localhost"
    ok(
      await airlockAsync(exportBucket(medium, `http://localhost:${proxy.port}`, bucket, ['--s3-region', 'eu-west-3', '--s3-addressing', 'virtual']), { env }),
      'export',
    );
    const objectRequests = proxy.seen.filter((r) => r.headers.host === `${bucket}.localhost:${proxy.port}`);
    assert.ok(objectRequests.length >= 4, 'listing and GETs name the bucket in the host');
    assert.ok(
      objectRequests.some((r) => r.method === 'GET' && r.url.startsWith('/b/%C3%BC?')),
      'the key alone is the path',
    );
    for (const r of proxy.seen) {
      assert.match(r.headers.authorization ?? '', /Credential=[^/]+\/\d{8}\/eu-west-3\/s3\/aws4_request, SignedHeaders=[^ ]*x-amz-security-token/);
      assert.is(r.headers['x-amz-security-token'], session.sessionToken);
    }

    // restore with session credentials from a file, as the AWS CLI writes them, path style
    const again = sessionCredentials(srv);
    const creds = path.join(tmp(), 'credentials');
    writeFileSync(
      creds,
      `[default]\naws_access_key_id = ${again.accessKey}\naws_secret_access_key = ${again.secretKey}\naws_session_token = ${again.sessionToken}\n`,
    );
    chmodSync(creds, 0o600);
    const dest = bucketName('regionback');
    proxy.seen.length = 0;
    ok(
      await airlockAsync(restoreArgs(medium, proxy.endpoint, `${bucket}=${dest}`, path.join(tmp(), 'ids.jsonl'), ['--s3-credentials', creds]), {
        env: { PATH: process.env.PATH },
      }),
      'restore with a credentials file',
    );
    assert.ok(proxy.seen.length > 0 && proxy.seen.every((r) => r.headers['x-amz-security-token'] === again.sessionToken));
    assert.is((await bytesOf(srv, dest, 'b/ü')).toString(), 'body of b/ü');

    // a token the server does not know is refused
    const bad = await airlockAsync(exportBucket(tmp(), srv.endpoint, bucket), { env: { ...env, AWS_SESSION_TOKEN: 'bm90IGEgdG9rZW4=' } });
    assert.is(bad.code, EXIT.source, bad.stderr);
  } finally {
    proxy.close();
  }
});

test('https with a private CA: trusted with --s3-ca-file (or the config file), refused without it or with another CA, naming the certificate problem', async () => {
  const srv = await s3();
  const bucket = await small(srv, 'tls');
  const medium = tmp();
  ok(await airlockAsync(exportBucket(medium, srv.tlsEndpoint, bucket, ['--s3-ca-file', srv.caFile]), { env: ENV }), 'export over https');

  const none = await airlockAsync(exportBucket(tmp(), srv.tlsEndpoint, bucket), { env: ENV });
  assert.is(none.code, EXIT.source, none.stderr);
  // the export ran with --json: its error is one JSON object
  const refused = JSON.parse(none.stderr) as { code: string; message: string; hint: string };
  assert.is(refused.code, 's3-unreachable');
  assert.is(refused.message, `${srv.tlsEndpoint} is not trusted: its certificate is signed by no CA trusted here (UNABLE_TO_VERIFY_LEAF_SIGNATURE)`);
  assert.match(refused.hint, 'give --s3-ca-file');
  const other = makeCa(tmp(), 'other').ca;
  const wrong = await airlockAsync(exportBucket(tmp(), srv.tlsEndpoint, bucket, ['--s3-ca-file', other]), { env: ENV });
  assert.is(wrong.code, EXIT.source, wrong.stderr);
  assert.match(wrong.stderr, 'is not trusted: its certificate is signed by no CA trusted here');
  const notPem = path.join(tmp(), 'not.pem');
  writeFileSync(notPem, 'hello');
  const garbage = await airlockAsync(exportBucket(tmp(), srv.tlsEndpoint, bucket, ['--s3-ca-file', notPem]), { env: ENV });
  assert.is(garbage.code, EXIT.input, garbage.stderr);
  assert.match(garbage.stderr, 'holds no PEM certificate');

  const conf = path.join(tmp(), 'restore.conf');
  writeFileSync(conf, `s3-ca-file = ${srv.caFile}\ns3-region = us-east-1\n`);
  const dest = bucketName('tlsback');
  ok(
    await airlockAsync(restoreArgs(medium, srv.tlsEndpoint, `${bucket}=${dest}`, path.join(tmp(), 'ids.jsonl'), ['--config', conf]), { env: ENV }),
    'restore over https, the CA from the config file',
  );
  assert.is((await bytesOf(srv, dest, 'a')).toString(), 'body of a');
});

test('retries: 429, 500, 502, 503, 504 and a reset connection are retried with capped exponential backoff and jitter; a write is sent once', async () => {
  const srv = await s3();
  const bucket = await small(srv, 'retry');
  // the schedule: a random share of min(cap, base x 2^(attempt - 1))
  assert.equal(
    [1, 2, 3, 4, 5].map((a) => backoff({ baseMs: 100, capMs: 500, random: () => 0.5 }, a)),
    [50, 100, 200, 250, 250],
  );
  assert.equal(
    [1, 2, 3].map((a) => backoff({ baseMs: 100, capMs: 5000, random: () => 0.999 }, a)),
    [99, 199, 399],
  );

  const faults = [{ status: 503 }, { status: 429 }, { status: 500 }, { status: 502 }, { status: 504 }, { reset: true as const }];
  let listed = 0;
  const proxy = await faultProxy(srv.port, (r) => (r.method === 'GET' && r.url.includes('versions') ? faults[listed++] : undefined));
  try {
    const slept: number[] = [];
    const client = new S3Client({
      endpoint: proxy.endpoint,
      credentials: { accessKey: ACCESS_KEY, secretKey: SECRET_KEY },
      retry: { attempts: 7, baseMs: 100, capMs: 400, random: () => 0.5, sleep: async (ms) => void slept.push(ms) },
    });
    const doc = await client.xml({ method: 'GET', bucket, query: [['versions', '']] });
    assert.is(doc.name, 'ListVersionsResult');
    assert.equal(slept, [50, 100, 200, 200, 200, 200], 'one wait per fault, capped');
    assert.is(listed, 7, 'six faults, then the answer');

    // a write is sent once: a 503 for a DELETE (a delete marker) is not repeated
    let deletes = 0;
    const once = await faultProxy(srv.port, (r) => (r.method === 'DELETE' ? (deletes++, { status: 503 }) : undefined));
    const writer = new S3Client({ endpoint: once.endpoint, credentials: { accessKey: ACCESS_KEY, secretKey: SECRET_KEY }, retry: { sleep: async () => {} } });
    const e = await writer.call({ method: 'DELETE', bucket, key: 'a', retry: false }).then(
      () => undefined,
      (x: unknown) => x as Error,
    );
    assert.match(String(e?.message), 'answered 503');
    assert.is(deletes, 1);
    // and a request that keeps failing gives up after the attempts
    const always = await faultProxy(srv.port, () => ({ status: 503 }));
    const stubborn = new S3Client({
      endpoint: always.endpoint,
      credentials: { accessKey: ACCESS_KEY, secretKey: SECRET_KEY },
      retry: { attempts: 3, sleep: async () => {} },
    });
    const gaveUp = await stubborn.call({ method: 'GET', bucket, query: [['versioning', '']] }).then(
      () => undefined,
      (x: unknown) => x as Error,
    );
    assert.match(String(gaveUp?.message), 'answered 503');
    assert.is(always.seen.length, 3);
    for (const c of [client, writer, stubborn]) c.close();
    once.close();
    always.close();
  } finally {
    proxy.close();
  }
  // the CLI (5 attempts) through four faults of the listing: the export succeeds
  const cliFaults = [{ status: 503 }, { reset: true as const }, { status: 429 }, { status: 502 }];
  let cliListed = 0;
  const cli = await faultProxy(srv.port, (r) => (r.method === 'GET' && r.url.includes('versions') ? cliFaults[cliListed++] : undefined));
  try {
    ok(await airlockAsync(exportBucket(tmp(), cli.endpoint, bucket), { env: ENV }), 'export through the faults');
    assert.is(cliListed, 5);
  } finally {
    cli.close();
  }
});

test('a download broken mid-body resumes with a Range request for the rest, and the bundle holds the exact bytes', async () => {
  const srv = await s3();
  const bucket = await versionedBucket(srv.client, 'resume');
  const body = randomBytes(3 * 1024 * 1024 + 17);
  await srv.client.putObject(bucket, 'big', body, body.length);
  let cut = 0;
  const proxy = await faultProxy(srv.port, (r) =>
    r.method === 'GET' && r.url.startsWith(`/${bucket}/big?`) && cut++ < 2 ? { cutAfter: 1024 * 1024 + cut } : undefined,
  );
  try {
    const medium = tmp();
    ok(await airlockAsync(exportBucket(medium, proxy.endpoint, bucket), { env: ENV }), 'export through two broken downloads');
    const gets = proxy.seen.filter((r) => r.method === 'GET' && r.url.startsWith(`/${bucket}/big?`));
    assert.is(gets.length, 3);
    // each resumes at the bytes that arrived (at most what the proxy let through before it cut)
    const from = gets.map((g) => Number(/^bytes=(\d+)-$/.exec(g.headers.range ?? '')?.[1] ?? 0));
    assert.is(gets[0]?.headers.range, undefined);
    assert.ok((from[1] as number) > 0 && (from[1] as number) <= 1024 * 1024 + 1, String(from[1]));
    assert.ok((from[2] as number) > (from[1] as number), String(from[2]));
    assert.ok(gets[1]?.headers['if-match'] && gets[2]?.headers['if-match'], 'only the same bytes');
    const folder = path.join(tmp(), 'f');
    ok(
      airlock(['restore', 'objects', '--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', folder]),
      'folder restore',
    );
    assert.ok(readFileSync(path.join(folder, bucket, 'big')).equals(body));
  } finally {
    proxy.close();
  }
});

test('checked uploads: a PUT or a part changed on the way, or an ETag that does not match, fails the restore with exit 5, and the journal does not record that version', async () => {
  const srv = await s3();
  const bucket = await small(srv, 'checked');
  const medium = tmp();
  ok(await airlockAsync(exportBucket(medium, srv.endpoint, bucket), { env: ENV }), 'export');
  const journal = (idMap: string) => (existsSync(`${idMap}.partial`) ? readFileSync(`${idMap}.partial`, 'utf8') : '');

  for (const [fault, message] of [
    [{ flip: true as const }, 'BadDigest'],
    [{ etag: '"00000000000000000000000000000000"' }, 'the body changed on the way'],
  ] as const) {
    const dest = bucketName('checkedback');
    const proxy = await faultProxy(srv.port, (r) => (r.method === 'PUT' && r.url.startsWith(`/${dest}/b/`) ? fault : undefined));
    try {
      const idMap = path.join(tmp(), 'ids.jsonl');
      const r = await airlockAsync(restoreArgs(medium, proxy.endpoint, `${bucket}=${dest}`, idMap), { env: ENV });
      assert.is(r.code, EXIT.source, r.stderr);
      assert.match(r.stderr, message);
      assert.ok(
        proxy.seen.some((x) => x.method === 'PUT' && x.url.startsWith(`/${dest}/b/`) && /^[A-Za-z0-9+/]{22}==$/.test(x.headers['content-md5'] ?? '')),
        'the PUT carried its Content-MD5',
      );
      assert.not.match(journal(idMap), '"key":"b/ü"');
      assert.match(journal(idMap), '"key":"a"');
    } finally {
      proxy.close();
    }
  }

  // a part of a multipart upload: uploaded in parts of 6 MiB, restored in the same parts
  const big = await versionedBucket(srv.client, 'checkedparts');
  const body = randomBytes(11 * 1024 * 1024);
  const sixes = new Minio.Client({
    endPoint: '127.0.0.1',
    port: srv.port,
    useSSL: false,
    accessKey: ACCESS_KEY,
    secretKey: SECRET_KEY,
    region: 'us-east-1',
    pathStyle: true,
    partSize: 6 * 1024 * 1024,
  });
  await sixes.putObject(big, 'eleven', inMiB(body), body.length);
  const bigMedium = tmp();
  ok(await airlockAsync(exportBucket(bigMedium, srv.endpoint, big), { env: ENV }), 'export');
  const dest = bucketName('checkedpartsback');
  const proxy = await faultProxy(srv.port, (r) => (r.method === 'PUT' && r.url.includes('partNumber=1') ? { flip: true } : undefined));
  try {
    const idMap = path.join(tmp(), 'ids.jsonl');
    const r = await airlockAsync(restoreArgs(bigMedium, proxy.endpoint, `${big}=${dest}`, idMap), { env: ENV });
    assert.is(r.code, EXIT.source, r.stderr);
    assert.match(r.stderr, 'BadDigest');
    assert.ok(
      proxy.seen.some((x) => x.url.includes('partNumber=1') && x.headers['content-md5']),
      'the part carried its Content-MD5',
    );
    assert.not.match(journal(idMap), '"key":"eleven"');
  } finally {
    proxy.close();
  }
});

test.run();
