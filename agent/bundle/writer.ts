/*
 * The bundle writer: source items -> tar -> (zstd, ./compress.ts) -> age -> fixed-size volumes, then the cleartext
 * files (manifest.json, RESTORE.txt, SHA256SUMS, SHA256SUMS.sig), all inside `<bundle>.partial`, each
 * fsynced; the folder is renamed to its final name last. A failure at any point removes the partial
 * folder, so a bundle either exists whole under its final name or not at all.
 *
 * Every byte is read once: each entry's body is hashed as it goes into the tar, the ciphertext is
 * hashed per volume and as a whole as it goes to disk. index.jsonl and MANIFEST.sha256 are written to
 * hidden files in the partial folder (they can be large) and appended to the tar at the end.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { encryptStream } from '../../manifests/age/stream.js';
import { parseRecipient } from '../../manifests/age/keys.js';
import { canonicalJson, canonicalLine } from '../../manifests/canonical.js';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import { sha256Hex } from '../../manifests/hash.js';
import { Digests, HashFeed, HashWorker } from '../../manifests/hash-worker.js';
import { INNER_MANIFEST, SALT, SALT_SIZE } from '../../manifests/inner.js';
import { INDEX, type MetadataRecord, type UnplacedRecord } from '../../manifests/records.js';
import type { Coverage } from '../../manifests/coverage.js';
import {
  FORMAT,
  FORMAT_VERSION,
  MANIFEST_FILE,
  PARTIAL_SUFFIX,
  RESTORE_FILE,
  bundleName,
  volumeName,
  type Compression,
  type Manifest,
  type Volume,
} from '../../manifests/manifest.js';
import { fingerprint, type SigningKey } from '../../manifests/sshkey.js';
import { BUNDLE_NAMESPACE, sign } from '../../manifests/sshsig.js';
import { SUMS, SUMS_SIG, formatSumLine, formatSums } from '../../manifests/sums.js';
import { END_OF_ARCHIVE, encodeHeader, paddingFor } from '../../manifests/tar.js';
import { VERSION } from '../../manifests/version.js';
import { faultPoint } from '../faults.js';
import { fsyncDir, removeTree, writeFileDurable } from '../fsutil.js';
import { BlockWriter, DirectFile, alignedBlocks } from '../direct.js';
import { adaptiveZstd, type CompressStats } from './compress.js';
import { recoveryLines } from './recovery.js';
import { restoreText } from './restore-text.js';

export const TOOL = `airlock ${VERSION}`;

/** A payload entry: bytes that go into the tar, with the index record that says what they are. */
export interface EntryItem {
  kind: 'entry';
  /** the generated tar path, e.g. files/000001 */
  name: string;
  size: number;
  mode: number;
  /** seconds since the epoch */
  mtime: number;
  pax?: Record<string, string>;
  /** when known in advance: the body must hash to it, or the export fails */
  sha256?: string;
  /**
   * when set: called with the MD5 of the body once it ended, to check it (an S3 ETag); it throws to
   * refuse the bytes. Computed beside the sha256, on the worker thread for a large entry.
   */
  md5?: (hex: string) => void;
  /** the body; must yield exactly `size` bytes or throw */
  open: () => AsyncIterable<Uint8Array>;
  /** the index record, without path, size and sha256 (the writer adds them) */
  record: UnplacedRecord;
}

/** Metadata only: a folder, a link, a device; it becomes an index line and no tar entry. */
export interface RecordItem {
  kind: 'record';
  record: MetadataRecord;
}

export type SourceItem = EntryItem | RecordItem;

export interface WriterOptions {
  medium: string;
  site: string;
  seq: number;
  prev: string | undefined;
  recipients: readonly string[];
  signingKey: SigningKey;
  compression: Compression;
  volumeSize: number;
  now: () => Date;
  signal?: AbortSignal;
  /** the partial folder was made by preparePartial already */
  prepared?: boolean;
  /** called with the plaintext bytes written so far */
  progress?: (bytes: number) => void;
  /** write par2 recovery data able to rebuild this percentage of the volumes' blocks */
  recoveryPercent?: number;
  /** filled with how much of the tar was compressed and how much stored (zstd only) */
  compressStats?: CompressStats;
  /** the manifest's coverage section, asked for once every item was written */
  coverage?: () => Coverage | undefined;
}

export interface WrittenBundle {
  path: string;
  manifest: Manifest;
  /** sha256 of SHA256SUMS: the bundle's identity in the chain */
  sumsSha256: string;
}

