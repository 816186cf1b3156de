/*
 * What the review of the first cut found, kept as tests: overlapping roots, non-ASCII names across
 * index chunks, two bundles from one process (buffers moved between threads), a full medium, a file
 * that changes while read, remembered verifier state, a medium that changes between reads.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseIdentities } from '../../manifests/age/keys.js';
import { parseAllowedSigners } from '../../manifests/allowed-signers.js';
import { EXIT, isAirlockError } from '../../manifests/errors.js';
import { Catalog } from '../../agent/catalog.js';
import { parsePrivateKey } from '../../manifests/sshkey.js';
import { fileItems } from '../../agent/sources/files.js';
import { restoreFiles } from '../../agent/restore/files.js';
import { verifyPaths } from '../../verifier/verify.js';
import { ROOT, airlock, airlockVerify, exportArgs, makeKeys, nodeAsync, run, tmp } from '../helpers.js';

const keys = makeKeys('site-r');
const exportFiles = (medium: string, state: string, files: string[], extra: string[] = []) => exportArgs(keys, medium, state, ['--files', ...files, ...extra]);
const deepOk = (medium: string) => {
  const v = airlockVerify(['--allowed-signers', keys.allowedSigners, '--identity', keys.identity, medium]);
  assert.is(v.code, EXIT.ok, v.stdout);
};

test('overlapping --files roots export each file once and restore', () => {
  const src = tmp();
  mkdirSync(path.join(src, 'ssh'));
  writeFileSync(path.join(src, 'ssh', 'sshd_config'), 'Port 22\n');
  const medium = tmp();
  const r = airlock(exportFiles(medium, tmp(), [src, path.join(src, 'ssh', 'sshd_config'), `${src}/ssh`]));
  assert.is(r.code, EXIT.ok, r.stderr);
  deepOk(medium);
  const to = path.join(tmp(), 'out');
  const rs = airlock(['restore', 'files', '--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', to]);
  assert.is(rs.code, EXIT.ok, rs.stderr);
  assert.is(readFileSync(path.join(to, src, 'ssh', 'sshd_config'), 'utf8'), 'Port 22\n');
});

test('thousands of non-ASCII names: index lines that straddle chunks decode whole', () => {
  const src = tmp();
  const names = Array.from({ length: 3000 }, (_, i) => `éè-ünïcödé-名前-${i}`);
  for (const n of names) writeFileSync(path.join(src, n), n);
  const medium = tmp();
  assert.is(airlock(exportFiles(medium, tmp(), [src], ['--compress', 'none'])).code, EXIT.ok);
  deepOk(medium);
  const to = path.join(tmp(), 'out');
  const rs = airlock(['restore', 'files', '--from', medium, '--identity', keys.identity, '--allowed-signers', keys.allowedSigners, '--to', to]);
  assert.is(rs.code, EXIT.ok, rs.stderr);
  assert.equal(readdirSync(path.join(to, src)).sort(), [...names].sort());
});

test('two bundles written by one process (encryption on a worker thread) both verify', async () => {
  const w = (await import(pathToFileURL(path.join(ROOT, 'dist/agent/bundle/writer.js')).href)) as typeof import('../../agent/bundle/writer.js');
  const medium = tmp();
  const signingKey = parsePrivateKey(readFileSync(keys.signingKey, 'utf8'));
  const src = tmp();
  writeFileSync(path.join(src, 'a'), randomBytes(300_000));
  let prev: string | undefined;
  for (const seq of [1, 2]) {
    const b = await w.writeBundle(
      { medium, site: keys.site, seq, prev, recipients: [keys.recipient], signingKey, compression: 'none', volumeSize: 1024 * 1024, now: () => new Date() },
      fileItems([src]),
    );
    prev = b.sumsSha256;
  }
  deepOk(medium);
});

test('a full medium: exit 6, no partial bundle, the seq is not consumed', () => {
  const mnt = tmp();
  const m = run('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
  if (m.code !== 0) {
    console.log(`  (skipped: cannot mount a tmpfs here: ${m.stderr.trim()})`);
    return;
  }
  try {
    const src = tmp();
    writeFileSync(path.join(src, 'big'), randomBytes(3 * 1024 * 1024));
    const state = tmp();
    const r = airlock(exportFiles(mnt, state, [src], ['--compress', 'none']));
    assert.is(r.code, EXIT.medium, r.stderr);
    // refused up front by the free-space check (media.test.ts fills a medium mid-write)
    assert.match(r.stderr, /needs about [\d.]+ MiB on \S+ but only [\d.]+ \w+ is free/);
    const siteDir = path.join(mnt, keys.site);
    assert.equal(existsSync(siteDir) ? readdirSync(siteDir) : [], [], 'no partial bundle');
    writeFileSync(path.join(src, 'big'), 'small now');
    const again = airlock(exportFiles(mnt, state, [src]));
    assert.is(again.code, EXIT.ok, again.stderr);
    assert.match(again.stdout, 'site-r-00000001');
  } finally {
    run('umount', [mnt]);
  }
});

test('a file that changes while it is read fails the export with source-changed', async () => {
  const src = tmp();
  const f = path.join(src, 'live.log');
  writeFileSync(f, 'one\n');
  const items = fileItems([src]);
  for await (const item of items) {
    if (item.kind !== 'entry') continue;
    writeFileSync(f, 'one\ntwo\n');
    try {
      for await (const _ of item.open()) {
        // read to the end
      }
      assert.unreachable('a changed file must not be read as if whole');
    } catch (e) {
      assert.ok(isAirlockError(e, 'source-changed'), String(e));
    }
  }
});

test('remembered state: the verifier advances it on success and catches a rollback later', () => {
  const src = tmp();
  writeFileSync(path.join(src, 'a'), 'a');
  const medium = tmp();
  const state = tmp();
  for (let i = 0; i < 2; i++) assert.is(airlock(exportFiles(medium, state, [src])).code, EXIT.ok);
  const stateFile = path.join(tmp(), 'verify-state.json');
  assert.is(airlockVerify(['--allowed-signers', keys.allowedSigners, '--state', stateFile, medium]).code, EXIT.ok);
  assert.is(JSON.parse(readFileSync(stateFile, 'utf8')).sites['site-r'].seq, 2);
  const old = tmp();
  cpSync(path.join(medium, keys.site, 'site-r-00000001'), path.join(old, keys.site, 'site-r-00000001'), { recursive: true });
  const r = airlockVerify(['--allowed-signers', keys.allowedSigners, '--state', stateFile, old]);
  assert.is(r.code, EXIT.failed);
  assert.match(r.stdout, 'rollback: ');
  assert.is(JSON.parse(readFileSync(stateFile, 'utf8')).sites['site-r'].seq, 2, 'state never goes back');
});

test('a volume replaced after verification by a same-size one: restore promotes nothing', async () => {
  const src = tmp();
  writeFileSync(path.join(src, 'a'), randomBytes(100_000));
  const medium = tmp();
  const other = tmp();
  assert.is(airlock(exportFiles(medium, tmp(), [src], ['--compress', 'none'])).code, EXIT.ok);
  assert.is(airlock(exportFiles(other, tmp(), [src], ['--compress', 'none'])).code, EXIT.ok);
  const report = await verifyPaths([medium], { allowedSigners: parseAllowedSigners(readFileSync(keys.allowedSigners, 'utf8')), now: new Date(), tool: 'test' });
  const bundle = report.bundles[0];
  assert.ok(bundle?.findings.length === 0);
  const mine = path.join(bundle.path, 'payload.000');
  const theirs = path.join(other, keys.site, 'site-r-00000001', 'payload.000');
  assert.is(readFileSync(mine).byteLength, readFileSync(theirs).byteLength);
  cpSync(theirs, mine);
  const parent = tmp();
  try {
    await restoreFiles(bundle, parseIdentities(readFileSync(keys.identity, 'utf8')), path.join(parent, 'out'));
    assert.unreachable('restore must fail');
  } catch (e) {
    assert.ok(isAirlockError(e, 'checksum-mismatch'), String(e));
  }
  assert.equal(readdirSync(parent), []);
  rmSync(other, { recursive: true, force: true });
  assert.not.ok(existsSync(path.join(parent, 'out')));
});

// Opens the catalog of a state folder through the built agent at the time given (ms since the
// epoch), so that several processes start their first open together; prints "ok" or the error.
const OPEN_CATALOG = `
import { Catalog } from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'dist/agent/catalog.js')).href)};
import { exitCodeOf } from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'dist/manifests/errors.js')).href)};
const [state, at] = process.argv.slice(1);
while (Date.now() < Number(at));
try {
  Catalog.open(state).close();
  console.log('ok');
} catch (e) {
  console.log(\`\${e.code ?? ''} \${e.message}\`);
  process.exit(exitCodeOf(e));
}
`;

/** How many migrations this airlock's catalog has had: the user_version of a new one. */
const MIGRATIONS = (() => {
  const state = path.join(tmp(), 'state');
  Catalog.open(state).close();
  const db = new Database(path.join(state, 'catalog.db'), { readonly: true });
  try {
    return db.pragma('user_version', { simple: true }) as number;
  } finally {
    db.close();
  }
})();

