/*
 * SHA-256 on a second core. The ciphertext of a bundle is hashed twice (per volume, and whole for the
 * manifest); doing both on the thread that also encrypts would make hashing the bottleneck, so the
 * written buffers are handed to a worker thread (moved without a copy where their producer allows,
 * see age/transfer.ts). Bytes in flight are bounded, so a slow worker slows the producer instead of
 * filling memory.
 */
import { Worker } from 'node:worker_threads';
import { transferable } from './age/transfer.js';
import { AirlockError } from './errors.js';

const WORKER = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (m) => {
  if (m.op === 'update') {
    let bytes = 0;
    for (const id of m.ids) {
      let h = hashes.get(id);
      if (!h) { h = createHash('sha256'); hashes.set(id, h); }
      for (const d of m.data) h.update(d);
    }
    for (const d of m.data) bytes += d.byteLength;
    parentPort.postMessage({ op: 'ack', bytes });
  } else if (m.op === 'fork') {
    const h = hashes.get(m.from) || createHash('sha256');
    hashes.set(m.to, h.copy());
  } else if (m.op === 'digest') {
    const h = hashes.get(m.id) || createHash('sha256');
    hashes.delete(m.id);
    parentPort.postMessage({ op: 'digest', id: m.id, hex: h.digest('hex') });
  }
});
`;

const MAX_IN_FLIGHT = 8 * 1024 * 1024;

/** Named running SHA-256 digests computed on a worker thread. */
export class HashWorker {
  private readonly worker = new Worker(WORKER, { eval: true });
  private inFlight = 0;
  private failure: Error | undefined;
  private readonly drained: (() => void)[] = [];
  private readonly digests = new Map<string, { resolve: (hex: string) => void; reject: (e: Error) => void }>();

  constructor() {
    this.worker.on('message', (m: { op: string; bytes?: number; id?: string; hex?: string }) => {
      if (m.op === 'ack') {
        this.inFlight -= m.bytes ?? 0;
        if (this.inFlight <= MAX_IN_FLIGHT / 2) for (const w of this.drained.splice(0)) w();
      } else if (m.op === 'digest' && m.id !== undefined) {
        this.digests.get(m.id)?.resolve(m.hex ?? '');
        this.digests.delete(m.id);
      }
    });
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => this.fail(new AirlockError('internal', `the hash worker exited (${code})`)));
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const w of this.drained.splice(0)) w();
    for (const d of this.digests.values()) d.reject(this.failure);
    this.digests.clear();
  }

  /**
   * Feeds `buffers`, in order, to every digest in `ids`, and takes them over: a buffer its producer
   * handed over (age/transfer.ts) is moved to the worker without a copy and must not be used again.
   * Waits while the worker is behind.
   */
  async give(ids: readonly string[], buffers: readonly Buffer[]): Promise<void> {
    if (this.failure) throw this.failure;
    const { data, moved, bytes } = transferable(buffers);
    this.worker.postMessage({ op: 'update', ids: [...ids], data }, moved);
    this.inFlight += bytes;
    if (this.inFlight > MAX_IN_FLIGHT) await new Promise<void>((resolve) => this.drained.push(resolve));
    if (this.failure) throw this.failure;
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
  }
}
