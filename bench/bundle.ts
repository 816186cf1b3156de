/*
 * Issue: bundle format. Export of a 1 GiB incompressible file against
 * `age -r R < file | tee >(sha256sum) > out`, and keyless verification against `sha256sum` over the
 * same volumes. Targets: export >= 1.5x the peer's speed, verify >= 1.0x, peak RSS <= 200 MB.
 *
 * The export is timed twice: as it runs by default, which then reads the whole bundle back from the
 * medium past the page cache (a second pass over the disk that the peer does not make), and with
 * --no-read-back, which does what the peer does and more (tar, two hashes, signing, fsync).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeSync, closeSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, compare, line, scratch, settle, timed } from './lib.js';

export function benchBundle(sizeMb: number, rounds: number): string[] {
  const dir = scratch();
  const src = path.join(dir, 'src');
  mkdirSync(src);
  const file = path.join(src, 'big.bin');
  const fd = openSync(file, 'w');
  for (let i = 0; i < sizeMb; i++) writeSync(fd, randomBytes(1024 * 1024));
  closeSync(fd);
  const bytes = sizeMb * 1024 * 1024;

  const keys = path.join(dir, 'keys');
  mkdirSync(keys);
  const cli = path.join(ROOT, 'dist/agent/cli/main.js');
  const verifyCli = path.join(ROOT, 'dist/verifier/cli.js');
  timed(process.execPath, [cli, 'keygen', '--signing-key', path.join(keys, 'sk'), '--site', 'bench']);
  timed('age-keygen', ['-o', path.join(keys, 'id.txt')]);
  const recipient = /public key: (age1\w+)/.exec(readFileSync(path.join(keys, 'id.txt'), 'utf8'))?.[1] as string;
  const medium = path.join(dir, 'medium');
  const state = path.join(dir, 'state');
  const peerOut = path.join(dir, 'peer.age');
  const reset = () => {
    rmSync(medium, { recursive: true, force: true });
    rmSync(state, { recursive: true, force: true });
    rmSync(peerOut, { force: true });
    mkdirSync(medium);
    settle();
  };
  const exportArgs = [
    cli,
    'export',
    '--to',
    medium,
    '--site',
    'bench',
    '--signing-key',
    path.join(keys, 'sk'),
    '--recipient',
    recipient,
    '--files',
    src,
    '--state-dir',
    state,
    '--compress',
    'none',
  ];
  const peer = () => timed('bash', ['-c', 'set -o pipefail; age -r "$1" < "$2" | tee >(sha256sum > "$3.sum") > "$3"', 'x', recipient, file, peerOut]);
  const written = compare(rounds, reset, () => timed(process.execPath, [...exportArgs, '--no-read-back']), peer);
  const exp = compare(rounds, reset, () => timed(process.execPath, exportArgs), peer);
  const out = [
    line(`export ${sizeMb} MiB, --no-read-back`, written, 'age | tee sha256sum', bytes, '>= 1.5x', 'higher', 200),
    line(`export ${sizeMb} MiB, read back from the medium (default)`, exp, 'age | tee sha256sum', bytes, '>= 1.5x', 'higher', 200),
  ];

  // keyless verify of the last bundle written, against sha256sum over the same volumes
  reset();
  timed(process.execPath, exportArgs);
  const bundle = path.join(medium, 'bench', 'bench-00000001');
  const signers = path.join(keys, 'allowed_signers');
  const pub = readFileSync(path.join(keys, 'sk.pub'), 'utf8').trim();
  writeFileSync(signers, `bench ${pub}\n`);
  const volumes = readdirSync(bundle)
    .filter((n) => n.startsWith('payload.'))
    .map((n) => path.join(bundle, n));
  const ver = compare(
    rounds,
    () => {},
    () => timed(process.execPath, [verifyCli, '--allowed-signers', signers, bundle]),
    () => timed('sha256sum', volumes),
  );
  out.push(line(`keyless verify ${sizeMb} MiB`, ver, 'sha256sum', bytes, '>= 1.0x', 'higher', 200));
  const deep = compare(
    1,
    () => {},
    () => timed(process.execPath, [verifyCli, '--allowed-signers', signers, '--identity', path.join(keys, 'id.txt'), bundle]),
    () => timed('bash', ['-c', 'set -o pipefail; cat "$1"/payload.* | age -d -i "$2" | sha256sum', 'x', bundle, path.join(keys, 'id.txt')]),
  );
  out.push(line(`deep verify ${sizeMb} MiB`, deep, 'age -d | sha256sum', bytes, 'none (information)', 'higher', 200));
  return out;
}
