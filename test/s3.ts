/*
 * The S3 server for tests: one real radosgw (scripts/rgw.sh) per test process, started on first use
 * and stopped when the process exits, so every test file in a run shares the ~15 s start. Tests get
 * a configured `minio` client (an independent S3 implementation to set up and check buckets with)
 * and the endpoint for the CLI; each test makes its own uniquely named buckets.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
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
  const child = spawn('bash', [path.join(ROOT, 'scripts/rgw.sh'), 'start', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const code = await new Promise<number>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGTERM'), 180_000);
    child.on('close', (c) => {
      clearTimeout(timer);
      resolve(c ?? 1);
    });
  });
  const m = /RGW_READY port=(\d+)/.exec(out);
  if (code !== 0 || !m) throw new Error(`scripts/rgw.sh start failed (exit ${code}): ${err.trim()}`);
  const port = Number(m[1]);
  const client = new Minio.Client({ endPoint: '127.0.0.1', port, useSSL: false, accessKey: ACCESS_KEY, secretKey: SECRET_KEY, region: 'us-east-1', pathStyle: true });
  return { endpoint: `http://127.0.0.1:${port}`, port, dir, client };
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
