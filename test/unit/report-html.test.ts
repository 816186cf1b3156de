/*
 * verifier/report-html.ts on hand-built Reports: whatever a medium says is escaped, the verdict comes
 * first and says the right thing, every finding is listed, the timeline marks what it must.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { PostgresCoverage } from '../../manifests/coverage.js';
import type { Manifest } from '../../manifests/manifest.js';
import { escapeHtml, html, renderHtml } from '../../verifier/report-html.js';
import { allFindings, type BundleReport, type Finding, type Report } from '../../verifier/verify.js';

const FP = 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
const seg = (n: number) => `000000010000000000000${n.toString(16).toUpperCase().padStart(3, '0')}`;

function manifest(site: string, seq: number, created: string, postgres?: PostgresCoverage): Manifest {
  return {
    format: 'airlock-bundle',
    version: 1,
    site,
    seq,
    ...(seq > 1 ? { prev: 'a'.repeat(64) } : {}),
    created,
    tool: 'airlock 0.1.0',
    signer: FP,
    recipients: [`age1${'q'.repeat(58)}`],
    payload: {
      encryption: 'age-v1',
      compression: 'zstd',
      volumeSize: 1 << 20,
      volumes: [{ name: 'payload.000', size: 1000, sha256: 'b'.repeat(64) }],
      size: 1000,
      sha256: 'c'.repeat(64),
    },
    inner: { sha256: 'd'.repeat(64), entries: 3 },
    contents: { files: 2, metadata: 0, bytes: 10 },
    ...(postgres ? { coverage: { postgres } } : {}),
  };
}

function pg(first: number, last: number, base = false): PostgresCoverage {
  return {
    systemIdentifier: '7000000000000000001',
    major: 15,
    segmentSize: 16 << 20,
    dataChecksums: true,
    timeline: 1,
    wal: [{ timeline: 1, first: seg(first), last: seg(last) }],
    timelines: [],
    dumps: 0,
    ...(base
      ? { base: { timeline: 1, startLsn: '0/2000028', stopLsn: '0/2000100', startTime: '2026-01-01T00:00:00.000Z', stopTime: '2026-01-01T00:05:00.000Z' } }
      : {}),
  };
}

function bundle(site: string, seq: number, day: number, findings: Omit<Finding, 'bundle' | 'site' | 'seq'>[] = [], postgres?: PostgresCoverage): BundleReport {
  const p = `/media/usb/${site}/${site}-${String(seq).padStart(8, '0')}`;
  const created = `2026-01-0${day}T01:00:00.000Z`;
  return {
    path: p,
    site,
    seq,
    created,
    signer: FP,
    size: 1000,
    sums: 'e'.repeat(64),
    keyless: findings.length > 0 ? 'failed' : 'ok',
    deep: 'not-run',
    findings: findings.map((f) => ({ ...f, bundle: p, site, seq })),
    manifest: manifest(site, seq, created, postgres),
  };
}

const HOSTILE_MESSAGE = 'sha256 differs <script>alert("x")</script>';
const HOSTILE_FILE = `"><svg onload=alert(1)>'&`;

function failing(): Report {
  return {
    tool: 'airlock-verify 0.1.0',
    checkedAt: '2026-01-05T12:00:00.000Z',
    deep: false,
    paths: ["/media/it's usb"],
    bundles: [
      bundle('db', 1, 1, [], pg(2, 4, true)),
      bundle('db', 2, 2, [], pg(5, 8)),
      bundle('db', 3, 3, [], pg(11, 12)),
      bundle('db', 4, 4, [{ result: 'checksum-mismatch', file: HOSTILE_FILE, message: HOSTILE_MESSAGE }], pg(13, 14)),
      bundle('etc', 1, 1),
      bundle('etc', 2, 3),
      {
        path: '/media/usb/junk',
        keyless: 'failed',
        deep: 'not-run',
        findings: [{ result: 'missing', bundle: '/media/usb/junk', file: 'SHA256SUMS', message: 'no SHA256SUMS\u0000' }],
      },
    ],
    findings: [
      { result: 'wal-gap', bundle: '/media/usb/db/db-00000003', site: 'db', seq: 3, message: `segments ${seg(9)} to ${seg(10)} are in no bundle` },
      { result: 'timeline-break', bundle: '/media/usb/db/db-00000004', site: 'db', seq: 4, message: 'timeline 2 has no history file' },
      { result: 'partial', bundle: '/media/usb/db/db-00000005.partial', message: 'leftover partial bundle' },
    ],
    sites: [
      {
        site: 'db',
        first: 1,
        newest: { seq: 3, sums: 'e'.repeat(64) },
        bundles: 3,
        windows: [
          { timeline: 1, baseSeq: 1, lastSeq: 2, from: { lsn: '0/2000100', time: '2026-01-01T00:05:00.000Z' }, to: { lsn: '0/8FFFFFF', segment: seg(8) } },
        ],
      },
      { site: 'etc', first: 1, newest: { seq: 2, sums: 'f'.repeat(64) }, bundles: 2 },
    ],
    ok: false,
  };
}

test('escaping: markup from the medium arrives as text, never as elements', () => {
  assert.is(escapeHtml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  // a bidi override would show a name from the medium backwards ("exe.txt" as "txt.exe")
  assert.is(escapeHtml('a\u202etxt.exe\u2066b\u2069\u009b'), 'a\ufffdtxt.exe\ufffdb\ufffd\ufffd');
  assert.is(html`<b>${'<i>'}</b>${html`<i>ok</i>`}`.text, '<b>&lt;i&gt;</b><i>ok</i>');
  const out = renderHtml(failing());
  assert.not.match(out, /<script/i);
  assert.not.match(out, /<svg onload/i);
  assert.ok(out.includes('sha256 differs &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'));
  assert.ok(out.includes('&quot;&gt;&lt;svg onload=alert(1)&gt;&#39;&amp;'));
  assert.ok(out.includes('no SHA256SUMS\ufffd'), 'a control character is replaced');
  // a tool name that tries to leave the style element or the CSS string
  const r = failing();
  r.tool = 'x</style><script>alert(1)</script>"';
  const evil = renderHtml(r);
  assert.not.match(evil, /<script/i);
  assert.is(evil.split('</style>').length, 2, 'one style element, closed once');
});

test('the verdict comes first and says what the report found', () => {
  const bad = renderHtml(failing());
  const body = bad.slice(bad.indexOf('<body'));
  assert.match(body.slice(0, 400), /data-verdict="error"/);
  assert.match(body, /FINDINGS: 5 problem\(s\)/);
  const r = failing();
  r.bundles = r.bundles.filter((b) => b.findings.length === 0);
  r.findings = [];
  r.ok = true;
  const good = renderHtml(r);
  assert.match(good, /data-verdict="ok"/);
  assert.match(good, /OK: every check passed/);
  assert.match(good, /data-mark="no-findings"/);
  assert.not.match(good, /data-result="failed"|data-mark="failed-bundle"|FINDINGS/);
});

test('every finding is listed with its bundle and file', () => {
  const r = failing();
  const out = renderHtml(r);
  const table = out.slice(out.indexOf('<table class="findings">'), out.indexOf('</table>', out.indexOf('<table class="findings">')));
  const rows = table.match(/<tr data-result="[^"]+"/g) ?? [];
  assert.is(rows.length, allFindings(r).length);
  for (const f of allFindings(r)) {
    assert.ok(table.includes(`data-result="${f.result}"`), f.result);
    assert.ok(table.includes(escapeHtml(f.message).replace('\u0000', '\ufffd')), f.message);
    if (f.file) assert.ok(table.includes(escapeHtml(f.file)), f.file);
  }
  assert.ok(table.includes('db-00000004'));
  assert.ok(table.includes('db-00000005.partial'));
});

test('the timeline marks the failed bundle, the WAL gap, the timeline break and the window', () => {
  const out = renderHtml(failing());
  const db = out.slice(out.indexOf('<svg class="timeline"'), out.indexOf('</svg>', out.indexOf('<svg class="timeline"')));
  assert.match(db, /data-site="db"/);
  assert.match(db, /data-mark="failed-bundle" data-seq="4"[^]*#4 FAILED/);
  assert.match(db, /data-mark="wal-gap" data-seq="3"[^]*WAL GAP/);
  assert.match(db, /data-mark="timeline-break" data-seq="4"[^]*TIMELINE BREAK/);
  assert.match(db, /data-mark="base" data-seq="1"/);
  assert.match(db, /data-mark="window" data-window="1"/);
  assert.match(db, /url\(#s0-gap\)/);
  assert.is((db.match(/data-mark="wal"/g) ?? []).length, 4);
  // a window without a restore point names its last segment instead of a time
  assert.match(out, new RegExp(`the end of segment ${seg(8)}`));
  // the site without PostgreSQL: bundles only, by the time they were made
  const etc = out.slice(out.indexOf('<svg class="timeline" viewBox', out.indexOf('data-site="etc"')));
  assert.not.match(etc.slice(0, etc.indexOf('</svg>')), /WAL archived/);
  assert.match(out, /No PostgreSQL data in these bundles/);
});

test('the bundle table, the deep column with --identity, the commands', () => {
  const r = failing();
  const keyless = renderHtml(r);
  assert.match(keyless, /<tr data-seq="4" data-site="db" data-result="failed" class="failed">/);
  assert.not.match(keyless, /contents \(decrypted\)/);
  assert.match(keyless, /data-seq="3" data-site="db" data-result="ok"[^]*?set: wal-gap/);
  r.deep = true;
  for (const b of r.bundles) b.deep = b.findings.length > 0 ? 'skipped' : 'ok';
  const deep = renderHtml(r);
  assert.match(deep, /contents \(decrypted\)/);
  assert.match(deep, /with the key: signatures, files and chain/);
  assert.match(deep, /<td>skipped<\/td>/);
  assert.ok(keyless.includes('ssh-keygen -Y verify -f allowed_signers -I db -n airlock-bundle -s db-00000004/SHA256SUMS.sig &lt; db-00000004/SHA256SUMS'));
  assert.ok(keyless.includes('(cd db-00000004 &amp;&amp; sha256sum --strict -c SHA256SUMS)'));
  assert.is(renderHtml(failing()), keyless, 'the same report gives the same bytes');
});

test.run();
