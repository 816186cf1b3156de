/*
 * npm run bench: every benchmark, each printed as a ratio against its peer measured in the same run.
 * BENCH_SIZE_MB (default 1024) and BENCH_ROUNDS (default 2) scale it down for a quick look;
 * BENCH_REPORT_BUNDLES (default 200) sizes the media set of the report benchmark;
 * BENCH_S3=0 skips the object-storage benchmark (it starts its own radosgw, about 15 s);
 * BENCH_PG=0 skips the PostgreSQL base backup and restore benchmark, which runs one round unless
 * BENCH_ROUNDS is set (a round is a backup and a restore of the whole database by both tools).
 */
import { benchBundle } from './bundle.js';
import { benchObjects } from './objects.js';
import { benchPg } from './pg.js';
import { benchReport } from './report.js';
import { benchWalPush } from './wal.js';

const sizeMb = Number(process.env.BENCH_SIZE_MB ?? 1024);
const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
for (const l of benchBundle(sizeMb, rounds)) console.log(l);
for (const l of await benchReport(rounds)) console.log(l);
for (const l of benchWalPush()) console.log(l);
if (process.env.BENCH_S3 !== '0') for (const l of await benchObjects(sizeMb, rounds)) console.log(l);
if (process.env.BENCH_PG !== '0') for (const l of benchPg(sizeMb, Number(process.env.BENCH_ROUNDS ?? 1))) console.log(l);
