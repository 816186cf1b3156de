/*
 * Moving buffers between threads without copying them. Transferring a buffer's memory to another
 * thread empties it here, so only buffers whose producer explicitly handed them over (fresh memory
 * nobody else holds: a file read, a ciphertext chunk) are moved; any other buffer, such as a shared
 * constant or a view into pooled memory, is copied.
 */

const handedOver = new WeakSet<ArrayBuffer>();

/** Declares that `b` is fresh memory that nothing else references, so a consumer may move it. */
export function handOver<T extends Uint8Array>(b: T): T {
  if (b.buffer instanceof ArrayBuffer && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength) handedOver.add(b.buffer);
  return b;
}

/** The buffers as a message payload and its transfer list: handed-over buffers moved, others copied. */
export function transferable(buffers: readonly Uint8Array[]): { data: Uint8Array[]; moved: ArrayBuffer[]; bytes: number } {
  const data: Uint8Array[] = [];
  const moved: ArrayBuffer[] = [];
  let bytes = 0;
  for (const b of buffers) {
    const own = b.buffer instanceof ArrayBuffer && handedOver.has(b.buffer) && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && !moved.includes(b.buffer);
    const d = own ? b : new Uint8Array(b);
    data.push(d);
    moved.push(d.buffer as ArrayBuffer);
    bytes += d.byteLength;
  }
  return { data, moved, bytes };
}
