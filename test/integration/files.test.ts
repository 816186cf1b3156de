import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { constants } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EXIT, isAirlockError } from '../../manifests/errors.js';
import { fileItems } from '../../agent/sources/files.js';
import { refuseUnsafeTarget } from '../../agent/restore/staging.js';
import { sha256Hex } from '../../manifests/hash.js';
import { AIRLOCK, ROOT, airlock, airlockVerify, exportArgs, makeKeys, run, tmp } from '../helpers.js';

const keys = makeKeys('site-a');

function sourceTree(): string {
  const src = path.join(tmp(), 'etc-platform');
  mkdirSync(path.join(src, 'conf.d', 'deep'), { recursive: true });
  writeFileSync(path.join(src, 'app.conf'), 'listen = 127.0.0.1\n');
  writeFileSync(path.join(src, 'secret.key'), 'very secret\n');
  chmodSync(path.join(src, 'secret.key'), 0o600);
  writeFileSync(path.join(src, 'empty'), '');
  writeFileSync(path.join(src, 'conf.d', 'deep', 'ünïcode name.conf'), Buffer.alloc(200_000, 7));
  symlinkSync('app.conf', path.join(src, 'current.conf'));
  symlinkSync('/nonexistent/outside', path.join(src, 'dangling'));
  linkSync(path.join(src, 'app.conf'), path.join(src, 'app-hardlink.conf'));
  run('mkfifo', [path.join(src, 'fifo')]);
  utimesSync(path.join(src, 'app.conf'), new Date('2025-01-02T03:04:05Z'), new Date('2025-01-02T03:04:05Z'));
  chmodSync(path.join(src, 'conf.d'), 0o750);
  return src;
}

function exportTo(medium: string, stateDir: string, src: string, extra: string[] = []) {
  return airlock(exportArgs(keys, medium, stateDir, ['--files', src, ...extra]));
}

