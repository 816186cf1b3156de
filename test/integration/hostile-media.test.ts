/*
 * Media prepared by a hostile courier, and bundles signed by a trusted key that carry hostile
 * payloads: what airlock-verify and a restore must survive with a verdict, in bounded time, memory
 * and disk, and without handing the terminal anything but text.
 */
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatRecipient, parseIdentities, recipientOf } from '../../manifests/age/keys.js';
import { encryptStream } from '../../manifests/age/stream.js';
import { canonicalJson, canonicalLine } from '../../manifests/canonical.js';
import { childStage } from '../../manifests/child.js';
import { LIMITS } from '../../manifests/limits.js';
import { FORMAT, FORMAT_VERSION, bundleName, volumeName, type Manifest } from '../../manifests/manifest.js';
import { fingerprint, parsePrivateKey } from '../../manifests/sshkey.js';
import { BUNDLE_NAMESPACE, sign } from '../../manifests/sshsig.js';
import { formatSums } from '../../manifests/sums.js';
import { END_OF_ARCHIVE, encodeHeader, paddingFor } from '../../manifests/tar.js';
import { AIRLOCK, ROOT, airlock, airlockVerify, exportArgs, makeKeys, run, tmp } from '../helpers.js';
import { EXIT } from '../../manifests/errors.js';

const VECTORS = path.join(ROOT, 'test', 'vectors');
const KEYS = path.join(VECTORS, 'keys');
const ALLOWED = path.join(KEYS, 'allowed_signers');
const IDENTITY = path.join(KEYS, 'identity.txt');
const TiB = 1024 ** 4;
const MiB = 1024 ** 2;
const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

/** A copy of the good three-bundle chain to tamper with, and its first bundle (six volumes). */
function goodCopy(): { media: string; first: string } {
  const media = path.join(tmp(), 'media');
  cpSync(path.join(VECTORS, 'cases', 'good-chain', 'media'), media, { recursive: true });
  return { media, first: path.join(media, 'site-a', 'site-a-00000001') };
}

interface JsonReport {
  status: string;
  findings: { result: string; file?: string; message: string; bundle: string; more?: number }[];
}

test('a volume and RESTORE.txt replaced by 1 TiB sparse files are size-mismatch at once, keyless, deep and in a restore', () => {
  const { media, first } = goodCopy();
  truncateSync(path.join(first, 'payload.001'), TiB);
  truncateSync(path.join(first, 'RESTORE.txt'), TiB);
  for (const deep of [false, true]) {
    const started = Date.now();
    const r = airlockVerify(['--allowed-signers', ALLOWED, '--json', ...(deep ? ['--identity', IDENTITY] : []), media], { timeout: 60_000 });
    const seconds = (Date.now() - started) / 1000;
    assert.is(r.code, EXIT.failed, r.stderr);
    assert.ok(seconds < 20, `took ${seconds} s`);
    const report = JSON.parse(r.stdout) as JsonReport;
    for (const file of ['payload.001', 'RESTORE.txt']) {
      const f = report.findings.find((x) => x.file === file);
      assert.is(f?.result, 'size-mismatch', `${file}: ${JSON.stringify(f)}`);
      assert.match(f?.message ?? '', String(TiB));
    }
  }
  const parent = tmp();
  const started = Date.now();
  const rs = airlock(
    ['restore', 'files', '--from', media, '--identity', IDENTITY, '--allowed-signers', ALLOWED, '--seq', '1', '--to', path.join(parent, 'restored')],
    { timeout: 60_000 },
  );
  assert.ok((Date.now() - started) / 1000 < 20, 'the restore took too long');
  assert.is(rs.code, EXIT.failed, rs.stderr);
  assert.match(rs.stderr, /^airlock: error: /m);
  assert.equal(readdirSync(parent), []);
});

