/*
 * The in-process unpacking of a base backup: a tar made by GNU tar (with ./ names, as pg_basebackup
 * writes some) comes out as GNU tar itself unpacks it, whatever the part boundaries; a tar holding a
 * link or a `..` name fails with unsafe-entry.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AirlockError } from '../../manifests/errors.js';
import type { ReadEntry } from '../../manifests/tar.js';
import { BaseBackupSink } from '../../agent/restore/unpack.js';
import { run, tmp } from '../helpers.js';

/** Feeds `tar` to a sink as parts of `partSize` bytes, in chunks of 64 KiB, and finishes it. */
async function unpack(tar: Buffer, into: string, partSize: number): Promise<void> {
  const sink = new BaseBackupSink(into);
  try {
    for (let at = 0, part = 1; at < tar.length; at += partSize, part++) {
      const end = Math.min(at + partSize, tar.length);
      const body = (async function* () {
        for (let i = at; i < end; i += 65536) yield tar.subarray(i, Math.min(i + 65536, end));
      })();
      const d = await sink.take({ path: `pg/base/${String(part).padStart(6, '0')}` } as ReadEntry)(body);
      assert.is(d.size, end - at);
    }
    await sink.finish();
  } catch (e) {
    await sink.abort();
    throw e;
  }
}

function sourceTree(): string {
  const src = tmp();
  mkdirSync(path.join(src, 'base', '1'), { recursive: true });
  mkdirSync(path.join(src, 'pg_wal', 'archive_status'), { recursive: true });
  writeFileSync(path.join(src, 'PG_VERSION'), '15\n');
  writeFileSync(path.join(src, 'base', '1', '1259'), randomBytes(3 * 1024 * 1024 + 8192));
  writeFileSync(path.join(src, 'base', '1', '1259_vm'), randomBytes(8192));
  writeFileSync(path.join(src, 'base', '1', 'empty'), '');
  return src;
}

test('a GNU tar with ./ names unpacks as GNU tar unpacks it, at any part size', async () => {
  const src = sourceTree();
  const tarFile = path.join(tmp(), 'base.tar');
  assert.is(run('tar', ['--format=ustar', '-cf', tarFile, '-C', src, '.']).code, 0);
  const tar = readFileSync(tarFile);
  const expected = tmp();
  assert.is(run('tar', ['-xf', tarFile, '-C', expected]).code, 0);
  for (const partSize of [512 * 7 + 3, 1024 * 1024, tar.length]) {
    const into = tmp();
    await unpack(tar, into, partSize);
    const diff = run('diff', ['-r', expected, into]);
    assert.is(diff.code, 0, `part size ${partSize}: ${diff.stdout}`);
  }
});

test('a link or a name with .. in the base backup fails the unpacking with unsafe-entry', async () => {
  const withLink = sourceTree();
  symlinkSync('/etc', path.join(withLink, 'pg_tblspc'));
  const dotdot = tmp();
  writeFileSync(path.join(dotdot, 'x'), 'x');
  const cases: [string, string[]][] = [
    ['a symbolic link', ['--format=ustar', '-C', withLink, '.']],
    ['a .. name', ['--format=ustar', '--absolute-names', '--transform=s,^x$,../escaped,', '-C', dotdot, 'x']],
  ];
  for (const [what, args] of cases) {
    const tarFile = path.join(tmp(), 'base.tar');
    assert.is(run('tar', ['-cf', tarFile, ...args]).code, 0, what);
    const into = tmp();
    try {
      await unpack(readFileSync(tarFile), into, 1024 * 1024);
      assert.unreachable(`${what} was unpacked`);
    } catch (e) {
      assert.instance(e, AirlockError, what);
      assert.is((e as AirlockError).code, 'unsafe-entry', `${what}: ${(e as Error).message}`);
    }
    assert.not.ok(existsSync(path.join(path.dirname(into), 'escaped')), 'nothing written outside the folder');
  }
});

test.run();
