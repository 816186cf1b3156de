/*
 * The child-process runner: real children (node itself, so the test needs nothing installed), each
 * way a child can end, and the typed error every caller relies on: `not-found` with an install hint,
 * `interrupted` when the signal fires, `child-failed` with the last stderr line.
 */
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { childFailed, childStage, lastLine, runChild } from '../../manifests/child.js';
import { AirlockError } from '../../manifests/errors.js';

const NODE = process.execPath;
/** `node -e SCRIPT` as an argument list */
const script = (js: string) => ['-e', js];

async function rejection(p: Promise<unknown>): Promise<AirlockError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(e instanceof AirlockError)) throw new Error(`expected an AirlockError, got ${String(e)}`);
  return e;
}

test('runChild resolves with the exit status and the stderr tail, whatever the status', async () => {
  const r = await runChild(NODE, script("process.stderr.write('first\\nsecond\\n\\n'); process.exit(3)"));
  assert.is(r.code, 3);
  assert.is(r.signal, null);
  assert.is(lastLine(r.stderr), 'second');
  const e = childFailed('tool', r);
  assert.is(e.code, 'child-failed');
  assert.is(e.message, 'tool exited with status 3: second');
  assert.is(childFailed('tool', r, { lines: 2 }).message, 'tool exited with status 3: first / second');
});

test('a child killed by a signal is named by the signal', async () => {
  const r = await runChild(NODE, script("process.kill(process.pid, 'SIGKILL')"));
  assert.is(r.code, null);
  assert.is(r.signal, 'SIGKILL');
  assert.is(childFailed('tool', r).message, 'tool was killed by SIGKILL');
});

test('stdout is captured only when asked, and handed over as it comes', async () => {
  const js = script("process.stdout.write('a'.repeat(100000))");
  assert.is((await runChild(NODE, js)).stdout.byteLength, 0);
  assert.is((await runChild(NODE, js, { capture: true })).stdout.toString(), 'a'.repeat(100000));
  let seen = 0;
  await runChild(NODE, js, { onStdout: (d) => (seen += d.byteLength) });
  assert.is(seen, 100000);
});

test('input is fed to stdin, chunk by chunk, and closed at the end', async () => {
  const echo = script('process.stdin.pipe(process.stdout)');
  const r = await runChild(NODE, echo, { input: [Buffer.from('one '), Buffer.from('two')], capture: true });
  assert.is(r.code, 0);
  assert.is(r.stdout.toString(), 'one two');
});

test('a child that exits 0 without reading its input has not done its job', async () => {
  const input = (async function* () {
    for (let i = 0; i < 64; i++) yield Buffer.alloc(1 << 20);
  })();
  const r = await runChild(NODE, script('process.stdin.destroy(); process.exit(0)'), { input }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(r instanceof Error, 'the broken input is reported');
  // the same child exiting non-zero reports through its status instead
  const failed = await runChild(NODE, script('process.stdin.destroy(); process.exit(4)'), { input: [Buffer.alloc(1 << 20)] });
  assert.is(failed.code, 4);
});

test('a missing program is not-found, with the default or the given install hint', async () => {
  const e = await rejection(runChild('/nonexistent/airlock-no-such-tool', []));
  assert.is(e.code, 'not-found');
  assert.is(e.message, '/nonexistent/airlock-no-such-tool: command not found');
  assert.is(e.hint, 'install airlock-no-such-tool (Debian: apt-get install airlock-no-such-tool)');
  const given = await rejection(runChild('airlock-no-such-tool', [], { install: 'give --pg-bin' }));
  assert.is(given.hint, 'give --pg-bin');
});

test('a fired signal stops the child and is interrupted', async () => {
  const controller = new AbortController();
  const running = runChild(NODE, script('setTimeout(() => {}, 60000)'), { signal: controller.signal });
  setTimeout(() => controller.abort(), 50);
  const e = await rejection(running);
  assert.is(e.code, 'interrupted');
});

/** Runs `input` through `stage` and returns the output, or the error the pipeline failed with. */
async function through(stage: NodeJS.ReadWriteStream, input: Buffer[]): Promise<{ out: string; error: unknown }> {
  const parts: Buffer[] = [];
  const sink = new Writable({
    write: (c: Buffer, _e, done) => {
      parts.push(c);
      done();
    },
  });
  const error = await pipeline(Readable.from(input), stage, sink).then(
    () => undefined,
    (e: unknown) => e,
  );
  return { out: Buffer.concat(parts).toString(), error };
}

test('childStage passes its input through the child and ends after a clean exit', async () => {
  const upper = script("process.stdin.on('data', (d) => process.stdout.write(d.toString().toUpperCase()))");
  const { out, error } = await through(childStage(NODE, upper), [Buffer.from('abc'), Buffer.from('def')]);
  assert.is(error, undefined);
  assert.is(out, 'ABCDEF');
});

test('childStage fails the pipeline with child-failed when the child exits non-zero after writing', async () => {
  const bad = script(
    "process.stdin.resume(); process.stdin.on('end', () => { process.stdout.write('partial'); process.stderr.write('zstd: corrupted block\\n'); process.exit(1) })",
  );
  const { error } = await through(childStage(NODE, bad), [Buffer.from('x')]);
  assert.instance(error, AirlockError);
  assert.is((error as AirlockError).code, 'child-failed');
  assert.match((error as AirlockError).message, /exited with status 1: zstd: corrupted block$/);
});

test('childStage fails with not-found for a missing program', async () => {
  const { error } = await through(childStage('airlock-no-such-tool', []), [Buffer.from('x')]);
  assert.instance(error, AirlockError);
  assert.is((error as AirlockError).code, 'not-found');
});

test.run();
