/*
 * age encryption on a worker thread, as a Transform. The thread that builds the tar and hashes
 * every entry has no time left for ChaCha20-Poly1305; moving the cipher to a second core lets the
 * stages run side by side. Input is bounded in flight, so memory stays flat whatever the speed.
 * The output is byte for byte what encryptStream writes (same code, on the other thread).
 */
import { Transform, type TransformCallback } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { AirlockError } from '../errors.js';
import { KEY_SIZE } from './keys.js';
import { encryptStream } from './stream.js';
import { handOver, transferable } from './transfer.js';

const MAX_IN_FLIGHT = 4 * 1024 * 1024;

/** Worker threads do not inherit a TypeScript loader, so run from source the cipher stays here. */
const fromSource = import.meta.url.endsWith('.ts');

/**
 * A Transform from plaintext to a binary age file for X25519 `recipients`, encrypting on a worker.
 * @throws AirlockError('bad-recipient') synchronously for an empty list or a key that is not 32 bytes
 */
export function encryptOffThread(recipients: Uint8Array[]): Transform {
  if (recipients.length === 0) throw new AirlockError('bad-recipient', 'no recipients given', { hint: 'give at least one age1... recipient' });
  for (const r of recipients) {
    if (r.length !== KEY_SIZE) throw new AirlockError('bad-recipient', `an X25519 public key is ${KEY_SIZE} bytes, got ${r.length}`);
  }
  if (fromSource) return encryptStream(recipients);
  const worker = new Worker(new URL('./encrypt-worker.js', import.meta.url), { workerData: { recipients } });
  let inFlight = 0;
  let waiting: TransformCallback | undefined;
  let flushed: TransformCallback | undefined;
  let failed = false;
  let closing = false;

  const t = new Transform({
    highWaterMark: 4 * 1024 * 1024,
    transform(chunk: Buffer, _enc, done) {
      const { data, moved, bytes } = transferable([chunk]);
      inFlight += bytes;
      worker.postMessage({ op: 'data', chunk: data[0] }, moved);
      if (inFlight > MAX_IN_FLIGHT) waiting = done;
      else done();
    },
    flush(done) {
      flushed = done;
      worker.postMessage({ op: 'end' });
    },
    destroy(error, done) {
      closing = true;
      worker.terminate().then(() => done(error), () => done(error));
    },
  });

  const fail = (e: Error) => {
    if (failed) return;
    failed = true;
    t.destroy(e);
  };
  worker.on('message', (m: { op: 'out'; data: Uint8Array[]; consumed: number; done: boolean } | { op: 'error'; message: string }) => {
    if (m.op === 'error') return fail(new AirlockError('internal', `encryption failed: ${m.message}`));
    for (const d of m.data) t.push(handOver(Buffer.from(d.buffer, d.byteOffset, d.byteLength)));
    inFlight -= m.consumed;
    if (waiting && inFlight <= MAX_IN_FLIGHT / 2) {
      const w = waiting;
      waiting = undefined;
      w();
    }
    if (m.done && flushed) {
      const f = flushed;
      flushed = undefined;
      closing = true;
      worker.terminate().then(() => f(), (e: Error) => f(e));
    }
  });
  worker.on('error', fail);
  worker.on('exit', (code) => {
    if (!closing) fail(new AirlockError('internal', `the encryption worker exited (${code})`));
  });
  return t;
}
