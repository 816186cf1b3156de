/*
 * Media: labels, the free-space check and a medium that fills up mid-write (a real size-limited
 * tmpfs, mounted here), the read-back, copies onto a second medium counted per medium UUID, and par2
 * recovery data that lets a restore get past damaged blocks.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Catalog } from '../../agent/catalog.js';
import { readBack, selfSigner } from '../../agent/media.js';
import { AirlockError, EXIT } from '../../manifests/errors.js';
import { parsePrivateKey } from '../../manifests/sshkey.js';
import { sha256Hex } from '../../manifests/hash.js';
import { airlock, airlockVerify, exportArgs, makeKeys, run, tmp } from '../helpers.js';
import { ACCESS_KEY, SECRET_KEY, bucketName, s3 } from '../s3.js';

const keys = makeKeys('site-m');
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A source folder with one file of `bytes` random bytes and a small one. */
function source(bytes: number): string {
  const src = path.join(tmp(), 'etc-app');
  mkdirSync(src);
  writeFileSync(path.join(src, 'data.bin'), randomBytes(bytes));
  writeFileSync(path.join(src, 'app.conf'), 'port = 5432\n');
  return src;
}

function exportFiles(medium: string, state: string, src: string, extra: string[] = []) {
  return airlock(exportArgs(keys, medium, state, ['--files', src, ...extra]));
}

function init(medium: string, label: string, state: string): string {
  const r = airlock(['media', 'init', medium, '--label', label, '--state-dir', state]);
  assert.is(r.code, EXIT.ok, r.stderr);
  return r.stdout.trim();
}

/**
 * Runs `body` with a tmpfs of `size` mounted on a fresh folder (the medium), unmounted and removed
 * afterwards whatever happens. The folder is not one of the helpers' temp folders, whose removal at
 * exit must never meet a mount point.
 */
async function withSmallMedium(size: string, body: (medium: string) => Promise<void> | void): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'airlock-medium-'));
  const m = run('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir]);
  assert.is(m.code, 0, `mounting a tmpfs needs root: ${m.stderr}`);
  try {
    await body(dir);
  } finally {
    spawnSync('umount', [dir]);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What the catalog says about the site: bundles done and unfinished, and the last export run. */
function catalogState(state: string) {
  const c = Catalog.open(state);
  try {
    return { done: c.lastDone(keys.site), unfinished: c.unfinished(keys.site), runs: c.jobRuns('export', keys.site) };
  } finally {
    c.close();
  }
}

/** Overwrites `n` bytes at `at` of `file` with other bytes, as a bad sector would return. */
function damage(file: string, at: number, n: number): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, randomBytes(n), 0, n, at);
  } finally {
    closeSync(fd);
  }
}

test('media init writes a label with a UUID once; list shows the medium', () => {
  const medium = tmp();
  const state = tmp();
  const uuid = init(medium, 'offsite 1', state);
  assert.match(uuid, UUID_RE);
  const label = JSON.parse(readFileSync(path.join(medium, 'AIRLOCK-MEDIUM.json'), 'utf8'));
  assert.equal(Object.keys(label), ['created', 'format', 'label', 'uuid', 'version'], 'canonical JSON: sorted keys');
  assert.is(label.uuid, uuid);
  assert.is(label.label, 'offsite 1');

  const again = airlock(['media', 'init', medium, '--label', 'other', '--state-dir', state]);
  assert.is(again.code, EXIT.conflict);
  assert.match(again.stderr, /^airlock: error: .* is already labelled "offsite 1" \(.*\)\nairlock: hint: .*--force.*\n$/);
  assert.is(JSON.parse(readFileSync(path.join(medium, 'AIRLOCK-MEDIUM.json'), 'utf8')).uuid, uuid, 'the label is unchanged');

  // a medium with bundles but no label is refused too, then labelled with --force
  const used = tmp();
  assert.is(exportFiles(used, tmp(), source(1000)).code, EXIT.ok);
  const refused = airlock(['media', 'init', used, '--label', 'old stick', '--state-dir', state]);
  assert.is(refused.code, EXIT.conflict);
  assert.match(refused.stderr, 'already holds bundles');
  const forced = airlock(['media', 'init', used, '--label', 'old stick', '--force', '--state-dir', state]);
  assert.is(forced.code, EXIT.ok, forced.stderr);
  assert.is.not(forced.stdout.trim(), uuid);

  const bad = airlock(['media', 'init', tmp(), '--label', '../x', '--state-dir', state]);
  assert.is(bad.code, EXIT.usage);

  const list = airlock(['media', 'list', used, '--json']);
  assert.is(list.code, EXIT.ok, list.stderr);
  const j = JSON.parse(list.stdout);
  assert.is(j.label.label, 'old stick');
  assert.is(j.bundles.length, 1);
  assert.is(j.bundles[0].site, keys.site);
  assert.is(j.bundles[0].seq, 1);
  assert.ok(j.space.free > 0);
  const text = airlock(['media', 'list', used]);
  assert.match(text.stdout, 'medium "old stick"');
  assert.match(text.stdout, `${keys.site} seq 1`);
});

