import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  linkSync,
  writeFileSync,
  writeSync,
  utimesSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Parser } from 'tar';
import { AirlockError } from '../../manifests/errors.js';
import { END_OF_ARCHIVE, encodeHeader, entryBytes, entryProblem, paddingFor, readTar, type EntryHeader, type ReadEntry } from '../../manifests/tar.js';

// ---- helpers ----

interface Item {
  h: EntryHeader;
  body: Buffer;
}

function build(items: Item[]): Buffer {
  const parts: Buffer[] = [];
  for (const { h, body } of items) parts.push(encodeHeader(h), body, paddingFor(h.size));
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

async function* chunked(buf: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function readAll(source: AsyncIterable<Uint8Array>): Promise<{ entry: ReadEntry; body: Buffer }[]> {
  const out: { entry: ReadEntry; body: Buffer }[] = [];
  for await (const { entry, body } of readTar(source)) {
    const parts: Buffer[] = [];
    for await (const b of body) parts.push(Buffer.from(b));
    out.push({ entry, body: Buffer.concat(parts) });
  }
  return out;
}

async function entriesOf(buf: Buffer): Promise<ReadEntry[]> {
  const out: ReadEntry[] = [];
  for await (const { entry } of readTar(chunked(buf, 4096))) out.push(entry);
  return out;
}

async function malformedAt(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, AirlockError);
    assert.is((e as AirlockError).code, 'malformed', (e as Error).message);
    return (e as Error).message;
  }
  assert.unreachable('expected a malformed error');
  return '';
}

