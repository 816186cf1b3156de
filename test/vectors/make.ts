/*
 * Regenerates the bundle test vectors: good media sets and tampered ones, each in
 * test/vectors/cases/<name>/ with `media/` (what airlock-verify is pointed at) and `expected.json`
 * (the exit code and findings it must give). Run it only to add a case:
 *
 *   node --import tsx test/vectors/make.ts
 *
 * The keys under test/vectors/keys/ are test keys, published on purpose; never use them elsewhere.
 * Tampered tar payloads are sealed here by a deliberately naive "malicious writer" with a valid
 * signature, so the checks inside the payload are what must catch them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, truncateSync, writeFileSync, appendFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { generateIdentity, parseIdentities, parseRecipient, recipientOf, formatRecipient } from '../../manifests/age/keys.js';
import { encryptStream } from '../../manifests/age/stream.js';
import { canonicalJson, canonicalLine } from '../../manifests/canonical.js';
import { FORMAT, FORMAT_VERSION, bundleName, volumeName, type Manifest } from '../../manifests/manifest.js';
import { fingerprint, generateSigningKey, parsePrivateKey, type SigningKey } from '../../manifests/sshkey.js';
import { BUNDLE_NAMESPACE, sign } from '../../manifests/sshsig.js';
import { formatSums } from '../../manifests/sums.js';
import { END_OF_ARCHIVE, encodeHeader, paddingFor } from '../../manifests/tar.js';
import { restoreText } from '../../agent/bundle/restore-text.js';
import { writeBundle, type SourceItem } from '../../agent/bundle/writer.js';

const V = import.meta.dirname;
const KEYS = path.join(V, 'keys');
const CASES = path.join(V, 'cases');
const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
const VOLUME = 16 * 1024;

function key(name: string, site: string): SigningKey {
  const file = path.join(KEYS, `${name}.key`);
  if (!existsSync(file)) {
    const k = generateSigningKey(`airlock test vectors ${site}`);
    writeFileSync(file, k.privateKeyText, { mode: 0o600 });
  }
  return parsePrivateKey(readFileSync(file, 'utf8'));
}

function identity(name: string): Uint8Array {
  const file = path.join(KEYS, `${name}.txt`);
  if (!existsSync(file)) writeFileSync(file, `${generateIdentity().identity}\n`, { mode: 0o600 });
  return parseIdentities(readFileSync(file, 'utf8'))[0] as Uint8Array;
}

mkdirSync(KEYS, { recursive: true });
const siteA = key('site-a', 'site-a');
const siteB = key('site-b', 'site-b');
const stranger = key('stranger', 'nobody');
const id = identity('identity');
identity('other-identity');
const recipient = formatRecipient(recipientOf(id));
const pub = (k: SigningKey) =>
  `ssh-ed25519 ${Buffer.concat([Buffer.from([0, 0, 0, 11]), Buffer.from('ssh-ed25519'), Buffer.from([0, 0, 0, 32]), k.publicKey]).toString('base64')}`;
writeFileSync(path.join(KEYS, 'allowed_signers'), `site-a ${pub(siteA)}\nsite-b ${pub(siteB)}\n`);

const clock = (seq: number) => () => new Date(Date.UTC(2026, 0, 1, seq, 0, 0));

/** Seq 1 is large enough to span several volumes and more than one age chunk; the rest are small. */
function items(seed: string, blocks: number): SourceItem[] {
  const out: SourceItem[] = [
    { kind: 'record', record: { type: 'dir', source: '/etc/platform', mode: '0755', uid: 0, gid: 0, mtime: '2026-01-01T00:00:00.000Z' } },
  ];
  for (let i = 1; i <= 3; i++) {
    const body = createHash('sha512').update(`${seed}-${i}`).digest();
    const data = Buffer.concat(Array.from({ length: blocks }, (_, j) => createHash('sha512').update(body).update(String(j)).digest()));
    out.push({
      kind: 'entry',
      name: `files/${String(i).padStart(6, '0')}`,
      size: data.byteLength,
      mode: 0o600,
      mtime: 1767225600,
      open: async function* () {
        yield data;
      },
      record: { type: 'file', source: `/etc/platform/file-${i}.conf`, mode: '0640', uid: 0, gid: 0, mtime: '2026-01-01T00:00:00.000Z' },
    });
  }
  return out;
}

