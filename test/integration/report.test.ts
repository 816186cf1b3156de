/*
 * The auditor's HTML report, end to end: real bundles exported by the built CLI (two sites: one good
 * chain of configuration bundles, and a database site whose bundles carry PostgreSQL coverage with a
 * WAL gap and whose last bundle is tampered), checked by the built airlock-verify with --report, and
 * the report opened in headless Chromium: what must be visible is found by its elements and text,
 * the page must load nothing, and it must print on A4 with nothing cut off.
 */
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { PostgresCoverage } from '../../manifests/coverage.js';
import { airlock, airlockVerify, exportArgs, makeKeys, tmp, type Keys } from '../helpers.js';
import { resignChain } from '../resign.js';
import { EXIT } from '../../manifests/errors.js';

const T0 = Date.UTC(2026, 2, 1, 0, 0, 0);
const at = (hours: number, minutes = 0) => new Date(T0 + hours * 3_600_000 + minutes * 60_000).toISOString();
const segment = (n: number) => `00000001${'0'.repeat(8)}${n.toString(16).toUpperCase().padStart(8, '0')}`;
/** A4 is 210 mm wide; the report's @page leaves 14 mm on each side. */
const PRINTABLE_PX = ((210 - 28) / 25.4) * 96;
const HOSTILE = '<img src=x onerror=alert(1)>';

function exportBundles(keys: Keys, medium: string, n: number): string[] {
  const src = tmp();
  const state = tmp();
  const out: string[] = [];
  for (let i = 1; i <= n; i++) {
    writeFileSync(path.join(src, 'app.conf'), `generation = ${i}\n`);
    const r = airlock(exportArgs(keys, medium, state, ['--files', src]));
    assert.is(r.code, EXIT.ok, r.stderr);
    out.push(r.stdout.trim());
  }
  return out;
}

function coverage(i: number): PostgresCoverage {
  // WAL 2-4, 5-8, then 0B-0D: segments 09 and 0A are in no bundle
  const wal = [
    [2, 4],
    [5, 8],
    [0x0b, 0x0d],
    [0x0e, 0x10],
  ][i] as [number, number];
  const c: PostgresCoverage = {
    systemIdentifier: '7341234567890123456',
    major: 15,
    segmentSize: 16 * 1024 * 1024,
    dataChecksums: true,
    timeline: 1,
    wal: [{ timeline: 1, first: segment(wal[0]), last: segment(wal[1]) }],
    timelines: [],
    dumps: 0,
    restorePoint: { name: `airlock-plant-db-${i + 1}`, lsn: `0/${wal[1].toString(16).toUpperCase()}000090`, time: at(i * 24, 55), timeline: 1 },
  };
  if (i === 0) c.base = { timeline: 1, startLsn: '0/2000028', stopLsn: '0/2000138', startTime: at(0), stopTime: at(0, 5) };
  return c;
}

// the media set
const filesSite = makeKeys('plant-files');
const dbSite = makeKeys('plant-db');
const medium = tmp();
const signers = path.join(tmp(), 'allowed_signers');
writeFileSync(signers, readFileSync(filesSite.allowedSigners, 'utf8') + readFileSync(dbSite.allowedSigners, 'utf8'));
const files = exportBundles(filesSite, medium, 3);
resignChain(files, filesSite.signingKey, (m, i) => (m.created = at(i * 24 + 2)));
const db = exportBundles(dbSite, medium, 4);
resignChain(db, dbSite.signingKey, (m, i) => {
  m.created = at(i * 24 + 1);
  m.coverage = { postgres: coverage(i) };
});
const tampered = db[3] as string;
const volume = path.join(tampered, 'payload.000');
const bytes = readFileSync(volume);
const middle = Math.floor(bytes.length / 2);
bytes[middle] = (bytes[middle] ?? 0) ^ 0x01;
writeFileSync(volume, bytes);
// a file name is anything the medium says: it must reach the page as text
writeFileSync(path.join(tampered, HOSTILE), 'x');