/** Where a bundle of `site` with `seq` lives on a medium. */
export function bundlePath(medium: string, site: string, seq: number): string {
  return path.join(medium, site, bundleName(site, seq));
}

/** Lines appended to a hidden file while hashing them; read back into the tar at the end. */
class HashedLines {
  private fh: FileHandle | undefined;
  private readonly hash = createHash('sha256');
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  size = 0;

  constructor(readonly file: string) {}

  async write(text: string): Promise<void> {
    const b = Buffer.from(text);
    this.hash.update(b);
    this.size += b.byteLength;
    this.pending.push(b);
    this.pendingBytes += b.byteLength;
    if (this.pendingBytes >= 256 * 1024) await this.flush();
  }

  private async flush(): Promise<void> {
    this.fh ??= await open(this.file, 'wx', 0o600);
    const data = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    await this.fh.write(data);
  }

  /** Writes what is left and closes the file; returns the sha256 of everything written. */
  async close(): Promise<string> {
    await this.flush();
    await this.fh?.close();
    this.fh = undefined;
    return this.hash.digest('hex');
  }

  async discard(): Promise<void> {
    await this.fh?.close().catch(() => {});
    this.fh = undefined;
    await unlink(this.file).catch(() => {});
  }
}

/** Blocks of ciphertext in flight: one being filled, the others being written and hashed. */
const RING = 4;

/**
 * Writes the ciphertext into volumes of `volumeSize` bytes, past the page cache where the medium
 * allows it (../direct.ts). A worker thread hashes each block (the volume's sha256 and the whole
 * payload's) from the same shared memory while it is written, so writing and hashing run beside
 * encryption.
 */
class VolumeSink extends Writable {
  readonly volumes: Volume[] = [];
  whole = '';
  private readonly hasher = new HashWorker();
  private readonly blocks = alignedBlocks(RING);
  private out: BlockWriter | undefined;

  constructor(
    private readonly dir: string,
    private readonly volumeSize: number,
  ) {
    super({ highWaterMark: 4 * 1024 * 1024 });
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (e?: Error | null) => void): void {
    this.put(chunks.map((c) => c.chunk)).then(() => callback(), callback);
  }

  override _final(callback: (e?: Error | null) => void): void {
    this.closeVolume()
      .then(async () => {
        this.whole = await this.hasher.digest('whole');
        await this.hasher.close();
      })
      .then(() => callback(), callback);
  }

  private async put(buffers: Buffer[]): Promise<void> {
    for (const b of buffers) {
      let off = 0;
      while (off < b.byteLength) {
        if (!this.out) {
          const i = this.volumes.length;
          // the first volume is hashed once: the whole-payload hash starts as a copy of its state
          const ids = i === 0 ? ['v0'] : [`v${i}`, 'whole'];
          const file = await DirectFile.create(path.join(this.dir, volumeName(i, 1)), 0o644);
          this.out = new BlockWriter(file, this.blocks, (view) => this.hasher.update(ids, view));
        }
        const take = Math.min(b.byteLength - off, this.volumeSize - this.out.size);
        await this.out.write(b.subarray(off, off + take));
        off += take;
        if (this.out.size === this.volumeSize) await this.closeVolume();
      }
    }
  }

  private async closeVolume(): Promise<void> {
    if (!this.out) return;
    await this.out.finish();
    const size = this.out.size;
    this.out = undefined;
    const i = this.volumes.length;
    if (i === 0) this.hasher.fork('v0', 'whole');
    this.volumes.push({ name: volumeName(i, 1), size, sha256: await this.hasher.digest(`v${i}`) });
  }

  override _destroy(error: Error | null, callback: (e?: Error | null) => void): void {
    const out = this.out;
    this.out = undefined;
    const done = () =>
      this.hasher.close().then(
        () => callback(error),
        () => callback(error),
      );
    (out ? out.abort() : Promise.resolve()).then(done, done);
  }
}

interface Counts {
  files: number;
  metadata: number;
  bytes: number;
  entries: number;
}

/**
 * Entries of at least this size are hashed on a worker thread, beside the encryption on this one;
 * smaller ones here, where a round trip to the worker per entry would cost more than it saves.
 */
const WORKER_HASH_MIN = 4 * 1024 * 1024;

