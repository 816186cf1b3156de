/*
 * The auditor's report: one self-contained HTML file with the same facts as `--json`, built from the
 * same Report, for people who read it on screen or on paper.
 *
 * Self-contained means no script, no font, no image and no link that loads anything: inline CSS and
 * inline SVG only, and a Content-Security-Policy that forbids every fetch should a future edit slip.
 * Everything a medium can say (finding messages, file names, paths) reaches the page only through
 * `html`, a template tag that escapes every interpolated value unless it is markup built by `html`
 * itself, so escaping is the default rather than a thing to remember.
 *
 * The timeline must read in black and white: failed bundles and gaps are hatched patterns with a
 * text label, base backups are diamonds, windows are solid bars, never colour alone. Elements carry
 * `data-mark`, `data-seq` and `data-result` so a test (or a script of the auditor's) can find them.
 */
import path from 'node:path';
import type { BaseBackupCoverage, PostgresCoverage, RecoveryWindow } from '../manifests/coverage.js';
import { MANIFEST_FILE, RESTORE_FILE } from '../manifests/manifest.js';
import { shellQuote } from '../manifests/shell.js';
import { BUNDLE_NAMESPACE } from '../manifests/sshsig.js';
import { SUMS, SUMS_SIG } from '../manifests/sums.js';
import { human } from './human.js';
import { allFindings, countFindings, type BundleReport, type Finding, type Report } from './verify.js';

/** Markup that is already safe; anything else interpolated into `html` is escaped. */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

type Value = string | number | Html | undefined | false | null | readonly Value[];

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * Escapes text for HTML content and attribute values; control characters, C1 controls and bidi
 * controls (which would show a name from the medium backwards) become U+FFFD.
 */
export function escapeHtml(s: string): string {
  return s
    .replace(/[&<>"']/g, (c) => ENTITIES[c] ?? c)
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, '\ufffd');
}

function flatten(v: Value): string {
  if (v === undefined || v === null || v === false) return '';
  if (v instanceof Html) return v.text;
  if (Array.isArray(v)) return (v as readonly Value[]).map(flatten).join('');
  return escapeHtml(String(v));
}

/** The template tag: literal parts are markup, every value is escaped unless it is `Html`. */
export function html(strings: TemplateStringsArray, ...values: Value[]): Html {
  let out = strings[0] ?? '';
  values.forEach((v, i) => {
    out += flatten(v) + (strings[i + 1] ?? '');
  });
  return new Html(out);
}

/** A CSS string literal that cannot end the string or the style element. */
function cssString(s: string): string {
  return `"${s.replace(/[^ -~]/g, '?').replace(/["\\<>]/g, (c) => `\\${c.charCodeAt(0).toString(16)} `)}"`;
}

/** "2026-01-31 12:00:00 UTC" from an ISO time; the input unchanged when it is not one. */
function when(iso: string | undefined): string {
  if (!iso) return 'unknown';
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})/.exec(iso);
  return m ? `${m[1]} ${m[2]} UTC` : iso;
}

const time = (iso: string | undefined) => (iso ? html`<time datetime="${iso}">${when(iso)}</time>` : html`unknown`);

/** The bundle folder's name, or the finding's place when it is not a folder (a site, for a chain problem). */
const placeOf = (f: Finding) => (f.bundle.includes('/') ? path.basename(f.bundle) : f.bundle);

interface SiteView {
  site: string;
  /** the bundles of the site, by seq */
  bundles: BundleReport[];
  findings: Finding[];
  /** undefined when the site forms no chain, so the verifier did not work them out */
  windows: RecoveryWindow[] | undefined;
  summary: Report['sites'][number] | undefined;
  postgres: boolean;
}

const pgOf = (b: BundleReport): PostgresCoverage | undefined => b.manifest?.coverage?.postgres;
const failed = (b: BundleReport) => b.findings.length > 0;

