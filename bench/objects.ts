/*
 * Issue: object storage, and exports at the machine's floor. Export of versioned buckets from a local
 * radosgw, against `rclone copy --s3-versions` of the same bucket with the same concurrency (32
 * transfers; the export fetches 32 objects ahead), then `sync`: into a plain folder (no encryption,
 * no manifest, no signature) and into an rclone crypt remote over that folder (every object
 * encrypted: the same-work peer). Two buckets: 20,000 objects of 4 KiB (objects per second) and 20
 * objects of 64 MiB (bytes per second), the large one also with --no-read-back (the default export
 * reads the bundle back from the medium afterwards; rclone makes no second pass). Targets: small
 * >= 1.0x plain rclone and >= 1.3x rclone crypt, large >= 1.0x rclone crypt; peak RSS <= 300 MB.
 * A last line says where the CPU time of the large bucket goes: each side's and the S3 server's
 * (which shares the cores), and what the hashing and encryption the export must do cost by themselves.
 * BENCH_OBJECTS (default 20000) sets the number of small objects; BENCH_SIZE_MB (default 1024) the
 * large ones' total (20 x 64 MiB at 1024).
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as Minio from 'minio';
import { AIRLOCK, exportArgs, makeKeys } from '../test/helpers.js';
import { ROOT, compare, cpuOf, line, scratch, settle, timed, type Timed } from './lib.js';

async function startRgw(dir: string): Promise<{ endpoint: string; port: number; pids: number[]; stop: () => void }> {
  const child = spawn('bash', [path.join(ROOT, 'scripts/rgw.sh'), 'start', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
  const m = /RGW_READY port=(\d+)/.exec(out);
  if (code !== 0 || !m) throw new Error('scripts/rgw.sh start failed');
  const stop = () => void spawnSync('bash', [path.join(ROOT, 'scripts/rgw.sh'), 'stop', dir], { stdio: 'ignore' });
  process.on('exit', stop);
  // the monitor, the OSD and radosgw, whose CPU time counts as the server's
  const run = path.join(dir, 'run');
  const pids = readdirSync(run)
    .filter((f) => f.endsWith('.pid'))
    .map((f) => Number(readFileSync(path.join(run, f), 'utf8').trim()));
  return { endpoint: `http://127.0.0.1:${m[1]}`, port: Number(m[1]), pids, stop };
}

/**
 * The work an export of `bytes` has to do on them whatever its design, done alone in a fresh node
 * process: MD5 (the ETag check), SHA-256 of the plaintext (the index) and of the ciphertext (the
 * volumes), ChaCha20-Poly1305 in age's 64 KiB chunks. Returns its CPU seconds.
 */
function requiredCpu(bytes: number): number {
  const script = `
    const { createCipheriv, createHash, randomBytes } = require('node:crypto');
    const block = randomBytes(1024 * 1024), key = randomBytes(32), nonce = Buffer.alloc(12);
    const md5 = createHash('md5'), plain = createHash('sha256'), sealed = createHash('sha256');
    let chunk = 0;
    for (let done = 0; done < ${bytes}; done += block.length) {
      md5.update(block);
      plain.update(block);
      for (let at = 0; at < block.length; at += 65536) {
        nonce.writeUInt32BE(chunk++, 4);
        const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
        sealed.update(c.update(block.subarray(at, at + 65536)));
        c.final();
        sealed.update(c.getAuthTag());
      }
    }
    md5.digest(); plain.digest(); sealed.digest();`;
  return timed(process.execPath, ['-e', script]).cpuSeconds;
}

/**
 * CPU seconds a fresh node takes to receive `count` objects named by `key(i)` with airlock's S3
 * client, one after another, the bytes thrown away: what getting the bytes costs any node exporter.
 */