test('a bundle larger than the medium is refused up front: typed error, size needed, nothing written, the failure recorded', async () => {
  await withSmallMedium('2m', (medium) => {
    const state = tmp();
    init(medium, 'small', state);
    const r = exportFiles(medium, state, source(3 * 1024 * 1024));
    assert.is(r.code, EXIT.medium, r.stderr);
    assert.match(
      r.stderr,
      /^airlock: error: the bundle needs about [\d.]+ MiB on \S+ but only [\d.]+ (KiB|MiB) is free\nairlock: hint: [^\n]+nothing was written\n$/,
    );
    assert.is(r.stderr.split('\n').length, 3, 'one error line and one hint');
    assert.is(r.stdout, '');
    assert.equal(readdirSync(medium), ['AIRLOCK-MEDIUM.json'], 'nothing but the label');
    const c = catalogState(state);
    assert.is(c.done, undefined);
    assert.equal(c.unfinished, []);
    assert.is(c.runs[0]?.outcome, 'failed');
    assert.is(c.runs[0]?.code, 'medium-full');
  });
});

test('the medium fills up mid-write (a bucket, whose size is not known up front): partial removed, nothing done, the failure recorded', async () => {
  const srv = await s3();
  const bucket = bucketName('media-full');
  await srv.client.makeBucket(bucket);
  for (let i = 0; i < 3; i++) await srv.client.putObject(bucket, `blob-${i}`, randomBytes(1024 * 1024));
  await withSmallMedium('2m', (medium) => {
    const state = tmp();
    const uuid = init(medium, 'small', state);
    const r = airlock(exportArgs(keys, medium, state, ['--s3-endpoint', srv.endpoint, '--bucket', bucket, '--compress', 'none']), {
      env: { ...process.env, AWS_ACCESS_KEY_ID: ACCESS_KEY, AWS_SECRET_ACCESS_KEY: SECRET_KEY },
    });
    assert.is(r.code, EXIT.medium, r.stderr);
    assert.match(r.stderr, /^airlock: error: [^\n]*no space left on device\nairlock: hint: [^\n]+\n$/);
    const siteDir = path.join(medium, keys.site);
    assert.equal(existsSync(siteDir) ? readdirSync(siteDir) : [], [], 'no partial bundle left');
    const c = catalogState(state);
    assert.is(c.done, undefined, 'nothing recorded as done');
    assert.equal(c.unfinished, [], 'the intent was abandoned');
    assert.is(c.runs[0]?.outcome, 'failed');
    assert.is(c.runs[0]?.code, 'medium-full');
    assert.match(c.runs[0]?.message ?? '', 'no space left');
    // the medium is usable again at once, and the seq was not used up
    const small = exportFiles(medium, state, source(1000));
    assert.is(small.code, EXIT.ok, small.stderr);
    assert.match(small.stdout, `${keys.site}-00000001`);
    const after = Catalog.open(state);
    try {
      assert.is(after.verifiedCopyCount(keys.site, 1), 1);
      assert.is(after.copies(keys.site, 1)[0]?.media_uuid, uuid);
      assert.is(after.jobRuns('export', keys.site)[0]?.outcome, 'ok');
    } finally {
      after.close();
    }
  });
});

