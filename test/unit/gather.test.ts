import { randomBytes } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Gather, gathered } from '../../agent/sources/gather.js';

async function collect(chunks: Uint8Array[], size: number): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const b of gathered(
    (async function* () {
      yield* chunks;
    })(),
    size,
  ))
    out.push(b);
  return out;
}

test('pieces of any size come out as whole blocks and a short last one, the same bytes in order', async () => {
  const whole = randomBytes(10_000);
  const chunks: Uint8Array[] = [];
  for (let at = 0, n = 1; at < whole.byteLength; at += n, n = (n * 7) % 1500) chunks.push(whole.subarray(at, at + n));
  chunks.splice(3, 0, new Uint8Array(0));
  const out = await collect(chunks, 1024);
  assert.equal(
    out.map((b) => b.byteLength),
    [...Array<number>(9).fill(1024), 10_000 - 9 * 1024],
  );
  assert.ok(Buffer.concat(out).equals(whole));
  // a block handed out is never written again
  const first = Buffer.from(out[0]!);
  assert.ok(out[0]!.equals(first));
});

test('exact multiples end without an empty block; no input gives nothing', async () => {
  assert.equal(
    (await collect([randomBytes(2048)], 1024)).map((b) => b.byteLength),
    [1024, 1024],
  );
  assert.equal(await collect([], 1024), []);
});

test('take stops at its limit, so a caller can cut blocks where its parts end', () => {
  const g = new Gather(100);
  const chunk = randomBytes(80);
  assert.is(g.take(chunk, 0, 30), 30);
  assert.is(g.filled, 30);
  assert.ok(g.flush().equals(chunk.subarray(0, 30)));
  assert.is(g.take(chunk, 30), 50);
  assert.is(g.take(randomBytes(80), 0), 50);
  assert.ok(g.full);
  assert.ok(g.flush().subarray(0, 50).equals(chunk.subarray(30)));
  assert.is(g.filled, 0);
});

test.run();