async function* iter<T>(xs: T[]): AsyncGenerator<T> {
  yield* xs;
}

/** A good bundle written by the real writer. Returns the sha256 of its SHA256SUMS. */
async function good(medium: string, seq: number, prev: string | undefined, k = siteA, site = 'site-a', seed = `s${seq}`): Promise<string> {
  const w = await writeBundle(
    { medium, site, seq, prev, recipients: [recipient], signingKey: k, compression: 'none', volumeSize: VOLUME, now: clock(seq) },
    iter(items(seed, seq === 1 ? 400 : 16)),
  );
  return w.sumsSha256;
}

async function chain(medium: string, n: number): Promise<string[]> {
  const sums: string[] = [];
  for (let s = 1; s <= n; s++) sums.push(await good(medium, s, sums.at(-1)));
  return sums;
}

const bdir = (medium: string, seq: number, site = 'site-a') => path.join(medium, site, bundleName(site, seq));

/** Rewrites SHA256SUMS from the files present and signs it again (a tamperer holding the key). */
function resum(dir: string, k = siteA, namespace = BUNDLE_NAMESPACE): void {
  const names = readdirSync(dir).filter((n) => n !== 'SHA256SUMS' && n !== 'SHA256SUMS.sig');
  const sums = formatSums(names.map((n) => ({ name: n, sha256: sha256(readFileSync(path.join(dir, n))) })));
  writeFileSync(path.join(dir, 'SHA256SUMS'), sums);
  resign(dir, k, namespace);
}

function resign(dir: string, k = siteA, namespace = BUNDLE_NAMESPACE): void {
  writeFileSync(path.join(dir, 'SHA256SUMS.sig'), sign(k, readFileSync(path.join(dir, 'SHA256SUMS')), namespace));
}

/** A ustar header with any typeflag, for entries the real writer never makes. */
function rawHeader(name: string, size: number, typeflag: string, linkname = ''): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write('15123200000\0', 136);
  h.write('        ', 148);
  h.write(typeflag, 156);
  h.write(linkname, 157, 100, 'utf8');
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.write('0000000\0', 329);
  h.write('0000000\0', 337);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

interface RawEntry {
  name: string;
  body?: Buffer;
  typeflag?: string;
  linkname?: string;
  /** list it in index.jsonl and MANIFEST.sha256 (regular entries only) */
  listed?: boolean;
  /** the hash MANIFEST.sha256 claims, when it should lie */
  claim?: string;
}

