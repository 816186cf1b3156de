import { createCipheriv, randomBytes } from 'node:crypto';
import type { Transform } from 'node:stream';
import * as neu from '../manifests/age/stream.js';
// @ts-ignore
import * as old from '/tmp/agecmp/old.ts';
import { generateIdentity, parseRecipient } from '../manifests/age/keys.js';
const id = generateIdentity();
const r = parseRecipient(id.recipient);
const MB = 128;
const total = MB << 20;
const block = randomBytes(65536);
const key = randomBytes(32), nonce = Buffer.alloc(12);
async function through(t: Transform, src: (i: number) => Buffer, count: number, keep = false) {
  const outs: Buffer[] = []; let n = 0;
  t.on('data', (d: Buffer) => { n += d.length; if (keep) outs.push(d); });
  const done = new Promise(res => t.on('end', res));
  const t0 = performance.now();
  for (let i = 0; i < count; i++) if (!t.write(src(i))) await new Promise(res => t.once('drain', res));
  t.end(); await done;
  return { ms: performance.now() - t0, out: keep ? Buffer.concat(outs) : undefined };
}
const ct = (await through(neu.encryptStream([r]), () => block, total / 65536, true)).out!;
const big = randomBytes(1 << 20);
const odd = randomBytes(50000);
const variants: Record<string, () => Promise<number>> = {
  raw: async () => { const t0 = performance.now(); for (let i = 0; i < total / 65536; i++) { const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 }); c.update(block); c.final(); c.getAuthTag(); } return performance.now() - t0; },
};
for (const [name, m] of [['old', old], ['new', neu]] as const) {
  variants[name + 'enc64k'] = async () => (await through(m.encryptStream([r]), () => block, total / 65536)).ms;
  variants[name + 'enc50k'] = async () => (await through(m.encryptStream([r]), () => odd, Math.ceil(total / 50000))).ms;
  variants[name + 'enc1m'] = async () => (await through(m.encryptStream([r]), () => big, total / (1 << 20))).ms;
  variants[name + 'dec64k'] = async () => (await through(m.decryptStream([id.secret]), (i) => ct.subarray(i * 65536, (i + 1) * 65536), Math.ceil(ct.length / 65536))).ms;
  variants[name + 'dec1m'] = async () => (await through(m.decryptStream([id.secret]), (i) => ct.subarray(i * 1048576, (i + 1) * 1048576), Math.ceil(ct.length / 1048576))).ms;
}
const best: Record<string, number> = {};
for (let round = 0; round < 8; round++) for (const [v, f] of Object.entries(variants)) best[v] = Math.min(best[v] ?? 1e9, await f());
console.log(Object.entries(best).map(([v, ms]) => `${v} ${(MB / (ms / 1000)).toFixed(0)}`).join('\n'));
