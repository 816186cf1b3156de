/*
 * Restoring from a damaged medium: when only volumes (or recovery files) of the chosen bundle failed
 * their check and the bundle carries recovery data, the volumes are rebuilt in a scratch copy beside
 * the restore target (agent/bundle/recovery.ts) and the restore reads from there. The medium is never
 * written (a read-only medium works); the scratch copy holds ciphertext only and is removed afterwards.
 *
 * par2 writes the files its recovery set describes, under the names the set gives them, and the set
 * is only as honest as the key that signed the bundle. So before par2 runs, the file names in the
 * recovery files (their FileDesc packets) are read here, and a set that names anything but the
 * bundle's own volumes (another file, a path, `..`) is refused: par2 only ever rebuilds volumes, and
 * only inside the scratch copy.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { AirlockError } from '../../manifests/errors.js';
import { digestFile, openRegular, readSmall, sha256Hex } from '../../manifests/hash.js';
import { isRecoveryFile } from '../../manifests/recovery.js';
import { SUMS, SUMS_LIMIT, parseSums, type SumLine } from '../../manifests/sums.js';
import type { BundleReport } from '../../verifier/verify.js';
import { repairVolumes } from '../bundle/recovery.js';
import { requireEmpty, withStaging, type Notes } from './staging.js';

const REPAIRABLE = new Set(['checksum-mismatch', 'size-mismatch', 'missing']);

/**
 * Whether the only findings of `b` are damaged volumes or recovery files that its recovery data
 * may repair: the signature, SHA256SUMS and manifest checked out, and recovery files are listed.
 */
export async function mayRepair(b: BundleReport): Promise<boolean> {
  const m = b.manifest;
  if (!m || b.sums === undefined || b.signer === undefined || b.findings.length === 0) return false;
  const volumes = new Set(m.payload.volumes.map((v) => v.name));
  if (!b.findings.every((f) => REPAIRABLE.has(f.result) && f.file !== undefined && (volumes.has(f.file) || isRecoveryFile(f.file)))) return false;
  return (await signedList(b)).some((l) => isRecoveryFile(l.name));
}

/** The bundle's SHA256SUMS, read again: it must be the one whose signature was checked. */
async function signedList(b: BundleReport): Promise<SumLine[]> {
  const bytes = await readSmall(path.join(b.path, SUMS), SUMS_LIMIT);
  if (sha256Hex(bytes) !== b.sums) throw new AirlockError('verification-failed', `${b.path}: ${SUMS} changed since it was verified`);
  return parseSums(bytes);
}

const PACKET_MAGIC = Buffer.from('PAR2\0PKT', 'latin1');
const FILE_DESC = Buffer.from('PAR 2.0\0FileDesc', 'latin1');
/** A FileDesc body: file id, two MD5s, length (56 bytes), then a name no longer than a path can be. */
const FILE_DESC_LIMIT = 56 + 4096;

/**
 * The file names a PAR 2.0 file describes: the names in its FileDesc packets whose packet hash is
 * right (par2 ignores the others too). Reads the 64-byte packet headers and the FileDesc bodies
 * only, skipping the recovery data. Throws `unsafe-entry` when the file is not a run of PAR 2.0
 * packets from start to end, typed system errors when it cannot be read.
 */
