/*
 * The atomic write: while the new bytes are written the final name holds the old file, a failure
 * leaves the old file and no temporary one, an exclusive write never replaces, and the result has
 * the mode asked for. Real files in a fresh folder.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tempBeside, writeFileAtomic, writeFileAtomicSync } from '../../manifests/atomic.js';
import { AirlockError } from '../../manifests/errors.js';

function folder(): { dir: string; file: string; done: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'airlock-atomic-'));
  return { dir, file: path.join(dir, 'state.json'), done: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The process's umask (set and put back: reading it alone is deprecated). */
function currentUmask(): number {
  const mask = process.umask(0o022);
  process.umask(mask);
  return mask;
}

test('a temporary name is a hidden .tmp file beside the target, new each time', () => {
  const a = tempBeside('/media/usb/state.json');
  assert.match(a, /^\/media\/usb\/\.state\.json\.[0-9a-f]{12}\.tmp$/);
  assert.is.not(tempBeside('/media/usb/state.json'), a);
});

test('while the new bytes are written the final name holds the old file, then the new one whole', () => {
  const { dir, file, done } = folder();
  try {
    writeFileSync(file, 'old');
    let seen = '';
    writeFileAtomicSync(file, (fd) => {
      writeSync(fd, 'new, ');
      seen = readFileSync(file, 'utf8');
      writeSync(fd, 'whole');
    });
    assert.is(seen, 'old');
    assert.is(readFileSync(file, 'utf8'), 'new, whole');
    assert.equal(readdirSync(dir), ['state.json'], 'no temporary file is left');
  } finally {
    done();
  }
});

test('a failure while writing leaves the old file and no temporary one', async () => {
  const { dir, file, done } = folder();
  try {
    writeFileSync(file, 'old');
    assert.throws(
      () =>
        writeFileAtomicSync(file, (fd) => {
          writeSync(fd, 'half');
          throw new AirlockError('checksum-mismatch', 'refused');
        }),
      (e: unknown) => e instanceof AirlockError && e.code === 'checksum-mismatch',
    );
    assert.is(readFileSync(file, 'utf8'), 'old');
    assert.equal(readdirSync(dir), ['state.json']);
    // the asynchronous form: a target that is a folder cannot be replaced by a file
    const sub = path.join(dir, 'sub');
    mkdirSync(sub);
    writeFileSync(path.join(sub, 'inside'), 'x');
    const e = await writeFileAtomic(sub, 'text').then(
      () => undefined,
      (err: unknown) => err,
    );
    assert.ok(e instanceof Error, 'replacing a folder fails');
    assert.equal(readdirSync(dir).sort(), ['state.json', 'sub']);
  } finally {
    done();
  }
});

test('an exclusive write never replaces: it returns false and leaves the file there as it was', async () => {
  const { dir, file, done } = folder();
  try {
    assert.is(await writeFileAtomic(file, 'first', { exclusive: true, mode: 0o600 }), true);
    assert.is(await writeFileAtomic(file, 'second', { exclusive: true }), false);
    assert.is(
      writeFileAtomicSync(file, (fd) => writeSync(fd, 'third'), { exclusive: true }),
      false,
    );
    assert.is(readFileSync(file, 'utf8'), 'first');
    assert.is(statSync(file).mode & 0o777, 0o600);
    assert.equal(readdirSync(dir), ['state.json']);
  } finally {
    done();
  }
});

test('a plain write replaces, with the mode asked for; without fsync too', async () => {
  const { file, done } = folder();
  try {
    assert.is(await writeFileAtomic(file, 'one'), true);
    assert.is(statSync(file).mode & 0o777, 0o644 & ~currentUmask());
    assert.is(await writeFileAtomic(file, Buffer.from('two'), { mode: 0o600 }), true);
    assert.is(readFileSync(file, 'utf8'), 'two');
    assert.is(statSync(file).mode & 0o777, 0o600);
    assert.is(
      writeFileAtomicSync(file, (fd) => writeSync(fd, 'three'), { durable: false }),
      true,
    );
    assert.is(readFileSync(file, 'utf8'), 'three');
  } finally {
    done();
  }
});

test('a missing folder is not-found, naming the file', async () => {
  const { dir, done } = folder();
  try {
    const target = path.join(dir, 'gone', 'state.json');
    const e = await writeFileAtomic(target, 'x').then(
      () => undefined,
      (err: unknown) => err,
    );
    assert.instance(e, AirlockError);
    assert.is((e as AirlockError).code, 'not-found');
    assert.match((e as AirlockError).message, target);
    assert.not.ok(existsSync(path.join(dir, 'gone')));
  } finally {
    done();
  }
});

test.run();
