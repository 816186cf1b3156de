/*
 * The offline kit as a site installs it: `npm run package` (scripts/package.sh) builds it signed by a
 * throwaway release key, and a copy of the minimal Debian 12 root that scripts/setup.sh builds
 * stands for the appliance. Everything there runs in the root with no network (unshare -n chroot):
 * the stock-tool checks, apt-get install of the kit's packages and nothing else, the installed
 * airlock end to end, the units, the one-file verifier on Debian's own node 18, an upgrade and a
 * purge.
 */
import { cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT, run, tmp, type Ran } from '../helpers.js';

const CACHED_ROOT = process.env.AIRLOCK_BOOKWORM_ROOT ?? '/var/cache/airlock-test/bookworm-minbase';
// what the root holds for this test only (scripts/bookworm.sh): .debs of systemd and nodejs, node 22
const EXTRAS = '/var/cache/airlock-test-extras';
const VERSION = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version as string;
const NS = 'airlock-release';

const work = tmp('airlock-install-');
const releaseKey = path.join(work, 'release_key');
run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'throwaway release key', '-f', releaseKey]);
const releaseSigners = path.join(work, 'release_signers');
writeFileSync(releaseSigners, `${NS} namespaces="${NS}" ${readFileSync(`${releaseKey}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}\n`);

const packaged = run('bash', ['scripts/package.sh'], {
  cwd: ROOT,
  env: { ...process.env, AIRLOCK_RELEASE_KEY: releaseKey, AIRLOCK_KIT_DIR: path.join(work, 'out') },
});
if (packaged.code !== 0) throw new Error(`npm run package failed:\n${packaged.stderr}`);
const kit = packaged.stdout.trim().split('\n').at(-1) as string;
const deb = `airlock_${VERSION}_amd64.deb`;

// the appliance: a copy of the cached root, which stays as it was
const root = path.join(work, 'root');
run('cp', ['-a', CACHED_ROOT, root]);
const before = listFiles(root);
cpSync(kit, path.join(root, 'kit'), { recursive: true });
cpSync(releaseSigners, path.join(root, 'root/release_signers'));

/** Runs a shell script inside the root: its own mount and process namespaces, no network. */
function inRoot(script: string): Ran {
  return run('unshare', ['-n', '-m', '-p', '-f', `--mount-proc=${path.join(root, 'proc')}`, 'chroot', root, '/bin/sh', '-ec', script], {
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C.UTF-8', HOME: '/root' },
  });
}

function ok(script: string): string {
  const r = inRoot(script);
  assert.is(r.code, 0, `${script}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Every path under `dir` (relative, with a leading /), pseudo file systems left out. */
function listFiles(dir: string): Set<string> {
  const out = run('find', [
    dir,
    '-mindepth',
    '1',
    '(',
    '-path',
    `${dir}/proc`,
    '-o',
    '-path',
    `${dir}/dev`,
    '-o',
    '-path',
    `${dir}/sys`,
    ')',
    '-prune',
    '-o',
    '-printf',
    '/%P\\n',
  ]);
  return new Set(out.stdout.split('\n').filter((l) => l !== ''));
}