export async function recoveryNames(file: string): Promise<string[]> {
  const bad = (why: string) =>
    new AirlockError('unsafe-entry', `${path.basename(file)}: not par2 recovery data airlock accepts: ${why}`, {
      hint: 'the bundle was signed with recovery data that par2 must not be given; restore from another copy of the bundle',
    });
  const fh = await openRegular(file);
  const names: string[] = [];
  try {
    const size = (await fh.stat()).size;
    const head = Buffer.alloc(64);
    for (let at = 0; at < size;) {
      if ((await fh.read(head, 0, 64, at)).bytesRead !== 64 || !head.subarray(0, 8).equals(PACKET_MAGIC)) throw bad(`no packet header at byte ${at}`);
      const length = head.readBigUInt64LE(8);
      if (length < 64n || length % 4n !== 0n || BigInt(at) + length > BigInt(size)) throw bad(`a packet at byte ${at} has length ${length}`);
      if (head.subarray(48, 64).equals(FILE_DESC)) {
        if (length > BigInt(64 + FILE_DESC_LIMIT) || length < 64n + 56n) throw bad(`a file description at byte ${at} has length ${length}`);
        const body = Buffer.alloc(Number(length) - 64);
        if ((await fh.read(body, 0, body.length, at + 64)).bytesRead !== body.length) throw bad(`a file description at byte ${at} is cut short`);
        const hash = createHash('md5').update(head.subarray(32, 64)).update(body).digest();
        if (hash.equals(head.subarray(16, 32))) names.push(body.subarray(56).toString('latin1').replace(/\0+$/, ''));
      }
      at += Number(length);
    }
  } finally {
    await fh.close();
  }
  return names;
}

/**
 * Refuses recovery data of `dir` whose files name anything but `volumes` (see the top of this file).
 * Throws `unsafe-entry`.
 */
async function checkRecoveryNames(dir: string, listed: ReadonlyMap<string, string>, volumes: ReadonlySet<string>): Promise<void> {
  for (const name of [...listed.keys()].filter(isRecoveryFile)) {
    const described = await recoveryNames(path.join(dir, name)).catch(async (e: unknown) => {
      // a file damaged on the medium is skipped by the repair (its hash is wrong); a signed one is refused
      if (
        e instanceof AirlockError &&
        e.code === 'unsafe-entry' &&
        (await digestFile(path.join(dir, name)).catch(() => undefined))?.sha256 === listed.get(name)
      )
        throw e;
      return [];
    });
    const other = described.filter((n) => !volumes.has(n));
    if (other.length > 0) {
      throw new AirlockError(
        'unsafe-entry',
        `${name} describes ${other
          .map((n) => JSON.stringify(n))
          .slice(0, 3)
          .join(', ')}, not a volume of the bundle; par2 was not run`,
        {
          hint: "recovery data may only rebuild the bundle's own volumes; restore from another copy of the bundle; nothing was restored",
        },
      );
    }
  }
}

/**
 * Runs `restore` on `bundle`, or, when the bundle has repairable findings, on a copy of it whose
 * volumes were rebuilt from its recovery data in a scratch folder beside `to` (staging.ts), and
 * says through `notes` what was repaired. Throws `verification-failed` when the repair is not
 * possible, `unsafe-entry` when the recovery data names other files than the volumes,
 * `target-exists` when `to` is not empty, `locked` when another restore into `to` runs, and what
 * `restore` throws.
 */
export async function withRepairedBundle<T>(
  bundle: BundleReport,
  to: string,
  restore: (b: BundleReport) => Promise<T>,
  opts: { signal?: AbortSignal; notes?: Notes } = {},
): Promise<T> {
  if (bundle.findings.length === 0) return restore(bundle);
  const manifest = bundle.manifest;
  if (!manifest || !(await mayRepair(bundle))) throw new AirlockError('verification-failed', `${bundle.path} did not verify; nothing restored`);
  const target = path.resolve(to);
  await requireEmpty(target);
  return withStaging(
    target,
    async (dir) => {
      const listed = new Map((await signedList(bundle)).map((l) => [l.name, l.sha256]));
      await checkRecoveryNames(bundle.path, listed, new Set(manifest.payload.volumes.map((v) => v.name)));
      const r = await repairVolumes(bundle.path, manifest.payload.volumes, listed, path.join(dir, 'volumes'), opts.signal);
      if (r.repaired.length > 0)
        opts.notes?.(
          `repaired ${r.repaired.join(', ')} of ${path.basename(bundle.path)} from its recovery data, in a scratch copy (the medium was not changed); every volume now matches ${SUMS}`,
        );
      return restore({ ...bundle, path: r.dir, findings: [] });
    },
    { kind: 'repair', ...(opts.notes ? { notes: opts.notes } : {}) },
  );
}
