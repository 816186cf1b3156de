/*
 * The fuzz suite's shared pieces: a fixed seed and run counts, a mutator that damages valid input
 * the way media and servers do (bit flips, truncation, deletions, insertions, splices of another
 * valid input, and overwrites of the fields a format's parser branches on with the values that
 * make it branch), and the three properties every parser of untrusted bytes must keep:
 *   - it throws nothing but its typed error (an AirlockError with the codes it documents);
 *   - it reads nothing past its bound (a stream is pulled only as far as it needs, a size limit is
 *     enforced before parsing);
 *   - its time (and, for streams, memory) grows linearly with the input.
 *
 * Runs are deterministic: FUZZ_SEED (default below) seeds every property, FUZZ_RUNS overrides each
 * property's short default count for a long run on demand. A failure prints fast-check's seed and
 * path; a bug found becomes a vector in the test file, named after what it broke.
 */
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import * as assert from 'uvu/assert';
import * as fc from 'fast-check';
import { AirlockError, type Code } from '../../manifests/errors.js';

export { fc };

export const SEED = Number(process.env.FUZZ_SEED ?? 20261203);
const RUNS = process.env.FUZZ_RUNS === undefined ? undefined : Number(process.env.FUZZ_RUNS);

/**
 * The run count of a property: its short default in `npm test`, or FUZZ_RUNS, but never more than
 * `max` (for a property over a handful of distinct inputs, which more runs would only repeat).
 */
export function runs(short: number, max = Infinity): number {
  return Math.min(max, RUNS !== undefined && Number.isSafeInteger(RUNS) && RUNS > 0 ? RUNS : short);
}

/** Checks a synchronous property with the suite's seed; `short` runs unless FUZZ_RUNS says otherwise. */
export function check<T>(arb: fc.Arbitrary<T>, short: number, predicate: (v: T) => void, max?: number): void {
  fc.assert(
    fc.property(arb, (v) => {
      predicate(v);
    }),
    params(short, max),
  );
}

/** fast-check's parameters: the suite's seed, the run count, the failing error in the report. */
function params(short: number, max?: number): fc.Parameters<unknown> {
  return { seed: SEED, numRuns: runs(short, max), includeErrorInReport: true, endOnFailure: process.env.FUZZ_NO_SHRINK !== undefined };
}

/** The asynchronous form of check. */
export async function checkAsync<T>(arb: fc.Arbitrary<T>, short: number, predicate: (v: T) => Promise<void>, max?: number): Promise<void> {
  await fc.assert(
    fc.asyncProperty(arb, async (v) => {
      await predicate(v);
    }),
    params(short, max),
  );
}

/**
 * Runs `fn` and returns what it threw (undefined when it returned), failing the test for anything
 * but an AirlockError whose code is one of `codes`.
 */
export function typedOnly(codes: readonly Code[], fn: () => unknown): AirlockError | undefined {
  try {
    fn();
  } catch (e) {
    assertTyped(e, codes);
    return e as AirlockError;
  }
  return undefined;
}

/** The asynchronous form of typedOnly. */
export async function typedOnlyAsync(codes: readonly Code[], fn: () => Promise<unknown>): Promise<AirlockError | undefined> {
  try {
    await fn();
  } catch (e) {
    assertTyped(e, codes);
    return e as AirlockError;
  }
  return undefined;
}

