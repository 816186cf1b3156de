/*
 * Resource limits: every bound airlock puts on what it reads from a medium, a payload or an index, in
 * one table. A reader refuses input over a limit before parsing it, and never reads a file further
 * than its signed size (or, for a file without one, its limit here). The modules that enforce a limit
 * take its value from here; SECURITY.md's input-limits table is checked against this one by a test,
 * so the two cannot drift.
 */

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

export const LIMITS = {
  /** manifest.json, read whole */
  manifestBytes: MiB,
  /** SHA256SUMS, read whole */
  sumsBytes: MiB,
  /** SHA256SUMS.sig: an armored Ed25519 signature is a few hundred bytes */
  signatureBytes: 16 * KiB,
  /** RESTORE.txt has no signed size; it repeats at most the manifest's facts and a page of steps */
  restoreTextBytes: 2 * MiB,
  /** a par2 recovery file has no signed size: at 100% it holds the volumes' blocks once, plus packet headers */
  recoveryFileSlackBytes: 16 * MiB,
  /** the age header, and its recipient stanzas */
  ageHeaderBytes: 64 * KiB,
  ageStanzas: 64,
  /** manifest.json `recipients` */
  recipients: 64,
  /** manifest.json `payload.volumes` */
  volumes: 1_000_000,
  /** a tar entry's path (Linux PATH_MAX) */
  tarPathBytes: 4096,
  /** one pax or GNU long-name header */
  paxHeaderBytes: MiB,
  /** global pax records in force at once (each is copied into every later entry) */
  paxGlobalRecords: 64,
  /** one line of index.jsonl */
  indexLineBytes: MiB,
  /** MANIFEST.sha256, read whole; also bounded by `inner.entries` lines of at most innerLineBytes */
  innerManifestBytes: GiB,
  /** one MANIFEST.sha256 line: a sha256, two spaces, a generated name (8 components of 100), LF */
  innerLineBytes: 64 + 2 + 8 * 100 + 7 + 1,
  /** bodies of tar entries that are not payload entries (unsafe ones, any after MANIFEST.sha256), in all */
  skippedBytes: MiB,
  /** tar entries past the `inner.entries + 1` the manifest signs that are still reported before reading stops */
  surplusEntries: 100,
  /** findings of one result in one bundle that are named one by one; the rest are counted */
  findingsNamed: 100,
  /** what the deep check holds per payload entry at most (its name, digest and bookkeeping) */
  memoryPerEntryBytes: 4 * KiB,
} as const;

export type LimitName = keyof typeof LIMITS;

/** A limit as SECURITY.md writes it: 1 MiB, 16 KiB, 4,096 bytes (under 16 KiB), 1,000,000. */
function format(name: LimitName): string {
  const v = LIMITS[name];
  if (!name.endsWith('Bytes')) return v.toLocaleString('en-US');
  for (const [unit, size] of [
    ['GiB', GiB],
    ['MiB', MiB],
    ['KiB', KiB],
  ] as const)
    if (v >= 16 * KiB && v >= size && v % size === 0) return `${v / size} ${unit}`;
  return `${v.toLocaleString('en-US')} bytes`;
}

/** The rows of SECURITY.md's input-limits table, `[what, limit]`, in the order of LIMITS. */
export function limitsTable(): [string, string][] {
  const what: Record<LimitName, string> = {
    manifestBytes: 'manifest.json',
    sumsBytes: 'SHA256SUMS',
    signatureBytes: 'SHA256SUMS.sig',
    restoreTextBytes: 'RESTORE.txt',
    recoveryFileSlackBytes: 'a recovery file (`.par2`): twice the signed payload size plus',
    ageHeaderBytes: 'age header',
    ageStanzas: 'age header stanzas',
    recipients: 'recipients',
    volumes: 'volumes',
    tarPathBytes: 'tar path',
    paxHeaderBytes: 'pax or GNU long-name header',
    paxGlobalRecords: 'global pax records in force',
    indexLineBytes: 'index.jsonl line',
    innerManifestBytes: 'MANIFEST.sha256 (and `inner.entries` lines of at most the next row)',
    innerLineBytes: 'MANIFEST.sha256 line',
    skippedBytes: 'bodies of tar entries that are not payload entries (unsafe ones, any after MANIFEST.sha256), in all',
    surplusEntries: 'tar entries past `inner.entries` + 1 reported before reading stops',
    findingsNamed: 'findings of one result in one bundle named one by one (the rest are counted)',
    memoryPerEntryBytes: 'memory of the deep check per payload entry',
  };
  return (Object.keys(LIMITS) as LimitName[]).map((n) => [what[n], format(n)]);
}