test('recovery data: a volume with damaged blocks is repaired in a scratch copy and the files restore byte for byte', () => {
  const src = source(3 * 1024 * 1024);
  const medium = tmp();
  const state = tmp();
  const r = exportFiles(medium, state, src, ['--recovery-percent', '10', '--volume-size', '1M', '--compress', 'none']);
  assert.is(r.code, EXIT.ok, r.stderr);
  const bundle = r.stdout.trim();
  const names = readdirSync(bundle).sort();
  assert.ok(names.includes('recovery.par2'), names.join(' '));
  assert.ok(
    names.some((n) => /^recovery\.vol\d+-\d+\.par2$/.test(n)),
    names.join(' '),
  );
  const listed = readFileSync(path.join(bundle, 'SHA256SUMS'), 'utf8');
  for (const n of names.filter((x) => x.startsWith('recovery.'))) assert.match(listed, `  ${n}\n`);
  // stock tools: the recovery files are checked like any file, and cat payload.* still reads only the volumes
  assert.is(run('sha256sum', ['--strict', '-c', 'SHA256SUMS'], { cwd: bundle }).code, 0);
  const out = tmp();
  const sh = run('bash', [
    '-c',
    'set -o pipefail; cat "$1"/payload.* | age -d -i "$2" | tar -x -f - -C "$3" && cd "$3" && sha256sum --strict -c MANIFEST.sha256',
    'x',
    bundle,
    keys.identity,
    out,
  ]);
  assert.is(sh.code, 0, sh.stderr);
  assert.is(airlockVerify(['--allowed-signers', keys.allowedSigners, '--identity', keys.identity, medium]).code, EXIT.ok);

  // bad blocks in the middle of a volume
  const vol = path.join(bundle, 'payload.001');
  damage(vol, 300_000, 8192);
  const damaged = readFileSync(vol);
  const v = airlockVerify(['--allowed-signers', keys.allowedSigners, medium]);
  assert.is(v.code, EXIT.failed, 'the damage is still a finding');
  assert.match(v.stdout, /checksum-mismatch: \S+payload\.001: .*recovery data/);

  const parent = tmp();
  const to = path.join(parent, 'restored');
  const rs = airlock(['restore', 'files', '--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', to]);
  assert.is(rs.code, EXIT.ok, rs.stderr);
  assert.match(rs.stderr, 'airlock: repaired payload.001');
  const back = path.join(to, src);
  assert.is(sha256Hex(readFileSync(path.join(back, 'data.bin'))), sha256Hex(readFileSync(path.join(src, 'data.bin'))));
  assert.is(readFileSync(path.join(back, 'app.conf'), 'utf8'), 'port = 5432\n');
  assert.equal(readdirSync(parent), ['restored'], 'no scratch copy or staging left');
  assert.ok(readFileSync(vol).equals(damaged), 'the medium was not written');
});

test('recovery data: a bucket bundle with a damaged volume is repaired in a scratch copy and its objects restore byte for byte', async () => {
  const srv = await s3();
  const bucket = bucketName('media-repair');
  await srv.client.makeBucket(bucket);
  const blobs = [randomBytes(1500 * 1024), randomBytes(700 * 1024), Buffer.from('small')];
  for (const [i, b] of blobs.entries()) await srv.client.putObject(bucket, `blob-${i}`, b);
  const medium = tmp();
  const env = { ...process.env, AWS_ACCESS_KEY_ID: ACCESS_KEY, AWS_SECRET_ACCESS_KEY: SECRET_KEY };
  const r = airlock(
    exportArgs(keys, medium, tmp(), [
      '--s3-endpoint',
      srv.endpoint,
      '--bucket',
      bucket,
      '--recovery-percent',
      '10',
      '--volume-size',
      '1M',
      '--compress',
      'none',
    ]),
    { env },
  );
  assert.is(r.code, EXIT.ok, r.stderr);
  const vol = path.join(r.stdout.trim(), 'payload.001');
  damage(vol, 300_000, 8192);
  const damaged = readFileSync(vol);

  const parent = tmp();
  const to = path.join(parent, 'restored');
  const rs = airlock(['restore', 'objects', '--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', to]);
  assert.is(rs.code, EXIT.ok, rs.stderr);
  assert.match(rs.stderr, 'is damaged on the medium (checksum-mismatch payload.001); repairing from its recovery data');
  assert.match(rs.stderr, 'airlock: repaired payload.001');
  for (const [i, b] of blobs.entries()) assert.ok(readFileSync(path.join(to, bucket, `blob-${i}`)).equals(b), `blob-${i}`);
  assert.equal(readdirSync(parent), ['restored'], 'no scratch copy or staging left');
  assert.ok(readFileSync(vol).equals(damaged), 'the medium was not written');
});