function siteViews(r: Report): SiteView[] {
  const names = [...new Set([...r.sites.map((s) => s.site), ...r.bundles.flatMap((b) => (b.site ? [b.site] : []))])].sort();
  const all = allFindings(r);
  return names.map((site) => {
    const bundles = r.bundles.filter((b) => b.site === site).sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
    const summary = r.sites.find((s) => s.site === site);
    return {
      site,
      bundles,
      findings: all.filter((f) => f.site === site),
      windows: summary ? (summary.windows ?? []) : undefined,
      summary,
      postgres: bundles.some((b) => pgOf(b) !== undefined),
    };
  });
}

// ---- the timeline -------------------------------------------------------------------------------

const W = 720;
const LEFT = 112;
const RIGHT = 14;
const LANE = 34;
const TOP = 30;

interface Scale {
  x: (t: number) => number;
  ticks: { x: number; label: string }[];
}

function scaleFor(times: number[]): Scale {
  let t0 = Math.min(...times);
  let t1 = Math.max(...times);
  if (!Number.isFinite(t0) || !Number.isFinite(t1)) t0 = t1 = 0;
  if (t1 - t0 < 60_000) {
    t0 -= 30_000;
    t1 += 30_000;
  }
  const pad = (t1 - t0) * 0.04;
  t0 -= pad;
  t1 += pad;
  const x = (t: number) => LEFT + ((t - t0) / (t1 - t0)) * (W - LEFT - RIGHT);
  const span = t1 - t0;
  const label = (t: number) => {
    const iso = new Date(t).toISOString();
    return span >= 4 * 86_400_000 ? iso.slice(0, 10) : span >= 3_600_000 ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(11, 19);
  };
  const ticks = Array.from({ length: 5 }, (_, i) => {
    const t = t0 + pad + ((t1 - t0 - 2 * pad) * i) / 4;
    return { x: x(t), label: label(t) };
  });
  return { x, ticks };
}

const ms = (iso: string | undefined) => (iso === undefined ? Number.NaN : Date.parse(iso));

function patterns(id: string): Html {
  return html`<defs>
<pattern id="${id}-gap" patternUnits="userSpaceOnUse" width="7" height="7" patternTransform="rotate(45)"><rect width="7" height="7" fill="#fff"/><rect width="3" height="7" fill="#333"/></pattern>
<pattern id="${id}-failed" patternUnits="userSpaceOnUse" width="6" height="6"><rect width="6" height="6" fill="#fff"/><path d="M0 0L6 6M6 0L0 6" stroke="#000" stroke-width="1.3"/></pattern>
<pattern id="${id}-wal" patternUnits="userSpaceOnUse" width="4" height="4"><rect width="4" height="4" fill="#bbb"/><circle cx="2" cy="2" r="0.8" fill="#444"/></pattern>
</defs>`;
}

/** A hatched band between x0 and x1 in a lane, with a text label: a gap or a missing bundle. */
function band(x0: number, x1: number, y: number, fill: string, label: string, attrs: Html): Html {
  const w = Math.max(x1 - x0, 22);
  const cx = x0 + (x1 - x0) / 2;
  return html`<g ${attrs}><rect x="${(cx - w / 2).toFixed(1)}" y="${y - 9}" width="${w.toFixed(1)}" height="18" fill="url(#${fill})" stroke="#000" stroke-width="1"/><text x="${cx.toFixed(1)}" y="${y + 20}" text-anchor="middle" class="mark">${label}</text></g>`;
}

