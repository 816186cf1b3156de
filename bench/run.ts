/*
 * npm run bench: every benchmark, each printed as a ratio against its peer measured in the same run.
 * BENCH_SIZE_MB (default 1024) and BENCH_ROUNDS (default 2) scale it down for a quick look.
 */
import { benchBundle } from './bundle.js';
import { benchObjects } from './objects.js';

const sizeMb = Number(process.env.BENCH_SIZE_MB ?? 1024);
const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
const lines: string[] = [];
for (const l of benchBundle(sizeMb, rounds)) {
  console.log(l);
  lines.push(l);
}
// BENCH_S3=0 skips the object-storage benchmark (it starts its own radosgw, about 15 s)
if (process.env.BENCH_S3 !== '0') {
  for (const l of await benchObjects(sizeMb, rounds)) {
    console.log(l);
    lines.push(l);
  }
}