export function assertTyped(e: unknown, codes: readonly Code[]): void {
  if (!(e instanceof AirlockError)) {
    throw new Error(`untyped ${e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ''}` : `${typeof e}: ${String(e)}`}`);
  }
  assert.ok(codes.includes(e.code), `code ${e.code} is not one of ${codes.join(', ')}: ${e.message}`);
}

// ---- mutation ----

/** One damage to a byte string; positions are taken modulo the length when applied. */
export type Mutation =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; byte: number }
  | { op: 'truncate'; at: number }
  | { op: 'delete'; at: number; n: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'repeat'; at: number; n: number; to: number }
  | { op: 'splice'; at: number; from: number; n: number; donor: number }
  | { op: 'token'; at: number; token: number; overwrite: boolean }
  | { op: 'field'; field: number; token: number; overwrite: boolean };

/**
 * What a format's mutations aim at: `fields` are the offsets its parser branches on (computed for
 * each valid input), `tokens` the values that make it branch (lengths, magic, separators, limits).
 */
export interface Target {
  fields: readonly number[];
  tokens: readonly Uint8Array[];
  /** other valid inputs of the format, spliced in */
  donors?: readonly Uint8Array[];
}

const pos = fc.nat({ max: 0x7fffffff });

/** Up to `max` mutations; `field` and `token` ones are drawn as often as the blind ones. */
export function mutations(max = 4): fc.Arbitrary<Mutation[]> {
  const one: fc.Arbitrary<Mutation> = fc.oneof(
    fc.record({ op: fc.constant('flip' as const), at: pos, bit: fc.nat({ max: 7 }) }),
    fc.record({ op: fc.constant('set' as const), at: pos, byte: fc.nat({ max: 255 }) }),
    fc.record({ op: fc.constant('truncate' as const), at: pos }),
    fc.record({ op: fc.constant('delete' as const), at: pos, n: fc.integer({ min: 1, max: 600 }) }),
    fc.record({ op: fc.constant('insert' as const), at: pos, bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
    fc.record({ op: fc.constant('repeat' as const), at: pos, n: fc.integer({ min: 1, max: 1100 }), to: pos }),
    fc.record({ op: fc.constant('splice' as const), at: pos, from: pos, n: fc.integer({ min: 1, max: 1100 }), donor: pos }),
    fc.record({ op: fc.constant('token' as const), at: pos, token: pos, overwrite: fc.boolean() }),
    fc.record({ op: fc.constant('field' as const), field: pos, token: pos, overwrite: fc.constant(true) }),
    fc.record({ op: fc.constant('field' as const), field: pos, token: pos, overwrite: fc.boolean() }),
  );
  return fc.array(one, { minLength: 1, maxLength: max });
}

/** Applies `ms` to a copy of `input`. */
export function mutate(input: Uint8Array, ms: readonly Mutation[], target: Target = { fields: [], tokens: [] }): Buffer {
  let b = Buffer.from(input);
  const at = (p: number, len = b.length) => (len === 0 ? 0 : p % (len + 1));
  for (const m of ms) {
    switch (m.op) {
      case 'flip':
        if (b.length > 0) {
          const i = m.at % b.length;
          b[i] = (b[i] as number) ^ (1 << m.bit);
        }
        break;
      case 'set':
        if (b.length > 0) b[m.at % b.length] = m.byte;
        break;
      case 'truncate':
        b = b.subarray(0, at(m.at));
        break;
      case 'delete': {
        const i = at(m.at);
        b = Buffer.concat([b.subarray(0, i), b.subarray(i + m.n)]);
        break;
      }
      case 'insert': {
        const i = at(m.at);
        b = Buffer.concat([b.subarray(0, i), m.bytes, b.subarray(i)]);
        break;
      }
      case 'repeat': {
        const i = at(m.at);
        const part = b.subarray(i, i + m.n);
        const to = at(m.to);
        b = Buffer.concat([b.subarray(0, to), part, b.subarray(to)]);
        break;
      }
      case 'splice': {
        const donors = target.donors ?? [];
        const donor = donors.length > 0 ? (donors[m.donor % donors.length] as Uint8Array) : b;
        const from = donor.length === 0 ? 0 : m.from % donor.length;
        const i = at(m.at);
        b = Buffer.concat([b.subarray(0, i), donor.subarray(from, from + m.n), b.subarray(i + m.n)]);
        break;
      }
      case 'token':
      case 'field': {
        if (target.tokens.length === 0) break;
        const token = target.tokens[m.token % target.tokens.length] as Uint8Array;
        const overwrite = m.overwrite;
        const i =
          m.op === 'field' && target.fields.length > 0 ? (target.fields[m.field % target.fields.length] as number) : at(m.op === 'token' ? m.at : m.field);
        if (i > b.length) break;
        b = overwrite ? Buffer.concat([b.subarray(0, i), token, b.subarray(i + token.length)]) : Buffer.concat([b.subarray(0, i), token, b.subarray(i)]);
        break;
      }
    }
  }
  return b;
}

export const ascii = (...s: string[]): Uint8Array[] => s.map((x) => Buffer.from(x, 'latin1'));

// ---- bounds ----

/**
 * A source for stream parsers that yields `chunks` and counts what was pulled, so a test can assert
 * the parser never asked for more than it needed.
 */
export class CountingSource implements AsyncIterable<Uint8Array> {
  pulled = 0;
  chunksPulled = 0;
  constructor(private readonly chunks: Iterable<Uint8Array>) {}

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (const c of this.chunks) {
      this.pulled += c.length;
      this.chunksPulled++;
      yield c;
    }
  }
}

/** `buf` in pieces of `size` bytes (the last one shorter). */
export function* pieces(buf: Uint8Array, size: number): Generator<Uint8Array> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

/**
 * `input` as a view in the middle of a larger buffer filled with `fill` on both sides: a parser
 * that reads past its view (through `.buffer`, or by ignoring byteOffset) sees the filler.
 */
export function embedded(input: Uint8Array, fill = 0x41): Buffer {
  const big = Buffer.alloc(input.length + 8192, fill);
  Buffer.from(input).copy(big, 4096);
  return big.subarray(4096, 4096 + input.length);
}

// ---- growth ----

// A collection before each timed run, so that garbage left by building the input is not billed to it.
v8.setFlagsFromString('--expose-gc');
export const gc = runInNewContext('gc') as () => void;

async function timeOf(fn: () => unknown): Promise<number> {
  let best = Infinity;
  // CPU time, the best of three: the machine is shared, and only the parser's own cost is of
  // interest, not the time other processes held the cores.
  for (let i = 0; i < 3; i++) {
    gc();
    const t = process.cpuUsage();
    await fn();
    const d = process.cpuUsage(t);
    best = Math.min(best, (d.user + d.system) / 1e3);
  }
  return best;
}

/**
 * Asserts that `run` on an input ten times larger (`make(10 * n)`) takes less than 30 times as long
 * as on `make(n)`: linear with a wide margin, where a quadratic parser takes about 100 times.
 * `n` should make the small run take several milliseconds, so that timer noise does not decide;
 * a ratio over the bound is measured twice more before it fails, since other processes share the
 * machine, while a quadratic parser fails every time.
 */
export async function assertLinear(what: string, make: (n: number) => unknown, run: (input: never) => unknown, n: number): Promise<void> {
  const small = make(n);
  const large = make(10 * n);
  await run(small as never); // warm-up: compile the parser's paths before timing them
  let message = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const t1 = await timeOf(() => run(small as never));
    const t10 = await timeOf(() => run(large as never));
    // A 1 ms floor keeps a sub-millisecond small run from turning noise into a ratio.
    const ratio = t10 / Math.max(t1, 1);
    if (process.env.FUZZ_TIMING) console.error(`${what}: ${t1.toFixed(1)} ms, ${t10.toFixed(1)} ms (x${ratio.toFixed(1)})`);
    if (ratio < 30) return;
    message = `${what}: ${t10.toFixed(1)} ms for ${10 * n} vs ${t1.toFixed(1)} ms for ${n} (x${ratio.toFixed(1)})`;
  }
  assert.unreachable(message);
}

/**
 * Recomputes the header checksum of every 512-byte block that carries the ustar magic, so damage
 * made to a tar stream gets past the checksum and reaches the reader's deeper checks.
 */
export function fixChecksums(b: Buffer): Buffer {
  for (let h = 0; h + 512 <= b.length; h += 512) {
    if (b.toString('latin1', h + 257, h + 262) !== 'ustar') continue;
    b.fill(0x20, h + 148, h + 156);
    let sum = 0;
    for (let i = h; i < h + 512; i++) sum += b[i] as number;
    b.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, h + 148, 'latin1');
  }
  return b;
}