function timeline(v: SiteView, index: number): Html {
  const id = `s${index}`;
  const created = new Map(v.bundles.map((b) => [b.seq ?? 0, ms(b.created)]));
  const times: number[] = [...created.values()];
  const bases: { seq: number; base: BaseBackupCoverage }[] = [];
  for (const b of v.bundles) {
    const base = pgOf(b)?.base;
    if (base) {
      bases.push({ seq: b.seq ?? 0, base });
      times.push(ms(base.startTime), ms(base.stopTime));
    }
  }
  for (const w of v.windows ?? []) times.push(ms(w.from.time), ms(w.to.time));
  const scale = scaleFor(times.filter(Number.isFinite));
  const X = (t: number) => scale.x(t).toFixed(1);

  const lanes = v.postgres ? ['bundles', 'WAL archived', 'base backups', 'restorable'] : ['bundles'];
  const laneY = (name: string) => TOP + LANE * lanes.indexOf(name) + LANE / 2;
  const height = TOP + LANE * lanes.length + 18;
  const parts: Html[] = [];

  // axis
  scale.ticks.forEach((t, i) => {
    const anchor = i === 0 ? 'start' : i === scale.ticks.length - 1 ? 'end' : 'middle';
    parts.push(
      html`<line x1="${t.x.toFixed(1)}" y1="${TOP - 4}" x2="${t.x.toFixed(1)}" y2="${height - 14}" class="grid"/><text x="${t.x.toFixed(1)}" y="${TOP - 10}" text-anchor="${anchor}" class="tick">${t.label}</text>`,
    );
  });
  parts.push(html`<text x="4" y="${TOP - 10}" class="tick">time (UTC)</text>`);
  lanes.forEach((name) => parts.push(html`<text x="4" y="${laneY(name) + 4}" class="lane">${name}</text>`));

  // previous bundle's time, for the span of WAL a bundle carries and for gaps between bundles
  const before = (seq: number): number => {
    let best = Number.NaN;
    for (const [s, t] of created) if (s < seq && Number.isFinite(t)) best = t;
    return best;
  };

  // chain gaps: the missing bundles sit between their neighbours
  for (const f of v.findings.filter((f) => f.result === 'chain-gap')) {
    const seq = f.seq ?? 0;
    const next = [...created.entries()].find(([s]) => s > seq)?.[1] ?? Number.NaN;
    const prev = before(seq + 1);
    const x0 = Number.isFinite(prev) ? scale.x(prev) : LEFT;
    const x1 = Number.isFinite(next) ? scale.x(next) : W - RIGHT;
    parts.push(
      band(
        x0 + 6,
        x1 - 6,
        laneY('bundles'),
        `${id}-gap`,
        'MISSING',
        html`data-mark="chain-gap" data-seq="${seq}" role="img" aria-label="missing bundle(s) near ${seq}"`,
      ),
    );
  }

  // bundles: a dot when good, a hatched square with a label when failed
  let stagger = 0;
  for (const b of v.bundles) {
    const t = ms(b.created);
    if (!Number.isFinite(t)) continue;
    const x = scale.x(t);
    const y = laneY('bundles');
    if (failed(b)) {
      const dy = stagger++ % 2 === 0 ? 21 : -12;
      parts.push(
        html`<g data-mark="failed-bundle" data-seq="${b.seq}" role="img" aria-label="bundle ${b.seq} failed"><title>${path.basename(b.path)}: failed</title><rect x="${(x - 7).toFixed(1)}" y="${y - 7}" width="14" height="14" fill="url(#${id}-failed)" stroke="#000" stroke-width="1.5"/><text x="${x.toFixed(1)}" y="${y + dy}" text-anchor="middle" class="mark">#${b.seq} FAILED</text></g>`,
      );
    } else {
      parts.push(
        html`<g data-mark="bundle" data-seq="${b.seq}"><title>${path.basename(b.path)}: ok</title><circle cx="${x.toFixed(1)}" cy="${y}" r="4" fill="#000"/></g>`,
      );
    }
  }
  if (v.bundles.length <= 12) {
    for (const b of v.bundles.filter((b) => !failed(b))) {
      const t = ms(b.created);
      if (Number.isFinite(t)) parts.push(html`<text x="${X(t)}" y="${laneY('bundles') - 8}" text-anchor="middle" class="small">#${b.seq}</text>`);
    }
  }

  if (v.postgres) {
    const y = laneY('WAL archived');
    const gaps = new Set(v.findings.filter((f) => f.result === 'wal-gap').map((f) => f.seq));
    for (const b of v.bundles) {
      const pg = pgOf(b);
      if (!pg || pg.wal.length === 0 || b.seq === undefined) continue;
      const end = ms(pg.restorePoint?.time ?? b.created);
      let start = before(b.seq);
      if (!Number.isFinite(start)) start = ms(pg.base?.startTime);
      if (!Number.isFinite(start) || !Number.isFinite(end)) continue;
      let x0 = scale.x(start);
      const x1 = scale.x(end);
      if (gaps.has(b.seq)) {
        // the gap lies somewhere between the two bundles; its width is a sign, not a measure
        const gx1 = x0 + Math.max((x1 - x0) * 0.4, 24);
        parts.push(
          band(x0, gx1, y, `${id}-gap`, 'WAL GAP', html`data-mark="wal-gap" data-seq="${b.seq}" role="img" aria-label="WAL gap before bundle ${b.seq}"`),
        );
        x0 = gx1;
      }
      const ranges = pg.wal.map((w) => `${w.first}..${w.last}`).join(', ');
      parts.push(
        html`<g data-mark="wal" data-seq="${b.seq}"${failed(b) ? html` data-failed="true"` : ''}><title>bundle #${b.seq}: WAL ${ranges}${failed(b) ? ' (bundle failed: not usable)' : ''}</title><rect x="${(x0 + 1).toFixed(1)}" y="${y - 6}" width="${Math.max(x1 - x0 - 2, 2).toFixed(1)}" height="12" fill="url(#${id}-${failed(b) ? 'failed' : 'wal'})" stroke="#000" stroke-width="0.8"/></g>`,
      );
    }
    for (const f of v.findings.filter((f) => f.result === 'timeline-break')) {
      const t = created.get(f.seq ?? 0);
      const x = t !== undefined && Number.isFinite(t) ? scale.x(t) : LEFT;
      parts.push(
        html`<g data-mark="timeline-break" data-seq="${f.seq}" role="img" aria-label="timeline break at bundle ${f.seq}"><path d="M${(x - 6).toFixed(1)} ${y - 10}l6 10l-6 10M${(x + 2).toFixed(1)} ${y - 10}l6 10l-6 10" fill="none" stroke="#000" stroke-width="2"/><text x="${x.toFixed(1)}" y="${y + 22}" text-anchor="middle" class="mark">TIMELINE BREAK</text></g>`,
      );
    }
    const by = laneY('base backups');
    for (const { seq, base } of bases) {
      const t = ms(base.stopTime);
      if (!Number.isFinite(t)) continue;
      const x = scale.x(t);
      parts.push(
        html`<g data-mark="base" data-seq="${seq}"><title>base backup in bundle #${seq}: ${base.startLsn} to ${base.stopLsn}</title><path d="M${x.toFixed(1)} ${by - 7}l7 7l-7 7l-7 -7z" fill="#fff" stroke="#000" stroke-width="1.5"/><text x="${(x + 10).toFixed(1)}" y="${by + 4}" class="small">#${seq}</text></g>`,
      );
    }
    const ry = laneY('restorable');
    (v.windows ?? []).forEach((w, i) => {
      const t0 = ms(w.from.time);
      const t1 = Number.isFinite(ms(w.to.time)) ? ms(w.to.time) : (created.get(w.lastSeq) ?? Number.NaN);
      if (!Number.isFinite(t0) || !Number.isFinite(t1)) return;
      const x0 = scale.x(t0);
      const x1 = Math.max(scale.x(t1), x0 + 3);
      parts.push(
        html`<g data-mark="window" data-window="${i + 1}"><rect x="${x0.toFixed(1)}" y="${ry - 7}" width="${(x1 - x0).toFixed(1)}" height="14" fill="#000"/><text x="${(x0 + 4).toFixed(1)}" y="${ry + 4}" class="small inv">W${i + 1}</text></g>`,
      );
    });
    if (v.windows?.length === 0) parts.push(html`<text x="${LEFT}" y="${ry + 4}" class="mark">NO RECOVERABLE WINDOW</text>`);
    if (v.windows === undefined) parts.push(html`<text x="${LEFT}" y="${ry + 4}" class="mark">NOT WORKED OUT</text>`);
  }

  const name = html`timeline of site ${v.site}`;
  return html`<svg class="timeline" viewBox="0 0 ${W} ${height}" width="100%" role="img" aria-label="${name.text}" data-site="${v.site}" xmlns="http://www.w3.org/2000/svg">${patterns(id)}${parts}</svg>${legend(id, v.postgres)}`;
}