/** Seals a hand-made tar as bundle `seq` of site-a: encrypted, in volumes, with manifest, sums and signature. */
async function sealRaw(medium: string, seq: number, prev: string | undefined, raw: RawEntry[], records: Record<string, unknown>[] = []): Promise<string> {
  const created = clock(seq)().toISOString();
  const parts: Buffer[] = [];
  const inner: string[] = [];
  const index: string[] = [canonicalLine({ type: 'bundle', site: 'site-a', seq, created, format: FORMAT, version: FORMAT_VERSION })];
  let files = 0;
  let bytes = 0;
  const put = (name: string, body: Buffer, listed: boolean, claim?: string) => {
    parts.push(encodeHeader({ path: name, type: 'file', size: body.byteLength, mode: 0o600, mtime: 1767225600 }), body, paddingFor(body.byteLength));
    if (listed) inner.push(`${claim ?? sha256(body)}  ${name}\n`);
  };
  put('SALT', randomBytes(32), true);
  for (const e of raw) {
    const body = e.body ?? Buffer.alloc(0);
    if (e.typeflag && e.typeflag !== '0') {
      parts.push(rawHeader(e.name, body.byteLength, e.typeflag, e.linkname), body, paddingFor(body.byteLength));
    } else if (e.name.startsWith('/') || e.name.includes('..')) {
      parts.push(rawHeader(e.name, body.byteLength, '0'), body, paddingFor(body.byteLength));
    } else {
      put(e.name, body, e.listed !== false, e.claim);
    }
    if (e.listed !== false && (!e.typeflag || e.typeflag === '0') && !e.name.startsWith('/') && !e.name.includes('..')) {
      index.push(
        canonicalLine({
          type: 'file',
          path: e.name,
          size: body.byteLength,
          sha256: sha256(body),
          source: `/etc/platform/${path.basename(e.name)}`,
          mode: '0640',
          uid: 0,
          gid: 0,
          mtime: created,
        }),
      );
      files++;
      bytes += body.byteLength;
    }
  }
  for (const r of records) index.push(canonicalLine(r));
  const indexText = `${index.join('\n')}\n`;
  put('index.jsonl', Buffer.from(indexText), true);
  const innerText = inner.join('');
  put('MANIFEST.sha256', Buffer.from(innerText), false);
  parts.push(END_OF_ARCHIVE);
  const tar = Buffer.concat(parts);
  const cipher = await buffer(Readable.from([tar]).pipe(encryptStream([parseRecipient(recipient)])));

  const dir = bdir(medium, seq);
  mkdirSync(dir, { recursive: true });
  const count = Math.ceil(cipher.byteLength / VOLUME);
  const volumes = Array.from({ length: count }, (_, i) => {
    const data = cipher.subarray(i * VOLUME, (i + 1) * VOLUME);
    const name = volumeName(i, count);
    writeFileSync(path.join(dir, name), data);
    return { name, size: data.byteLength, sha256: sha256(data) };
  });
  const manifest: Manifest = {
    format: FORMAT,
    version: FORMAT_VERSION,
    site: 'site-a',
    seq,
    ...(prev ? { prev } : {}),
    created,
    tool: 'airlock test vectors',
    signer: fingerprint(siteA.publicKey),
    recipients: [recipient],
    payload: { encryption: 'age-v1', compression: 'none', volumeSize: VOLUME, volumes, size: cipher.byteLength, sha256: sha256(cipher) },
    inner: { sha256: sha256(innerText), entries: inner.length },
    contents: { files, metadata: records.length, bytes },
  };
  writeFileSync(path.join(dir, 'manifest.json'), canonicalJson(manifest));
  writeFileSync(path.join(dir, 'RESTORE.txt'), restoreText(manifest));
  resum(dir);
  return sha256(readFileSync(path.join(dir, 'SHA256SUMS')));
}

interface Expected {
  description: string;
  /** pass the identity: the deep check */
  deep?: boolean;
  /** use keys/other-identity.txt instead */
  wrongIdentity?: boolean;
  /** a verifier state file to start from */
  state?: Record<string, { seq: number; sums: string }>;
  exit: 0 | 1;
  /** every finding's result is one of these, and each listed (result, file) occurs */
  findings: { result: string; file?: string }[];
  /** how `airlock restore files` of this set ends (a name in EXIT); anything but ok must write nothing */
  restoreExit: 'ok' | 'failed' | 'input';
}

/** Case names given on the command line: build only those (the others stay as they are). */
const only = process.argv.slice(2);

async function makeCase(name: string, expected: Expected, build: (media: string) => Promise<void>): Promise<void> {
  if (only.length > 0 && !only.includes(name)) return;
  const dir = path.join(CASES, name);
  rmSync(dir, { recursive: true, force: true });
  const media = path.join(dir, 'media');
  mkdirSync(media, { recursive: true });
  await build(media);
  writeFileSync(path.join(dir, 'expected.json'), `${JSON.stringify(expected, null, 2)}\n`);
}

const bad = (description: string, findings: Expected['findings'], extra: Partial<Expected> = {}): Expected => ({
  description,
  exit: 1,
  findings,
  restoreExit: 'failed',
  ...extra,
});

