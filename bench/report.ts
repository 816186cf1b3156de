/*
 * Issue 6 (auditor report): writing `--report` for a media set of 200 small bundles adds at most 10%
 * to the keyless verification of the same set. The bundles are made once by the real bundle writer
 * (faster than 200 CLI runs), each with PostgreSQL coverage so the report draws WAL bars, base
 * backups and a recovery window; then `airlock-verify` runs alternately without and with --report.
 * BENCH_REPORT_BUNDLES (default 200) sets the size of the set.
 */
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { PostgresCoverage } from '../manifests/coverage.js';
import { generateIdentity } from '../manifests/age/keys.js';
import { generateSigningKey, parsePrivateKey } from '../manifests/sshkey.js';
import { writeBundle, type SourceItem } from '../agent/bundle/writer.js';
import { ROOT, compare, line, scratch, timed } from './lib.js';

const SITE = 'bench';
const T0 = Date.UTC(2026, 0, 1);
const hex = (n: number, width = 1) => n.toString(16).toUpperCase().padStart(width, '0');
/** Segment number n (16 MiB segments: 256 to a log file) as a file name and as an LSN at `offset` in it. */
const segment = (n: number) => `00000001${hex(Math.floor(n / 256), 8)}${hex(n % 256, 8)}`;
const lsn = (n: number, offset: number) => `${hex(Math.floor(n / 256))}/${hex(n % 256)}${hex(offset, 6)}`;

function coverage(seq: number, at: Date): PostgresCoverage {
  // four segments per bundle, a base backup every 50 bundles
  const first = 2 + (seq - 1) * 4;
  const c: PostgresCoverage = {
    systemIdentifier: '7000000000000000001',
    major: 15,
    segmentSize: 16 * 1024 * 1024,
    dataChecksums: true,
    timeline: 1,
    wal: [{ timeline: 1, first: segment(first), last: segment(first + 3) }],
    timelines: [],
    dumps: 0,
    restorePoint: { name: `airlock-${SITE}-${seq}`, lsn: lsn(first + 3, 0x90), time: new Date(at.getTime() - 60_000).toISOString(), timeline: 1 },
  };
  if (seq % 50 === 1) {
    c.base = {
      timeline: 1,
      startLsn: lsn(first, 0x28),
      stopLsn: lsn(first, 0x138),
      startTime: new Date(at.getTime() - 3_600_000).toISOString(),
      stopTime: new Date(at.getTime() - 3_000_000).toISOString(),
    };
  }
  return c;
}

async function* tinyFile(seq: number): AsyncGenerator<SourceItem> {
  const body = Buffer.from(`generation = ${seq}\n`);
  yield {
    kind: 'entry',
    name: 'files/000001',
    size: body.byteLength,
    mode: 0o600,
    mtime: Math.floor(T0 / 1000),
    open: async function* () {
      yield body;
    },
    record: { type: 'file', source: '/etc/platform/app.conf', mode: '0640', uid: 0, gid: 0, mtime: new Date(T0).toISOString() },
  };
}

export async function benchReport(rounds: number): Promise<string[]> {
  const n = Number(process.env.BENCH_REPORT_BUNDLES ?? 200);
  const dir = scratch();
  const medium = path.join(dir, 'medium');
  mkdirSync(medium);
  const key = generateSigningKey('bench');
  const signingKey = parsePrivateKey(key.privateKeyText);
  const recipient = generateIdentity().recipient;
  const signers = path.join(dir, 'allowed_signers');
  writeFileSync(signers, `${SITE} ${key.publicKeyLine}\n`);
  let prev: string | undefined;
  let bytes = 0;
  for (let seq = 1; seq <= n; seq++) {
    const at = new Date(T0 + seq * 6 * 3_600_000);
    const w = await writeBundle(
      {
        medium,
        site: SITE,
        seq,
        prev,
        recipients: [recipient],
        signingKey,
        compression: 'none',
        volumeSize: 1024 * 1024,
        now: () => at,
        coverage: () => ({ postgres: coverage(seq, at) }),
      },
      tinyFile(seq),
    );
    prev = w.sumsSha256;
    bytes += w.manifest.payload.size;
  }

  const verifyCli = path.join(ROOT, 'dist/verifier/cli.js');
  const report = path.join(dir, 'report.html');
  const args = ['--allowed-signers', signers, '--quiet', medium];
  const r = compare(
    Math.max(rounds, 7),
    () => {},
    () => timed(process.execPath, [verifyCli, '--report', report, ...args]),
    () => timed(process.execPath, [verifyCli, ...args]),
  );
  const size = `${(statSync(report).size / 1024).toFixed(0)} KiB`;
  return [`${line(`verify --report, ${n} bundles`, r, 'airlock-verify without --report', bytes, '<= 1.10x', 'lower')}; report ${size}`];
}