test('a bundle with recovery data whose volume is a 1 TiB sparse file: the repair refuses it by its size, never reads it', () => {
  const keys = makeKeys('site-sparse');
  const src = tmp('airlock-src-');
  writeFileSync(path.join(src, 'data.bin'), randomBytes(3 * MiB));
  const medium = tmp('airlock-medium-');
  const e = airlock(exportArgs(keys, medium, tmp('airlock-state-'), ['--files', src, '--recovery-percent', '10', '--volume-size', '1M', '--compress', 'none']));
  assert.is(e.code, EXIT.ok, e.stderr);
  truncateSync(path.join(e.stdout.trim(), 'payload.001'), TiB);
  const parent = tmp();
  const started = Date.now();
  const r = airlock(
    ['restore', 'files', '--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', path.join(parent, 'restored')],
    { timeout: 120_000 },
  );
  const seconds = (Date.now() - started) / 1000;
  assert.ok(seconds < 60, `took ${seconds} s`);
  assert.is(r.code, EXIT.failed, r.stderr);
  assert.match(r.stderr, /^airlock: error: .*payload\.001 is damaged and the recovery data could not repair it/m);
  assert.equal(readdirSync(parent), [], 'no scratch copy or staging left');
});

test('a FIFO in place of a volume and a symbolic link in place of RESTORE.txt are never opened: findings, no hang', () => {
  const { media, first } = goodCopy();
  rmSync(path.join(first, 'payload.002'));
  assert.is(run('mkfifo', [path.join(first, 'payload.002')]).code, 0);
  rmSync(path.join(first, 'RESTORE.txt'));
  symlinkSync('/dev/zero', path.join(first, 'RESTORE.txt'));
  const r = airlockVerify(['--allowed-signers', ALLOWED, '--json', media], { timeout: 30_000 });
  assert.is(r.code, EXIT.failed, r.stderr);
  const report = JSON.parse(r.stdout) as JsonReport;
  assert.ok(
    report.findings.some((f) => f.result === 'extra' && f.file === 'payload.002' && f.message.includes('special file')),
    r.stdout,
  );
  assert.ok(
    report.findings.some((f) => f.result === 'extra' && f.file === 'RESTORE.txt' && f.message.includes('symbolic link')),
    r.stdout,
  );
});

test('findings on a medium are bounded too: 250 extra files and 150 partial folders are named up to 100 each and counted', () => {
  const { media, first } = goodCopy();
  for (let i = 0; i < 250; i++) writeFileSync(path.join(first, `extra-${i}.txt`), 'x');
  for (let i = 0; i < 150; i++) mkdirSync(path.join(media, 'site-a', `site-a-${String(100 + i).padStart(8, '0')}.partial`));
  const r = airlockVerify(['--allowed-signers', ALLOWED, '--json', media]);
  assert.is(r.code, EXIT.failed, r.stderr);
  const report = JSON.parse(r.stdout) as JsonReport;
  const named = (result: string) => report.findings.filter((f) => f.result === result && f.more === undefined).length;
  const more = (result: string) => report.findings.find((f) => f.result === result && f.more !== undefined)?.more;
  assert.is(named('extra'), 100);
  assert.is(more('extra'), 150);
  assert.is(named('partial'), 100);
  assert.is(more('partial'), 50);
  const text = airlockVerify(['--allowed-signers', ALLOWED, '--quiet', media]);
  assert.match(text.stdout, /^extra: site-a-00000001: and 150 more extra finding\(s\) like those above, counted, not named/m);
  assert.match(text.stdout, /; 400 finding\(s\)\nstatus: error\n$/);
});

/** Names a courier can put on a medium to take over the auditor's terminal. */
const EVIL_FILE = '\x1b[2J\x1b[Hstatus: ok\nstatus: ok\u202etxt.exe\u009b0m';
const EVIL_PARTIAL = 'site-a-00000004\x1b]0;all good\x07\r\u2066ok\u2069.partial';
/** What a terminal acts on: C0 controls but LF, DEL, C1 controls, bidi controls. */

const ACTIVE = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;