async function main(): Promise<void> {
  if (only.length === 0) rmSync(CASES, { recursive: true, force: true });
  const base = path.join(V, '.base');
  rmSync(base, { recursive: true, force: true });
  const baseSums = await chain(base, 3);
  const copy = (media: string) => cpSync(base, media, { recursive: true });
  const b1 = (media: string) => bdir(media, 1);

  await makeCase('good-chain', { description: 'three bundles, seq 1 to 3, untouched', deep: true, exit: 0, findings: [], restoreExit: 'ok' }, async (m) =>
    copy(m),
  );
  await makeCase(
    'good-pruned-start',
    { description: 'a set that starts at seq 2 (seq 1 pruned) is fine', deep: true, exit: 0, findings: [], restoreExit: 'ok' },
    async (m) => {
      copy(m);
      rmSync(b1(m), { recursive: true });
    },
  );
  await makeCase(
    'good-same-bundle-on-two-media',
    { description: 'the same bundles found on two media are one bundle each', exit: 0, findings: [], restoreExit: 'ok' },
    async (m) => {
      cpSync(base, path.join(m, 'medium-a'), { recursive: true });
      cpSync(base, path.join(m, 'medium-b'), { recursive: true });
    },
  );

  await makeCase('volume-flipped-byte', bad('one byte of payload.001 flipped', [{ result: 'checksum-mismatch', file: 'payload.001' }]), async (m) => {
    copy(m);
    const f = path.join(b1(m), 'payload.001');
    const b = readFileSync(f);
    b[1000] = (b[1000] as number) ^ 0x01;
    writeFileSync(f, b);
  });
  await makeCase('volume-deleted', bad('payload.002 deleted', [{ result: 'missing', file: 'payload.002' }]), async (m) => {
    copy(m);
    rmSync(path.join(b1(m), 'payload.002'));
  });
  await makeCase(
    'volumes-swapped',
    bad('payload.000 and payload.001 swapped', [
      { result: 'checksum-mismatch', file: 'payload.000' },
      { result: 'checksum-mismatch', file: 'payload.001' },
    ]),
    async (m) => {
      copy(m);
      const d = b1(m);
      renameSync(path.join(d, 'payload.000'), path.join(d, 'tmp'));
      renameSync(path.join(d, 'payload.001'), path.join(d, 'payload.000'));
      renameSync(path.join(d, 'tmp'), path.join(d, 'payload.001'));
    },
  );
  await makeCase('volume-truncated', bad('the last volume cut short by 100 bytes', [{ result: 'size-mismatch' }]), async (m) => {
    copy(m);
    const d = b1(m);
    const last = readdirSync(d)
      .filter((n) => n.startsWith('payload.'))
      .sort()
      .at(-1) as string;
    truncateSync(path.join(d, last), readFileSync(path.join(d, last)).byteLength - 100);
  });
  await makeCase(
    'volume-truncated-at-chunk-boundary',
    bad('the age file cut exactly after its first 65,552-byte chunk', [{ result: 'size-mismatch' }, { result: 'missing' }]),
    async (m) => {
      copy(m);
      const d = b1(m);
      const all = Buffer.concat(
        readdirSync(d)
          .filter((n) => n.startsWith('payload.'))
          .sort()
          .map((n) => readFileSync(path.join(d, n))),
      );
      const headerEnd = all.indexOf('\n', all.indexOf('---')) + 1;
      const cut = headerEnd + 16 + 65552;
      for (const n of readdirSync(d).filter((x) => x.startsWith('payload.'))) rmSync(path.join(d, n));
      const kept = all.subarray(0, cut);
      for (let i = 0; i * VOLUME < kept.byteLength; i++) writeFileSync(path.join(d, volumeName(i, 1)), kept.subarray(i * VOLUME, (i + 1) * VOLUME));
    },
  );
  await makeCase('volume-extended', bad('bytes appended to the last volume', [{ result: 'size-mismatch' }]), async (m) => {
    copy(m);
    const d = b1(m);
    const last = readdirSync(d)
      .filter((n) => n.startsWith('payload.'))
      .sort()
      .at(-1) as string;
    appendFileSync(path.join(d, last), 'more');
  });
  await makeCase('extra-file', bad('a file the bundle does not list', [{ result: 'extra', file: 'notes.txt' }]), async (m) => {
    copy(m);
    writeFileSync(path.join(b1(m), 'notes.txt'), 'hello\n');
  });
  await makeCase(
    'sums-edited',
    bad('one hash in SHA256SUMS changed, signature not renewed', [{ result: 'bad-signature' }, { result: 'checksum-mismatch' }]),
    async (m) => {
      copy(m);
      const f = path.join(b1(m), 'SHA256SUMS');
      const t = readFileSync(f, 'utf8');
      writeFileSync(
        f,
        t.replace(/^[0-9a-f]/, (c) => (c === '0' ? '1' : '0')),
      );
    },
  );
  await makeCase(
    'signature-from-another-bundle',
    bad('SHA256SUMS.sig of seq 2 put in seq 1', [{ result: 'bad-signature', file: 'SHA256SUMS.sig' }]),
    async (m) => {
      copy(m);
      cpSync(path.join(bdir(m, 2), 'SHA256SUMS.sig'), path.join(b1(m), 'SHA256SUMS.sig'));
    },
  );
  await makeCase(
    'signature-by-another-key',
    bad('signed by a key that allowed_signers does not list', [{ result: 'wrong-signer', file: 'SHA256SUMS.sig' }]),
    async (m) => {
      copy(m);
      resign(b1(m), stranger);
    },
  );
  await makeCase(
    'signature-another-namespace',
    bad('signed by the right key in the namespace "file"', [{ result: 'bad-signature', file: 'SHA256SUMS.sig' }]),
    async (m) => {
      copy(m);
      resign(b1(m), siteA, 'file');
    },
  );
  await makeCase(
    'signature-another-principal',
    bad("signed by site-b's key, which is allowed only for site-b", [{ result: 'wrong-signer', file: 'SHA256SUMS.sig' }]),
    async (m) => {
      copy(m);
      resign(b1(m), siteB);
    },
  );
  await makeCase('manifest-edited', bad('manifest.json changed after signing', [{ result: 'checksum-mismatch', file: 'manifest.json' }]), async (m) => {
    copy(m);
    const f = path.join(b1(m), 'manifest.json');
    writeFileSync(f, readFileSync(f, 'utf8').replace('"created": "2026-01-01T01', '"created": "2026-01-01T02'));
  });
  await makeCase('seq-gap', bad('seq 2 missing between 1 and 3', [{ result: 'chain-gap' }]), async (m) => {
    copy(m);
    rmSync(bdir(m, 2), { recursive: true });
  });
  await makeCase('wrong-prev', bad('seq 2 signed properly but its prev is not the hash of seq 1', [{ result: 'fork' }]), async (m) => {
    await good(m, 1, undefined);
    await good(m, 2, 'f'.repeat(64));
  });
  await makeCase('fork', bad('two different bundles with seq 2 on two media', [{ result: 'fork' }]), async (m) => {
    cpSync(base, path.join(m, 'medium-a'), { recursive: true });
    const other = path.join(m, 'medium-b');
    cpSync(path.join(base, 'site-a', bundleName('site-a', 1)), path.join(other, 'site-a', bundleName('site-a', 1)), { recursive: true });
    await good(other, 2, baseSums[0], siteA, 'site-a', 'forked');
  });
  await makeCase(
    'rollback',
    bad('the verifier saw seq 4 before; this set ends at seq 3', [{ result: 'rollback' }], {
      state: { 'site-a': { seq: 4, sums: 'a'.repeat(64) } },
      restoreExit: 'ok',
    }),
    async (m) => copy(m),
  );
  await makeCase(
    'withheld',
    bad('the verifier accepted seq 1 before; this set holds only seq 3, so seq 2 was never audited', [{ result: 'withheld' }], {
      state: { 'site-a': { seq: 1, sums: baseSums[0] as string } },
      restoreExit: 'ok',
    }),
    async (m) => {
      copy(m);
      rmSync(b1(m), { recursive: true });
      rmSync(bdir(m, 2), { recursive: true });
    },
  );
  await makeCase(
    'contradicts-state',
    bad('seq 2 differs from the seq 2 the verifier remembers', [{ result: 'fork' }], {
      state: { 'site-a': { seq: 2, sums: 'b'.repeat(64) } },
      restoreExit: 'ok',
    }),
    async (m) => copy(m),
  );
  await makeCase('partial-left-over', bad('an interrupted export left a .partial folder', [{ result: 'partial' }]), async (m) => {
    copy(m);
    cpSync(bdir(m, 3), `${bdir(m, 4)}.partial`, { recursive: true });
  });
  const sumsLine = (mutate: (t: string) => string) => async (m: string) => {
    copy(m);
    const f = path.join(b1(m), 'SHA256SUMS');
    writeFileSync(f, mutate(readFileSync(f, 'utf8')));
    resign(b1(m));
  };
  await makeCase(
    'sums-crlf',
    bad('SHA256SUMS with CRLF line ends, signed', [{ result: 'malformed', file: 'SHA256SUMS' }]),
    sumsLine((t) => t.replaceAll('\n', '\r\n')),
  );
  await makeCase(
    'sums-dot-dot',
    bad('SHA256SUMS lists ../escape, signed', [{ result: 'malformed', file: 'SHA256SUMS' }]),
    sumsLine((t) => `${'0'.repeat(64)}  ../escape\n${t}`),
  );
  await makeCase(
    'sums-absolute',
    bad('SHA256SUMS lists /etc/passwd, signed', [{ result: 'malformed', file: 'SHA256SUMS' }]),
    sumsLine((t) => `${'0'.repeat(64)}  /etc/passwd\n${t}`),
  );
  await makeCase('manifest-not-json', bad('manifest.json is not JSON, summed and signed', [{ result: 'malformed', file: 'manifest.json' }]), async (m) => {
    copy(m);
    writeFileSync(path.join(b1(m), 'manifest.json'), '{"format": "airlock-bundle",');
    resum(b1(m));
  });
  await makeCase('manifest-oversized', bad('manifest.json of 1.1 MiB, summed and signed', [{ result: 'malformed', file: 'manifest.json' }]), async (m) => {
    copy(m);
    const f = path.join(b1(m), 'manifest.json');
    const j = JSON.parse(readFileSync(f, 'utf8'));
    j.tool = 'x'.repeat(1100 * 1024);
    writeFileSync(f, canonicalJson(j));
    resum(b1(m));
  });
  await makeCase(
    'manifest-bom',
    bad('manifest.json is the canonical text after a UTF-8 byte-order mark, summed and signed', [{ result: 'malformed', file: 'manifest.json' }], {
      restoreExit: 'input',
    }),
    async (m) => {
      copy(m);
      const f = path.join(b1(m), 'manifest.json');
      writeFileSync(f, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), readFileSync(f)]));
      resum(b1(m));
      // only this bundle: re-summing it changed its identity, which would break the chain to seq 2
      rmSync(bdir(m, 2), { recursive: true });
      rmSync(bdir(m, 3), { recursive: true });
    },
  );
  await makeCase(
    'manifest-wrong-recipient-count',
    bad('manifest lists two recipients, the payload is encrypted to one', [{ result: 'malformed', file: 'payload.000' }]),
    async (m) => {
      copy(m);
      const f = path.join(b1(m), 'manifest.json');
      const j = JSON.parse(readFileSync(f, 'utf8'));
      j.recipients.push(formatRecipient(recipientOf(identity('other-identity'))));
      writeFileSync(f, canonicalJson(j));
      resum(b1(m));
      // only this bundle: re-summing it changed its identity, which would break the chain to seq 2
      rmSync(bdir(m, 2), { recursive: true });
      rmSync(bdir(m, 3), { recursive: true });
    },
  );
  await makeCase(
    'wrong-identity',
    bad('deep check with an identity the bundle was not encrypted to', [{ result: 'decrypt-failed' }], { deep: true, wrongIdentity: true }),
    async (m) => copy(m),
  );

  const file = (n: number) => ({ name: `files/${String(n).padStart(6, '0')}`, body: Buffer.from(`config ${n}\n`) });
  const tarCase = async (name: string, description: string, entry: RawEntry, file_?: string) =>
    makeCase(name, bad(description, [{ result: 'unsafe-entry', ...(file_ ? { file: file_ } : {}) }], { deep: true }), async (m) => {
      await sealRaw(m, 1, undefined, [file(1), entry]);
    });
  await tarCase(
    'tar-dot-dot',
    'a signed payload with a tar entry ../../etc/cron.d/evil',
    { name: '../../etc/cron.d/evil', body: Buffer.from('* * * * * root sh\n') },
    '../../etc/cron.d/evil',
  );
  await tarCase('tar-absolute', 'a signed payload with a tar entry /etc/evil', { name: '/etc/evil', body: Buffer.from('x') }, '/etc/evil');
  await tarCase('tar-symlink', 'a signed payload with a symbolic link entry', { name: 'files/link', typeflag: '2', linkname: '/etc/shadow' }, 'files/link');
  await tarCase('tar-hardlink', 'a signed payload with a hard link entry', { name: 'files/hard', typeflag: '1', linkname: 'files/000001' }, 'files/hard');
  await tarCase('tar-device', 'a signed payload with a character device entry', { name: 'files/dev', typeflag: '3' }, 'files/dev');
  await tarCase('tar-fifo', 'a signed payload with a fifo entry', { name: 'files/fifo', typeflag: '6' }, 'files/fifo');
  await makeCase(
    'tar-duplicate',
    bad('a signed payload with the same entry name twice', [{ result: 'unsafe-entry', file: 'files/000001' }], { deep: true }),
    async (m) => {
      await sealRaw(m, 1, undefined, [file(1), { ...file(1), body: Buffer.from('other\n'), listed: false }]);
    },
  );
  await makeCase(
    'inner-manifest-mismatch',
    bad('MANIFEST.sha256 claims another hash for files/000002', [{ result: 'checksum-mismatch', file: 'files/000002' }], { deep: true }),
    async (m) => {
      await sealRaw(m, 1, undefined, [file(1), { ...file(2), claim: 'c'.repeat(64) }]);
    },
  );
  const meta = { mode: '0644', uid: 0, gid: 0, mtime: '2026-01-01T00:00:00.000Z' };
  await makeCase(
    'index-under-symlink',
    bad('a signed index puts a file under a symbolic link (a restore would write through it)', [{ result: 'unsafe-entry', file: 'index.jsonl' }], {
      deep: true,
    }),
    async (m) => {
      await sealRaw(
        m,
        1,
        undefined,
        [file(1)],
        [
          { type: 'symlink', source: '/etc/platform/l', target: '/tmp', ...meta },
          { type: 'symlink', source: '/etc/platform/l/x', target: 'evil', ...meta },
        ],
      );
    },
  );
  await makeCase(
    'index-duplicate-source',
    bad('a signed index names one source path twice', [{ result: 'unsafe-entry', file: 'index.jsonl' }], { deep: true }),
    async (m) => {
      await sealRaw(m, 1, undefined, [file(1)], [{ type: 'dir', source: '/etc/platform/000001', ...meta }]);
    },
  );
  await makeCase(
    'index-relative-source',
    bad('a signed index names a source with ..', [{ result: 'unsafe-entry', file: 'index.jsonl' }], { deep: true }),
    async (m) => {
      await sealRaw(m, 1, undefined, [file(1)], [{ type: 'dir', source: '/etc/../root', ...meta }]);
    },
  );
  rmSync(base, { recursive: true, force: true });
  console.log(`wrote ${readdirSync(CASES).length} cases to ${CASES}`);
}

await main();