test('without recovery data a damaged volume fails the restore cleanly; too much damage for the recovery data too', () => {
  const src = source(3 * 1024 * 1024);
  for (const extra of [[], ['--recovery-percent', '5']]) {
    const medium = tmp();
    const r = exportFiles(medium, tmp(), src, ['--volume-size', '1M', '--compress', 'none', ...extra]);
    assert.is(r.code, EXIT.ok, r.stderr);
    // with recovery data: more damage than 5% can rebuild
    damage(path.join(r.stdout.trim(), 'payload.001'), 0, extra.length > 0 ? 600_000 : 4096);
    const parent = tmp();
    const to = path.join(parent, 'restored');
    const rs = airlock(['restore', 'files', '--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', to]);
    assert.is(rs.code, EXIT.failed, rs.stderr);
    assert.match(rs.stderr, /airlock: error: [^\n]*(checksum-mismatch payload\.001|could not repair it)[^\n]*\nairlock: hint: [^\n]*nothing was restored/);
    assert.equal(readdirSync(parent), [], 'nothing in the target, no staging or scratch copy left');
  }
});

test('media copy: the bundles go onto a second medium, are read back there, and count as verified on both media UUIDs', async () => {
  const state = tmp();
  const a = tmp();
  const b = tmp();
  const uuidA = init(a, 'primary', state);
  const uuidB = init(b, 'offsite', state);
  const src = source(200_000);
  const first = exportFiles(a, state, src, ['--recovery-percent', '10']);
  assert.is(first.code, EXIT.ok, first.stderr);
  assert.match(first.stderr, `read back and verified on medium "primary" (${uuidA})`);
  assert.is(exportFiles(a, state, src).code, EXIT.ok);

  const c = airlock(['media', 'copy', a, b, '--signing-key', keys.signingKey, '--state-dir', state, '--json']);
  assert.is(c.code, EXIT.ok, c.stderr);
  const j = JSON.parse(c.stdout);
  assert.equal(
    j.bundles.map((x: { seq: number; copied: boolean }) => [x.seq, x.copied]),
    [
      [1, true],
      [2, true],
    ],
  );
  assert.equal(j.bundles[0].verifiedOn, [uuidA, uuidB]);
  const v = airlockVerify(['--allowed-signers', keys.allowedSigners, '--identity', keys.identity, b]);
  assert.is(v.code, EXIT.ok, v.stdout);
  assert.equal(readdirSync(path.join(b, keys.site, `${keys.site}-00000001`)).sort(), readdirSync(path.join(a, keys.site, `${keys.site}-00000001`)).sort());
  const cat = Catalog.open(state);
  try {
    for (const seq of [1, 2]) {
      assert.is(cat.verifiedCopyCount(keys.site, seq), 2);
      assert.equal(
        cat
          .copies(keys.site, seq)
          .map((x) => x.media_uuid)
          .sort(),
        [uuidA, uuidB].sort(),
      );
    }
    assert.is(cat.jobRuns('media copy')[0]?.outcome, 'ok');
  } finally {
    cat.close();
  }
  // again: nothing to copy, both verified again
  const again = airlock(['media', 'copy', a, b, '--signing-key', keys.signingKey, '--state-dir', state]);
  assert.is(again.code, EXIT.ok, again.stderr);
  assert.match(again.stderr, 'copied 0 bundle(s), 2 already there');

  // a medium too small for the copy is refused before anything is written
  await withSmallMedium('2m', (small) => {
    const big = tmp();
    init(big, 'big', state);
    assert.is(exportFiles(big, tmp(), source(3 * 1024 * 1024)).code, EXIT.ok);
    init(small, 'small', state);
    const r = airlock(['media', 'copy', big, small, '--signing-key', keys.signingKey, '--state-dir', state]);
    assert.is(r.code, EXIT.medium, r.stderr);
    assert.match(r.stderr, /^airlock: error: copying 1 bundle\(s\) needs about [\d.]+ MiB on /);
    assert.equal(readdirSync(small), ['AIRLOCK-MEDIUM.json']);
  });
});

/** Two labelled media with `seqs` bundles exported onto the first; the second is empty. */
function twoMedia(seqs = 1) {
  const state = tmp();
  const a = tmp();
  const b = tmp();
  const uuidA = init(a, 'primary', state);
  const uuidB = init(b, 'offsite', state);
  const src = source(20_000);
  for (let i = 0; i < seqs; i++) assert.is(exportFiles(a, state, src).code, EXIT.ok);
  const bundle = (medium: string, seq = 1) => path.join(medium, keys.site, `${keys.site}-${String(seq).padStart(8, '0')}`);
  return { state, a, b, uuidA, uuidB, bundle };
}