test('the kit: one folder, every file in SHA256SUMS, signed in its own namespace', () => {
  assert.is(path.basename(kit), `airlock-kit-${VERSION}`);
  const files = readdirSync(kit).sort();
  for (const f of [deb, 'airlock-verify.mjs', 'INSTALL.txt', 'SHA256SUMS', 'SHA256SUMS.sig']) assert.ok(files.includes(f), `${f} in ${files.join(' ')}`);
  for (const dep of ['zstd', 'par2', 'openssh-client', 'age', 'jq', 'libssl3'])
    assert.ok(
      files.some((f) => f.startsWith(`${dep}_`)),
      `${dep} in the kit`,
    );
  assert.ok(
    files.some((f) => /^postgresql-client-\d+_/.test(f)),
    'a postgresql-client in the kit',
  );
  const listed = readFileSync(path.join(kit, 'SHA256SUMS'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.slice(66));
  assert.equal(
    listed.sort(),
    files.filter((f) => !f.startsWith('SHA256SUMS')),
  );
  const sums = readFileSync(path.join(kit, 'SHA256SUMS'));
  const verify = (input: Buffer, namespace = NS) =>
    run('ssh-keygen', ['-Y', 'verify', '-f', releaseSigners, '-I', NS, '-n', namespace, '-s', path.join(kit, 'SHA256SUMS.sig')], { input });
  assert.is(verify(sums).code, 0);
  assert.is.not(verify(Buffer.concat([sums, Buffer.from('\n')])).code, 0, 'a changed SHA256SUMS fails');
  assert.is.not(verify(sums, 'airlock-bundle').code, 0, 'the signature is not a bundle signature');
  const install = readFileSync(path.join(kit, 'INSTALL.txt'), 'utf8');
  assert.match(install, `ssh-keygen -Y verify -f allowed_signers -I ${NS} -n ${NS} -s SHA256SUMS.sig < SHA256SUMS`);
  assert.match(install, 'apt-get install ./*.deb');
});

test('the package follows Debian: layout, conffiles, dependencies from Debian 12 only', () => {
  const contents = run('dpkg-deb', ['-c', path.join(kit, deb)]).stdout;
  for (const p of [
    './usr/bin/airlock',
    './usr/bin/airlock-verify',
    './usr/lib/airlock/bin/node',
    './usr/lib/airlock/dist/native/airlock-wal-push',
    './usr/lib/airlock/node_modules/better-sqlite3/build/Release/better_sqlite3.node',
    './lib/systemd/system/airlock.service',
    './etc/airlock/airlock.conf.example',
    './usr/share/man/man1/airlock.1.gz',
    './usr/share/man/man1/airlock-verify.1.gz',
    './usr/share/bash-completion/completions/airlock',
    './usr/share/doc/airlock/copyright',
  ]) {
    assert.ok(contents.includes(` ${p}`), p);
  }
  // the command starts the shipped node with the options the script's first line gives
  const wrapper = run('sh', ['-c', 'dpkg-deb --fsys-tarfile "$1" | tar -xO ./usr/bin/airlock', 'x', path.join(kit, deb)]).stdout;
  assert.is(wrapper, '#!/bin/sh\nexec /usr/lib/airlock/bin/node --single-threaded-gc /usr/lib/airlock/dist/agent/cli/main.js "$@"\n');
  assert.not.ok(contents.includes('./var/lib/airlock'), 'the state folder is made by postinst, not shipped');
  assert.not.ok(/node_modules\/(typescript|uvu|tsx)\//.test(contents), 'no development dependency');
  assert.is(run('dpkg-deb', ['-f', path.join(kit, deb), 'Package']).stdout.trim(), 'airlock');
  assert.is(run('dpkg-deb', ['-I', path.join(kit, deb), 'conffiles']).stdout.trim(), '/etc/airlock/airlock.conf.example');
  const depends = run('dpkg-deb', ['-f', path.join(kit, deb), 'Depends']).stdout;
  for (const d of ['zstd', 'par2', 'postgresql-client', 'openssh-client', 'age', 'libc6']) assert.match(depends, new RegExp(`(^|, )${d}( |,|$)`), d);
});

test('offline in a minimal Debian 12: check the kit, apt-get install, keygen, media init, export, airlock-verify', () => {
  ok('cd /kit && sha256sum --strict -c SHA256SUMS >/dev/null');
  const install = inRoot('cd /kit && apt-get install -y ./*.deb');
  assert.is(install.code, 0, install.stdout + install.stderr);
  // the stock check of step 1, with the ssh-keygen the kit brought
  assert.match(ok(`cd /kit && ssh-keygen -Y verify -f /root/release_signers -I ${NS} -n ${NS} -s SHA256SUMS.sig < SHA256SUMS`), `Good "${NS}" signature`);
  assert.is(ok('airlock --version').trim(), VERSION);
  assert.is(
    ok('stat -c "%U:%G %a" /var/lib/airlock /etc/airlock /var/spool/airlock/wal /var/lib/prometheus/node-exporter'),
    'airlock:airlock 700\nairlock:airlock 700\nroot:airlock-spool 2770\nroot:airlock 775\n',
  );
  const signers = ok('runuser -u airlock -- airlock keygen --signing-key /etc/airlock/signing_key --site plant-7');
  writeFileSync(path.join(root, 'root/allowed_signers'), signers);
  const recipient = ok('airlock keygen --age /root/identity.txt').trim();
  assert.match(recipient, /^age1[0-9a-z]+$/);
  ok('mkdir -p /media/usb /srv/config && echo "listen = 127.0.0.1" > /srv/config/app.conf && chown airlock /media/usb');
  assert.match(ok('runuser -u airlock -- airlock media init /media/usb --label kit-1'), /^[0-9a-f-]{36}$/m);
  const bundle = ok(
    `runuser -u airlock -- airlock export --to /media/usb --site plant-7 --signing-key /etc/airlock/signing_key --recipient ${recipient} --files /srv/config`,
  ).trim();
  assert.is(bundle, '/media/usb/plant-7/plant-7-00000001');
  assert.match(ok('airlock-verify --allowed-signers /root/allowed_signers /media/usb'), /status: ok/);
  assert.match(ok('airlock-verify --allowed-signers /root/allowed_signers --identity /root/identity.txt /media/usb'), /status: ok/);
  assert.match(ok('man -w airlock 2>/dev/null || ls /usr/share/man/man1/airlock.1.gz'), 'airlock.1.gz');
});

test('the units: systemd-analyze verify passes and every ExecStart exists', () => {
  ok(`apt-get install -y ${EXTRAS}/*.deb >/dev/null`);
  const units = readdirSync(path.join(root, 'lib/systemd/system')).filter((u) => u.startsWith('airlock'));
  assert.equal(units.sort(), [
    'airlock-once.service',
    'airlock-once.timer',
    'airlock-status.service',
    'airlock-status.timer',
    'airlock-status@.service',
    'airlock-status@.timer',
    'airlock.service',
    'airlock@.service',
    'airlock@.timer',
  ]);
  for (const unit of units.filter((u) => u.endsWith('.service'))) {
    const text = readFileSync(path.join(root, 'lib/systemd/system', unit), 'utf8');
    const exec = /^ExecStart=(\S+)/m.exec(text)?.[1] as string;
    assert.ok(statSync(path.join(root, exec)).mode & 0o111, `${unit}: ${exec} is executable`);
  }
  // a template is verified as an instance of it
  const r = inRoot(`cd /lib/systemd/system && systemd-analyze verify --man=no ${units.map((u) => u.replace('@.', '@plant-7.')).join(' ')}`);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.not.match(r.stderr, /airlock/, r.stderr);
});

test('airlock-verify.mjs on Debian 12 node 18, the shipped node 20 and node 22: the same bytes as airlock-verify', () => {
  assert.match(ok('node --version'), /^v18\./);
  assert.match(ok(`${EXTRAS}/node-22 --version`), /^v22\./);
  assert.ok(statSync(path.join(kit, 'airlock-verify.mjs')).isFile());
  // a finding too, so not only the happy path is compared
  ok('mkdir -p /media/bad && cp -a /media/usb/plant-7 /media/bad/ && echo tampered >> /media/bad/plant-7/plant-7-00000001/RESTORE.txt');
  for (const args of ['/media/usb', '--identity /root/identity.txt /media/usb', '--json /media/usb', '/media/bad', '--help']) {
    const full = `--allowed-signers /root/allowed_signers ${args}`;
    const installed = inRoot(`airlock-verify ${full}`);
    for (const node of ['node', '/usr/lib/airlock/bin/node', `${EXTRAS}/node-22`]) {
      const one = inRoot(`${node} /kit/airlock-verify.mjs ${full}`);
      // the one field that differs between two runs: when each checked
      const when = (s: string) => s.replace(/"checkedAt": "[^"]+"/, '"checkedAt": "T"');
      assert.is(when(one.stdout), when(installed.stdout), `${node}: ${args}`);
      assert.is(one.stderr, installed.stderr, `${node}: ${args}`);
      assert.is(one.code, installed.code, `${node}: ${args}`);
    }
    assert.is(installed.code, args === '/media/bad' ? 1 : 0, installed.stdout);
  }
});

test('airlock-verify.mjs on node 18 and 22 says what airlock-verify says about every test vector, good and tampered', () => {
  cpSync(path.join(ROOT, 'test/vectors'), path.join(root, 'vectors'), { recursive: true });
  // one shell in the root for all of them: per vector and verifier, stdout, stderr and exit code
  ok(`mkdir /vectors/out && cd /vectors/cases && for c in *; do
    args="--allowed-signers /vectors/keys/allowed_signers"
    if grep -q '"wrongIdentity": *true' $c/expected.json; then args="$args --identity /vectors/keys/other-identity.txt"
    elif grep -q '"deep": *true' $c/expected.json; then args="$args --identity /vectors/keys/identity.txt"; fi
    for v in installed:airlock-verify 18:"node /kit/airlock-verify.mjs" 22:"${EXTRAS}/node-22 /kit/airlock-verify.mjs"; do
      set +e; \${v#*:} $args $c/media >/vectors/out/$c.\${v%%:*}.out 2>/vectors/out/$c.\${v%%:*}.err; echo $? >/vectors/out/$c.\${v%%:*}.code; set -e
    done
  done`);
  const cases = readdirSync(path.join(root, 'vectors/cases'));
  assert.ok(cases.length >= 20);
  const codes = new Set<string>();
  for (const c of cases) {
    for (const ext of ['out', 'err', 'code']) {
      const installed = readFileSync(path.join(root, `vectors/out/${c}.installed.${ext}`), 'utf8');
      for (const node of ['18', '22'])
        assert.is(readFileSync(path.join(root, `vectors/out/${c}.${node}.${ext}`), 'utf8'), installed, `${c}: node ${node}, ${ext}`);
      if (ext === 'code') codes.add(installed.trim());
    }
  }
  assert.equal([...codes].sort(), ['0', '1'], 'good and tampered vectors both');
});

test('upgrade: the same version again with dpkg -i, then a newer build with apt-get; configuration and catalog kept', () => {
  ok('echo "site = plant-7" > /etc/airlock/airlock.conf && echo "# mine" >> /etc/airlock/airlock.conf.example');
  ok(`dpkg -i /kit/${deb}`);
  const newer = `${VERSION}+1`;
  const unpacked = path.join(work, 'newer');
  run('dpkg-deb', ['-R', path.join(kit, deb), unpacked]);
  const control = path.join(unpacked, 'DEBIAN/control');
  writeFileSync(control, readFileSync(control, 'utf8').replace(/^Version: .*$/m, `Version: ${newer}`));
  mkdirSync(path.join(root, 'kit-newer'));
  const built = run('dpkg-deb', ['--root-owner-group', '-Zzstd', '--build', unpacked, path.join(root, 'kit-newer', `airlock_${newer}_amd64.deb`)]);
  assert.is(built.code, 0, built.stderr);
  const up = inRoot('cd /kit-newer && apt-get install -y ./*.deb');
  assert.is(up.code, 0, up.stdout + up.stderr);
  assert.is(ok("dpkg-query -W -f '${Version}' airlock"), newer);
  assert.is(readFileSync(path.join(root, 'etc/airlock/airlock.conf'), 'utf8'), 'site = plant-7\n');
  assert.match(readFileSync(path.join(root, 'etc/airlock/airlock.conf.example'), 'utf8'), '# mine');
  assert.is(ok('stat -c "%U:%G %a" /var/lib/airlock /etc/airlock'), 'airlock:airlock 700\nairlock:airlock 700\n');
  // the catalog survived: the next export continues the chain
  const recipient = /age1[0-9a-z]+/.exec(readFileSync(path.join(root, 'root/identity.txt'), 'utf8'))?.[0] as string;
  const next = ok(
    `runuser -u airlock -- airlock export --to /media/usb --site plant-7 --signing-key /etc/airlock/signing_key --recipient ${recipient} --files /srv/config`,
  ).trim();
  assert.is(next, '/media/usb/plant-7/plant-7-00000002');
});

test('purge: nothing of airlock is left but the state and spool folders', () => {
  ok('dpkg --purge airlock');
  for (const gone of [
    'usr/lib/airlock',
    'usr/bin/airlock',
    'usr/bin/airlock-verify',
    'etc/airlock',
    'lib/systemd/system/airlock.service',
    'usr/share/man/man1/airlock.1.gz',
  ]) {
    assert.not.ok(existsSync(path.join(root, gone)), gone);
  }
  assert.ok(existsSync(path.join(root, 'var/lib/airlock/catalog.db')), 'the catalog stays');
  assert.ok(statSync(path.join(root, 'var/spool/airlock/wal')).isDirectory(), 'the spool stays');
  // what is new since the copy, less what installed packages own, less the test's own files and
  // what the system keeps about itself (package database, logs, users, files that the maintainer
  // scripts of dependencies write, such as /etc/hosts), is what airlock left behind
  // dpkg names files where the package put them: /lib/... is /usr/lib/... in a merged-/usr root
  const owned = new Set(
    ok('cat /var/lib/dpkg/info/*.list /var/lib/dpkg/info/*.conffiles')
      .split('\n')
      .flatMap((p) => [p, p.replace(/^\/(lib|lib64|bin|sbin)\//, '/usr/$1/')]),
  );
  const alternative = (p: string) => lstatSync(path.join(root, p)).isSymbolicLink() && readlinkSync(path.join(root, p)).startsWith('/etc/alternatives/');
  const ours = /^\/(kit|kit-newer|media|srv|root|tmp|run|vectors)(\/|$)/;
  const system =
    /^\/(var\/lib\/(dpkg|apt|systemd|ucf|private)|var\/cache\/(apt|debconf|ldconfig|private)|var\/log|etc\/(alternatives|systemd|ld\.so\.cache|machine-id|hosts|networks|mtab|inputrc|\.pwd\.lock|(passwd|group|shadow|gshadow)-?))(\/|$)/;
  const kept = /^\/(var\/lib\/airlock|var\/spool\/airlock)(\/|$)/;
  const left = [...listFiles(root)].filter((p) => !before.has(p) && !owned.has(p) && !alternative(p) && !ours.test(p) && !system.test(p) && !kept.test(p));
  assert.equal(left, []);
  const named = [...listFiles(root)].filter(
    (p) => p.includes('airlock') && !ours.test(p) && !kept.test(p) && !p.startsWith('/var/lib/dpkg/') && !p.startsWith(EXTRAS),
  );
  assert.equal(named, []);
});

test.run();