function run(cmd: string, args: string[], cwd?: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C.UTF-8' } });
  assert.is(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function withTmp<T>(fn: (dir: string) => Promise<T>): () => Promise<T> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-tar-'));
    try {
      return await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

/** A copy of a 512-byte header, patched, with its checksum recomputed. */
function patched(header: Buffer, patch: (b: Buffer) => void): Buffer {
  const b = Buffer.from(header.subarray(0, 512));
  patch(b);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return b;
}

/** A raw ustar header with the given typeflag, name, linkname, size. */
function rawHeader(typeflag: string, name: string, size = 0, linkname = ''): Buffer {
  return patched(encodeHeader({ path: 'x', type: 'file', size, mode: 0o644, mtime: 1 }), (b) => {
    b.fill(0, 0, 100);
    b.write(name, 0, 100, 'utf8');
    b.write(typeflag, 156, 1, 'latin1');
    b.write(linkname, 157, 100, 'utf8');
  });
}

function body(n: number): Buffer {
  return randomBytes(n);
}

const AIRLOCK_KEY_VALUE = 'buckets/some bucket/../weird key ü 100%/x%2F y\n/日本';
const MTIME = 1_700_000_000;

function sampleItems(): Item[] {
  const long100 = 'dir/' + 'a'.repeat(90) + '/' + 'b'.repeat(60); // 155 bytes, fits name+prefix
  const long300 = 'dir/' + ('c'.repeat(50) + '/').repeat(6) + 'leaf'; // > 255 bytes, needs pax
  const noSlash = 'dir/' + 'n'.repeat(120); // last component > 100: needs pax
  return [
    { h: { path: 'dir', type: 'dir', size: 0, mode: 0o750, mtime: MTIME }, body: Buffer.alloc(0) },
    { h: { path: 'dir/empty', type: 'file', size: 0, mode: 0o600, mtime: MTIME + 1 }, body: Buffer.alloc(0) },
    { h: { path: long100, type: 'file', size: 511, mode: 0o644, mtime: MTIME + 2 }, body: body(511) },
    { h: { path: long300, type: 'file', size: 512, mode: 0o640, mtime: MTIME + 3 }, body: body(512) },
    { h: { path: noSlash, type: 'file', size: 513, mode: 0o755, mtime: MTIME + 4 }, body: body(513) },
    { h: { path: 'dir/ünïcødé', type: 'dir', size: 0, mode: 0o755, mtime: MTIME + 5 }, body: Buffer.alloc(0) },
    { h: { path: 'dir/ünïcødé/日本語 file 100%.txt', type: 'file', size: 100, mode: 0o644, mtime: MTIME + 6 }, body: body(100) },
    { h: { path: 'dir/old', type: 'file', size: 3, mode: 0o644, mtime: -86_400 }, body: body(3) },
    { h: { path: 'dir/future', type: 'file', size: 3, mode: 0o644, mtime: 10_000_000_000 } /* > 8^11: pax mtime; < ext4's limit */, body: body(3) },
    {
      h: {
        path: 'objects/0001',
        type: 'file',
        size: 1000,
        mode: 0o644,
        mtime: 0,
        pax: { 'AIRLOCK.key': AIRLOCK_KEY_VALUE, 'AIRLOCK.etag': '"9b2cf535f27731c974343645a3985328"' },
      },
      body: body(1000),
    },
  ];
}

function airlockRecords(pax: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(pax).filter(([k]) => k.startsWith('AIRLOCK.')));
}

// ---- 1. round trip ----

test('round trip: headers and bodies come back as written, whatever the chunking', async () => {
  const items = sampleItems();
  const tar = build(items);
  assert.is(tar.length, items.reduce((n, i) => n + entryBytes(i.h), 0) + END_OF_ARCHIVE.length);
  assert.is(tar.length % 512, 0);
  for (const size of [1, 7, 511, 512, 513, 65536, tar.length]) {
    const got = await readAll(chunked(tar, size));
    assert.is(got.length, items.length);
    const seen = new Set<string>();
    let offset = 0;
    got.forEach(({ entry, body }, i) => {
      const { h, body: want } = items[i] as Item;
      assert.is(entry.path, h.path);
      assert.is(entry.typeflag, h.type === 'dir' ? '5' : '0');
      assert.is(entry.size, h.size);
      assert.is(entry.mode, h.mode);
      assert.is(entry.mtime, h.mtime);
      assert.is(entry.linkpath, '');
      assert.equal(airlockRecords(entry.pax), h.pax ?? {});
      assert.is(entry.offset, offset);
      assert.ok(body.equals(want), `body of ${h.path}`);
      assert.is(entryProblem(entry, seen), undefined, h.path);
      offset += entryBytes(h);
    });
  }
});

test('encodeHeader is deterministic and independent of pax key order', () => {
  const a: EntryHeader = { path: 'ä/b', type: 'file', size: 5, mode: 0o644, mtime: 7, pax: { 'AIRLOCK.a': '1', 'AIRLOCK.b': '2' } };
  const b: EntryHeader = { ...a, pax: { 'AIRLOCK.b': '2', 'AIRLOCK.a': '1' } };
  assert.ok(encodeHeader(a).equals(encodeHeader(b)));
  assert.ok(encodeHeader(a).equals(encodeHeader({ ...a })));
  assert.is(encodeHeader({ path: 'a', type: 'file', size: 0, mode: 0o644, mtime: 0 }).length, 512);
  assert.is(paddingFor(0).length, 0);
  assert.is(paddingFor(1).length, 511);
  assert.is(paddingFor(512).length, 0);
  assert.is(END_OF_ARCHIVE.length, 1024);
});

test('encodeHeader refuses what a reader would flag', () => {
  const ok: EntryHeader = { path: 'a', type: 'file', size: 0, mode: 0o644, mtime: 0 };
  const bad: EntryHeader[] = [
    { ...ok, path: '' },
    { ...ok, path: '/a' },
    { ...ok, path: 'a/../b' },
    { ...ok, path: 'a//b' },
    { ...ok, path: './a' },
    { ...ok, path: 'a\\b' },
    { ...ok, path: 'a\0b' },
    { ...ok, path: 'dir/', type: 'dir' },
    { ...ok, path: 'x'.repeat(4097) },
    { ...ok, path: 'a\uD800' },
    { ...ok, size: -1 },
    { ...ok, size: 1.5 },
    { ...ok, type: 'dir', size: 1 },
    { ...ok, mode: 0o10000 },
    { ...ok, mtime: 0.5 },
    { ...ok, pax: { path: 'x' } },
    { ...ok, pax: { 'AIRLOCK.k': '' } },
    { ...ok, pax: { 'AIRLOCK.k y': 'v' } },
    { ...ok, pax: { 'AIRLOCK.k': 'x'.repeat(2 * 1024 * 1024) } },
  ];
  for (const h of bad) {
    try {
      encodeHeader(h);
      assert.unreachable(JSON.stringify(h).slice(0, 80));
    } catch (e) {
      assert.instance(e, AirlockError);
      assert.is((e as AirlockError).code, 'internal');
    }
  }
});

test('bodies: unread ones are skipped, partly read ones drained, stale ones refuse', async () => {
  const items = sampleItems();
  const tar = build(items);
  // Read only the first chunk of each body, through tiny chunks so the rest must be drained.
  const paths: string[] = [];
  for await (const { entry, body } of readTar(chunked(tar, 100))) {
    paths.push(entry.path);
    if (entry.path.endsWith('leaf'))
      for await (const b of body) {
        assert.ok(b.length > 0);
        break;
      }
  }
  assert.equal(
    paths,
    items.map((i) => i.h.path),
  );

  const gen = readTar(chunked(tar, 512));
  const first = await gen.next();
  await gen.next();
  try {
    for await (const _ of (first.value as { body: AsyncIterable<Buffer> }).body) {
      // read to the end
    }
    assert.unreachable('stale body read');
  } catch (e) {
    assert.is((e as AirlockError).code, 'internal');
  }
  await gen.return(undefined);
});

test('stopping early returns the source iterator', async () => {
  let returned = false;
  const tar = build(sampleItems());
  const source: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]() {
      const inner = chunked(tar, 1000);
      return {
        next: () => inner.next(),
        return: async () => {
          returned = true;
          return { done: true, value: undefined };
        },
      };
    },
  };
  for await (const { entry } of readTar(source)) if (entry.path === 'dir/empty') break;
  assert.ok(returned);
});

