/*
 * Volumes written past the page cache: every length (empty, unaligned tails, several blocks) comes
 * back byte for byte, a write the kernel refuses goes on through the page cache, a file system
 * without O_DIRECT is written through it, and the direct read-back hashes what is on the disk.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BLOCK, BlockWriter, DirectFile, alignedBlocks, digestDirect } from '../../agent/direct.js';
import { run, tmp } from '../helpers.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Writes `data` through DirectFile in blocks from alignedBlocks, as the bundle writer does. */
async function writeDirect(file: string, data: Buffer): Promise<void> {
  const out = new BlockWriter(await DirectFile.create(file, 0o644), alignedBlocks(2));
  for (let at = 0; at < data.length; at += 1000003) await out.write(data.subarray(at, at + 1000003));
  assert.is(out.size, data.length);
  await out.finish();
}

test('files of every length come back byte for byte, and the direct read-back hashes them', async () => {
  const dir = tmp();
  for (const size of [0, 1, 4095, 4096, 4097, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 12345]) {
    const data = randomBytes(size);
    const file = path.join(dir, `f${size}`);
    await writeDirect(file, data);
    assert.is(statSync(file).size, size, `size ${size}`);
    assert.ok(readFileSync(file).equals(data), `bytes of ${size}`);
    assert.equal(await digestDirect(file), { sha256: sha(data), size }, `digest of ${size}`);
  }
});

test('a file that exists is refused; a write the kernel refuses (memory not aligned) goes through the page cache', async () => {
  const dir = tmp();
  const file = path.join(dir, 'v');
  const data = randomBytes(3 * 4096 + 17);
  const f = await DirectFile.create(file, 0o644);
  // memory at an odd address: O_DIRECT answers EINVAL
  const unaligned = (b: Buffer) => {
    const m = Buffer.alloc(b.length + 1);
    b.copy(m, 1);
    return m.subarray(1);
  };
  await f.writeAt(unaligned(data.subarray(0, 8192)), 8192, 0);
  await f.writeAt(unaligned(data.subarray(8192)), data.length - 8192, 8192);
  await f.finish();
  assert.ok(readFileSync(file).equals(data));
  // a buffer that is not one of alignedBlocks, with no room for the padding of its unaligned length
  const small = path.join(dir, 'small');
  const g = await DirectFile.create(small, 0o644);
  await g.writeAt(Buffer.from('hello'), 5, 0);
  await g.finish();
  assert.is(readFileSync(small, 'utf8'), 'hello');
  try {
    await DirectFile.create(file, 0o644);
    assert.unreachable('an existing file was opened for writing');
  } catch (e) {
    assert.is((e as NodeJS.ErrnoException).code, 'EEXIST');
  }
});

test('a file system without O_DIRECT (ramfs refuses it after creating the file) is written through the page cache', async () => {
  if (process.getuid?.() !== 0) {
    console.log('  (skipped: mounting a ramfs needs root)');
    return;
  }
  const mnt = tmp('airlock-ramfs-');
  const m = run('mount', ['-t', 'ramfs', 'ramfs', mnt]);
  assert.is(m.code, 0, m.stderr);
  try {
    const data = randomBytes(BLOCK + 4097);
    await writeDirect(path.join(mnt, 'v'), data);
    assert.ok(readFileSync(path.join(mnt, 'v')).equals(data));
    assert.equal(readdirSync(mnt), ['v']);
    // no direct reads either: the caller is told to read it cached
    assert.is(await digestDirect(path.join(mnt, 'v')), undefined);
  } finally {
    const u = run('umount', [mnt]);
    assert.is(u.code, 0, u.stderr);
  }
});

test.run();
