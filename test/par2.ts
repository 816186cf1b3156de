/*
 * Hostile recovery data, as only the holder of a site's signing key could make it: the file names in
 * a PAR 2.0 set are rewritten (each file's id, the main packet, the set id and every packet's hash
 * recomputed, so par2 takes the set as valid), then the bundle's SHA256SUMS and its signature are made
 * again, so the recovery files pass every check of the signed list.
 *
 * PAR 2.0 packets: "PAR2\0PKT", length (u64 LE, header included), MD5 of everything from the set id
 * on, the recovery set id (MD5 of the main packet's body), a 16-byte type, the body. A FileDesc body
 * is the file id, the MD5 of the file and of its first 16 KiB, its length (u64), its name (padded
 * with NULs to 4 bytes); the file id is MD5(MD5 of 16 KiB, length, name). The Main body is the slice
 * size (u64), the number of recoverable files (u32) and the file ids, sorted.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sha256Hex } from '../manifests/hash.js';
import { parsePrivateKey } from '../manifests/sshkey.js';
import { BUNDLE_NAMESPACE, sign } from '../manifests/sshsig.js';
import { SUMS, SUMS_SIG, formatSums, parseSums } from '../manifests/sums.js';

const MAGIC = Buffer.from('PAR2\0PKT', 'latin1');
const md5 = (...parts: Buffer[]) => {
  const h = createHash('md5');
  for (const p of parts) h.update(p);
  return h.digest();
};
const type = (t: Buffer) => t.toString('latin1').replace(/\0+$/, '');

interface Packet {
  type: string;
  body: Buffer;
}

function packets(file: Buffer): Packet[] {
  const out: Packet[] = [];
  for (let at = 0; at < file.length;) {
    if (!file.subarray(at, at + 8).equals(MAGIC)) throw new Error(`no par2 packet at ${at}`);
    const length = Number(file.readBigUInt64LE(at + 8));
    out.push({ type: type(file.subarray(at + 48, at + 64)), body: Buffer.from(file.subarray(at + 64, at + length)) });
    at += length;
  }
  return out;
}

function packet(setId: Buffer, t: string, body: Buffer): Buffer {
  const typeBytes = Buffer.alloc(16);
  typeBytes.write(t, 'latin1');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(64 + body.length));
  return Buffer.concat([MAGIC, length, md5(setId, typeBytes, body), setId, typeBytes, body]);
}

/** A FileDesc body under another name, and the new file id. */
function renamed(body: Buffer, name: string): { body: Buffer; id: Buffer } {
  const hash16k = body.subarray(32, 48);
  const length = body.subarray(48, 56);
  const nameBytes = Buffer.from(name, 'utf8');
  const id = md5(hash16k, length, nameBytes);
  const padded = Buffer.alloc(Math.ceil(nameBytes.length / 4) * 4);
  nameBytes.copy(padded);
  return { body: Buffer.concat([id, body.subarray(16, 56), padded]), id };
}

/**
 * Renames files in the par2 set of `bundle` (`rename`: old name -> new name, any text, paths
 * included), rewrites every `recovery*.par2` file, and signs SHA256SUMS again with `signingKeyFile`.
 */
export function renameInRecovery(bundle: string, rename: ReadonlyMap<string, string>, signingKeyFile: string): void {
  const files = readdirSync(bundle).filter((n) => /^recovery.*\.par2$/.test(n));
  const ids = new Map<string, Buffer>();
  const parsed = files.map((n) => ({ name: n, packets: packets(readFileSync(path.join(bundle, n))) }));
  // new file ids first: every packet that names a file by id follows its FileDesc
  for (const f of parsed) {
    for (const p of f.packets) {
      if (p.type !== 'PAR 2.0\0FileDesc') continue;
      const nameBytes = p.body.subarray(56);
      const name = nameBytes.toString('utf8').replace(/\0+$/, '');
      const to = rename.get(name);
      if (to === undefined) continue;
      const r = renamed(p.body, to);
      ids.set(p.body.subarray(0, 16).toString('hex'), r.id);
      p.body = r.body;
    }
  }
  const swap = (id: Buffer) => ids.get(id.toString('hex')) ?? id;
  let setId: Buffer | undefined;
  for (const f of parsed) {
    for (const p of f.packets) {
      if (p.type === 'PAR 2.0\0IFSC') p.body = Buffer.concat([swap(p.body.subarray(0, 16)), p.body.subarray(16)]);
      if (p.type === 'PAR 2.0\0Main') {
        const count = p.body.readUInt32LE(8);
        const all: Buffer[] = [];
        for (let at = 12; at < p.body.length; at += 16) all.push(swap(p.body.subarray(at, at + 16)));
        const recoverable = all.slice(0, count).sort((a, b) => Buffer.compare(a, b));
        p.body = Buffer.concat([p.body.subarray(0, 12), ...recoverable, ...all.slice(count)]);
        setId = md5(p.body);
      }
    }
  }
  if (!setId) throw new Error('no main packet in the recovery set');
  const lines = parseSums(readFileSync(path.join(bundle, SUMS)));
  for (const f of parsed) {
    const bytes = Buffer.concat(f.packets.map((p) => packet(setId, p.type, p.body)));
    writeFileSync(path.join(bundle, f.name), bytes);
    const line = lines.find((l) => l.name === f.name);
    if (line) line.sha256 = sha256Hex(bytes);
  }
  const sums = formatSums(lines);
  writeFileSync(path.join(bundle, SUMS), sums);
  writeFileSync(path.join(bundle, SUMS_SIG), sign(parsePrivateKey(readFileSync(signingKeyFile, 'utf8')), Buffer.from(sums), BUNDLE_NAMESPACE));
}