function legend(id: string, postgres: boolean): Html {
  const item = (shape: Html, text: string) =>
    html`<span class="key"><svg viewBox="0 0 24 14" width="24" height="14" aria-hidden="true">${shape}</svg> ${text}</span>`;
  return html`<p class="legend"><svg width="0" height="0" class="defs" aria-hidden="true">${patterns(`${id}k`)}</svg>${[
    item(html`<circle cx="12" cy="7" r="4" fill="#000"/>`, 'bundle, checked ok'),
    item(html`<rect x="5" y="0" width="14" height="14" fill="url(#${id}k-failed)" stroke="#000"/>`, 'bundle that failed a check'),
    item(html`<rect x="0" y="2" width="24" height="10" fill="url(#${id}k-gap)" stroke="#000"/>`, 'gap: missing bundles or WAL'),
    postgres ? item(html`<rect x="0" y="3" width="24" height="8" fill="url(#${id}k-wal)" stroke="#000"/>`, 'WAL carried by a bundle') : '',
    postgres ? item(html`<path d="M12 0l7 7l-7 7l-7 -7z" fill="#fff" stroke="#000"/>`, 'base backup (end)') : '',
    postgres ? item(html`<rect x="0" y="3" width="24" height="8" fill="#000"/>`, 'restorable window') : '',
  ]}</p>`;
}