test('names from the medium reach the terminal escaped: no forged status line, no escape sequence; --json keeps them exact', () => {
  const { media, first } = goodCopy();
  writeFileSync(path.join(first, EVIL_FILE), 'x');
  writeFileSync(Buffer.concat([Buffer.from(`${first}/not-utf8-`), Buffer.from([0xff, 0xfe]), Buffer.from('.txt')]), 'x');
  mkdirSync(path.join(media, 'site-a', EVIL_PARTIAL));
  writeFileSync(path.join(media, 'site-a', EVIL_PARTIAL, 'SHA256SUMS'), '');

  const r = airlockVerify(['--allowed-signers', ALLOWED, media]);
  assert.is(r.code, EXIT.failed, r.stderr);
  assert.not.ok(ACTIVE.test(r.stdout), JSON.stringify(r.stdout));
  const lines = r.stdout.trimEnd().split('\n');
  assert.is(lines.at(-1), 'status: error');
  assert.is(lines.filter((l) => l.startsWith('status: ')).length, 1);
  for (const l of lines) assert.match(l, /^(ok: |failed: |extra: |partial: |site |\d+ bundle\(s\) |status: )/);
  assert.ok(lines.includes(`extra: site-a-00000001/\\x1b[2J\\x1b[Hstatus: ok\\nstatus: ok\\u202etxt.exe\\u009b0m: not listed in SHA256SUMS`), r.stdout);
  assert.ok(
    lines.some((l) => l.startsWith('extra: site-a-00000001/not-utf8-\\ufffd\\ufffd.txt: ')),
    r.stdout,
  );
  assert.ok(
    lines.some((l) => l.startsWith('partial: site-a-00000004\\x1b]0;all good\\x07\\r\\u2066ok\\u2069.partial: ')),
    r.stdout,
  );

  const j = airlockVerify(['--allowed-signers', ALLOWED, '--json', media]);
  const report = JSON.parse(j.stdout) as JsonReport;
  assert.ok(report.findings.some((f) => f.result === 'extra' && f.file === EVIL_FILE));
  assert.ok(report.findings.some((f) => f.result === 'partial' && path.basename(f.bundle) === EVIL_PARTIAL));

  // the error printer of the other CLI: a restore refuses the set and quotes the names in its error
  const parent = tmp();
  const rs = airlock([
    'restore',
    'files',
    '--from',
    media,
    '--identity',
    IDENTITY,
    '--allowed-signers',
    ALLOWED,
    '--seq',
    '1',
    '--to',
    path.join(parent, 'restored'),
  ]);
  assert.is(rs.code, EXIT.failed, rs.stderr);
  assert.not.ok(ACTIVE.test(rs.stderr), JSON.stringify(rs.stderr));
  const errLines = rs.stderr
    .trimEnd()
    .split('\n')
    .filter((l) => l.startsWith('airlock: error: ') || l.startsWith('airlock: hint: '));
  assert.is(errLines.length, 2, rs.stderr);
  assert.match(rs.stderr, '\\x1b[2J');
});

/** What a tampering holder of the site's signing key claims about the tar it seals. */
interface Claims {
  inner: Manifest['inner'];
  contents: Manifest['contents'];
}

/**
 * Seals a hand-made tar stream as bundle 1 of site-a under `media`, as only the holder of the signing
 * key could: zstd, age to the test recipient, volumes, manifest.json with `claims`, RESTORE.txt,
 * SHA256SUMS and its signature. The tar is streamed, so it may be far larger than memory.
 */
