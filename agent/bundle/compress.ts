/*
 * The payload's zstd stage. The tar is cut into stretches of about a MiB; a stretch that looks
 * incompressible (../../manifests/zstd.ts) is written as a raw zstd frame in this process, and runs of
 * the others go through one `zstd` program each, which writes one frame per run. So random or already
 * compressed data costs neither the program's match search nor the two pipe copies, while text and
 * database pages still compress as before; stock `zstd -d` reads the whole stream.
 *
 * Only a second incompressible stretch in a row ends a zstd run, so data that alternates every MiB
 * does not start a program per MiB.
 */
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { finished } from 'node:stream/promises';
import { childStage } from '../../manifests/child.js';
import { looksIncompressible, rawFrame } from '../../manifests/zstd.js';

/** The size of a stretch judged as a whole. */
const STRETCH = 1024 * 1024;
/** Incompressible stretches in a row that end a zstd run. */
const RUN_END = 2;

export const ZSTD_ARGS = ['-q', '-c', '-3', '-T0'] as const;

/** Counts kept for the bench and the tests: how the bytes were written. */
export interface CompressStats {
  rawBytes: number;
  zstdBytes: number;
  zstdRuns: number;
}

/**
 * A pipeline stage (for stream.pipeline) that compresses its input as described above. Errors with
 * what childStage errors with when a zstd program fails; `signal` stops it.
 */
export function adaptiveZstd(signal?: AbortSignal, stats?: CompressStats): (source: AsyncIterable<Buffer>) => AsyncGenerator<Buffer> {
  return async function* (source) {
    let run: ZstdRun | undefined;
    let streak = 0;
    let chunks: Buffer[] = [];
    let size = 0;

    async function* stretch(): AsyncGenerator<Buffer> {
      const incompressible = looksIncompressible(chunks, size);
      streak = incompressible ? streak + 1 : 0;
      if (run && streak >= RUN_END) {
        yield* run.end();
        run = undefined;
      }
      if (incompressible && !run) {
        if (stats) stats.rawBytes += size;
        yield* rawFrame(chunks, size);
      } else {
        if (!run) {
          run = new ZstdRun(signal);
          if (stats) stats.zstdRuns++;
        }
        if (stats) stats.zstdBytes += size;
        for (const c of chunks) yield* run.write(c);
      }
      chunks = [];
      size = 0;
    }

    try {
      for await (const chunk of source) {
        chunks.push(chunk);
        size += chunk.byteLength;
        if (size >= STRETCH) yield* stretch();
      }
      if (size > 0) yield* stretch();
      if (run) yield* run.end();
      run = undefined;
    } finally {
      run?.destroy();
    }
  };
}

/** One zstd program compressing one run: what it wrote is handed on after every write. */
class ZstdRun {
  private readonly stage: Duplex;
  private out: Buffer[] = [];
  private failure: Error | undefined;

  constructor(signal?: AbortSignal) {
    this.stage = childStage('zstd', ZSTD_ARGS, signal);
    this.stage.on('data', (d: Buffer) => this.out.push(d));
    this.stage.on('error', (e: Error) => (this.failure ??= e));
  }

  private *take(): Generator<Buffer> {
    if (this.failure) throw this.failure;
    const out = this.out;
    this.out = [];
    yield* out;
  }

  async *write(chunk: Buffer): AsyncGenerator<Buffer> {
    if (!this.stage.write(chunk)) {
      // what the program wrote meanwhile is collected by the data handler and handed on below
      await Promise.race([once(this.stage, 'drain'), once(this.stage, 'error')]).catch(() => {});
    }
    yield* this.take();
  }

  async *end(): AsyncGenerator<Buffer> {
    this.stage.end();
    await finished(this.stage).catch((e: unknown) => {
      this.failure ??= e instanceof Error ? e : new Error(String(e));
    });
    yield* this.take();
  }

  destroy(): void {
    this.stage.destroy();
  }
}