/** The tar stream: SALT, the items' entries, index.jsonl, MANIFEST.sha256, end of archive. */
async function* tarStream(
  items: AsyncIterable<SourceItem>,
  site: string,
  seq: number,
  created: string,
  partial: string,
  counts: Counts,
  innerHash: { sha256: string },
  progress?: (n: number) => void,
): AsyncGenerator<Buffer> {
  const index = new HashedLines(path.join(partial, `.${INDEX}`));
  const inner = new HashedLines(path.join(partial, `.${INNER_MANIFEST}`));
  let feed: HashFeed | undefined;
  let written = 0;
  const seen = new Set<string>();
  const emit = async function* (
    name: string,
    size: number,
    mode: number,
    mtime: number,
    body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    pax?: Record<string, string>,
    md5?: (hex: string) => void,
  ): AsyncGenerator<Buffer, string> {
    if (seen.has(name)) throw new AirlockError('internal', `two entries named ${name}`);
    seen.add(name);
    yield encodeHeader({ path: name, type: 'file', size, mode, mtime, ...(pax ? { pax } : {}) });
    // the sha256 and the MD5 of a large object side by side, on two workers
    if (size >= WORKER_HASH_MIN) feed ??= new HashFeed(2);
    const digests = new Digests([`sha256:${name}`, ...(md5 ? [`md5:${name}`] : [])], size >= WORKER_HASH_MIN ? feed : undefined);
    let n = 0;
    for await (const chunk of body) {
      n += chunk.byteLength;
      if (n > size) break;
      await digests.update(chunk);
      written += chunk.byteLength;
      yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    }
    if (n !== size)
      throw new AirlockError('source-changed', `${name}: the source gave ${n} bytes instead of ${size}`, {
        hint: 'the source changed while it was read; run the export again',
      });
    yield paddingFor(size);
    progress?.(written);
    const [sha256, md5Hex] = (await digests.digest()) as [string, string?];
    if (md5 && md5Hex !== undefined) md5(md5Hex);
    await inner.write(formatSumLine({ name, sha256 }));
    counts.entries++;
    return sha256;
  };

  try {
    const salt = randomBytes(SALT_SIZE);
    yield* emit(SALT, SALT_SIZE, 0o600, Math.floor(Date.parse(created) / 1000), [salt]);
    await index.write(`${canonicalLine({ type: 'bundle', site, seq, created, format: FORMAT, version: FORMAT_VERSION })}\n`);
    for await (const item of items) {
      if (item.kind === 'record') {
        counts.metadata++;
        await index.write(`${canonicalLine(item.record)}\n`);
        continue;
      }
      const sha256 = yield* emit(item.name, item.size, item.mode, item.mtime, item.open(), item.pax, item.md5);
      if (item.sha256 !== undefined && item.sha256 !== sha256) {
        throw new AirlockError('source-changed', `${item.name}: its bytes hash to ${sha256}, not to the ${item.sha256} recorded when it was taken in`, {
          hint: 'the source file changed after it was checked; investigate it before exporting again',
        });
      }
      if (item.record.type === 'file') counts.files++;
      counts.bytes += item.size;
      await index.write(`${canonicalLine({ ...item.record, path: item.name, size: item.size, sha256 })}\n`);
    }
    await index.close();
    const now = Math.floor(Date.parse(created) / 1000);
    yield* emit(INDEX, index.size, 0o600, now, createReadStream(index.file));
    innerHash.sha256 = await inner.close();
    yield encodeHeader({ path: INNER_MANIFEST, type: 'file', size: inner.size, mode: 0o600, mtime: now });
    yield* createReadStream(inner.file);
    yield paddingFor(inner.size);
    yield Buffer.from(END_OF_ARCHIVE);
  } finally {
    await feed?.close();
    await index.discard();
    await inner.discard();
  }
}

/**
 * Writes one bundle with `items` and returns where it is. Throws `target-exists` if that bundle is
 * already on the medium, `medium-full` / `io` for medium failures, what the sources throw, and
 * `child-failed` when zstd fails; on any failure the partial folder is removed.
 */
