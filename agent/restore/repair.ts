/*
 * Restoring from a damaged medium: when only volumes (or recovery files) of the chosen bundle failed
 * their check and the bundle carries recovery data, the volumes are rebuilt in a scratch copy beside
 * the restore target (agent/bundle/recovery.ts) and the restore reads from there. The medium is never
 * written; the scratch copy holds ciphertext only and is removed afterwards.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { AirlockError } from '../../manifests/errors.js';
import { readSmall, sha256Hex } from '../../manifests/hash.js';
import { isRecoveryFile } from '../../manifests/recovery.js';
import { SUMS, SUMS_LIMIT, parseSums, type SumLine } from '../../manifests/sums.js';
import type { BundleReport } from '../../verifier/verify.js';
import { repairVolumes } from '../bundle/recovery.js';
import { removeTree } from '../fsutil.js';
import { isEmptyOrAbsent } from './files.js';

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

/**
 * Runs `restore` on `bundle`, or, when the bundle has repairable findings, on a copy of it whose
 * volumes were rebuilt from its recovery data in a scratch folder beside `to`, and says on stderr
 * what was repaired. Throws `verification-failed` when the repair is not possible, `target-exists`
 * when `to` is not empty, and what `restore` throws.
 */
export async function withRepairedBundle<T>(bundle: BundleReport, to: string, restore: (b: BundleReport) => Promise<T>, signal?: AbortSignal): Promise<T> {
  if (bundle.findings.length === 0) return restore(bundle);
  const manifest = bundle.manifest;
  if (!manifest || !(await mayRepair(bundle))) throw new AirlockError('verification-failed', `${bundle.path} did not verify; nothing restored`);
  const target = path.resolve(to);
  if (!(await isEmptyOrAbsent(target))) throw new AirlockError('target-exists', `${target} is not empty`, { hint: 'restore into a new or empty folder' });
  const parent = path.dirname(target);
  await mkdir(parent, { recursive: true });
  const prefix = `.${path.basename(target)}.airlock-repair-`;
  for (const n of await readdir(parent)) if (n.startsWith(prefix)) await removeTree(path.join(parent, n));
  const scratch = path.join(parent, `${prefix}${randomBytes(6).toString('hex')}`);
  try {
    const listed = new Map((await signedList(bundle)).map((l) => [l.name, l.sha256]));
    const r = await repairVolumes(bundle.path, manifest.payload.volumes, listed, scratch, signal);
    if (r.repaired.length > 0) process.stderr.write(`airlock: repaired ${r.repaired.join(', ')} of ${path.basename(bundle.path)} from its recovery data, in a scratch copy (the medium was not changed); every volume now matches SHA256SUMS\n`);
    return await restore({ ...bundle, path: r.dir, findings: [] });
  } finally {
    await removeTree(scratch).catch(() => process.stderr.write(`airlock: warning: could not remove ${scratch}\n`));
  }
}