// ---- sections -----------------------------------------------------------------------------------

function windowsTable(v: SiteView): Html {
  if (!v.postgres) return html`<p>No PostgreSQL data in these bundles: the timeline shows when each bundle was made.</p>`;
  if (v.windows === undefined)
    return html`<p class="warn" data-mark="no-window">The recoverable windows of this site were not worked out: its bundles form no chain that passed.</p>`;
  if (v.windows.length === 0) {
    return html`<p class="warn" data-mark="no-window"><strong>No recoverable window.</strong> Point-in-time recovery needs a base backup and the WAL after it without a gap.</p>`;
  }
  return html`<table class="windows"><thead><tr><th>window</th><th>timeline</th><th>from (end of the base backup)</th><th>to (last WAL without a gap)</th></tr></thead><tbody>${v.windows.map(
    (w, i) =>
      html`<tr data-window="${i + 1}"><td>W${i + 1}</td><td>${w.timeline}</td><td>${time(w.from.time)}<br><span class="small">LSN ${w.from.lsn}, base backup in bundle #${w.baseSeq}</span></td><td>${w.to.time ? time(w.to.time) : html`the end of segment ${w.to.segment}`}<br><span class="small">LSN ${w.to.lsn}, segment ${w.to.segment}, bundle #${w.lastSeq}${w.to.time ? '' : '; no restore point, so no time is known'}</span></td></tr>`,
  )}</tbody></table>`;
}

function siteSection(v: SiteView, index: number): Html {
  const bad = v.bundles.filter(failed).length;
  const s = v.summary;
  const facts = s
    ? html`${s.bundles} bundle(s) in the chain, seq ${s.first} to ${s.newest.seq}; the newest ${SUMS} has sha256 <code>${s.newest.sums}</code>.`
    : html`No bundle of this site passed its signature check, so it forms no chain.`;
  return html`<section class="site" data-site="${v.site}"><h3>Site ${v.site}</h3>
