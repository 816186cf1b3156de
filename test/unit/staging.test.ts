/*
 * The staging module's bookkeeping, in one process: which staging folders beside a target it takes
 * for a dead run's (and removes, with the decrypted data in them) and which for a live run's (left
 * alone, and a reason to refuse a second restore into the same target). The lock is the kernel's,
 * so a folder locked by this process counts as live like one locked by another.
 */
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isAirlockError } from '../../manifests/errors.js';
import { acquireLock } from '../../agent/lock.js';
import { withStaging } from '../../agent/restore/staging.js';
import { tmp } from '../helpers.js';

/** A staging folder of `target` as a run makes it, with decrypted data, under the smallest possible name. */
function stagingOf(target: string, lock: boolean): { dir: string; release: () => void } {
  const dir = path.join(path.dirname(target), `.${path.basename(target)}.airlock-staging-000000000000`);
  mkdirSync(path.join(dir, 'entries'), { recursive: true, mode: 0o700 });
  writeFileSync(path.join(dir, 'entries', 'secret'), 'decrypted\n');
  return { dir, release: lock ? acquireLock(dir, 'restore') : () => {} };
}

async function refusal(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return isAirlockError(e) ? e.code : String(e);
  }
}

test('a staging folder whose run ended is removed, with or without its lock file; the new one is private', async () => {
  for (const locked of [true, false]) {
    const target = path.join(tmp(), 'restored');
    const dead = stagingOf(target, locked);
    dead.release(); // as the kernel does when the process ends
    let seen: string[] = [];
    await withStaging(target, async (dir) => {
      seen = readdirSync(path.dirname(target));
      assert.is(statSync(dir).mode & 0o777, 0o700);
      assert.is(path.dirname(dir), path.dirname(target), 'beside the target, on its file system');
    });
    assert.not.ok(seen.includes(path.basename(dead.dir)), `the dead run's staging is gone (lock file: ${locked})`);
    assert.is(seen.length, 1, "only the run's own staging was there");
    assert.equal(readdirSync(path.dirname(target)), [], 'and that is removed afterwards');
  }
});

test("a live run's staging is left alone: a second restore into its target is refused, a non-exclusive one goes on", async () => {
  const target = path.join(tmp(), 'restored');
  const live = stagingOf(target, true);
  try {
    let ran = false;
    const code = await refusal(withStaging(target, async () => void (ran = true)));
    assert.is(code, 'locked');
    assert.not.ok(ran, 'nothing was staged');
    await withStaging(target, async () => void (ran = true), { exclusive: false });
    assert.ok(ran);
    assert.ok(existsSync(path.join(live.dir, 'entries', 'secret')), 'the live staging is untouched');
    // another target's staging is not this restore's business
    const other = path.join(path.dirname(target), 'restored2');
    await withStaging(other, async () => {});
    assert.ok(existsSync(live.dir));
  } finally {
    live.release();
  }
  await withStaging(target, async () => {});
  assert.equal(readdirSync(path.dirname(target)), [], 'once its run ended, the next restore removed it');
});

test('of two live runs into one target the one with the smaller name goes on; staging goes whatever work throws', async () => {
  for (let i = 0; i < 8; i++) {
    const target = path.join(tmp(), 'restored');
    let inner: string | undefined;
    const code = await refusal(
      withStaging(target, async (outer) => {
        const r = await refusal(withStaging(target, async (dir) => void (inner = dir)));
        assert.ok(existsSync(outer), 'the live outer staging stays');
        // random names: the inner run is refused exactly when the outer's sorts first
        if (inner === undefined) {
          assert.is(r, 'locked');
        } else {
          assert.is(r, undefined);
          assert.ok(path.basename(inner) < path.basename(outer), `${inner} went on beside ${outer}`);
        }
        throw new Error('work failed');
      }),
    );
    assert.is(code, 'Error: work failed');
    assert.equal(readdirSync(path.dirname(target)), [], 'no staging left by either');
  }
});

test.run();
