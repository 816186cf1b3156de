/*
 * Issue: object storage. Export of versioned buckets from a local radosgw, against `rclone copy
 * --s3-versions` of the same bucket into a plain folder with the same concurrency (32 transfers; the
 * export fetches 32 objects ahead), which neither encrypts, hashes into a manifest nor signs. Two
 * buckets, two figures: 20,000 objects of 4 KiB (objects per second) and 20 objects of 64 MiB (bytes
 * per second), the large one also with --no-read-back (the default export reads the bundle back from
 * the medium afterwards; rclone makes no second pass). Target: >= 1.0x rclone on both, peak RSS <= 300 MB.
 * BENCH_OBJECTS (default 20000) sets the number of small objects; BENCH_SIZE_MB (default 1024) the
 * large ones' total (20 x 64 MiB at 1024).
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import * as Minio from 'minio';
import { ROOT, compare, line, scratch, settle, timed, type Timed } from './lib.js';

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

/** Puts `count` objects made by `body(i)` under `key(i)`, 16 at a time; returns the bytes put. */
async function fill(c: Minio.Client, bucket: string, count: number, key: (i: number) => string, body: (i: number) => Buffer): Promise<number> {
  await c.makeBucket(bucket);
  await c.setBucketVersioning(bucket, { Status: 'Enabled' });
  let next = 0;
  let bytes = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let i = next++; i < count; i = next++) {
        const b = body(i);
        bytes += b.byteLength;
        await c.putObject(bucket, key(i), b, b.byteLength);
      }
    }),
  );
  return bytes;
}

export async function benchObjects(sizeMb: number, rounds: number): Promise<string[]> {
  const dir = scratch();
  const rgw = await startRgw(path.join(dir, 'rgw'));
  try {
    const c = new Minio.Client({ endPoint: '127.0.0.1', port: rgw.port, useSSL: false, accessKey: 'minioadmin', secretKey: 'minioadmin', region: 'us-east-1', pathStyle: true });
    const small = Number(process.env.BENCH_OBJECTS ?? 20000);
    const large = Math.max(1, Math.round((sizeMb * 20) / 1024));
    const smallBytes = await fill(c, 'bench-small', small, (i) => `small/${i % 100}/${i} ü+%.txt`, () => randomBytes(4096));
    const largeBytes = await fill(c, 'bench-large', large, (i) => `large/${i}.bin`, () => randomBytes(64 * 1024 * 1024));

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
      settle();
    };
    const env: NodeJS.ProcessEnv = { ...process.env, AWS_ACCESS_KEY_ID: 'minioadmin', AWS_SECRET_ACCESS_KEY: 'minioadmin' };
    // rclone takes its remote from the environment, so no key appears in argv
    const { AWS_CA_BUNDLE: _unused, ...plain } = env; // rclone refuses a CA bundle with its own transport; the endpoint is plain http
    void _unused;
    const rcloneEnv = { ...plain, RCLONE_CONFIG_SRC_TYPE: 's3', RCLONE_CONFIG_SRC_PROVIDER: 'Ceph', RCLONE_CONFIG_SRC_ENDPOINT: rgw.endpoint, RCLONE_CONFIG_SRC_ACCESS_KEY_ID: 'minioadmin', RCLONE_CONFIG_SRC_SECRET_ACCESS_KEY: 'minioadmin', RCLONE_CONFIG_SRC_FORCE_PATH_STYLE: 'true' };
    const side = (bucket: string, ...extra: string[]) =>
      compare(
        rounds,
        reset,
        () => timed(process.execPath, [cli, 'export', '--to', medium, '--site', 'bench', '--signing-key', path.join(keys, 'sk'), '--recipient', recipient, '--state-dir', state, '--compress', 'none', '--s3-endpoint', rgw.endpoint, '--bucket', bucket, ...extra], { env }),
        () => timed('rclone', ['copy', '--s3-versions', '--transfers', '32', '--checkers', '32', '--config', '/dev/null', `src:${bucket}`, peerOut], { env: rcloneEnv }),
      );
    const s = side('bench-small');
    const perSecond = (t: Timed) => (small / t.seconds).toFixed(0);
    const smallLine = `export bucket of ${small} x 4 KiB objects: ${(s.peer.seconds / s.ours.seconds).toFixed(2)}x the objects per second of rclone copy --s3-versions (target >= 1.0x); airlock ${s.ours.seconds.toFixed(2)} s = ${perSecond(s.ours)} objects/s, rclone ${s.peer.seconds.toFixed(2)} s = ${perSecond(s.peer)} objects/s; peak RSS ${s.ours.maxRssMb.toFixed(0)} MB (limit 300); ${(smallBytes / 1024 / 1024).toFixed(0)} MiB`;
    const l = side('bench-large');
    // the default export reads the whole bundle back from the medium, which rclone does not
    const written = side('bench-large', '--no-read-back');
    return [
      smallLine,
      line(`export bucket of ${large} x 64 MiB objects, read back from the medium (default)`, l, 'rclone copy --s3-versions', largeBytes, '>= 1.0x', 'higher', 300),
      line(`export bucket of ${large} x 64 MiB objects, --no-read-back`, written, 'rclone copy --s3-versions', largeBytes, '>= 1.0x', 'higher', 300),
    ];
  } finally {
    rgw.stop();
  }
}