<p>${facts} ${bad > 0 ? html`<strong>${bad} bundle(s) failed.</strong>` : ''} ${v.findings.length > 0 ? html`<strong>${v.findings.length} finding(s) concern this site.</strong>` : ''}</p>
${v.bundles.length > 0 ? timeline(v, index) : ''}
${windowsTable(v)}</section>`;
}

function resultOf(b: BundleReport): string {
  return [...new Set(b.findings.map((f) => f.result))].join(', ');
}

function bundleTable(r: Report): Html {
  const all = allFindings(r);
  const rows = [...r.bundles]
    .sort((a, b) => (a.site ?? '~').localeCompare(b.site ?? '~') || (a.seq ?? 0) - (b.seq ?? 0) || a.path.localeCompare(b.path))
    .map((b) => {
      const notes = [
        ...new Set(all.filter((f) => !b.findings.includes(f) && f.site !== undefined && f.site === b.site && f.seq === b.seq).map((f) => f.result)),
      ];
      const ok = !failed(b);
      return html`<tr data-seq="${b.seq}" data-site="${b.site}" data-result="${ok ? 'ok' : 'failed'}"${ok ? '' : html` class="failed"`}><td>${path.basename(b.path)}</td><td>${b.seq ?? '?'}</td><td>${time(b.created)}</td><td>${b.size !== undefined ? human(b.size) : '?'}</td><td class="fp">${b.signer ?? 'none verified'}</td><td>${b.keyless}</td>${r.deep ? html`<td>${b.deep}</td>` : ''}<td>${ok ? 'ok' : html`<strong>FAILED</strong>: ${resultOf(b)}`}${notes.length > 0 ? html`<br><span class="small">set: ${notes.join(', ')}</span>` : ''}</td></tr>`;
    });
  return html`<table class="bundles"><thead><tr><th class="c-name">bundle</th><th class="c-seq">seq</th><th class="c-time">created</th><th class="c-size">size</th><th class="c-fp">signer fingerprint</th><th class="c-r">signature and files</th>${r.deep ? html`<th class="c-r">contents (decrypted)</th>` : ''}<th class="c-res">result</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function findingsSection(r: Report): Html {
  const all = allFindings(r);
  if (all.length === 0) return html`<p data-mark="no-findings">No findings: every check passed.</p>`;
  return html`<table class="findings"><thead><tr><th class="c-fr">result</th><th class="c-fb">bundle</th><th class="c-ff">file</th><th>what was found</th></tr></thead><tbody>${all.map(
    (f) =>
      html`<tr data-result="${f.result}" data-site="${f.site}" data-seq="${f.seq}"><td><strong>${f.result}</strong></td><td>${placeOf(f)}${f.seq !== undefined && f.site !== undefined && !f.bundle.includes('/') ? html`<br><span class="small">seq ${f.seq}</span>` : ''}</td><td>${f.file ?? '—'}</td><td>${f.message}</td></tr>`,
  )}</tbody></table>`;
}