const out = tmp();
const reportFile = path.join(out, 'report.html');
const plain = airlockVerify(['--allowed-signers', signers, medium]);
const withReport = airlockVerify(['--allowed-signers', signers, '--report', reportFile, medium]);
const json = JSON.parse(airlockVerify(['--allowed-signers', signers, '--json', medium]).stdout) as {
  findings: { result: string; file?: string; seq?: number; site?: string }[];
};

test('with --identity the report adds the contents check; a clean site reads ok', () => {
  const file = path.join(tmp(), 'deep.html');
  const r = airlockVerify(['--allowed-signers', signers, '--identity', filesSite.identity, '--report', file, path.join(medium, 'plant-files')]);
  assert.is(r.code, EXIT.ok, r.stdout + r.stderr);
  const text = readFileSync(file, 'utf8');
  assert.match(text, 'data-verdict="ok"');
  assert.match(text, 'contents (decrypted)');
  assert.is(
    (
      text.match(
        /<tr data-seq="\d" data-site="plant-files" data-result="ok"><td>plant-files-0000000\d<\/td>[^]*?<td>ok<\/td><td>ok<\/td><td>ok<\/td><\/tr>/g,
      ) ?? []
    ).length,
    3,
  );
});

let browser: Browser | undefined;
test.after(async () => {
  await browser?.close();
});

