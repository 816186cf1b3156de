/*
 * The verifier's memory: per site, the newest seq and SHA256SUMS hash it has accepted. With it, a
 * media set that stops before that seq (a rollback to older media, or a missing tail), one that
 * starts past the next seq (bundles withheld from the auditor) and a bundle contradicting a
 * remembered hash are caught. The file is small JSON, replaced atomically, and only advanced for
 * sites that verified clean, so withheld bundles keep being reported until they are shown.
 */
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../manifests/atomic.js';
import type { SiteState } from '../manifests/chain.js';
import { AirlockError, fromSystemError } from '../manifests/errors.js';
import { SHA256_RE, SITE_RE } from '../manifests/manifest.js';
import type { Report } from './verify.js';

interface StateFile {
  format: 'airlock-verify-state';
  version: 1;
  sites: Record<string, SiteState>;
}

/** Reads the state file; a missing file is an empty state. Throws `malformed` for a damaged one. */
export async function readState(file: string): Promise<Map<string, SiteState>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw fromSystemError(e, file);
  }
  const bad = () => new AirlockError('malformed', `${file}: not an airlock-verify state file`, { hint: 'give the file this tool wrote, or a new path' });
  let v: StateFile;
  try {
    v = JSON.parse(text) as StateFile;
  } catch {
    throw bad();
  }
  if (v?.format !== 'airlock-verify-state' || v.version !== 1 || typeof v.sites !== 'object' || v.sites === null) throw bad();
  const out = new Map<string, SiteState>();
  for (const [site, s] of Object.entries(v.sites)) {
    if (!SITE_RE.test(site) || !Number.isSafeInteger(s?.seq) || typeof s?.sums !== 'string' || !SHA256_RE.test(s.sums)) throw bad();
    out.set(site, { seq: s.seq, sums: s.sums });
  }
  return out;
}

/** Advances the state for every site that verified clean and writes it atomically. */
export async function writeState(file: string, before: ReadonlyMap<string, SiteState>, report: Report): Promise<void> {
  const sites: Record<string, SiteState> = Object.fromEntries(before);
  for (const s of report.sites) {
    const clean = report.bundles.every((b) => b.site !== s.site || b.findings.length === 0) && report.findings.every((f) => f.site !== s.site);
    const known = before.get(s.site);
    if (clean && (!known || s.newest.seq >= known.seq)) sites[s.site] = s.newest;
  }
  const body: StateFile = { format: 'airlock-verify-state', version: 1, sites };
  await writeFileAtomic(file, `${JSON.stringify(body, null, 2)}\n`);
}