test('commands opening a new or just-upgraded state folder together: one migrates, the others wait, none fails', async () => {
  for (let round = 0; round < 6; round++) {
    const state = path.join(tmp(), 'state');
    if (round % 2 === 1) {
      // a catalog an airlock one migration older left: without the last migration's column
      Catalog.open(state).close();
      const db = new Database(path.join(state, 'catalog.db'));
      db.exec('ALTER TABLE object_versions DROP COLUMN tags');
      db.pragma(`user_version = ${MIGRATIONS - 1}`);
      db.close();
    }
    const at = String(Date.now() + 1500);
    const opened = await Promise.all(Array.from({ length: 6 }, () => nodeAsync(['--input-type=module', '-e', OPEN_CATALOG, state, at])));
    for (const o of opened) assert.is(o.code, 0, `${o.stdout}${o.stderr}`);
    const db = new Database(path.join(state, 'catalog.db'), { readonly: true });
    assert.is(db.pragma('user_version', { simple: true }), MIGRATIONS);
    assert.is(db.prepare(`SELECT count(*) FROM sqlite_master WHERE name = 'bundles'`).pluck().get(), 1);
    assert.is(db.prepare(`SELECT count(*) FROM pragma_table_info('object_versions') WHERE name = 'tags'`).pluck().get(), 1);
    db.close();
  }
});

