/*
 * Issue: bundle format, and exports at the machine's floor. A file export against the same work done
 * by stock tools, and keyless verification against `sha256sum` over the same volumes. Targets:
 *
 *   incompressible, --no-read-back --compress none   >= 2.0x  `age -r R | tee >(sha256sum)`
 *   incompressible, default (zstd, read back)        >= 1.5x  `zstd -3 | age -r R | tee >(sha256sum)`
 *   text-like, default                               >= 1.5x  the same
 *   keyless verify                                   >= 1.0x  `sha256sum` over the volumes
 *   peak RSS <= 200 MB; CPU per GiB <= 1.3x the floor (./lib.ts cpuLine)
 *
 * The default export then reads the whole bundle back from the medium past the page cache, a pass
 * over the disk the peer does not make. The text-like file is rows of numbers, words, dates and hex
 * (about 37% of its size under zstd -3), at most 512 MiB.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { AIRLOCK, exportArgs, makeKeys } from '../test/helpers.js';
import { ROOT, compare, cpuLine, line, scratch, settle, timed } from './lib.js';

/** Writes `mb` MiB of rows like a table dump's into `file`. */
function writeText(file: string, mb: number): void {
  const words = [
    'alpha',
    'bravo',
    'charlie',
    'delta',
    'echo',
    'foxtrot',
    'golf',
    'hotel',
    'india',
    'juliet',
    'kilo',
    'lima',
    'mike',
    'november',
    'oscar',
    'papa',
  ];
  const r = () => Math.floor(Math.random() * 2147483647);
  const fd = openSync(file, 'w');
  let total = 0;
  while (total < mb * 1024 * 1024) {
    const rows: string[] = [];
    for (let i = 0; i < 20000; i++) {
      rows.push(
        `${r() % 1000000},${words[r() % 16]} ${words[r() % 16]},${(r() % 100000) / 100},2026-0${1 + (r() % 9)}-1${r() % 10} 12:${10 + (r() % 50)}:00,${r().toString(16)}\n`,
      );
    }
    const b = Buffer.from(rows.join('')).subarray(0, mb * 1024 * 1024 - total);
    writeSync(fd, b);
    total += b.byteLength;
  }
  closeSync(fd);
}

export function benchBundle(sizeMb: number, rounds: number): string[] {
  const dir = scratch();
  const src = path.join(dir, 'src');
  mkdirSync(src);
  const file = path.join(src, 'big.bin');
  const fd = openSync(file, 'w');
  for (let i = 0; i < sizeMb; i++) writeSync(fd, randomBytes(1024 * 1024));
  closeSync(fd);
  const bytes = sizeMb * 1024 * 1024;
  const textMb = Math.min(sizeMb, 512);
  const textSrc = path.join(dir, 'text');
  mkdirSync(textSrc);
  const textFile = path.join(textSrc, 'rows.csv');
  writeText(textFile, textMb);

  const keys = makeKeys('bench');
  const verifyCli = path.join(ROOT, 'dist/verifier/cli.js');
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
  const exportOf = (from: string, ...rest: string[]) => [...AIRLOCK, ...exportArgs(keys, medium, state, ['--files', from, ...rest])];
  const plainArgs = exportOf(src, '--compress', 'none');
  const ageTee = (input: string) => () =>
    timed('bash', ['-c', 'set -o pipefail; age -r "$1" < "$2" | tee >(sha256sum > "$3.sum") > "$3"', 'x', keys.recipient, input, peerOut]);
  const zstdAgeTee = (input: string) => () =>
    timed('bash', ['-c', 'set -o pipefail; zstd -q -c -3 < "$2" | age -r "$1" | tee >(sha256sum > "$3.sum") > "$3"', 'x', keys.recipient, input, peerOut]);
  // the payload's size over the input's, of the bundle the last export wrote
  const share = (inputBytes: number) => {
    const m = JSON.parse(readFileSync(path.join(medium, 'bench', 'bench-00000001', 'manifest.json'), 'utf8')) as { payload: { size: number } };
    return m.payload.size / inputBytes;
  };

  const written = compare(rounds, reset, () => timed(process.execPath, [...plainArgs, '--no-read-back']), ageTee(file));
  const exp = compare(rounds, reset, () => timed(process.execPath, exportOf(src)), zstdAgeTee(file));
  const textBytes = textMb * 1024 * 1024;
  const text = compare(rounds, reset, () => timed(process.execPath, exportOf(textSrc)), zstdAgeTee(textFile));
  const textShare = share(textBytes);
  const zstdAlone = timed('zstd', ['-q', '-f', '-3', '-T0', textFile, '-o', '/dev/null']);
  const out = [
    line(`export ${sizeMb} MiB incompressible, --no-read-back --compress none`, written, 'age | tee sha256sum', bytes, '>= 2.0x', 'higher', 200),
    cpuLine('  its CPU', written.ours, bytes, 2),
    line(`export ${sizeMb} MiB incompressible, default (zstd, read back)`, exp, 'zstd -3 | age | tee sha256sum', bytes, '>= 1.5x', 'higher', 200),
    cpuLine('  its CPU', exp.ours, bytes, 3),
    line(`export ${textMb} MiB text-like, default (zstd, read back)`, text, 'zstd -3 | age | tee sha256sum', textBytes, '>= 1.5x', 'higher', 200),
    cpuLine('  its CPU', text.ours, textBytes, 1 + 2 * textShare, textShare, {
      name: 'zstd -3 -T0 alone',
      perGiB: zstdAlone.cpuSeconds / (textBytes / 1024 ** 3),
    }),
  ];

  // keyless verify of the last bundle written, against sha256sum over the same volumes
  reset();
  timed(process.execPath, plainArgs);
  const bundle = path.join(medium, 'bench', 'bench-00000001');
  const volumes = readdirSync(bundle)
    .filter((n) => n.startsWith('payload.'))
    .map((n) => path.join(bundle, n));
  const ver = compare(
    rounds,
    () => {},
    () => timed(process.execPath, [verifyCli, '--allowed-signers', keys.allowedSigners, bundle]),
    () => timed('sha256sum', volumes),
  );
  out.push(line(`keyless verify ${sizeMb} MiB`, ver, 'sha256sum', bytes, '>= 1.0x', 'higher', 200));
  const deep = compare(
    1,
    () => {},
    () => timed(process.execPath, [verifyCli, '--allowed-signers', keys.allowedSigners, '--identity', keys.identity, bundle]),
    () => timed('bash', ['-c', 'set -o pipefail; cat "$1"/payload.* | age -d -i "$2" | sha256sum', 'x', bundle, keys.identity]),
  );
  out.push(line(`deep verify ${sizeMb} MiB`, deep, 'age -d | sha256sum', bytes, 'none (information)', 'higher', 200));
  return out;
}
