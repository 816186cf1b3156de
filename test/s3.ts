/*
 * The S3 server for tests: one real radosgw (scripts/rgw.sh) per test process, started on first use
 * and stopped when the process exits, so every test file in a run shares the ~15 s start. Tests get
 * a configured `minio` client (an independent S3 implementation to set up and check buckets with)
 * and the endpoint for the CLI; each test makes its own uniquely named buckets.
 *
 * The server also speaks https on a second port, with a certificate for 127.0.0.1 signed by a CA
 * made here with openssl (`caFile`), and gives session credentials for its role `airlock-test`
 * (`sessionCredentials`, STS AssumeRole signed by curl).
 */
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as Minio from 'minio';
import { ROOT } from './helpers.js';

export const ACCESS_KEY = 'minioadmin';
export const SECRET_KEY = 'minioadmin';

export interface S3Server {
  endpoint: string;
  port: number;
  dir: string;
  client: Minio.Client;
  /** https://127.0.0.1:PORT, whose certificate `caFile` (PEM) signed */
  tlsEndpoint: string;
  caFile: string;
}

/** A CA and a certificate for 127.0.0.1 and localhost it signed, made with openssl in `dir`. */
export function makeCa(dir: string, name: string): { ca: string; cert: string; key: string } {
  const ca = path.join(dir, `${name}-ca.pem`);
  const caKey = path.join(dir, `${name}-ca.key`);
  const cert = path.join(dir, `${name}-server.pem`);
  const key = path.join(dir, `${name}-server.key`);
  const csr = path.join(dir, `${name}-server.csr`);
  const ext = path.join(dir, `${name}-ext.cnf`);
  writeFileSync(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  const ssl = (args: string[]) => {
    const r = spawnSync('openssl', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
  };
  ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', ca, '-days', '2', '-subj', `/CN=${name} test CA`]);
  ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=127.0.0.1']);
  ssl(['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext]);
  return { ca, cert, key };
}

let server: Promise<S3Server> | undefined;
let startedDir: string | undefined;

function stopAtExit(dir: string): void {
  process.on('exit', () => {
    spawnSync('bash', [path.join(ROOT, 'scripts/rgw.sh'), 'stop', dir], { stdio: 'ignore', timeout: 30_000 });
    if (!process.env.AIRLOCK_KEEP_TEST_FILES) rmSync(dir, { recursive: true, force: true });
  });
}

async function start(): Promise<S3Server> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-rgw-'));
  startedDir = dir;
  stopAtExit(dir);
  // not in `dir`, which rgw.sh wipes before it starts
  const tlsDir = mkdtempSync(path.join(os.tmpdir(), 'airlock-rgw-tls-'));
  process.on('exit', () => rmSync(tlsDir, { recursive: true, force: true }));
  const tls = makeCa(tlsDir, 'airlock');
  const child = spawn('bash', [path.join(ROOT, 'scripts/rgw.sh'), 'start', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RGW_SSL_CERT: tls.cert, RGW_SSL_KEY: tls.key },
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGTERM'), 180_000);
    child.on('close', (c) => {
      clearTimeout(timer);
      resolve(c ?? 1);
    });
  });
  const m = /RGW_READY port=(\d+) .* ssl_port=(\d+)/.exec(out);
  if (code !== 0 || !m) throw new Error(`scripts/rgw.sh start failed (exit ${code}): ${err.trim()}`);
  const port = Number(m[1]);
  const client = new Minio.Client({
    endPoint: '127.0.0.1',
    port,
    useSSL: false,
    accessKey: ACCESS_KEY,
    secretKey: SECRET_KEY,
    region: 'us-east-1',
    pathStyle: true,
  });
  return { endpoint: `http://127.0.0.1:${port}`, port, dir, client, tlsEndpoint: `https://127.0.0.1:${m[2]}`, caFile: tls.ca };
}

/** The shared radosgw of this test process, started on the first call. */
export function s3(): Promise<S3Server> {
  server ??= start();
  return server;
}

/** A bucket name no other test uses. */
export function bucketName(label: string): string {
  return `${label}-${randomBytes(4).toString('hex')}`;
}

/** A new bucket with versioning on, named from `label` as bucketName does. */
export async function versionedBucket(client: Minio.Client, label: string): Promise<string> {
  const bucket = bucketName(label);
  await client.makeBucket(bucket);
  await client.setBucketVersioning(bucket, { Status: 'Enabled' });
  return bucket;
}

/** The folder of the running server, if one was started (for logs when a test fails). */
export function s3Dir(): string | undefined {
  return startedDir;
}

/** Session credentials for the server's role `airlock-test` (STS AssumeRole, signed by curl). */
export function sessionCredentials(srv: S3Server): { accessKey: string; secretKey: string; sessionToken: string } {
  const r = spawnSync(
    'curl',
    [
      '-sS',
      '-f',
      '--aws-sigv4',
      'aws:amz:us-east-1:sts',
      '--user',
      `${ACCESS_KEY}:${SECRET_KEY}`,
      '-X',
      'POST',
      '-H',
      'content-type: application/x-www-form-urlencoded',
      '--data',
      `Action=AssumeRole&RoleArn=arn:aws:iam:::role/airlock-test&RoleSessionName=t${randomBytes(4).toString('hex')}&Version=2011-06-15`,
      `${srv.endpoint}/`,
    ],
    { encoding: 'utf8' },
  );
  const field = (name: string) => new RegExp(`<${name}>([^<]+)</${name}>`).exec(r.stdout)?.[1];
  const accessKey = field('AccessKeyId');
  const secretKey = field('SecretAccessKey');
  const sessionToken = field('SessionToken');
  if (r.status !== 0 || !accessKey || !secretKey || !sessionToken) throw new Error(`AssumeRole failed: ${r.stderr}${r.stdout}`);
  return { accessKey, secretKey, sessionToken };
}

/** What a fault proxy does to one request instead of passing it on unchanged. */
export type Fault =
  /** answers this status itself (an S3 error document), without passing the request on */
  | { status: number }
  /** drops the connection before answering */
  | { reset: true }
  /** passes the request on with one byte of its body flipped */
  | { flip: true }
  /** passes the response on, but only its first `cutAfter` body bytes, then drops the connection */
  | { cutAfter: number }
  /** passes the response on with this ETag instead of the server's */
  | { etag: string };

export interface FaultProxy {
  endpoint: string;
  port: number;
  /** every request seen: method, url and headers (lower-case names) */
  seen: { method: string; url: string; headers: Record<string, string> }[];
  close: () => void;
}

/**
 * An http proxy in front of `port` on 127.0.0.1 that passes each request on (headers byte for byte,
 * so signatures still hold) unless `fault` returns a fault for it; `fault` sees the request and how
 * many requests came before it.
 */
export async function faultProxy(
  port: number,
  fault: (req: { method: string; url: string; headers: Record<string, string> }, n: number) => Fault | undefined = () => undefined,
): Promise<FaultProxy> {
  const seen: FaultProxy['seen'] = [];
  const server = http.createServer((req, res) => {
    const headers: Record<string, string> = {};
    for (let i = 0; i < req.rawHeaders.length; i += 2) headers[(req.rawHeaders[i] as string).toLowerCase()] = req.rawHeaders[i + 1] as string;
    const info = { method: req.method ?? '', url: req.url ?? '', headers };
    const f = fault(info, seen.length);
    seen.push(info);
    if (f && 'status' in f) {
      req.resume();
      req.on('end', () => {
        res.writeHead(f.status, { 'content-type': 'application/xml', connection: 'close' });
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${f.status === 429 ? 'SlowDown' : 'ServiceUnavailable'}</Code><Message>injected</Message></Error>`,
        );
      });
      return;
    }
    if (f && 'reset' in f) {
      req.socket.destroy();
      return;
    }
    const up = http.request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers, setHost: false }, (ur) => {
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(ur.headers)) if (v !== undefined) out[k] = v;
      if (f && 'etag' in f) out.etag = f.etag;
      res.writeHead(ur.statusCode ?? 502, out);
      if (f && 'cutAfter' in f) {
        let n = 0;
        ur.on('data', (d: Buffer) => {
          const keep = Math.min(d.length, f.cutAfter - n);
          if (keep > 0) res.write(d.subarray(0, keep));
          n += d.length;
          if (n >= f.cutAfter) {
            ur.destroy();
            res.socket?.destroy();
          }
        });
        return;
      }
      ur.pipe(res);
    });
    up.on('error', () => res.socket?.destroy());
    let flipped = false;
    req.on('data', (d: Buffer) => {
      if (f && 'flip' in f && !flipped && d.length > 0) {
        d = Buffer.from(d);
        d[0] = (d[0] as number) ^ 0xff;
        flipped = true;
      }
      up.write(d);
    });
    req.on('end', () => up.end());
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    port: address.port,
    seen,
    close: () => {
      server.close();
      server.closeAllConnections();
    },
  };
}
