/*
 * Verify first: every restore-side command (restore files, objects, pg, drill) verifies the whole
 * set it reads from, keyless, and picks its bundle only from a set that checked out.
 */
import path from 'node:path';
import { parseAllowedSigners } from '../../manifests/allowed-signers.js';
import { AirlockError } from '../../manifests/errors.js';
import { allFindings, readAllowedSigners, verifyPaths, type BundleReport } from '../../verifier/verify.js';
import { mayRepair } from './repair.js';

/**
 * Verifies everything under `from` and picks the bundle to restore: `seq`, or the newest. When
 * `verified` is given, every bundle of the (clean) set is pushed onto it, for restores that need a
 * chain of bundles.
 */
export async function pickVerifiedBundle(
  from: string | readonly string[],
  allowedSignersFile: string,
  site: string | undefined,
  seq: number | undefined,
  verified?: BundleReport[],
  opts: { allowRepair?: boolean; volumes?: 'hash' | 'size' } = {},
): Promise<BundleReport> {
  const allowedSigners = parseAllowedSigners(await readAllowedSigners(allowedSignersFile));
  // a chain may be spread over several media: the set is everything under all of them
  const paths = typeof from === 'string' ? [from] : [...from];
  const where = paths.join(', ');
  const report = await verifyPaths(paths, { allowedSigners, now: new Date(), tool: 'airlock', ...(opts.volumes ? { volumes: opts.volumes } : {}) });
  const sites = [...new Set(report.bundles.map((b) => b.site).filter((s) => s !== undefined))];
  const chosenSite = site ?? (sites.length === 1 ? sites[0] : undefined);
  if (chosenSite === undefined) {
    throw new AirlockError(
      sites.length === 0 ? 'no-bundle' : 'usage',
      sites.length === 0 ? `no verifiable bundle under ${where}` : `${where} holds bundles of ${sites.join(', ')}`,
      {
        hint: sites.length === 0 ? 'run airlock-verify on it to see why' : 'choose one with --site',
      },
    );
  }
  const candidates = report.bundles.filter((b) => b.site === chosenSite && (seq === undefined || b.seq === seq)).sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
  const chosen = candidates.at(-1);
  if (!chosen) throw new AirlockError('no-bundle', `no bundle of ${chosenSite}${seq !== undefined ? ` with seq ${seq}` : ''} under ${where}`);
  // damaged volumes with recovery data beside them: the caller repairs them (withRepairedBundle)
  if (chosen.findings.length > 0 && !(opts.allowRepair === true && (await mayRepair(chosen)))) {
    const lines = chosen.findings.map((f) => `${f.result}${f.file ? ` ${f.file}` : ''}: ${f.message}`).join('; ');
    throw new AirlockError('verification-failed', `${path.basename(chosen.path)} failed verification: ${lines}`, {
      hint: 'nothing was restored; restore from another copy, or an older bundle with --seq',
    });
  }
  // verify first means the whole set: a damaged or forked neighbour casts doubt on the medium
  const others = allFindings(report).filter((f) => !chosen.findings.includes(f));
  if (others.length > 0) {
    const lines = others
      .slice(0, 3)
      .map((f) => `${f.result} ${path.basename(f.bundle)}${f.file ? `/${f.file}` : ''}: ${f.message}`)
      .join('; ');
    throw new AirlockError('verification-failed', `${where} does not verify (${others.length} finding(s)): ${lines}`, {
      hint: `nothing was restored; run airlock-verify for the full list, or give --from ${chosen.path} to restore that bundle alone`,
    });
  }
  verified?.push(...report.bundles.filter((b) => b.site === chosenSite));
  return chosen;
}