test('export, stock-tool audit and decrypt, airlock-verify, restore: the round trip', () => {
  const src = sourceTree();
  const medium = tmp();
  const state = tmp();
  const r = exportTo(medium, state, src);
  assert.is(r.code, EXIT.ok, r.stderr);
  const bundle = r.stdout.trim();
  assert.is(bundle, path.join(medium, 'site-a', 'site-a-00000001'));
  assert.equal(readdirSync(bundle).sort(), ['RESTORE.txt', 'SHA256SUMS', 'SHA256SUMS.sig', 'manifest.json', 'payload.000']);

  // stock tools: signature, checksums, decrypt, inner manifest
  const sums = readFileSync(path.join(bundle, 'SHA256SUMS'));
  const sig = run(
    'ssh-keygen',
    ['-Y', 'verify', '-f', keys.allowedSigners, '-I', 'site-a', '-n', 'airlock-bundle', '-s', path.join(bundle, 'SHA256SUMS.sig')],
    { input: sums },
  );
  assert.is(sig.code, 0, sig.stderr);
  assert.match(sig.stdout, 'Good "airlock-bundle" signature for site-a');
  assert.is(run('sha256sum', ['--strict', '-c', 'SHA256SUMS'], { cwd: bundle }).code, 0);
  const out = tmp();
  const sh = run('bash', ['-c', 'set -o pipefail; cat "$1"/payload.* | age -d -i "$2" | zstd -d -q | tar -x -f - -C "$3"', 'x', bundle, keys.identity, out]);
  assert.is(sh.code, 0, sh.stderr);
  const check = run('sha256sum', ['--strict', '-c', 'MANIFEST.sha256'], { cwd: out });
  assert.is(check.code, 0, check.stderr);
  assert.equal(readdirSync(out).sort(), ['MANIFEST.sha256', 'SALT', 'files', 'index.jsonl']);
  assert.is(statSync(path.join(out, 'SALT')).size, 32);
  const index = readFileSync(path.join(out, 'index.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.is(index[0].type, 'bundle');
  assert.is(index[0].seq, 1);
  const types = index
    .slice(1)
    .map((r: { type: string }) => r.type)
    .sort();
  assert.equal(types, ['dir', 'dir', 'dir', 'file', 'file', 'file', 'file', 'hardlink', 'special', 'symlink', 'symlink']);

  // airlock-verify, keyless and deep
  const v = airlockVerify(['--allowed-signers', keys.allowedSigners, medium]);
  assert.is(v.code, EXIT.ok, v.stdout + v.stderr);
  assert.match(v.stdout, 'status: ok');
  const deep = airlockVerify(['--allowed-signers', keys.allowedSigners, '--identity', keys.identity, medium]);
  assert.is(deep.code, EXIT.ok, deep.stdout + deep.stderr);
  assert.match(deep.stdout, 'contents checked');

  // restore
  const to = path.join(tmp(), 'restored');
  const rs = airlock(['restore', 'files', '--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', to]);
  assert.is(rs.code, EXIT.ok, rs.stderr);
  const back = path.join(to, src);
  assert.is(readFileSync(path.join(back, 'app.conf'), 'utf8'), 'listen = 127.0.0.1\n');
  assert.is(statSync(path.join(back, 'secret.key')).mode & 0o777, 0o600);
  assert.is(statSync(path.join(back, 'conf.d')).mode & 0o777, 0o750);
  assert.is(statSync(path.join(back, 'empty')).size, 0);
  assert.is(sha256Hex(readFileSync(path.join(back, 'conf.d', 'deep', 'ünïcode name.conf'))), sha256Hex(Buffer.alloc(200_000, 7)));
  assert.is(readlinkSync(path.join(back, 'current.conf')), 'app.conf');
  assert.is(readlinkSync(path.join(back, 'dangling')), '/nonexistent/outside');
  assert.is(statSync(path.join(back, 'app-hardlink.conf')).ino, statSync(path.join(back, 'app.conf')).ino);
  assert.is(statSync(path.join(back, 'app.conf')).mtime.toISOString(), '2025-01-02T03:04:05.000Z');
  assert.not.ok(readdirSync(back).includes('fifo'), 'a fifo is metadata, not recreated');
  assert.match(rs.stderr, 'fifo');
  assert.equal(readdirSync(path.dirname(to)), ['restored'], 'no staging folder left');

  // the recovery site's config file can name the medium and the keys instead of flags
  const conf = path.join(tmp(), 'recovery.conf');
  writeFileSync(conf, `medium = ${medium}\nidentity = ${keys.identity}\nallowed-signers = ${keys.allowedSigners}\n`);
  const again = path.join(tmp(), 'restored');
  const viaConfig = airlock(['restore', 'files', '--config', conf, '--to', again]);
  assert.is(viaConfig.code, EXIT.ok, viaConfig.stderr);
  assert.is(readFileSync(path.join(again, src, 'app.conf'), 'utf8'), 'listen = 127.0.0.1\n');
  const missing = airlock(['restore', 'files', '--to', path.join(tmp(), 'x')]);
  assert.is(missing.code, EXIT.usage);
  assert.match(missing.stderr, '--from is required');
});

test('the next export links to the previous one, and the set verifies as a chain', () => {
  const src = sourceTree();
  const medium = tmp();
  const state = tmp();
  const first = exportTo(medium, state, src);
  assert.is(first.code, EXIT.ok, first.stderr);
  const second = exportTo(medium, state, src, ['--compress', 'none']);
  assert.is(second.code, EXIT.ok, second.stderr);
  assert.match(second.stdout, 'site-a-00000002');
  const m2 = JSON.parse(readFileSync(path.join(second.stdout.trim(), 'manifest.json'), 'utf8'));
  assert.is(m2.seq, 2);
  assert.is(m2.prev, sha256Hex(readFileSync(path.join(first.stdout.trim(), 'SHA256SUMS'))));
  assert.is(m2.payload.compression, 'none');
  const v = airlockVerify(['--allowed-signers', keys.allowedSigners, '--identity', keys.identity, '--json', medium]);
  assert.is(v.code, EXIT.ok, v.stdout);
  const j = JSON.parse(v.stdout);
  assert.is(j.status, 'ok');
  assert.equal(j.sites, [
    { site: 'site-a', first: 1, newest: { seq: 2, sums: sha256Hex(readFileSync(path.join(second.stdout.trim(), 'SHA256SUMS'))) }, bundles: 2 },
  ]);
  // stock decrypt of an uncompressed bundle
  const out = tmp();
  const sh = run('bash', [
    '-c',
    'set -o pipefail; cat "$1"/payload.* | age -d -i "$2" | tar -x -f - -C "$3" && cd "$3" && sha256sum --strict -c MANIFEST.sha256',
    'x',
    second.stdout.trim(),
    keys.identity,
    out,
  ]);
  assert.is(sh.code, 0, sh.stderr);
});

test('a chain spread over two media: restore takes --from for each (or medium twice in its config) and verifies them as one set', () => {
  const src = sourceTree();
  const stickA = tmp();
  const stickB = tmp();
  const state = tmp();
  const first = exportTo(stickA, state, src);
  assert.is(first.code, EXIT.ok, first.stderr);
  writeFileSync(path.join(src, 'later.txt'), 'written after the first export\n');
  const second = exportTo(stickB, state, src);
  assert.is(second.code, EXIT.ok, second.stderr);
  assert.match(second.stdout, 'site-a-00000002');

  const restore = (rest: readonly string[]) => {
    const to = path.join(tmp(), 'out');
    return { to, r: airlock(['restore', 'files', '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', to, ...rest]) };
  };
  // both sticks: the newest bundle of the whole set, and the older one by --seq
  const both = restore(['--from', stickA, '--from', stickB]);
  assert.is(both.r.code, EXIT.ok, both.r.stderr);
  assert.ok(
    readdirSync(both.to, { recursive: true }).some((n) => String(n).endsWith('later.txt')),
    'seq 2 restored',
  );
  const older = restore(['--from', stickA, '--from', stickB, '--seq', '1']);
  assert.is(older.r.code, EXIT.ok, older.r.stderr);
  assert.not.ok(
    readdirSync(older.to, { recursive: true }).some((n) => String(n).endsWith('later.txt')),
    'seq 1 has no later.txt',
  );
  // the same from a recovery config naming both media
  const conf = path.join(tmp(), 'recovery.conf');
  writeFileSync(conf, `medium = ${stickA}\nmedium = ${stickB}\nidentity = ${keys.identity}\nallowed-signers = ${keys.allowedSigners}\n`);
  const fromConf = airlock(['restore', 'files', '--config', conf, '--to', path.join(tmp(), 'out'), '--seq', '1', '--json']);
  assert.is(fromConf.code, EXIT.ok, fromConf.stderr);
  // one stick alone holds seq 2 without the bundle it links to: --seq 1 is not there
  const alone = restore(['--from', stickB, '--seq', '1']);
  assert.is(alone.r.code, EXIT.input, alone.r.stderr);
  assert.match(alone.r.stderr, 'no bundle of site-a with seq 1');
});

test('small volumes: many numbered volumes that a plain sort orders', () => {
  const src = tmp();
  writeFileSync(path.join(src, 'big.bin'), randomBytes(5 * 1024 * 1024 + 123));
  const medium = tmp();
  const r = exportTo(medium, tmp(), src, ['--volume-size', '1M', '--compress', 'none']);
  assert.is(r.code, EXIT.ok, r.stderr);
  const names = readdirSync(r.stdout.trim()).filter((n) => n.startsWith('payload.'));
  assert.equal(names, ['payload.000', 'payload.001', 'payload.002', 'payload.003', 'payload.004', 'payload.005']);
  for (const n of names.slice(0, -1)) assert.is(lstatSync(path.join(r.stdout.trim(), n)).size, 1024 * 1024);
  const v = airlockVerify(['--allowed-signers', keys.allowedSigners, '--identity', keys.identity, medium]);
  assert.is(v.code, EXIT.ok, v.stdout);
});

test('default compression stores random data as it is and compresses text; stock tools read it; a deep verify opens each volume once', () => {
  const src = tmp();
  const random = randomBytes(12 * 1024 * 1024);
  const lines = Array.from({ length: 120_000 }, (_, i) => `${i},row ${i % 97},2026-12-03\n`).join('');
  writeFileSync(path.join(src, 'random.bin'), random);
  writeFileSync(path.join(src, 'table.csv'), lines);
  const medium = tmp();
  const r = exportTo(medium, tmp(), src, ['--volume-size', '4M']);
  assert.is(r.code, EXIT.ok, r.stderr);
  const bundle = r.stdout.trim();
  const manifest = JSON.parse(readFileSync(path.join(bundle, 'manifest.json'), 'utf8'));
  assert.is(manifest.payload.compression, 'zstd');
  // the random file costs its size and a little framing; the text shrinks
  const size: number = manifest.payload.size;
  assert.ok(size > random.byteLength && size < random.byteLength + lines.length / 3, `payload ${size}`);

  const out = tmp();
  const sh = run('bash', ['-c', 'set -o pipefail; cat "$1"/payload.* | age -d -i "$2" | zstd -d -q | tar -x -f - -C "$3"', 'x', bundle, keys.identity, out]);
  assert.is(sh.code, 0, sh.stderr);
  const index = readFileSync(path.join(out, 'index.jsonl'), 'utf8');
  for (const [name, body] of [
    ['random.bin', random],
    ['table.csv', Buffer.from(lines)],
  ] as const) {
    const rec = index.split('\n').find((l) => l.includes(`/${name}"`));
    const stored = rec ? (JSON.parse(rec) as { path: string }).path : '';
    assert.ok(readFileSync(path.join(out, stored)).equals(body), name);
  }

  const log = path.join(tmp(), 'strace.log');
  const v = run('strace', [
    '-f',
    '-qq',
    '-e',
    'trace=open,openat',
    '-o',
    log,
    process.execPath,
    path.join(ROOT, 'dist/verifier/cli.js'),
    '--allowed-signers',
    keys.allowedSigners,
    '--identity',
    keys.identity,
    medium,
  ]);
  assert.is(v.code, EXIT.ok, v.stdout + v.stderr);
  assert.match(v.stdout, /contents checked/);
  const opened = readFileSync(log, 'utf8')
    .split('\n')
    .map((l) => /"[^"]*\/(payload\.\d+)"/.exec(l)?.[1])
    .filter((n) => n !== undefined);
  const volumes = readdirSync(bundle).filter((n) => n.startsWith('payload.'));
  assert.ok(volumes.length >= 4, volumes.join(' '));
  // each volume is read once; the first is also opened for the first 64 KiB, its age header, which the
  // keyless checks compare with the manifest's recipients
  assert.equal(opened.sort(), ['payload.000', ...volumes].sort(), 'each volume opened once');
});

test('usage errors: typed, one line, a hint, exit 2; nothing written', () => {
  const medium = tmp();
  const r = airlock(['export', '--to', medium, '--site', 'site-a', '--signing-key', keys.signingKey, '--files', ROOT]);
  assert.is(r.code, EXIT.usage);
  assert.match(r.stderr, /^airlock: error: no recipient given\nairlock: hint: /);
  const big = airlock([
    'export',
    '--to',
    medium,
    '--site',
    'site-a',
    '--signing-key',
    keys.signingKey,
    '--recipient',
    keys.recipient,
    '--files',
    ROOT,
    '--volume-size',
    '5G',
  ]);
  assert.is(big.code, EXIT.usage);
  assert.match(big.stderr, 'FAT32');
  const unknown = airlock(['export', '--bogus']);
  assert.is(unknown.code, EXIT.usage);
  assert.match(unknown.stderr, "airlock: error: unknown option '--bogus'");
  const noSigners = airlockVerify([medium]);
  assert.is(noSigners.code, EXIT.usage);
  assert.match(noSigners.stderr, 'airlock-verify: error: --allowed-signers is required');
  assert.equal(readdirSync(medium), []);
});

test('with --json, both executables end with their error as one JSON object on stderr, stdout empty', () => {
  const medium = tmp();
  const asJson = (r: { code: number; stdout: string; stderr: string }) => {
    assert.is(r.stdout, '');
    assert.ok(r.stderr.endsWith('}\n') && r.stderr.split('\n').length === 2, r.stderr);
    return JSON.parse(r.stderr) as unknown;
  };
  const unknown = airlock(['media', 'list', '--json', '--bogus']);
  assert.is(unknown.code, 2);
  assert.equal(asJson(unknown), { code: 'usage', message: "unknown option '--bogus'", hint: 'see airlock media list --help', exit: 2 });
  const missing = airlock(['media', 'list', path.join(medium, 'absent'), '--json']);
  assert.is(missing.code, 3);
  assert.equal(asJson(missing), { code: 'not-found', message: `${path.join(medium, 'absent')}: no such file or directory`, hint: null, exit: 3 });
  const noSigners = airlockVerify(['--json', medium]);
  assert.is(noSigners.code, 2);
  assert.equal(asJson(noSigners), {
    code: 'usage',
    message: '--allowed-signers is required',
    hint: 'an unchecked signature proves nothing; ask the site for its allowed_signers line',
    exit: 2,
  });
});

test('help lists the exit codes', () => {
  for (const r of [airlock(['--help']), airlock(['export', '--help']), airlockVerify(['--help'])]) {
    assert.is(r.code, EXIT.ok);
    assert.match(r.stdout, 'Exit codes:');
    assert.match(r.stdout, ' 6  the medium or state directory failed');
  }
});

test('as root, a restore gives back setuid, setgid and sticky bits, owners and times exactly', () => {
  assert.is(process.getuid?.(), 0, 'this test runs as root');
  const src = path.join(tmp(), 'special-modes');
  mkdirSync(path.join(src, 'shared', 'inbox'), { recursive: true });
  mkdirSync(path.join(src, 'group-dir'));
  const items: [string, number, number, number][] = [
    // path, mode, uid, gid
    ['suid-4755', 0o4755, 0, 0],
    ['sgid-2750', 0o2750, 1234, 2345],
    ['suid-4711', 0o4711, 1234, 0],
    ['both-6755', 0o6755, 4321, 5432],
    ['plain-0640', 0o640, 1234, 2345],
    ['shared/inbox/note', 0o600, 4321, 4321],
  ];
  for (const [rel, , uid, gid] of items) {
    writeFileSync(path.join(src, rel), `${rel}\n`);
    chownSync(path.join(src, rel), uid, gid);
  }
  for (const [rel, m] of items) chmodSync(path.join(src, rel), m);
  const dirs: [string, number, number, number][] = [
    ['shared', 0o1777, 0, 0],
    ['shared/inbox', 0o3770, 1234, 2345],
    ['group-dir', 0o2775, 4321, 2345],
    ['.', 0o755, 0, 0],
  ];
  for (const [rel, m, uid, gid] of dirs) {
    chownSync(path.join(src, rel), uid, gid);
    chmodSync(path.join(src, rel), m);
  }
  let t = Date.parse('2024-05-06T07:08:09Z');
  for (const [rel] of [...items, ...dirs]) {
    t += 3_600_500;
    utimesSync(path.join(src, rel), new Date(t), new Date(t));
  }
  const meta = (root: string) =>
    Object.fromEntries(
      [...items, ...dirs].map(([rel]) => {
        const st = lstatSync(path.join(root, rel));
        return [rel, { mode: (st.mode & 0o7777).toString(8), uid: st.uid, gid: st.gid, mtime: st.mtime.toISOString() }];
      }),
    );
  const before = meta(src);
  const medium = tmp();
  const e = exportTo(medium, tmp(), src);
  assert.is(e.code, EXIT.ok, e.stderr);
  const to = path.join(tmp(), 'restored');
  const rs = airlock(['restore', 'files', '--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', to]);
  assert.is(rs.code, EXIT.ok, rs.stderr);
  assert.equal(meta(path.join(to, src)), before);
  assert.equal(meta(src), before, 'the export changed nothing of the source');
});

test('a restore target that is a symbolic link is refused up front (exit 4), for files, pg and objects', async () => {
  const medium = tmp();
  assert.is(exportTo(medium, tmp(), sourceTree()).code, EXIT.ok);
  const keyArgs = ['--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners];
  const cases: [string, (link: string) => string[]][] = [
    ['files', (link) => ['restore', 'files', ...keyArgs, '--to', link]],
    ['pg', (link) => ['restore', 'pg', ...keyArgs, '--pgdata', link, '--latest']],
    ['objects', (link) => ['restore', 'objects', ...keyArgs, '--to', link]],
  ];
  for (const [what, args] of cases) {
    for (const dangling of [false, true]) {
      const parent = tmp();
      const elsewhere = path.join(tmp(), 'elsewhere');
      if (!dangling) mkdirSync(elsewhere);
      const link = path.join(parent, 'target');
      symlinkSync(elsewhere, link);
      const r = airlock(args(link));
      assert.is(r.code, EXIT.conflict, `${what}: ${r.stderr}`);
      assert.match(r.stderr, `airlock: error: ${link} is a symbolic link`);
      assert.match(r.stderr, 'airlock: hint: ');
      assert.not.match(r.stderr, 'verified', `${what}: refused before the set is verified`);
      assert.not.match(r.stderr, /\n\s+at /, 'no stack trace');
      assert.equal(readdirSync(parent), ['target'], `${what}: nothing beside the link`);
      assert.is(readlinkSync(link), elsewhere);
      if (!dangling) assert.equal(readdirSync(elsewhere), [], `${what}: nothing where the link points`);
      else assert.not.ok(existsSync(elsewhere));
    }
  }
  // the check every restore makes names its code
  const link = path.join(tmp(), 'target');
  symlinkSync(tmp(), link);
  try {
    await refuseUnsafeTarget(link);
    assert.unreachable('a link was accepted');
  } catch (e) {
    assert.ok(isAirlockError(e, 'unsafe-target'), String(e));
  }
});

test('a /proc file, whose size the kernel gives as 0, fails the export (source-unsized, exit 5) instead of going out empty', async () => {
  const proc = '/proc/cpuinfo';
  assert.is(statSync(proc).size, 0);
  assert.ok(readFileSync(proc).byteLength > 0);
  const medium = tmp();
  const r = exportTo(medium, tmp(), proc);
  assert.is(r.code, EXIT.source, r.stderr);
  assert.match(r.stderr, `airlock: error: ${proc}: its size is given as 0 but it holds data`);
  assert.match(r.stderr, 'airlock: hint: copy it into a regular file');
  assert.equal(readdirSync(path.join(medium, keys.site)), [], 'no bundle, no partial one');
  // the source itself names the code
  let code: string | undefined;
  for await (const item of fileItems([proc])) {
    if (item.kind !== 'entry') continue;
    try {
      for await (const _ of item.open()) {
        // read to the end
      }
    } catch (e) {
      code = isAirlockError(e) ? e.code : String(e);
    }
  }
  assert.is(code, 'source-unsized');
  // an empty regular file is still exported empty
  const src = tmp();
  writeFileSync(path.join(src, 'empty'), '');
  assert.is(exportTo(tmp(), tmp(), src).code, EXIT.ok);
});

test('a killed restore leaves decrypted staging that the next run removes; of two restores into one target one wins, the other fails clearly', async () => {
  const src = sourceTree();
  const medium = tmp();
  assert.is(exportTo(medium, tmp(), src).code, 0);
  const parent = tmp();
  const to = path.join(parent, 'restored');
  const args = [...AIRLOCK, 'restore', 'files', '--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', to];
  const staged = () => readdirSync(parent).filter((n) => n.startsWith('.restored.airlock-staging-'));

  // killed once the bundle was decrypted into staging, as a power cut would
  const killed = run(process.execPath, args, { env: { ...process.env, AIRLOCK_FAULT: 'restore:after-stage' } });
  assert.is(killed.code, 128 + 9, killed.stderr);
  const left = staged();
  assert.is(left.length, 1);
  assert.ok(readdirSync(path.join(parent, left[0] as string, 'entries'), { recursive: true }).length > 0, 'the killed run left decrypted files behind');
  assert.not.ok(existsSync(to));

  // a live run, stopped at the same point: it removed the dead run's staging, and its own must stay
  const first = spawn(process.execPath, args, {
    env: { ...process.env, AIRLOCK_FAULT: 'restore:after-stage', AIRLOCK_FAULT_SIGNAL: 'SIGSTOP' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let firstErr = '';
  const firstDone = new Promise<number>((resolve) => first.on('close', (code, signal) => resolve(code ?? 128 + (signal ? constants.signals[signal] : 0))));
  await new Promise<void>((resolve, reject) => {
    first.stderr.setEncoding('utf8').on('data', (d: string) => {
      firstErr += d;
      if (firstErr.includes('fault point restore:after-stage reached')) resolve();
    });
    void firstDone.then((code) => reject(new Error(`the first restore ended (${code}) before its fault point: ${firstErr}`)));
  });
  assert.not.ok(staged().includes(left[0] as string), "the killed run's staging was removed");
  assert.is(staged().length, 1, "the live run's staging is there");

  // a second run while the first lives: refused, or it finishes first and the first then fails to promote
  const second = run(process.execPath, args);
  first.kill('SIGCONT');
  const firstCode = await firstDone;
  const outcomes = [
    { code: firstCode, stderr: firstErr },
    { code: second.code, stderr: second.stderr },
  ];
  const won = outcomes.filter((o) => o.code === 0);
  const lost = outcomes.filter((o) => o.code !== 0);
  assert.is(won.length, 1, `${firstErr}\n${second.stderr}`);
  assert.is(lost[0]?.code, EXIT.conflict, lost[0]?.stderr);
  assert.match(lost[0]?.stderr ?? '', /airlock: error: (another airlock restore into \S+ is running|\S+ was filled while this restore ran)/);
  assert.is(readFileSync(path.join(to, src, 'app.conf'), 'utf8'), 'listen = 127.0.0.1\n');
  assert.equal(readdirSync(parent), ['restored'], 'no staging left by either run');
});

test.run();
