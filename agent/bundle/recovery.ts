/*
 * Recovery data for a bundle's volumes, made and used with Debian's `par2` (PAR 2.0).
 *
 * Writing: `par2 create` over the volumes inside the partial folder, before SHA256SUMS is written, so
 * the recovery files are listed and signed like every other file. par2 names its recovery volume
 * `recovery.vol000+NNN.par2`; the `+` is renamed to `-` because bundle file names allow only
 * letters, digits, `.`, `_` and `-` (par2 still finds it: it loads every `recovery.*.par2`).
 *
 * Repairing: never on the medium. The volumes and the recovery files whose sha256 matches the signed
 * SHA256SUMS are copied into a scratch folder, `par2 repair` runs there, and every volume must then
 * match its signed sha256 again; only then does a restore read from the scratch copy. So par2 only
 * ever parses signed bytes, and what it produces is trusted only through the signed hashes.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { childFailed, lastLine, runChild } from '../../manifests/child.js';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import { digestFile, readChunks, type SizeBound } from '../../manifests/hash.js';
import { LIMITS } from '../../manifests/limits.js';
import type { Volume } from '../../manifests/manifest.js';
import { RECOVERY_INDEX, isRecoveryFile } from '../../manifests/recovery.js';
import { SUMS, type SumLine } from '../../manifests/sums.js';

/**
 * Writes recovery data for `volumes` (names in `dir`) able to rebuild about `percent` percent of
 * their blocks, and returns the names of the files written. Throws `child-failed` when par2 fails,
 * `not-found` when it is not installed, `medium-full` when the medium has no room for it.
 */
export async function createRecovery(dir: string, volumes: readonly Volume[], percent: number, signal?: AbortSignal): Promise<string[]> {
  const args = ['create', '-q', '-q', `-r${percent}`, '-n1', '-a', RECOVERY_INDEX, '--', ...volumes.map((v) => v.name)];
  const r = await runChild('par2', args, { cwd: dir, ...(signal ? { signal } : {}) });
  if (r.code !== 0) {
    if (/space|disk full/i.test(r.stderr))
      throw new AirlockError('medium-full', `no space left on the medium for the recovery data (${lastLine(r.stderr)})`, {
        hint: 'use a larger medium or a smaller --recovery-percent; nothing was left behind',
      });
    throw childFailed('par2 create', r);
  }
  const names: string[] = [];
  for (const n of (await readdir(dir)).sort()) {
    if (!n.startsWith('recovery.') || !n.endsWith('.par2')) continue;
    const name = n.replace('+', '-');
    if (!isRecoveryFile(name)) throw new AirlockError('internal', `par2 wrote ${n}, a name airlock does not expect`);
    if (name !== n) await rename(path.join(dir, n), path.join(dir, name));
    names.push(name);
  }
  if (!names.includes(RECOVERY_INDEX)) throw new AirlockError('child-failed', `par2 create wrote no ${RECOVERY_INDEX}`);
  return names;
}

/** Writes recovery data (see createRecovery) and returns its SHA256SUMS lines. */
export async function recoveryLines(dir: string, volumes: readonly Volume[], percent: number, signal?: AbortSignal): Promise<SumLine[]> {
  const names = await createRecovery(dir, volumes, percent, signal);
  const lines: SumLine[] = [];
  for (const name of names) lines.push({ name, sha256: (await digestFile(path.join(dir, name))).sha256 });
  return lines;
}

export interface Repaired {
  /** the scratch folder that now holds every volume intact */
  dir: string;
  /** the volumes that were rebuilt */
  repaired: string[];
}

/**
 * Rebuilds the volumes of the bundle in `bundleDir` inside `scratch` (created; the caller removes it).
 * `listed` is the signed SHA256SUMS (name to sha256). Throws `verification-failed` when no intact
 * recovery data is there or it cannot repair every volume, typed system errors when copying fails.
 */
export async function repairVolumes(
  bundleDir: string,
  volumes: readonly Volume[],
  listed: ReadonlyMap<string, string>,
  scratch: string,
  signal?: AbortSignal,
): Promise<Repaired> {
  await mkdir(scratch, { recursive: true, mode: 0o700 });
  // nothing here reads past a signed size or a limit: a sparse 1 TiB file on the medium is refused
  // by its size, never hashed or copied (a recovery file has no signed size; manifests/limits.ts)
  const recoveryBound = { max: 2 * volumes.reduce((a, v) => a + v.size, 0) + LIMITS.recoveryFileSlackBytes };
  const recovery: string[] = [];
  for (const name of [...listed.keys()].filter(isRecoveryFile).sort()) {
    // recovery files are parsed by par2: only those the signature vouches for are given to it
    const d = await digestFile(path.join(bundleDir, name), [], recoveryBound).catch(() => undefined);
    if (d?.sha256 !== listed.get(name)) continue;
    await copyInto(bundleDir, scratch, name, recoveryBound);
    recovery.push(name);
  }
  const first = recovery.includes(RECOVERY_INDEX) ? RECOVERY_INDEX : recovery[0];
  if (first === undefined)
    throw new AirlockError('verification-failed', `${path.basename(bundleDir)}: a volume is damaged and no intact recovery data is there`, {
      hint: 'restore from another copy of the bundle; nothing was restored',
    });

  const damaged: string[] = [];
  for (const v of volumes) {
    signal?.throwIfAborted();
    // a volume cut short still has intact blocks for par2; a longer one is not read at all
    const bound = { max: v.size };
    const d = await digestFile(path.join(bundleDir, v.name), [], bound).catch(() => undefined);
    if (d?.sha256 === v.sha256 && d.size === v.size) await copyInto(bundleDir, scratch, v.name, bound);
    else {
      damaged.push(v.name);
      // a damaged volume that can still be read is copied too: par2 uses its intact blocks
      if (d !== undefined) await copyInto(bundleDir, scratch, v.name, bound).catch(() => {});
    }
  }
  if (damaged.length === 0) return { dir: scratch, repaired: [] };

  let said = '';
  const r = await runChild('par2', ['repair', '-q', first, '--', ...volumes.map((v) => v.name)], {
    cwd: scratch,
    onStdout: (d) => {
      said = (said + d.toString('utf8')).slice(-4096);
    },
    ...(signal ? { signal } : {}),
  });
  const cannot = (why: string) =>
    new AirlockError(
      'verification-failed',
      `${path.basename(bundleDir)}: ${damaged.join(', ')} ${damaged.length > 1 ? 'are' : 'is'} damaged and the recovery data could not repair ${damaged.length > 1 ? 'them' : 'it'}: ${why}`,
      { hint: 'restore from another copy of the bundle; nothing was restored' },
    );
  if (r.code !== 0) throw cannot(lastLine(r.stderr) || lastLine(said) || childFailed('par2 repair', r).message);
  for (const v of volumes) {
    const d = await digestFile(path.join(scratch, v.name), [], { size: v.size }).catch(() => undefined);
    if (d?.sha256 !== v.sha256 || d.size !== v.size) throw cannot(`${v.name} still differs from ${SUMS} after the repair`);
  }
  return { dir: scratch, repaired: damaged };
}

/** Copies a regular file of the medium (never through a link), at most `bound.max` bytes, into the scratch folder. */
async function copyInto(from: string, to: string, name: string, bound: SizeBound): Promise<void> {
  try {
    await pipeline(Readable.from(readChunks(path.join(from, name), bound)), createWriteStream(path.join(to, name), { flags: 'w', mode: 0o600 }));
  } catch (e) {
    throw fromSystemError(e, name, 'io');
  }
}