test('sizes of 8 GiB and more go through a pax size record', async () => {
  const size = 8 * 1024 ** 3 + 1;
  const h: EntryHeader = { path: 'big/file', type: 'file', size, mode: 0o600, mtime: MTIME };
  const header = encodeHeader(h);
  assert.is(header.length, 1536); // pax header, pax records, ustar header
  assert.is(entryBytes(h), 1536 + size + 511);
  const zeros = Buffer.alloc(1024 * 1024);
  async function* source(): AsyncGenerator<Uint8Array> {
    yield header;
    for (let left = size; left > 0; left -= zeros.length) yield zeros.subarray(0, Math.min(left, zeros.length));
    yield paddingFor(size);
    yield encodeHeader({ path: 'after', type: 'file', size: 2, mode: 0o644, mtime: 1 });
    yield Buffer.from('hi');
    yield paddingFor(2);
    yield END_OF_ARCHIVE;
  }
  const got: ReadEntry[] = [];
  for await (const { entry } of readTar(source())) got.push(entry); // bodies skipped
  assert.is(got.length, 2);
  assert.is(got[0]?.size, size);
  assert.is(got[0]?.pax.size, String(size));
  assert.is(got[1]?.path, 'after');
  assert.is(got[1]?.offset, entryBytes(h));
});

// ---- 2. other readers read our stream ----