async function sealTar(media: string, tar: AsyncIterable<Buffer>, claims: Claims): Promise<string> {
  const recipient = recipientOf(parseIdentities(readFileSync(IDENTITY, 'utf8'))[0] as Uint8Array);
  const parts: Buffer[] = [];
  await pipeline(
    Readable.from(tar),
    childStage('zstd', ['-q', '-c', '-1']),
    encryptStream([recipient]),
    new Writable({
      write: (c: Buffer, _e, done) => {
        parts.push(c);
        done();
      },
    }),
  );
  const cipher = Buffer.concat(parts);
  const dir = path.join(media, 'site-a', bundleName('site-a', 1));
  mkdirSync(dir, { recursive: true });
  const volumeSize = 1024 * 1024;
  const count = Math.ceil(cipher.byteLength / volumeSize);
  const volumes = Array.from({ length: count }, (_, i) => {
    const data = cipher.subarray(i * volumeSize, (i + 1) * volumeSize);
    writeFileSync(path.join(dir, volumeName(i, count)), data);
    return { name: volumeName(i, count), size: data.byteLength, sha256: sha256(data) };
  });
  const key = parsePrivateKey(readFileSync(path.join(KEYS, 'site-a.key'), 'utf8'));
  const manifest: Manifest = {
    format: FORMAT,
    version: FORMAT_VERSION,
    site: 'site-a',
    seq: 1,
    created: '2026-01-01T01:00:00.000Z',
    tool: 'a tampering signer',
    signer: fingerprint(key.publicKey),
    recipients: [formatRecipient(recipient)],
    payload: { encryption: 'age-v1', compression: 'zstd', volumeSize, volumes, size: cipher.byteLength, sha256: sha256(cipher) },
    ...claims,
  };
  writeFileSync(path.join(dir, 'manifest.json'), canonicalJson(manifest));
  writeFileSync(path.join(dir, 'RESTORE.txt'), 'do not restore\n');
  const names = readdirSync(dir);
  const sums = formatSums(names.map((n) => ({ name: n, sha256: sha256(readFileSync(path.join(dir, n))) })));
  writeFileSync(path.join(dir, 'SHA256SUMS'), sums);
  writeFileSync(path.join(dir, 'SHA256SUMS.sig'), sign(key, Buffer.from(sums), BUNDLE_NAMESPACE));
  return dir;
}

function entry(name: string, size: number): Buffer {
  return encodeHeader({ path: name, type: 'file', size, mode: 0o600, mtime: 1767225600 });
}

/** SALT, `middle`, then index.jsonl and MANIFEST.sha256 listing SALT, `listed` and the index. */
async function* hostileTar(
  middle: () => AsyncIterable<Buffer>,
  records: Record<string, unknown>[],
  listed: { name: string; sha256: string }[],
  after?: () => AsyncIterable<Buffer>,
): AsyncGenerator<Buffer> {
  const salt = randomBytes(32);
  yield Buffer.concat([entry('SALT', 32), salt, paddingFor(32)]);
  yield* middle();
  const index = Buffer.from(
    `${[{ type: 'bundle', site: 'site-a', seq: 1, created: '2026-01-01T01:00:00.000Z', format: FORMAT, version: FORMAT_VERSION }, ...records].map((r) => canonicalLine(r)).join('\n')}\n`,
  );
  yield Buffer.concat([entry('index.jsonl', index.byteLength), index, paddingFor(index.byteLength)]);
  const inner = Buffer.from(
    [{ name: 'SALT', sha256: sha256(salt) }, ...listed, { name: 'index.jsonl', sha256: sha256(index) }].map((l) => `${l.sha256}  ${l.name}\n`).join(''),
  );
  yield Buffer.concat([entry('MANIFEST.sha256', inner.byteLength), inner, paddingFor(inner.byteLength)]);
  if (after) yield* after();
  yield END_OF_ARCHIVE;
}

