/*
 * SHA-256 on a second core. The ciphertext of a bundle is hashed twice (per volume, and whole for the
 * manifest); doing both on the thread that also encrypts would make hashing the bottleneck, so the
 * bytes are hashed on a worker thread, which reads them from memory shared with this one
 * (SharedArrayBuffer): nothing is copied or moved, and the worker makes no garbage. The producer
 * reuses a block of that memory only once the worker said it hashed it.
 */
import { createHash, type Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { AirlockError } from './errors.js';

const WORKER = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
const start = (id) => createHash(id.startsWith('md5:') ? 'md5' : 'sha256');
parentPort.on('message', (m) => {
  if (m.op === 'update') {
    for (const id of m.ids) {
      let h = hashes.get(id);
      if (!h) { h = start(id); hashes.set(id, h); }
      h.update(m.data);
    }
    parentPort.postMessage({ op: 'ack' });
  } else if (m.op === 'fork') {
    const h = hashes.get(m.from) || start(m.from);
    hashes.set(m.to, h.copy());
  } else if (m.op === 'digest') {
    const h = hashes.get(m.id) || start(m.id);
    hashes.delete(m.id);
    parentPort.postMessage({ op: 'digest', id: m.id, hex: h.digest('hex') });
  }
});
`;

interface Pending {
  resolve: () => void;
  reject: (e: Error) => void;
}

/** Named running digests computed on a worker thread: MD5 for a name that starts with `md5:`, SHA-256 otherwise. */
export class HashWorker {
  private readonly worker = new Worker(WORKER, { eval: true });
  private failure: Error | undefined;
  /** updates sent and not yet acknowledged, in order (the worker answers in order) */
  private readonly updates: Pending[] = [];
  private readonly digests = new Map<string, { resolve: (hex: string) => void; reject: (e: Error) => void }>();

  constructor() {
    this.worker.on('message', (m: { op: string; id?: string; hex?: string }) => {
      if (m.op === 'ack') this.updates.shift()?.resolve();
      else if (m.op === 'digest' && m.id !== undefined) {
        this.digests.get(m.id)?.resolve(m.hex ?? '');
        this.digests.delete(m.id);
      }
    });
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => this.fail(new AirlockError('internal', `the hash worker exited (${code})`)));
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const u of this.updates.splice(0)) u.reject(this.failure);
    for (const d of this.digests.values()) d.reject(this.failure);
    this.digests.clear();
  }

  /**
   * Feeds `data`, a view of shared memory, to every digest in `ids`, after everything fed before.
   * Resolves once the worker hashed it; until then the caller must not change those bytes.
   */
  update(ids: readonly string[], data: Uint8Array): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    // any other memory would be copied whole into the message, however small the view
    if (!(data.buffer instanceof SharedArrayBuffer)) return Promise.reject(new AirlockError('internal', 'the hash worker reads shared memory only'));
    return new Promise((resolve, reject) => {
      this.updates.push({ resolve, reject });
      this.worker.postMessage({ op: 'update', ids: [...ids], data });
    });
  }

  /** Starts digest `to` as a copy of `from` as fed so far: a hash of A + B without hashing A twice. */
  fork(from: string, to: string): void {
    this.worker.postMessage({ op: 'fork', from, to });
  }

  /** The hex digest of everything fed to `id`; the digest is then forgotten. */
  digest(id: string): Promise<string> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.digests.set(id, { resolve, reject });
      this.worker.postMessage({ op: 'digest', id });
    });
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
    this.fail(new AirlockError('internal', 'the hash worker was closed'));
  }
}

/**
 * Bytes copied into a ring of blocks: each full block is handed to `consume` (which writes or hashes
 * it from that memory) while the next one fills, and a block is refilled only once its consumer is
 * done with it. A consumer's failure is thrown where its block is awaited next.
 */
export class BlockRing {
  private readonly busy: (Promise<unknown> | undefined)[];
  private current = 0;
  private filled = 0;
  /** bytes taken */
  size = 0;

  constructor(
    private readonly blocks: readonly Uint8Array[],
    private readonly consume: (block: Uint8Array, length: number, at: number) => Promise<unknown>,
  ) {
    this.busy = blocks.map(() => undefined);
  }

  /** Takes `chunk` (copied: the caller may reuse it once this resolves). */
  async write(chunk: Uint8Array): Promise<void> {
    let off = 0;
    while (off < chunk.byteLength) {
      if (this.filled === 0) await this.busy[this.current];
      const block = this.blocks[this.current]!;
      const n = Math.min(chunk.byteLength - off, block.byteLength - this.filled);
      block.set(chunk.subarray(off, off + n), this.filled);
      off += n;
      this.filled += n;
      this.size += n;
      if (this.filled === block.byteLength) this.submit();
    }
  }

  /** Hands over the partly filled block and waits until every block was consumed. */
  async drain(): Promise<void> {
    this.submit();
    await Promise.all(this.busy.filter((b) => b !== undefined));
  }

  /** Waits for the blocks in flight, whatever became of them. */
  async settle(): Promise<void> {
    await Promise.allSettled(this.busy.filter((b) => b !== undefined));
  }

  private submit(): void {
    if (this.filled === 0) return;
    const work = this.consume(this.blocks[this.current]!, this.filled, this.size - this.filled);
    work.catch(() => {});
    this.busy[this.current] = work;
    this.filled = 0;
    this.current = (this.current + 1) % this.blocks.length;
  }
}

/**
 * Feeds hash workers bytes from any memory: they are copied into a ring of shared blocks (copying
 * costs a tenth of hashing), and each full block is hashed while the next one fills. With several
 * digests at once (an object's sha256 and MD5), the n-th digest goes to worker n % `parallel`, so
 * they are computed side by side; workers start when first needed.
 */
export class HashFeed {
  private readonly ring: BlockRing;
  private readonly workers: HashWorker[] = [];
  private ids: readonly string[] = [];
  /** the worker each digest lives on, so one may outlive the set it started in */
  private readonly placed = new Map<string, number>();

  constructor(
    private readonly parallel = 1,
    count = 4,
    size = 1024 * 1024,
  ) {
    const memory = new SharedArrayBuffer(count * size);
    const blocks = Array.from({ length: count }, (_, i) => new Uint8Array(memory, i * size, size));
    this.ring = new BlockRing(blocks, (block, length) => {
      const view = block.subarray(0, length);
      const work: Promise<void>[] = [];
      for (let w = 0; w < Math.min(this.parallel, this.ids.length); w++)
        work.push(
          this.worker(w).update(
            this.ids.filter((_, i) => i % this.parallel === w),
            view,
          ),
        );
      return Promise.all(work);
    });
  }

  private worker(w: number): HashWorker {
    return (this.workers[w] ??= new HashWorker());
  }

  /**
   * Appends `chunk` to the digests `ids`: one set of digests at a time, ended by `digest` (of all of
   * them, or of some: the others go on into the next set, keeping their place in it).
   */
  async add(ids: readonly string[], chunk: Uint8Array): Promise<void> {
    if (ids !== this.ids) for (const [i, id] of ids.entries()) this.placed.set(id, i % this.parallel);
    this.ids = ids;
    await this.ring.write(chunk);
  }

  /** The hex digests of everything added to `ids`. */
  async digest(ids: readonly string[]): Promise<string[]> {
    await this.ring.drain();
    return Promise.all(
      ids.map((id, i) => {
        const w = this.placed.get(id) ?? i % this.parallel;
        this.placed.delete(id);
        return this.worker(w).digest(id);
      }),
    );
  }

  /** Stops the workers (after waiting for the blocks in flight). */
  async close(): Promise<void> {
    await this.ring.settle();
    await Promise.all(this.workers.map((w) => w.close()));
  }
}

/**
 * The running digests of one input, named by `ids` (MD5 for an `md5:` name, SHA-256 otherwise):
 * computed on this thread, or, given a `feed`, on its workers.
 */
export class Digests {
  private readonly here: Hash[] | undefined;

  constructor(
    private readonly ids: readonly string[],
    private readonly feed?: HashFeed,
  ) {
    this.here = feed ? undefined : ids.map((id) => createHash(id.startsWith('md5:') ? 'md5' : 'sha256'));
  }

  async update(chunk: Uint8Array): Promise<void> {
    if (this.here) for (const h of this.here) h.update(chunk);
    else await this.feed!.add(this.ids, chunk);
  }

  /** The hex digests of `only` (by default all of `ids`), in that order. */
  async digest(only: readonly string[] = this.ids): Promise<string[]> {
    if (!this.here) return this.feed!.digest(only);
    const here = this.here;
    return only.map((id) => {
      const h = here[this.ids.indexOf(id)];
      if (!h) throw new AirlockError('internal', `no digest named ${id}`);
      return h.digest('hex');
    });
  }
}