function commandsSection(r: Report, views: SiteView[]): Html {
  const blocks = views
    .filter((v) => v.bundles.length > 0)
    .map((v) => {
      const folders = [...new Set(v.bundles.map((b) => path.dirname(b.path)))];
      const failedOnes = v.bundles.filter(failed);
      const lines = folders.map(
        (dir) => `cd ${shellQuote(dir)}
for B in ${v.site}-*/; do B=\${B%/}
  ssh-keygen -Y verify -f allowed_signers -I ${v.site} -n ${BUNDLE_NAMESPACE} -s "$B/${SUMS_SIG}" < "$B/${SUMS}" &&
  (cd "$B" && sha256sum --strict -c ${SUMS}) || echo "FAILED: $B"
done`,
      );
      const one = failedOnes.slice(0, 5).map((b) => {
        const name = path.basename(b.path);
        return `cd ${shellQuote(path.dirname(b.path))}
ssh-keygen -Y verify -f allowed_signers -I ${v.site} -n ${BUNDLE_NAMESPACE} -s ${shellQuote(name)}/${SUMS_SIG} < ${shellQuote(name)}/${SUMS}
(cd ${shellQuote(name)} && sha256sum --strict -c ${SUMS})`;
      });
      return html`<h3>Site ${v.site}</h3><pre>${lines.join('\n\n')}</pre>${one.length > 0 ? html`<p>The bundle(s) that failed, one at a time:</p><pre>${one.join('\n\n')}</pre>` : ''}`;
    });
  return html`<p>With nothing but OpenSSH and coreutils, from a copy of <code>allowed_signers</code> (one line
"<code>SITE ssh-ed25519 AAAA...</code>" per site) in the current folder. The same commands are step 1 and 2 of
<code>${RESTORE_FILE}</code> in every bundle. For each bundle <code>B</code> of site <code>S</code>:</p>
<pre>ssh-keygen -Y verify -f allowed_signers -I S -n ${BUNDLE_NAMESPACE} -s B/${SUMS_SIG} &lt; B/${SUMS}
(cd B &amp;&amp; sha256sum --strict -c ${SUMS})
(cd B &amp;&amp; LC_ALL=C ls -A | grep -vxF -e ${SUMS} -e ${SUMS_SIG} | diff - &lt;(cut -c67- ${SUMS}))</pre>
<p>The first must print <code>Good "${BUNDLE_NAMESPACE}" signature for S</code>, the second <code>OK</code> for every file,
the third (bash) nothing: the folder holds no file the signed list leaves out. That the bundles form one
unbroken chain (each manifest's <code>prev</code> is the sha256 of the previous bundle's ${SUMS}) is checked by
<code>sha256sum B/${SUMS}</code> against the next bundle's <code>${MANIFEST_FILE}</code>.${r.deep ? ` The contents check needs the age identity; ${RESTORE_FILE} gives those steps too.` : ''}</p>
${blocks}`;
}

const CSS = `
@page { size: A4; margin: 14mm 14mm 16mm 14mm; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { font: 10pt/1.4 "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #000; background: #fff; max-width: 190mm; margin: 0 auto; padding: 6mm; }
h1 { font-size: 15pt; margin: 0 0 2mm; }
h2 { font-size: 13pt; margin: 7mm 0 2mm; border-bottom: 1.5pt solid #000; break-after: avoid; }
h3 { font-size: 11pt; margin: 4mm 0 1mm; break-after: avoid; }
code, pre, .fp { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 8.5pt; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; border: 0.75pt solid #555; padding: 2mm; margin: 1mm 0 3mm; break-inside: avoid; }
code { overflow-wrap: anywhere; }
.verdict { border: 3pt solid #000; padding: 4mm 5mm; margin: 0 0 4mm; break-inside: avoid; }
.verdict .big { font-size: 26pt; font-weight: bold; letter-spacing: 0.03em; margin: 0; }
.verdict.error { border-style: double; border-width: 6pt; background: repeating-linear-gradient(45deg, #fff 0 6px, #eee 6px 9px); }
.verdict p { margin: 1mm 0; }
table { width: 100%; border-collapse: collapse; table-layout: fixed; margin: 1mm 0 3mm; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
th, td { border: 0.75pt solid #666; padding: 1mm 1.5mm; text-align: left; vertical-align: top; overflow-wrap: anywhere; font-size: 8.5pt; }
th { background: #e6e6e6; }
tr.failed td { background: repeating-linear-gradient(45deg, #fff 0 5px, #e4e4e4 5px 8px); }
.c-name { width: 22%; } .c-seq { width: 6%; } .c-time { width: 14%; } .c-size { width: 9%; } .c-fp { width: 22%; } .c-r { width: 9%; } .c-res { width: 18%; }
.c-fr { width: 15%; } .c-fb { width: 22%; } .c-ff { width: 15%; }
.small { font-size: 7.5pt; }
.facts td:first-child { width: 25%; font-weight: bold; }
.warn { border-left: 3pt solid #000; padding-left: 2mm; }
svg.timeline { display: block; width: 100%; height: auto; border: 0.75pt solid #999; margin: 1mm 0; break-inside: avoid; }
svg.timeline text { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; }
svg .tick { font-size: 9px; } svg .lane { font-size: 10px; font-weight: bold; } svg .mark { font-size: 9px; font-weight: bold; }
svg .small { font-size: 8px; } svg .inv { fill: #fff; } svg .grid { stroke: #ccc; stroke-width: 0.6; }
.legend { font-size: 8pt; margin: 0 0 2mm; } .legend .key { display: inline-block; margin-right: 4mm; white-space: nowrap; } .legend svg { vertical-align: middle; }
svg.defs { position: absolute; }
section.site { break-inside: auto; }
footer { margin-top: 6mm; border-top: 0.75pt solid #000; font-size: 8pt; padding-top: 1mm; }
@media print { body { max-width: none; padding: 0; } a { color: #000; text-decoration: none; } }
`;