test(
  'GNU tar lists and extracts our stream byte-equal with modes and mtimes',
  withTmp(async (dir) => {
    const items = sampleItems();
    const file = join(dir, 'a.tar');
    writeFileSync(file, build(items));

    const r = spawnSync('tar', ['-tvf', file], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C.UTF-8' } });
    assert.is(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.is(lines.length, items.length);
    assert.ok(lines.some((l) => l.includes(' 513 ')));

    const names = run('tar', ['-tf', file, '--quoting-style=literal'])
      .split('\n')
      .filter((l) => l !== '');
    assert.equal(names.sort(), items.map((i) => i.h.path).sort());

    const out = join(dir, 'out');
    mkdirSync(out);
    const x = spawnSync('tar', ['-xpf', file, '--no-same-owner', '-C', out], { encoding: 'utf8' });
    assert.is(x.status, 0, x.stderr);
    for (const { h, body } of items) {
      const p = join(out, h.path);
      const st = lstatSync(p);
      assert.is(st.isDirectory(), h.type === 'dir', h.path);
      assert.is(st.mode & 0o7777, h.mode, `mode of ${h.path}`);
      assert.is(Math.floor(st.mtimeMs / 1000), h.mtime, `mtime of ${h.path}`);
      if (h.type === 'file') assert.ok(readFileSync(p).equals(body), `body of ${h.path}`);
    }
  }),
);

test('node-tar parses our stream with the same paths and sizes and no warnings', async () => {
  const items = sampleItems();
  const tar = build(items);
  const got: { path: string; size: number; type: string }[] = [];
  const warnings: string[] = [];
  const parser = new Parser({
    strict: true,
    onReadEntry: (e) => {
      got.push({ path: e.path, size: e.size, type: e.type });
      e.resume();
    },
  });
  parser.on('warn', (code: string, message: string) => warnings.push(`${code}: ${message}`));
  await new Promise<void>((resolve, reject) => {
    parser.on('end', () => resolve());
    parser.on('error', reject);
    parser.end(tar);
  });
  assert.equal(warnings, []);
  assert.equal(
    got,
    items.map(({ h }) => ({ path: h.path, size: h.size, type: h.type === 'dir' ? 'Directory' : 'File' })),
  );
});

test(
  'GNU tar lists an entry over 8 GiB (sparse archive file)',
  withTmp(async (dir) => {
    const size = 8 * 1024 ** 3 + 5;
    const h: EntryHeader = { path: 'big', type: 'file', size, mode: 0o600, mtime: MTIME };
    const file = join(dir, 'big.tar');
    const fd = openSync(file, 'w');
    try {
      writeSync(fd, encodeHeader(h), 0, undefined, 0);
      writeSync(fd, END_OF_ARCHIVE, 0, undefined, entryBytes(h));
    } finally {
      closeSync(fd);
    }
    assert.is(statSync(file).size, entryBytes(h) + 1024);
    const listing = run('tar', ['-tvf', file]);
    assert.match(listing, new RegExp(` ${size} .* big\\n$`));
  }),
);

// ---- 3. what GNU tar can put in an archive ----

async function problemsOf(file: string): Promise<{ entry: ReadEntry; problem: string | undefined }[]> {
  const seen = new Set<string>();
  return (await entriesOf(readFileSync(file))).map((entry) => ({ entry, problem: entryProblem(entry, seen) }));
}

test(
  'GNU tar archives: links, fifo, absolute, dot-dot, duplicate, long names, global pax are yielded and judged',
  withTmp(async (dir) => {
    const src = join(dir, 'src');
    mkdirSync(join(src, 'sub'), { recursive: true });
    writeFileSync(join(src, 'target.txt'), 'target');
    symlinkSync('target.txt', join(src, 'link'));
    linkSync(join(src, 'target.txt'), join(src, 'hard'));
    run('mkfifo', [join(src, 'fifo')]);
    const longDir = join(src, 'd'.repeat(60));
    mkdirSync(longDir);
    const longLeaf = 'l'.repeat(80);
    writeFileSync(join(longDir, longLeaf), 'long');
    utimesSync(join(src, 'target.txt'), MTIME, MTIME);

    for (const format of ['posix', 'gnu']) {
      const t = join(dir, `special-${format}.tar`);
      run('tar', [`--format=${format}`, '-cf', t, '-C', src, 'target.txt', 'link', 'hard', 'fifo']);
      const got = await problemsOf(t);
      assert.equal(
        got.map(({ entry, problem }) => [entry.path, entry.typeflag, entry.linkpath, problem]),
        [
          ['target.txt', '0', '', undefined],
          ['link', '2', 'target.txt', 'link'],
          ['hard', '1', 'target.txt', 'link'],
          ['fifo', '6', '', 'device'],
        ],
        format,
      );
      assert.is(got[0]?.entry.mtime, MTIME);
    }

    const abs = join(dir, 'abs.tar');
    run('tar', ['-cPf', abs, join(src, 'target.txt')]);
    assert.equal(
      (await problemsOf(abs)).map((g) => [g.entry.path, g.problem]),
      [[join(src, 'target.txt'), 'absolute-path']],
    );

    const dd = join(dir, 'dotdot.tar');
    run('tar', ['-cPf', dd, '-C', join(src, 'sub'), '../target.txt']);
    assert.equal(
      (await problemsOf(dd)).map((g) => [g.entry.path, g.problem]),
      [['../target.txt', 'dot-dot']],
    );

    const dup = join(dir, 'dup.tar');
    run('tar', ['-cf', dup, '-C', src, 'target.txt']);
    run('tar', ['-rf', dup, '-C', src, 'target.txt']);
    assert.equal(
      (await problemsOf(dup)).map((g) => [g.entry.path, g.problem]),
      [
        ['target.txt', undefined],
        ['target.txt', 'duplicate'],
      ],
    );

    // GNU 'L' long names are applied to the entry they precede.
    const longPath = `${'d'.repeat(60)}/${longLeaf}`;
    const gl = join(dir, 'gnulong.tar');
    run('tar', ['--format=gnu', '-cf', gl, '-C', src, longPath]);
    const raw = readFileSync(gl);
    assert.is(raw[156], 'L'.charCodeAt(0));
    const glGot = await problemsOf(gl);
    assert.equal(
      glGot.map((g) => [g.entry.path, g.entry.typeflag, g.problem, g.entry.offset]),
      [[longPath, '0', undefined, 0]],
    );
    const glAbs = join(dir, 'gnulong-abs.tar');
    run('tar', ['--format=gnu', '-cPf', glAbs, join(src, longPath)]);
    assert.equal(
      (await problemsOf(glAbs)).map((g) => [g.entry.path, g.problem]),
      [[join(src, longPath), 'absolute-path']],
    );

    // A global pax header is yielded (and its records apply to what follows).
    const g = join(dir, 'global.tar');
    run('tar', ['--format=posix', '--pax-option=comment=hello', '-cf', g, '-C', src, 'target.txt']);
    const gGot = await problemsOf(g);
    assert.equal(
      gGot.map((x) => [x.entry.typeflag, x.problem]),
      [
        ['g', 'unsupported-type'],
        ['0', undefined],
      ],
    );
    assert.is(gGot[0]?.entry.pax.comment, 'hello');
    assert.is(gGot[1]?.entry.pax.comment, 'hello');
  }),
);

test(
  'GNU tar sparse files: old GNU "S" with extension blocks keeps framing; pax sparse is unsupported',
  withTmp(async (dir) => {
    const src = join(dir, 'src');
    mkdirSync(src);
    // 40 data islands in holes: more than the 4 sparse slots of the header, so extension blocks follow.
    const fd = openSync(join(src, 'sparse'), 'w');
    try {
      for (let i = 0; i < 40; i++) writeSync(fd, Buffer.from(`island ${i}`), 0, undefined, i * 1024 * 1024);
    } finally {
      closeSync(fd);
    }
    writeFileSync(join(src, 'after.txt'), 'after');
    for (const format of ['gnu', 'posix', 'posix:0.0', 'posix:0.1']) {
      const t = join(dir, `sparse-${format}.tar`);
      const [fmt, sparse] = format.split(':');
      const opts = [`--format=${fmt}`, '-S', ...(sparse === undefined ? [] : [`--sparse-version=${sparse}`])];
      run('tar', [...opts, '-cf', t, '-C', src, 'sparse', 'after.txt']);
      const got = await readAll(chunked(readFileSync(t), 4096));
      const seen = new Set<string>();
      const problems = got.map(({ entry }) => entryProblem(entry, seen));
      assert.is(got.length, 2, format);
      assert.is(problems[0], 'unsupported-type', format);
      if (format === 'gnu') assert.is(got[0]?.entry.typeflag, 'S');
      assert.is(got[1]?.entry.path, 'after.txt', format);
      assert.is(got[1]?.body.toString(), 'after', format);
      assert.is(problems[1], undefined, format);
    }
  }),
);

test('crafted device, old-style and unknown typeflags are yielded and judged', async () => {
  const tar = Buffer.concat([
    rawHeader('3', 'dev/chr'),
    rawHeader('4', 'dev/blk'),
    rawHeader('\0', 'oldfile', 3),
    Buffer.from('abc'),
    paddingFor(3),
    rawHeader('7', 'contig'),
    rawHeader('Z', 'vendor', 1),
    Buffer.from('z'),
    paddingFor(1),
    rawHeader('5', 'adir/'),
    rawHeader('5', 'adir'),
    rawHeader('0', 'a\\b'),
    rawHeader('0', 'a/./b'),
    rawHeader('0', ''),
    END_OF_ARCHIVE,
  ]);
  const seen = new Set<string>();
  const got = (await entriesOf(tar)).map((e) => [e.typeflag, e.path, entryProblem(e, seen)]);
  assert.equal(got, [
    ['3', 'dev/chr', 'device'],
    ['4', 'dev/blk', 'device'],
    ['\0', 'oldfile', 'unsupported-type'],
    ['7', 'contig', 'unsupported-type'],
    ['Z', 'vendor', 'unsupported-type'],
    ['5', 'adir/', undefined],
    ['5', 'adir', 'duplicate'],
    ['0', 'a\\b', 'bad-path'],
    ['0', 'a/./b', 'bad-path'],
    ['0', '', 'bad-path'],
  ]);
});

test('entryProblem: path rules', () => {
  const e = (path: string, typeflag = '0'): ReadEntry => ({ path, typeflag, size: 0, mode: 0o644, mtime: 0, linkpath: '', pax: {}, offset: 0 });
  const cases: [string, string | undefined][] = [
    ['ok/path', undefined],
    ['/etc/passwd', 'absolute-path'],
    ['../x', 'dot-dot'],
    ['a/../../x', 'dot-dot'],
    ['a/..', 'dot-dot'],
    ['.', 'bad-path'],
    ['a/', 'bad-path'],
    ['a//b', 'bad-path'],
    ['a\0b', 'bad-path'],
    ['a\nb', 'bad-path'],
    ['base/1/\x1b[2J', 'bad-path'],
    ['a\x7fb', 'bad-path'],
    ['tab\there', 'bad-path'],
    ['bad\uFFFDutf8', 'bad-path'],
    ['é'.repeat(2048), undefined],
    ['é'.repeat(2049), 'bad-path'],
    ['..a/b..', undefined],
  ];
  for (const [path, want] of cases) assert.is(entryProblem(e(path), new Set()), want, JSON.stringify(path).slice(0, 40));
  assert.is(entryProblem(e('/', '5'), new Set()), 'absolute-path');
  assert.is(entryProblem({ ...e('s'), pax: { 'GNU.sparse.major': '1' } }, new Set()), 'unsupported-type');
  // A symlink's name still counts as seen, so a later file of that name is a duplicate.
  const seen = new Set<string>();
  assert.is(entryProblem(e('x', '2'), seen), 'link');
  assert.is(entryProblem(e('x'), seen), 'duplicate');
});

test('names that are not UTF-8 become U+FFFD and are flagged', async () => {
  const h = patched(rawHeader('0', 'x'), (b) => {
    b.fill(0, 0, 100);
    Buffer.from([0x61, 0xe9, 0x62]).copy(b, 0); // latin-1 "aéb"
  });
  const [entry] = await entriesOf(Buffer.concat([h, END_OF_ARCHIVE]));
  assert.is(entry?.path, 'a\uFFFDb');
  assert.is(entryProblem(entry as ReadEntry, new Set()), 'bad-path');
});

// ---- 4. malformed streams ----

test('malformed: flipped header byte, with the offset', async () => {
  const items = sampleItems();
  const tar = build(items);
  const at = entryBytes(items[0]!.h) + entryBytes(items[1]!.h);
  const bad = Buffer.from(tar);
  bad[at + 10] = (bad[at + 10] as number) ^ 0x01;
  const msg = await malformedAt(readAll(chunked(bad, 1000)));
  assert.match(msg, 'checksum');
  assert.match(msg, `offset ${at}`);
});

test('malformed: truncation in a body, at an entry boundary, inside the end marker', async () => {
  const items = sampleItems();
  const tar = build(items);
  const third = entryBytes(items[0]!.h) + entryBytes(items[1]!.h);
  // Middle of a body: when the body is read, and when it is skipped.
  const cut = tar.subarray(0, third + 512 + 100);
  assert.match(await malformedAt(readAll(chunked(cut, 64))), 'inside the body');
  assert.match(await malformedAt(entriesOf(cut)), 'inside the body');
  // Inside the padding after a body.
  assert.match(await malformedAt(entriesOf(tar.subarray(0, third + 512 + 511))), 'inside the body');
  // Exactly at an entry boundary, and with no entries at all.
  assert.match(await malformedAt(entriesOf(tar.subarray(0, third))), 'without the end-of-archive marker');
  assert.match(await malformedAt(entriesOf(Buffer.alloc(0))), 'without the end-of-archive marker');
  // Inside a header, inside the end marker, a lone zero block.
  assert.match(await malformedAt(entriesOf(tar.subarray(0, third + 100))), 'inside a header');
  assert.match(await malformedAt(entriesOf(tar.subarray(0, tar.length - 512))), 'end-of-archive');
  assert.match(await malformedAt(entriesOf(Buffer.concat([tar.subarray(0, third), Buffer.alloc(512), tar.subarray(third)]))), 'lone zero block');
});

test('malformed: data after the end marker; zero padding after it is fine', async () => {
  const tar = build(sampleItems());
  assert.is((await entriesOf(Buffer.concat([tar, Buffer.alloc(10240 - (tar.length % 10240))]))).length, sampleItems().length);
  assert.is((await entriesOf(Buffer.concat([tar, Buffer.alloc(7)]))).length, sampleItems().length);
  const garbage = Buffer.concat([tar, Buffer.alloc(700), Buffer.from([1])]);
  assert.match(await malformedAt(entriesOf(garbage)), `offset ${tar.length + 700}`);
  const another = Buffer.concat([tar, build(sampleItems())]);
  assert.match(await malformedAt(entriesOf(another)), 'after the end-of-archive marker');
});

test('malformed: pax records', async () => {
  const h: EntryHeader = { path: 'p', type: 'file', size: 0, mode: 0o644, mtime: 0, pax: { 'AIRLOCK.key': 'value' } };
  const good = Buffer.concat([encodeHeader(h), END_OF_ARCHIVE]);
  const record = good.toString('latin1', 512, 512 + 22);
  assert.is(record, '21 AIRLOCK.key=value\n\0');
  const variants: [string, string][] = [
    ['22 AIRLOCK.key=value\n', 'length does not match'],
    ['20 AIRLOCK.key=value\n', 'length does not match'],
    ['2x AIRLOCK.key=value\n', 'bad pax record length'],
    ['021 AIRLOCK.keyvalue\n', 'bad pax record length'],
    ['21 AIRLOCK.keyXvalue\n', 'without key=value'],
    ['21 =AIRLOCK.keyvalue\n', 'without key=value'],
    ['21 AIRLOCK.key=value ', 'length does not match'],
  ];
  for (const [text, want] of variants) {
    const bad = Buffer.from(good);
    bad.write(text, 512, 'latin1');
    assert.match(await malformedAt(entriesOf(bad)), want, text);
    assert.match(await malformedAt(entriesOf(bad)), 'offset 0');
  }
  // Two records of the same key; a bad size record; a bad mtime record.
  for (const [body, want] of [
    ['11 a=xxxxx\n11 a=yyyyy\n', 'duplicate pax record'],
    ['11 size=1x\n', 'bad pax size'],
    ['13 mtime=1e9\n', 'bad pax mtime'],
  ] as const) {
    const x = rawHeader('x', 'PaxHeaders/p', body.length);
    const pad = paddingFor(body.length);
    const bad = Buffer.concat([x, Buffer.from(body), pad, rawHeader('0', 'p'), END_OF_ARCHIVE]);
    assert.match(await malformedAt(entriesOf(bad)), want);
  }
  // A fractional and a negative pax mtime are accepted (GNU tar writes the former).
  for (const [value, want] of [
    ['1700000000.5', 1700000000],
    ['-1.5', -2],
    ['-0.5', -1],
    ['-0', 0],
  ] as const) {
    const body = `${value.length + 10} mtime=${value}\n`;
    const tar = Buffer.concat([rawHeader('x', 'PaxHeaders/p', body.length), Buffer.from(body), paddingFor(body.length), rawHeader('0', 'p'), END_OF_ARCHIVE]);
    assert.is((await entriesOf(tar))[0]?.mtime, want, value);
  }
});

test('malformed: oversized pax header, pax header without an entry, two pax headers', async () => {
  const big = Buffer.concat([rawHeader('x', 'PaxHeaders/p', 2 * 1024 * 1024), Buffer.alloc(1024)]);
  assert.match(await malformedAt(entriesOf(big)), 'larger than');
  const tail = encodeHeader({ path: 'ü', type: 'file', size: 0, mode: 0o644, mtime: 0 }).subarray(0, 1024);
  assert.match(await malformedAt(entriesOf(Buffer.concat([tail, END_OF_ARCHIVE]))), 'not followed by an entry');
  assert.match(await malformedAt(entriesOf(Buffer.concat([tail, tail, rawHeader('0', 'x'), END_OF_ARCHIVE]))), 'second pax header');
});

test('malformed: magic, non-octal fields, sizes on types without data', async () => {
  const ok = rawHeader('0', 'f');
  const cases: [Buffer, string][] = [
    [patched(ok, (b) => b.write('xxxxx', 257, 'latin1')), 'missing ustar magic'],
    [patched(ok, (b) => b.write('0000008\0', 100, 'latin1')), 'non-octal mode'],
    [patched(ok, (b) => b.write('0000000009\0', 124, 'latin1')), 'non-octal size'],
    [patched(ok, (b) => b.fill(0, 124, 136)), 'empty size'],
    [patched(ok, (b) => b.write('12 34', 136, 'latin1')), 'non-octal mtime'],
    [patched(ok, (b) => b.write('7x', 108, 'latin1')), 'non-octal uid'],
    [patched(ok, (b) => ((b[124] = 0xfe), undefined)), 'base-256 size'],
    [rawHeader('5', 'd', 512), 'non-zero size'],
    [rawHeader('2', 'l', 1, 't'), 'non-zero size'],
  ];
  for (const [h, want] of cases) {
    const tar = Buffer.concat([rawHeader('0', 'first'), h, Buffer.alloc(512), END_OF_ARCHIVE]);
    const msg = await malformedAt(entriesOf(tar));
    assert.match(msg, want);
    assert.match(msg, 'offset 512');
  }
  // Spaces around octal digits (old writers) and base-256 sizes (GNU) are accepted.
  const spaced = patched(ok, (b) => b.write('   644 \0', 100, 'latin1'));
  assert.is((await entriesOf(Buffer.concat([spaced, END_OF_ARCHIVE])))[0]?.mode, 0o644);
  const b256 = patched(ok, (b) => {
    b.fill(0, 124, 136);
    b[124] = 0x80;
    b[135] = 3;
  });
  const got = await readAll(chunked(Buffer.concat([b256, Buffer.from('abc'), paddingFor(3), END_OF_ARCHIVE]), 512));
  assert.is(got[0]?.body.toString(), 'abc');
});

test.run();
