/*
 * The worker-thread side of encryptOffThread (parallel.ts): runs encryptStream on the chunks the
 * main thread sends and sends the ciphertext back in order. Buffers that own their memory travel
 * both ways without a copy.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { AirlockError } from '../errors.js';
import { encryptStream } from './stream.js';
import { handOver, transferable } from './transfer.js';

if (!parentPort) throw new AirlockError('internal', 'encrypt-worker runs only as a worker thread');
const port = parentPort;
const enc = encryptStream((workerData as { recipients: Uint8Array[] }).recipients);
let out: Buffer[] = [];
// the cipher's output is fresh memory: it may travel back without a copy
enc.on('data', (c: Buffer) => out.push(handOver(c)));
enc.on('error', (e: Error) => port.postMessage({ op: 'error', message: e.message }));

function send(consumed: number, done: boolean): void {
  const { data, moved } = transferable(out);
  out = [];
  port.postMessage({ op: 'out', data, consumed, done }, moved);
}

port.on('message', (m: { op: 'data'; chunk: Uint8Array } | { op: 'end' }) => {
  if (m.op === 'data') {
    const chunk = Buffer.from(m.chunk.buffer, m.chunk.byteOffset, m.chunk.byteLength);
    // encryptStream keeps references to input until sealed; the input is never moved again
    enc.write(chunk, () => send(chunk.byteLength, false));
  } else {
    enc.end();
    enc.once('end', () => send(0, true));
  }
});