/**
 * Renders the report as one self-contained HTML document (no script, no external resource).
 * Pure: the same Report gives the same bytes. Never throws for anything a medium can contain.
 */
export function renderHtml(r: Report): string {
  const all = allFindings(r);
  const views = siteViews(r);
  const failedBundles = r.bundles.filter(failed).length;
  const status = r.ok ? 'ok' : 'error';
  const verdict = r.ok
    ? html`<p class="big">&#x2714; OK: every check passed</p><p>${r.bundles.length} bundle(s) of ${views.length} site(s) are authentic, complete, untampered and in sequence${r.deep ? ', and their contents decrypt and match' : ''}.</p>`
    : html`<p class="big">&#x2718; FINDINGS: ${countFindings(all)} problem(s)</p><p>${failedBundles} of ${r.bundles.length} bundle(s) failed a check; ${r.findings.length} finding(s) concern the set as a whole. Do not rely on what is listed below as failed.</p>`;
  const orphans = r.bundles.filter((b) => b.site === undefined);
  const footer = `${r.tool}, checked ${when(r.checkedAt)}`;
  const css = `${CSS}@page { @bottom-left { content: ${cssString(footer)}; font-size: 7pt; } @bottom-right { content: "page " counter(page) " of " counter(pages); font-size: 7pt; } }\n`;
  const doc = html`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="${r.tool}">
<title>airlock media report: ${r.ok ? 'ok' : 'findings'}, checked ${when(r.checkedAt)}</title>
<style>${new Html(css)}</style></head>
<body data-status="${status}">
<header class="verdict ${status}" data-verdict="${status}" role="status">
<h1>airlock media report</h1>
${verdict}
</header>
<table class="facts"><tbody>
<tr><td>checked</td><td>${time(r.checkedAt)}</td></tr>
<tr><td>by</td><td>${r.tool}</td></tr>
<tr><td>depth</td><td>${r.deep ? 'with the key: signatures, files and chain, then every bundle decrypted in memory and every entry checked' : `without the key: signatures, every file against ${SUMS}, manifests and the chain; contents not decrypted`}</td></tr>
<tr><td>what was checked</td><td>${r.paths.map((p, i) => html`${i > 0 ? html`<br>` : ''}<code>${p}</code>`)}</td></tr>
<tr><td>result</td><td>${r.bundles.length} bundle(s) of ${views.length} site(s): ${r.bundles.length - failedBundles} ok, ${failedBundles} failed; ${countFindings(all)} finding(s); status: <strong>${status}</strong></td></tr>
</tbody></table>
<h2>Findings</h2>
${findingsSection(r)}
<h2>What the media can restore, per site</h2>
${views.length > 0 ? views.map((v, i) => siteSection(v, i)) : html`<p>No bundle passed far enough to name its site.</p>`}
${orphans.length > 0 ? html`<p class="warn">${orphans.length} bundle(s) could not be assigned to a site (their signature or manifest failed); they are in the table below.</p>` : ''}
<h2>Bundles</h2>
${bundleTable(r)}
<h2>Repeat the keyless checks with stock tools</h2>
${commandsSection(r, views)}
<footer>${r.tool}; checked ${when(r.checkedAt)} (${r.checkedAt}); ${r.deep ? 'with the key' : 'without the key'}; status: ${status}.</footer>
</body></html>
`;
  return doc.text;
}