const mode = (f: string) => (statSync(f).mode & 0o7777).toString(8);

test('the catalog, its -wal and -shm files and the lock are 0600; a catalog made 0644 before is narrowed', () => {
  const state = tmp();
  const medium = tmp();
  const src = tmp();
  writeFileSync(path.join(src, 'a.conf'), 'a\n');
  const r = airlock(exportFiles(medium, state, [src]));
  assert.is(r.code, EXIT.ok, r.stderr);
  assert.is(mode(path.join(state, 'export.lock')), '600');
  const catalog = Catalog.open(state);
  try {
    catalog.recordJob({ job: 'test', site: null, time: new Date().toISOString(), outcome: 'ok', code: null, message: null });
    for (const f of ['catalog.db', 'catalog.db-wal', 'catalog.db-shm']) assert.is(mode(path.join(state, f)), '600', f);
  } finally {
    catalog.close();
  }
  // a command run as root in the agent's state folder leaves the agent's files, not root's
  const agents = tmp();
  chownSync(agents, 65534, 65534);
  const asRoot = airlock(exportFiles(tmp(), agents, [src]));
  assert.is(asRoot.code, EXIT.ok, asRoot.stderr);
  for (const f of ['catalog.db', 'export.lock']) {
    const st = statSync(path.join(agents, f));
    assert.equal([st.uid, st.gid, mode(path.join(agents, f))], [65534, 65534, '600'], f);
  }
  // as an older airlock left them
  const old = tmp();
  const db = new Database(path.join(old, 'catalog.db'));
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t (x)');
  for (const f of ['catalog.db', 'catalog.db-wal', 'catalog.db-shm']) chmodSync(path.join(old, f), 0o644);
  const opened = Catalog.open(old);
  for (const f of ['catalog.db', 'catalog.db-wal', 'catalog.db-shm']) assert.is(mode(path.join(old, f)), '600', f);
  opened.close();
  db.close();
});

test('a state folder that other users may write is refused (exit 4, unsafe-state), nothing created in it', () => {
  for (const m of [0o777, 0o770, 0o1777]) {
    const state = tmp();
    chmodSync(state, m);
    const spool = tmp();
    const r = airlock(['wal-ingest', '--spool', spool, '--state-dir', state]);
    assert.is(r.code, EXIT.conflict, r.stderr);
    assert.match(r.stderr, `airlock: error: the state folder ${state} is writable by other users`);
    assert.match(r.stderr, `airlock: hint: chmod 700 ${state}`);
    assert.equal(readdirSync(state), []);
    try {
      Catalog.open(state);
      assert.unreachable('opened');
    } catch (e) {
      assert.ok(isAirlockError(e, 'unsafe-state'), String(e));
    }
  }
});

test.run();