test('an entry that decompresses to 1 GiB where the signed manifest and index say 6 bytes is refused before a byte of it is staged', async () => {
  const media = path.join(tmp(), 'media');
  const six = Buffer.from('hello\n');
  const GiB = 1024 ** 3;
  const zeros = Buffer.alloc(MiB);
  const tar = hostileTar(
    async function* () {
      yield entry('files/000001', GiB);
      for (let i = 0; i < GiB / MiB; i++) yield zeros;
    },
    [
      {
        type: 'file',
        path: 'files/000001',
        size: 6,
        sha256: sha256(six),
        source: '/etc/platform/a.conf',
        mode: '0640',
        uid: 0,
        gid: 0,
        mtime: '2026-01-01T00:00:00.000Z',
      },
    ],
    [{ name: 'files/000001', sha256: sha256(six) }],
  );
  await sealTar(media, tar, { inner: { sha256: '0'.repeat(64), entries: 3 }, contents: { files: 1, metadata: 0, bytes: 6 } });

  // a restore may write at most 64 MiB: staging the entry whole (as before) dies of SIGXFSZ
  const parent = tmp();
  const rs = run('prlimit', [
    `--fsize=${64 * MiB}`,
    '--',
    process.execPath,
    ...AIRLOCK,
    'restore',
    'files',
    '--from',
    media,
    '--identity',
    IDENTITY,
    '--allowed-signers',
    ALLOWED,
    '--to',
    path.join(parent, 'restored'),
  ]);
  assert.is(rs.code, EXIT.failed, rs.stderr);
  assert.match(
    rs.stderr,
    /^airlock: error: .*size-mismatch files\/000001: the tar says 1073741824 bytes, more than what is left of the 6 bytes manifest\.json signs for the payload entries \(6\); nothing of it was read/m,
  );
  assert.equal(readdirSync(parent), []);

  const r = airlockVerify(['--allowed-signers', ALLOWED, '--identity', IDENTITY, '--json', media]);
  assert.is(r.code, EXIT.failed, r.stderr);
  const report = JSON.parse(r.stdout) as JsonReport;
  assert.equal(
    report.findings.map((f) => [f.result, f.file]),
    [['size-mismatch', 'files/000001']],
  );
  assert.match(report.findings[0]?.message ?? '', 'nothing of it was read');
});

test('what is not a payload entry is bounded by the signed numbers too: a 1 GiB body after MANIFEST.sha256, entries past inner.entries', async () => {
  const zeros = Buffer.alloc(MiB);
  const cases: [string, () => AsyncIterable<Buffer>, RegExp][] = [
    [
      'a 1 GiB entry after MANIFEST.sha256',
      async function* () {
        yield entry('files/000009', 1024 * MiB);
        for (let i = 0; i < 1024; i++) yield zeros;
      },
      /^the tar says 1073741824 bytes, more than the 1048576 bytes all entries that are not payload entries may hold \(1048576\); nothing of it was read$/,
    ],
    [
      '5,000 empty entries after MANIFEST.sha256',
      async function* () {
        for (let i = 0; i < 5000; i++) yield entry(`files/${String(i).padStart(6, '0')}`, 0);
      },
      /^the tar holds more than 103 entries, 100 past the 3 manifest\.json signs \(inner\.entries, and MANIFEST\.sha256\); nothing after them was read$/,
    ],
  ];
  for (const [what, after, message] of cases) {
    const media = path.join(tmp(), 'media');
    await sealTar(
      media,
      hostileTar(
        async function* () {
          /* no entries */
        },
        [],
        [],
        after,
      ),
      { inner: { sha256: '0'.repeat(64), entries: 2 }, contents: { files: 0, metadata: 0, bytes: 0 } },
    );
    const r = airlockVerify(['--allowed-signers', ALLOWED, '--identity', IDENTITY, '--json', media]);
    assert.is(r.code, EXIT.failed, r.stderr);
    const report = JSON.parse(r.stdout) as JsonReport;
    assert.ok(
      report.findings.some((f) => message.test(f.message)),
      `${what}: ${JSON.stringify(report.findings.slice(-3))}`,
    );
  }
});

/** Peak resident memory of a child in bytes, from GNU time. */
function peakRss(stderr: string): number {
  const kb = /Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)?.[1];
  assert.ok(kb, stderr);
  return Number(kb) * 1024;
}