test('--report leaves the output and the exit code as they are and writes the file atomically', () => {
  assert.is(plain.code, EXIT.failed, plain.stderr);
  assert.is(withReport.code, EXIT.failed, withReport.stderr);
  assert.is(withReport.stdout, plain.stdout);
  assert.is(withReport.stderr, '');
  assert.ok(statSync(reportFile).size > 1000);
  assert.equal(readdirSync(out), ['report.html'], 'no temporary file left beside it');
  const text = readFileSync(reportFile, 'utf8');
  assert.not.match(text, /<(script|link|img|iframe|object|embed)\b|\b(src|href)\s*=\s*["']|@import|url\((?!#)/i);
  assert.ok(text.includes('&lt;img src=x onerror=alert(1)&gt;'));
  // a folder that is not there is a usage problem found before the check, not after
  const missing = airlockVerify(['--allowed-signers', signers, '--report', path.join(out, 'no', 'r.html'), medium]);
  assert.is(missing.code, EXIT.input, missing.stderr);
  assert.is(missing.stdout, '');
});

test('the good chain is clean, the tampered bundle and the WAL gap are findings', () => {
  const bySite = (site: string) => json.findings.filter((f) => f.site === site);
  assert.equal(bySite('plant-files'), []);
  assert.ok(json.findings.some((f) => f.result === 'checksum-mismatch' && f.file === 'payload.000' && f.seq === 4));
  assert.ok(json.findings.some((f) => f.result === 'extra' && f.file === HOSTILE));
  // wal-gap comes from the verifier's coverage check
  assert.ok(
    json.findings.some((f) => f.result === 'wal-gap' && f.site === 'plant-db' && f.seq === 3),
    JSON.stringify(json.findings),
  );
});

test('in Chromium: the verdict, the tampered bundle and the gap are shown, and nothing is fetched', async () => {
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  const page = await browser.newPage({ viewport: { width: 1000, height: 1400 } });
  const url = pathToFileURL(reportFile).href;
  const requests: string[] = [];
  const dialogs: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  await page.goto(url, { waitUntil: 'load' });
  await page.screenshot({ path: path.join(out, 'report.png'), fullPage: true });
  assert.equal(requests, [url], 'the page loads nothing but itself');
  assert.equal(dialogs, []);

  const verdict = page.locator('[data-verdict]');
  assert.is(await verdict.getAttribute('data-verdict'), 'error');
  assert.ok(await verdict.isVisible());
  assert.match((await verdict.innerText()).toUpperCase(), 'FINDINGS');

  // the tampered bundle: on its site's timeline, in the bundle table, in the findings
  const db = page.locator('svg.timeline[data-site="plant-db"]');
  const failedMark = db.locator('[data-mark="failed-bundle"][data-seq="4"]');
  assert.ok(await failedMark.isVisible());
  assert.match((await failedMark.locator('text').textContent()) ?? '', '#4 FAILED');
  const row = page.locator('table.bundles tr[data-site="plant-db"][data-seq="4"]');
  assert.is(await row.getAttribute('data-result'), 'failed');
  assert.match(await row.innerText(), /FAILED.*checksum-mismatch/);
  const finding = page.locator('table.findings tr[data-result="checksum-mismatch"][data-seq="4"]');
  assert.ok(await finding.isVisible());
  assert.match(await finding.innerText(), /plant-db-00000004\s+payload\.000/);
  // the hostile file name is text on the page, not an element
  assert.ok((await page.locator('table.findings').innerText()).includes(HOSTILE));
  assert.is(await page.locator('img').count(), 0);

  // the good chain: every bundle a plain mark, no failure anywhere on its timeline
  const files = page.locator('svg.timeline[data-site="plant-files"]');
  assert.is(await files.locator('[data-mark="bundle"]').count(), 3);
  assert.is(await files.locator('[data-mark="failed-bundle"], [data-mark="wal-gap"], [data-mark="chain-gap"]').count(), 0);

  // PostgreSQL coverage: WAL bars, the base backup, and the gap shown as such
  assert.ok((await db.locator('[data-mark="wal"]').count()) >= 3);
  assert.ok(await db.locator('[data-mark="base"][data-seq="1"]').isVisible());
  const gap = db.locator('[data-mark="wal-gap"][data-seq="3"]');
  // wal-gap findings come from the verifier's coverage check (verifier/verify.ts)
  assert.ok(await gap.isVisible(), 'the WAL gap is drawn on the timeline');
  assert.match((await gap.locator('text').textContent()) ?? '', 'WAL GAP');
  assert.ok(await page.locator('table.findings tr[data-result="wal-gap"][data-seq="3"]').isVisible());
  // one window: from the base backup in seq 1 to the restore point of seq 2, just before the gap
  assert.is(await db.locator('[data-mark="window"]').count(), 1);
  const window = await page.locator('section.site[data-site="plant-db"] table.windows tr[data-window="1"]').innerText();
  assert.match(window, `${at(0, 5).slice(0, 10)} ${at(0, 5).slice(11, 19)} UTC`);
  assert.match(window, `${at(24, 55).slice(0, 10)} ${at(24, 55).slice(11, 19)} UTC`);
  assert.match(window, segment(8));

  // the stock-tool commands, as RESTORE.txt gives them
  const commands = await page.locator('pre').allInnerTexts();
  assert.ok(commands.some((c) => c.includes('ssh-keygen -Y verify -f allowed_signers -I plant-db -n airlock-bundle')));
  assert.ok(commands.some((c) => c.includes('sha256sum --strict -c SHA256SUMS')));
});

test('printed on A4: a sensible number of pages and nothing wider than the printable width', async () => {
  assert.ok(browser, 'the previous test launched the browser');
  const page = await browser.newPage({ viewport: { width: Math.floor(PRINTABLE_PX), height: 1000 } });
  await page.goto(pathToFileURL(reportFile).href);
  await page.emulateMedia({ media: 'print' });
  const limit = PRINTABLE_PX + 1;
  // as a string: the tests are typechecked without the DOM's types
  const wide = await page.evaluate<string[]>(`[...document.querySelectorAll('body, body *')].flatMap((el) => {
    const right = el.getBoundingClientRect().right;
    const html = el instanceof HTMLElement;
    const over = right > ${limit} || (html && (el.scrollWidth > ${limit} || (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1)));
    return over ? [el.tagName + ' ' + el.getAttribute('class') + ' ' + el.scrollWidth + '/' + Math.round(right)] : [];
  })`);
  assert.equal(wide, [], 'no element is cut off');
  const pdf = await page.pdf({ format: 'A4' });
  writeFileSync(path.join(out, 'report.pdf'), pdf);
  const pages = (pdf.toString('latin1').match(/\/Type\s*\/Page(?!s)/g) ?? []).length;
  assert.ok(pages >= 2 && pages <= 8, `${pages} pages`);
});

test.run();