function copy(a: string, b: string, state: string) {
  return airlock(['media', 'copy', a, b, '--signing-key', keys.signingKey, '--state-dir', state]);
}

/** The media UUIDs the catalog counts bundle `seq` as verified on. */
function copiedOn(state: string, seq = 1): string[] {
  const c = Catalog.open(state);
  try {
    return c
      .copies(keys.site, seq)
      .map((x) => x.media_uuid)
      .sort();
  } finally {
    c.close();
  }
}

/** Files and folders under `dir`, as relative paths, without following links. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      out.push(path.join(rel, e.name));
      if (e.isDirectory()) walk(path.join(d, e.name), path.join(rel, e.name));
    }
  };
  walk(dir, '');
  return out.sort();
}

test('media copy refuses a site folder on the target that is a symbolic link: exit 4, nothing written through it', () => {
  const { state, a, b, uuidA } = twoMedia();
  const outside = tmp();
  symlinkSync(outside, path.join(b, keys.site));
  const r = copy(a, b, state);
  assert.is(r.code, EXIT.conflict, r.stderr);
  assert.match(r.stderr, new RegExp(`^airlock: error: ${path.join(b, keys.site)} on the target medium is a symbolic link[^\\n]*\\nairlock: hint: [^\\n]+\\n$`));
  assert.equal(readdirSync(outside), [], 'nothing written outside the medium');
  assert.equal(tree(b), ['AIRLOCK-MEDIUM.json', keys.site]);
  assert.equal(copiedOn(state), [uuidA]);
  const c = Catalog.open(state);
  try {
    assert.is(c.jobRuns('media copy')[0]?.code, 'unsafe-target');
  } finally {
    c.close();
  }
});

test('media copy: a bundle on the target that is a symbolic link to the source bundle is no copy: exit 4, counted on the source medium only', () => {
  const { state, a, b, uuidA, bundle } = twoMedia();
  mkdirSync(path.join(b, keys.site));
  symlinkSync(bundle(a), bundle(b));
  const r = copy(a, b, state);
  assert.is(r.code, EXIT.conflict, r.stderr);
  assert.match(r.stderr, new RegExp(`airlock: error: ${bundle(b)} on the target medium is a symbolic link`));
  assert.equal(copiedOn(state), [uuidA], 'counted only on the medium that holds the bytes');
  assert.ok(lstatSync(bundle(b)).isSymbolicLink(), 'the link is left for the operator to look at');
});

test('media copy: a leftover partial copy on the target that is a symbolic link is removed as a link; what it led to is untouched', () => {
  const { state, a, b, uuidA, uuidB, bundle } = twoMedia();
  const outside = tmp();
  writeFileSync(path.join(outside, 'keep.txt'), "not the medium's\n");
  mkdirSync(path.join(b, keys.site));
  symlinkSync(outside, `${bundle(b)}.partial`);
  const r = copy(a, b, state);
  assert.is(r.code, EXIT.ok, r.stderr);
  assert.equal(readdirSync(outside), ['keep.txt'], 'nothing removed or written through the link');
  assert.ok(lstatSync(bundle(b)).isDirectory());
  assert.equal(readdirSync(path.join(b, keys.site)), [`${keys.site}-00000001`]);
  assert.equal(copiedOn(state), [uuidA, uuidB].sort());
});

test('export onto a medium whose site folder is a symbolic link is refused before anything is written (exit 4)', () => {
  const state = tmp();
  const medium = tmp();
  init(medium, 'linked', state);
  const outside = tmp();
  symlinkSync(outside, path.join(medium, keys.site));
  const r = exportFiles(medium, state, source(1000));
  assert.is(r.code, EXIT.conflict, r.stderr);
  assert.match(r.stderr, new RegExp(`^airlock: error: ${path.join(medium, keys.site)} on the medium is a symbolic link\\nairlock: hint: [^\\n]+\\n$`));
  assert.equal(readdirSync(outside), [], 'nothing written through the link');
  assert.equal(copiedOn(state), [], 'no verified copy recorded');
  const c = catalogState(state);
  assert.is(c.done, undefined, 'no bundle done');
  assert.is(c.runs[0]?.code, 'unsafe-target');
});

test('media copy: a site or bundle folder on the target that is another file system (a mount) is refused; nothing counts there', async () => {
  const { state, a, uuidA, bundle } = twoMedia();
  // the target is a file system of its own, as a real second medium is
  await withSmallMedium('8m', (b) => {
    const uuidB = init(b, 'offsite', state);
    const site = path.join(b, keys.site);
    mkdirSync(site);
    // the source bundle bind-mounted where its copy would be: "already there", but on the source's file system
    mkdirSync(bundle(b));
    const bind = run('mount', ['--bind', bundle(a), bundle(b)]);
    assert.is(bind.code, 0, `a bind mount needs root: ${bind.stderr}`);
    try {
      const r = copy(a, b, state);
      assert.is(r.code, EXIT.conflict, r.stderr);
      assert.match(r.stderr, new RegExp(`^airlock: error: ${bundle(b)} on the target medium is on another file system than the medium\nairlock: hint: `));
      assert.equal(copiedOn(state), [uuidA]);
    } finally {
      spawnSync('umount', [bundle(b)]);
    }
    rmSync(bundle(b), { recursive: true });
    // a tmpfs mounted on the site folder: a copy there would not be on the labelled medium
    const m = run('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', site]);
    assert.is(m.code, 0, m.stderr);
    try {
      const r = copy(a, b, state);
      assert.is(r.code, EXIT.conflict, r.stderr);
      assert.match(r.stderr, `${site} on the target medium is on another file system than the medium`);
      assert.equal(readdirSync(site), [], 'nothing written on the other file system');
      assert.equal(copiedOn(state), [uuidA]);
    } finally {
      spawnSync('umount', [site]);
    }
    // once the medium holds real folders, the same copy works and counts on both media
    const ok = copy(a, b, state);
    assert.is(ok.code, EXIT.ok, ok.stderr);
    assert.equal(copiedOn(state), [uuidA, uuidB].sort());
  });
});

test('media copy from a hostile source: a bundle folder that is a link, a FIFO for a volume or SHA256SUMS, an extra file: each named and not copied, nothing hangs, the good bundle copied', () => {
  const { state, a, b, uuidA, uuidB, bundle } = twoMedia(4);
  const elsewhere = tmp();
  const other = exportFiles(elsewhere, tmp(), source(1000));
  assert.is(other.code, EXIT.ok, other.stderr);
  const link = path.join(a, keys.site, `${keys.site}-00000009`);
  symlinkSync(other.stdout.trim(), link);
  writeFileSync(path.join(bundle(a, 1), 'notes.txt'), 'not part of the bundle\n');
  for (const [seq, name] of [
    [2, 'payload.000'],
    [3, 'SHA256SUMS'],
  ] as const) {
    rmSync(path.join(bundle(a, seq), name));
    assert.is(run('mkfifo', [path.join(bundle(a, seq), name)]).code, 0);
  }
  writeFileSync(path.join(a, keys.site, 'README'), 'a stray file beside the bundles\n');
  const r = airlock(['media', 'copy', a, b, '--signing-key', keys.signingKey, '--state-dir', state, '--json'], { timeout: 60_000 });
  assert.is(r.code, EXIT.failed, r.stderr);
  // with --json the error is one JSON object, the last line of stderr
  const err = JSON.parse(r.stderr.trimEnd().split('\n').at(-1) ?? '') as { code: string; message: string; hint: string; exit: number };
  assert.is(err.code, 'verification-failed');
  assert.is(err.exit, 1);
  assert.match(err.message, new RegExp(`^4 bundle\\(s\\) under ${a} were not copied: ${keys.site}/${keys.site}-00000009: a symbolic link, not followed; `));
  assert.match(err.hint, /never follows a symbolic link$/);
  const j = JSON.parse(r.stdout);
  assert.equal(
    j.bundles.map((x: { seq: number }) => x.seq),
    [4],
  );
  assert.equal(j.failed, [
    `${keys.site}/${keys.site}-00000009: a symbolic link, not followed`,
    `${keys.site}-00000001: extra notes.txt`,
    `${keys.site}-00000002: extra payload.000`,
    `${keys.site}-00000003: extra SHA256SUMS, missing SHA256SUMS`,
  ]);
  assert.equal(readdirSync(path.join(b, keys.site)), [`${keys.site}-00000004`], 'only the good bundle was copied');
  assert.equal(copiedOn(state, 4), [uuidA, uuidB].sort());
  for (const seq of [1, 2, 3]) assert.equal(copiedOn(state, seq), [uuidA], `seq ${seq} counts only where the export read it back`);
});

test('media copy: a source bundle on another file system than the source medium is copied, but not counted on the source medium', () => {
  const state = tmp();
  const a = tmp();
  const b = tmp();
  init(a, 'primary', state);
  const uuidB = init(b, 'offsite', state);
  const unlabelled = tmp();
  const e = exportFiles(unlabelled, state, source(20_000));
  assert.is(e.code, EXIT.ok, e.stderr);
  const site = path.join(a, keys.site);
  mkdirSync(site);
  const m = run('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', site]);
  assert.is(m.code, 0, `mounting a tmpfs needs root: ${m.stderr}`);
  try {
    assert.is(run('cp', ['-a', e.stdout.trim(), site]).code, 0);
    const r = copy(a, b, state);
    assert.is(r.code, EXIT.ok, r.stderr);
    assert.match(
      r.stderr,
      `airlock: warning: ${site} on the source medium is on another file system than the medium; not counted as a copy on medium "primary"`,
    );
    assert.equal(copiedOn(state), [uuidB], 'counted on the medium that holds its bytes only');
  } finally {
    spawnSync('umount', [site]);
  }
});

test('the read-back reads the medium past the page cache and notices bytes that differ from what was written', async () => {
  const medium = tmp();
  const r = exportFiles(medium, tmp(), source(9 * 1024 * 1024 + 123), ['--compress', 'none', '--volume-size', '4M']);
  assert.is(r.code, EXIT.ok, r.stderr);
  const bundle = r.stdout.trim();
  const sums = sha256Hex(readFileSync(path.join(bundle, 'SHA256SUMS')));
  const signers = [selfSigner(parsePrivateKey(readFileSync(keys.signingKey, 'utf8')))];
  const notes = { cached: false };
  const report = await readBack(bundle, sums, signers, new Date(), notes);
  assert.is(report.keyless, 'ok');
  assert.is(notes.cached, false, 'this file system takes direct reads');
  // a medium that kept other bytes than it was given, in a volume past the first and in the last one
  const volumes = readdirSync(bundle)
    .filter((n) => n.startsWith('payload.'))
    .sort();
  assert.ok(volumes.length >= 3, volumes.join(' '));
  for (const v of [volumes[1]!, volumes.at(-1)!]) {
    const file = path.join(bundle, v);
    const before = readFileSync(file);
    damage(file, 5000, 1);
    try {
      await readBack(bundle, sums, signers, new Date(), notes);
      assert.unreachable('the read-back passed a damaged volume');
    } catch (e) {
      assert.instance(e, AirlockError);
      assert.is((e as AirlockError).code, 'verification-failed');
      assert.match((e as Error).message, `${v}: sha256 read back from the medium differs`);
    }
    writeFileSync(file, before);
  }
  await readBack(bundle, sums, signers, new Date(), notes);
});

test('--no-read-back: the bundle is written and committed, but on a labelled medium its copy does not count', () => {
  const state = tmp();
  const medium = tmp();
  init(medium, 'unchecked', state);
  const r = exportFiles(medium, state, source(1000), ['--no-read-back']);
  assert.is(r.code, EXIT.ok, r.stderr);
  assert.match(r.stderr, 'not read back from the medium (--no-read-back)');
  assert.not.match(r.stderr, 'read back and verified');
  const c = Catalog.open(state);
  try {
    assert.is(c.lastDone(keys.site)?.seq, 1);
    assert.is(c.verifiedCopyCount(keys.site, 1), 0);
  } finally {
    c.close();
  }
});

test('an unlabelled medium still works, but its copies do not count', () => {
  const state = tmp();
  const r = exportFiles(tmp(), state, source(1000));
  assert.is(r.code, EXIT.ok, r.stderr);
  assert.match(r.stderr, 'has no label, so this copy does not count for retention');
  const c = Catalog.open(state);
  try {
    assert.is(c.verifiedCopyCount(keys.site, 1), 0);
    assert.is(c.lastDone(keys.site)?.seq, 1);
  } finally {
    c.close();
  }
});

test.run();