test('80,000 long unique entry names in a signed bundle: the deep check keeps memory within its budget per entry, bounds its findings and prints a verdict', async () => {
  const n = 80_000;
  const media = path.join(tmp(), 'media');
  // half of them names airlock could write (807 bytes: 8 components of 100), which the check keeps,
  // half of them 4 KiB names it never writes
  const component = 'a'.repeat(100);
  const name = (i: number) =>
    i % 2 === 0
      ? [`${String(i).padStart(6, '0')}${component}`.slice(0, 100), ...Array(7).fill(component)].join('/')
      : `x/${String(i).padStart(6, '0')}${'a'.repeat(3990)}`;
  const tar = hostileTar(
    async function* () {
      for (let i = 0; i < n; i++) yield entry(name(i), 0);
    },
    [],
    [],
  );
  // the manifest signs the true number of entries (SALT, the n, index.jsonl), so reading goes on to the end
  const dir = await sealTar(media, tar, { inner: { sha256: '0'.repeat(64), entries: n + 2 }, contents: { files: 0, metadata: 0, bytes: 0 } });
  const size = readdirSync(dir).reduce((a, f) => a + readFileSync(path.join(dir, f)).byteLength, 0);
  assert.ok(size < 4 * MiB, `the bundle is ${size} bytes`);

  const verify = (args: string[]) =>
    run('/usr/bin/time', ['-v', process.execPath, path.join(ROOT, 'dist/verifier/cli.js'), '--allowed-signers', ALLOWED, ...args], { timeout: 300_000 });
  // the same command on the small good chain: what the process needs before any entry
  const baseline = peakRss(verify(['--identity', IDENTITY, path.join(VECTORS, 'cases', 'good-chain', 'media')]).stderr);
  for (const json of [false, true]) {
    const r = verify(['--identity', IDENTITY, ...(json ? ['--json'] : []), media]);
    assert.is(r.code, EXIT.failed, r.stderr.slice(0, 2000));
    const peak = peakRss(r.stderr);
    const budget = baseline + n * LIMITS.memoryPerEntryBytes;
    assert.ok(
      peak <= budget,
      `peak RSS ${(peak / MiB).toFixed(0)} MiB over the budget ${(budget / MiB).toFixed(0)} MiB (baseline ${(baseline / MiB).toFixed(0)} MiB)`,
    );
    if (!json) {
      const lines = r.stdout.trimEnd().split('\n');
      assert.is(lines.at(-1), 'status: error');
      assert.ok(lines.length < 1000, `${lines.length} lines`);
      assert.match(r.stdout, `more extra finding(s)`);
      continue;
    }
    const report = JSON.parse(r.stdout) as JsonReport;
    assert.is(report.status, 'error');
    const count = (result: string) => report.findings.filter((f) => f.result === result).reduce((a, f) => a + (f.more ?? 1), 0);
    // each entry: not named by the index, not in MANIFEST.sha256; half of them not a name airlock
    // writes; and MANIFEST.sha256 has 2 lines, not n + 2
    assert.is(count('malformed'), n / 2 + 1);
    assert.is(count('extra'), 2 * n);
    assert.ok(report.findings.length <= 3 * (LIMITS.findingsNamed + 1), `${report.findings.length} findings named`);
  }
  // a restore reads the same payload: it stops at the first name airlock never writes, within the same budget, leaving nothing
  const parent = tmp();
  const restore = run(
    '/usr/bin/time',
    [
      '-v',
      process.execPath,
      ...AIRLOCK,
      'restore',
      'files',
      '--from',
      media,
      '--identity',
      IDENTITY,
      '--allowed-signers',
      ALLOWED,
      '--to',
      path.join(parent, 'out'),
    ],
    { timeout: 300_000 },
  );
  assert.is(restore.code, EXIT.failed, restore.stderr.slice(0, 2000));
  assert.match(restore.stderr, /^airlock: error: tar entry "x\/000001a+"/m, restore.stderr.slice(0, 3000));
  const peak = peakRss(restore.stderr);
  assert.ok(peak <= baseline + n * LIMITS.memoryPerEntryBytes, `restore: peak RSS ${(peak / MiB).toFixed(0)} MiB`);
  assert.equal(readdirSync(parent), [], 'no staging left');
});

test.run();
