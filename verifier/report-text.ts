/*
 * The verifier's report as text lines (one per bundle and finding, then the summary and `status:`)
 * and as one JSON document with the same facts. Every text line passes escapeText as a whole, so a
 * name or message from the medium cannot move the cursor, start a line of its own or turn text
 * around; the JSON document carries the exact strings.
 */
import path from 'node:path';
import { escapeText } from '../manifests/escape.js';
import { human } from './human.js';
import { allFindings, countFindings, type BundleReport, type Finding, type Report } from './verify.js';

function findingLine(f: Finding): string {
  const where = f.file ? `${path.basename(f.bundle)}/${f.file}` : f.bundle.includes('/') ? path.basename(f.bundle) : f.bundle;
  return `${f.result}: ${where}: ${f.message}`;
}

function bundleLine(b: BundleReport, deep: boolean): string {
  const name = path.basename(b.path);
  if (b.findings.length > 0) return `failed: ${name}: ${countFindings(b.findings)} finding(s)`;
  const vols = b.manifest?.payload.volumes.length ?? 0;
  return `ok: ${name}: ${vols} volume(s), ${human(b.size ?? 0)}, signed by ${b.signer ?? '?'}${deep ? ', contents checked' : ''}`;
}

export function renderText(r: Report, quiet: boolean): string {
  const out: string[] = [];
  for (const b of r.bundles) {
    if (!quiet) out.push(bundleLine(b, r.deep));
    for (const f of b.findings) out.push(findingLine(f));
  }
  for (const f of r.findings) out.push(findingLine(f));
  for (const s of r.sites) {
    out.push(`site ${s.site}: ${s.bundles} bundle(s), seq ${s.first} to ${s.newest.seq}`);
    for (const w of s.windows ?? []) {
      out.push(
        `site ${s.site}: restorable from ${w.from.time} (base backup in seq ${w.baseSeq}, ${w.from.lsn}) to ${w.to.time ? `${w.to.time} (restore point)` : 'the end of the WAL'}, WAL up to ${w.to.segment} in seq ${w.lastSeq}, timeline ${w.timeline}`,
      );
    }
  }
  const failed = r.bundles.filter((b) => b.findings.length > 0).length;
  const n = countFindings(allFindings(r));
  out.push(
    `${r.bundles.length} bundle(s) of ${r.sites.length} site(s) checked ${r.deep ? 'with the key' : 'without the key'}: ${r.bundles.length - failed} ok, ${failed} failed; ${n} finding(s)`,
  );
  out.push(`status: ${r.ok ? 'ok' : 'error'}`);
  return `${out.map(escapeText).join('\n')}\n`;
}

export function reportJson(r: Report): unknown {
  return {
    tool: r.tool,
    checkedAt: r.checkedAt,
    deep: r.deep,
    status: r.ok ? 'ok' : 'error',
    paths: r.paths,
    sites: r.sites,
    bundles: r.bundles.map(({ manifest, ...b }) => ({
      ...b,
      ...(manifest ? { prev: manifest.prev ?? null, volumes: manifest.payload.volumes.length, contents: manifest.contents } : {}),
    })),
    findings: allFindings(r),
  };
}
