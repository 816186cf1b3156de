/*
 * Moving buffers between threads: a buffer that owns all of its memory is transferred (no copy);
 * one that is a view into shared or pooled memory is copied, since transferring would take the
 * memory away from its other users.
 */

export function transferable(buffers: readonly Uint8Array[]): { data: Uint8Array[]; moved: ArrayBuffer[]; bytes: number } {
  const data: Uint8Array[] = [];
  const moved: ArrayBuffer[] = [];
  let bytes = 0;
  for (const b of buffers) {
    const owns = b.buffer instanceof ArrayBuffer && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && !moved.includes(b.buffer);
    const d = owns ? b : new Uint8Array(b);
    data.push(d);
    moved.push(d.buffer as ArrayBuffer);
    bytes += d.byteLength;
  }
  return { data, moved, bytes };
}
