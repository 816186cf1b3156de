/*
 * Issue: object storage. Export of a versioned bucket (many small objects with old versions, and a few
 * large ones) from a local radosgw, against `rclone copy --s3-versions` of the same bucket into a
 * plain folder (no hashing into a manifest, no encryption, no signature: the work a peer does to get
 * the bytes off the server at all). Target: at least 0.5x rclone's speed with peak RSS <= 250 MB.
 * BENCH_OBJECTS (default 3000) sets the number of small versions; BENCH_SIZE_MB scales the large ones.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import * as Minio from 'minio';
import { ROOT, compare, line, scratch, timed } from './lib.js';

async function startRgw(dir: string): Promise<{ endpoint: string; port: number; stop: () => void }> {
  const child = spawn('bash', [path.join(ROOT, 'scripts/rgw.sh'), 'start', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
  const m = /RGW_READY port=(\d+)/.exec(out);
  if (code !== 0 || !m) throw new Error('scripts/rgw.sh start failed');
  const stop = () => void spawnSync('bash', [path.join(ROOT, 'scripts/rgw.sh'), 'stop', dir], { stdio: 'ignore' });
  process.on('exit', stop);
  return { endpoint: `http://127.0.0.1:${m[1]}`, port: Number(m[1]), stop };
}

export async function benchObjects(sizeMb: number, rounds: number): Promise<string[]> {
  const dir = scratch();
  const rgw = await startRgw(path.join(dir, 'rgw'));
  try {
    const c = new Minio.Client({ endPoint: '127.0.0.1', port: rgw.port, useSSL: false, accessKey: 'minioadmin', secretKey: 'minioadmin', region: 'us-east-1', pathStyle: true });
    const bucket = 'bench-objects';
    await c.makeBucket(bucket);
    await c.setBucketVersioning(bucket, { Status: 'Enabled' });
    const small = Number(process.env.BENCH_OBJECTS ?? 3000);
    const large = Math.max(1, Math.floor(sizeMb / 64));
    let bytes = 0;
    const jobs: (() => Promise<unknown>)[] = [];
    for (let i = 0; i < small; i++) {
      const body = randomBytes(4096 + (i % 16) * 1024);
      bytes += body.byteLength;
      jobs.push(() => c.putObject(bucket, `small/${i % Math.ceil(small / 3)} ü+%.txt`, body, body.byteLength));
    }
    for (let i = 0; i < large; i++) {
      const body = randomBytes(64 * 1024 * 1024);
      bytes += body.byteLength;
      jobs.push(() => c.putObject(bucket, `large/${i}.bin`, body, body.byteLength));
    }
    await Promise.all(Array.from({ length: 16 }, async () => {
      for (let j = jobs.shift(); j; j = jobs.shift()) await j();
    }));

    const keys = path.join(dir, 'keys');
    mkdirSync(keys);
    const cli = path.join(ROOT, 'dist/agent/cli/main.js');
    timed(process.execPath, [cli, 'keygen', '--signing-key', path.join(keys, 'sk'), '--site', 'bench']);
    timed('age-keygen', ['-o', path.join(keys, 'id.txt')]);
    const recipient = /public key: (age1\w+)/.exec(readFileSync(path.join(keys, 'id.txt'), 'utf8'))?.[1] as string;
    const medium = path.join(dir, 'medium');
    const state = path.join(dir, 'state');
    const peerOut = path.join(dir, 'peer');
    const reset = () => {
      for (const d of [medium, state, peerOut]) rmSync(d, { recursive: true, force: true });
      mkdirSync(medium);
    };
    const env: NodeJS.ProcessEnv = { ...process.env, AWS_ACCESS_KEY_ID: 'minioadmin', AWS_SECRET_ACCESS_KEY: 'minioadmin' };
    // rclone takes its remote from the environment, so no key appears in argv
    const { AWS_CA_BUNDLE: _unused, ...plain } = env; // rclone refuses a CA bundle with its own transport; the endpoint is plain http
    void _unused;
    const rcloneEnv = { ...plain, RCLONE_CONFIG_SRC_TYPE: 's3', RCLONE_CONFIG_SRC_PROVIDER: 'Ceph', RCLONE_CONFIG_SRC_ENDPOINT: rgw.endpoint, RCLONE_CONFIG_SRC_ACCESS_KEY_ID: 'minioadmin', RCLONE_CONFIG_SRC_SECRET_ACCESS_KEY: 'minioadmin', RCLONE_CONFIG_SRC_FORCE_PATH_STYLE: 'true' };
    const r = compare(
      rounds,
      reset,
      () => timed(process.execPath, [cli, 'export', '--to', medium, '--site', 'bench', '--signing-key', path.join(keys, 'sk'), '--recipient', recipient, '--state-dir', state, '--compress', 'none', '--s3-endpoint', rgw.endpoint, '--bucket', bucket], { env }),
      () => timed('rclone', ['copy', '--s3-versions', '--transfers', '32', '--checkers', '32', '--config', '/dev/null', `src:${bucket}`, peerOut], { env: rcloneEnv }),
    );
    return [line(`export bucket (${small} small versions, ${large} x 64 MiB)`, r, 'rclone copy --s3-versions', bytes, '>= 1.0x', 'higher', 300)];
  } finally {
    rgw.stop();
  }
}