export async function writeBundle(opts: WriterOptions, items: AsyncIterable<SourceItem>): Promise<WrittenBundle> {
  const final = bundlePath(opts.medium, opts.site, opts.seq);
  const partial = `${final}${PARTIAL_SUFFIX}`;
  const created = opts.now().toISOString();
  const recipientKeys = opts.recipients.map((r) => parseRecipient(r));

  if (!opts.prepared) await preparePartial(opts.medium, opts.site, opts.seq);
  try {
    const counts: Counts = { files: 0, metadata: 0, bytes: 0, entries: 0 };
    const innerHash = { sha256: '' };
    const tar = Readable.from(tarStream(items, opts.site, opts.seq, created, partial, counts, innerHash, opts.progress), {
      objectMode: false,
      highWaterMark: 1024 * 1024,
    });
    const sink = new VolumeSink(partial, opts.volumeSize);
    const encrypt = encryptStream(recipientKeys);
    const signal = opts.signal ? [{ signal: opts.signal }] : [];
    if (opts.compression === 'zstd') await pipeline(tar, adaptiveZstd(opts.signal, opts.compressStats), encrypt, sink, ...signal);
    else await pipeline(tar, encrypt, sink, ...signal);
    faultPoint('writer:after-volumes');

    // more than 1000 volumes: rename every volume to the wider width, so a plain sort orders them
    const count = sink.volumes.length;
    const volumes: Volume[] = [];
    for (const [i, v] of sink.volumes.entries()) {
      const name = volumeName(i, count);
      if (name !== v.name) await rename(path.join(partial, v.name), path.join(partial, name));
      volumes.push({ ...v, name });
    }
    const size = volumes.reduce((a, v) => a + v.size, 0);
    const manifest: Manifest = {
      format: FORMAT,
      version: FORMAT_VERSION,
      site: opts.site,
      seq: opts.seq,
      ...(opts.prev !== undefined ? { prev: opts.prev } : {}),
      created,
      tool: TOOL,
      signer: fingerprint(opts.signingKey.publicKey),
      recipients: [...opts.recipients],
      payload: { encryption: 'age-v1', compression: opts.compression, volumeSize: opts.volumeSize, volumes, size, sha256: sink.whole },
      inner: { sha256: innerHash.sha256, entries: counts.entries },
      contents: { files: counts.files, metadata: counts.metadata, bytes: counts.bytes },
    };
    const recovery = opts.recoveryPercent ? await recoveryLines(partial, volumes, opts.recoveryPercent, opts.signal) : [];
    const coverage = opts.coverage?.();
    if (coverage !== undefined) manifest.coverage = coverage;
    const manifestText = canonicalJson(manifest);
    const restore = restoreText(manifest, recovery.length > 0);
    await writeFileDurable(path.join(partial, MANIFEST_FILE), manifestText);
    await writeFileDurable(path.join(partial, RESTORE_FILE), restore);
    const sums = formatSums([
      ...volumes.map((v) => ({ name: v.name, sha256: v.sha256 })),
      { name: MANIFEST_FILE, sha256: sha256Hex(manifestText) },
      { name: RESTORE_FILE, sha256: sha256Hex(restore) },
      ...recovery,
    ]);
    await writeFileDurable(path.join(partial, SUMS), sums);
    await writeFileDurable(path.join(partial, SUMS_SIG), sign(opts.signingKey, Buffer.from(sums), BUNDLE_NAMESPACE));
    await fsyncDir(partial);
    faultPoint('writer:before-rename');
    await rename(partial, final);
    await fsyncDir(path.dirname(final));
    faultPoint('writer:after-rename');
    return { path: final, manifest, sumsSha256: sha256Hex(sums) };
  } catch (e) {
    // after the rename the bundle is finished even if a later fsync failed: the caller must see that
    await removeTree(partial).catch(() => {});
    throw fromSystemError(e, partial, 'io');
  }
}

/**
 * Creates the empty `<bundle>.partial` folder (removing a stale one) and makes its parents durable.
 * Throws `target-exists` if the finished bundle is already there, typed system errors otherwise.
 */
export async function preparePartial(medium: string, site: string, seq: number): Promise<string> {
  const final = bundlePath(medium, site, seq);
  const partial = `${final}${PARTIAL_SUFFIX}`;
  if (
    await stat(final).then(
      () => true,
      () => false,
    )
  ) {
    throw new AirlockError('target-exists', `${final} already exists`, {
      hint: 'the catalog is behind this medium; check the medium, or continue with --continue-from',
    });
  }
  try {
    const siteDir = path.dirname(final);
    const created = await mkdir(siteDir, { recursive: true });
    if (created !== undefined) await fsyncDir(path.dirname(siteDir));
    await removeTree(partial);
    await mkdir(partial);
    await fsyncDir(siteDir);
  } catch (e) {
    throw fromSystemError(e, partial, 'io');
  }
  return partial;
}