function receiveCpu(endpoint: string, bucket: string, count: number, key: (i: number) => string): number {
  const client = pathToFileURL(path.join(ROOT, 'dist/agent/s3/client.js')).href;
  const script = `
    const { S3Client } = await import(${JSON.stringify(client)});
    const c = new S3Client({ endpoint: ${JSON.stringify(endpoint)}, credentials: { accessKey: 'minioadmin', secretKey: 'minioadmin' } });
    for (const key of ${JSON.stringify(Array.from({ length: count }, (_, i) => key(i)))}) {
      const res = await c.request({ method: 'GET', bucket: ${JSON.stringify(bucket)}, key });
      for await (const _ of res.body);
    }`;
  return timed(process.execPath, ['--input-type=module', '-e', script]).cpuSeconds;
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
    const c = new Minio.Client({
      endPoint: '127.0.0.1',
      port: rgw.port,
      useSSL: false,
      accessKey: 'minioadmin',
      secretKey: 'minioadmin',
      region: 'us-east-1',
      pathStyle: true,
    });
    const small = Number(process.env.BENCH_OBJECTS ?? 20000);
    const large = Math.max(1, Math.round((sizeMb * 20) / 1024));
    const smallBytes = await fill(
      c,
      'bench-small',
      small,
      (i) => `small/${i % 100}/${i} ü+%.txt`,
      () => randomBytes(4096),
    );
    const largeKey = (i: number) => `large/${i}.bin`;
    const largeBytes = await fill(c, 'bench-large', large, largeKey, () => randomBytes(64 * 1024 * 1024));

    const keys = makeKeys('bench');
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
    const rcloneEnv = {
      ...plain,
      RCLONE_CONFIG_SRC_TYPE: 's3',
      RCLONE_CONFIG_SRC_PROVIDER: 'Ceph',
      RCLONE_CONFIG_SRC_ENDPOINT: rgw.endpoint,
      RCLONE_CONFIG_SRC_ACCESS_KEY_ID: 'minioadmin',
      RCLONE_CONFIG_SRC_SECRET_ACCESS_KEY: 'minioadmin',
      RCLONE_CONFIG_SRC_FORCE_PATH_STYLE: 'true',
      RCLONE_CONFIG_CRYPT_TYPE: 'crypt',
      RCLONE_CONFIG_CRYPT_REMOTE: peerOut,
      RCLONE_CONFIG_CRYPT_PASSWORD: spawnSync('rclone', ['obscure', randomBytes(24).toString('hex')], { encoding: 'utf8' }).stdout.trim(),
    };
    // the server shares the machine's cores with either side: its CPU time is measured with theirs
    const withServer = (run: () => Timed) => () => {
      const before = cpuOf(rgw.pids);
      const t = run();
      t.serverCpuSeconds = cpuOf(rgw.pids) - before;
      return t;
    };
    const ours = (bucket: string, extra: readonly string[]) =>
      withServer(() =>
        timed(
          process.execPath,
          [...AIRLOCK, ...exportArgs(keys, medium, state, ['--compress', 'none', '--s3-endpoint', rgw.endpoint, '--bucket', bucket, ...extra])],
          { env },
        ),
      );
    // rclone into a plain folder, or into a crypt remote over that folder (it encrypts every object,
    // as the export does); then `sync`, since the export makes its bundle durable before it ends
    const rclone = (bucket: string, into: string) =>
      withServer(() =>
        timed('bash', ['-c', 'rclone copy --s3-versions --transfers 32 --checkers 32 --config /dev/null "$1" "$2" && sync', 'x', `src:${bucket}`, into], {
          env: rcloneEnv,
        }),
      );
    const side = (bucket: string, ...extra: string[]) => compare(rounds, reset, ours(bucket, extra), rclone(bucket, peerOut));
    const crypt = (bucket: string, ...extra: string[]) => compare(rounds, reset, ours(bucket, extra), rclone(bucket, 'crypt:'));
    const s = side('bench-small');
    const sc = crypt('bench-small');
    const perSecond = (t: Timed) => (small / t.seconds).toFixed(0);
    const smallLine = (r: { ours: Timed; peer: Timed }, peer: string, target: string) =>
      `export bucket of ${small} x 4 KiB objects: ${(r.peer.seconds / r.ours.seconds).toFixed(2)}x the objects per second of ${peer} (target ${target}); airlock ${r.ours.seconds.toFixed(2)} s = ${perSecond(r.ours)} objects/s, rclone ${r.peer.seconds.toFixed(2)} s = ${perSecond(r.peer)} objects/s; peak RSS ${r.ours.maxRssMb.toFixed(0)} MB (limit 300); ${(smallBytes / 1024 / 1024).toFixed(0)} MiB`;
    const l = crypt('bench-large');
    // the default export reads the whole bundle back from the medium, which rclone does not
    const written = crypt('bench-large', '--no-read-back');
    const required = requiredCpu(largeBytes);
    const receive = receiveCpu(rgw.endpoint, 'bench-large', large, largeKey);
    const cores = os.availableParallelism();
    const server = written.ours.serverCpuSeconds ?? 0;
    const cpu = (t: Timed) => `${t.cpuSeconds.toFixed(1)} + S3 server ${(t.serverCpuSeconds ?? 0).toFixed(1)}`;
    const floor = (required + receive + server) / cores;
    const cpuLine =
      `export bucket of ${large} x 64 MiB objects, CPU seconds of the --no-read-back runs above: airlock ${cpu(written.ours)}, rclone ${cpu(written.peer)}; ` +
      `by themselves, MD5, SHA-256 twice and ChaCha20-Poly1305 of these bytes take ${required.toFixed(1)} and receiving them in node ${receive.toFixed(1)}, so on ${cores} cores shared with the server ` +
      `an export that checks, hashes and encrypts them cannot end before (${required.toFixed(1)} + ${receive.toFixed(1)} + ${server.toFixed(1)}) / ${cores} = ${floor.toFixed(2)} s, writing them not counted; rclone took ${written.peer.seconds.toFixed(2)} s`;
    return [
      smallLine(s, 'rclone copy --s3-versions', '>= 1.0x'),
      smallLine(sc, 'rclone copy --s3-versions to crypt', '>= 1.3x'),
      line(
        `export bucket of ${large} x 64 MiB objects, read back from the medium (default)`,
        l,
        'rclone copy --s3-versions to crypt',
        largeBytes,
        '>= 1.0x',
        'higher',
        300,
      ),
      line(`export bucket of ${large} x 64 MiB objects, --no-read-back`, written, 'rclone copy --s3-versions to crypt', largeBytes, '>= 1.0x', 'higher', 300),
      cpuLine,
    ];
  } finally {
    rgw.stop();
  }
}
