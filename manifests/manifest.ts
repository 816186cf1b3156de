/*
 * manifest.json: the cleartext description of one bundle (SPEC.md, "manifest.json").
 *
 * It is what an auditor without the key trusts once SHA256SUMS is signed and matches it, so it says
 * everything that can be checked keyless (volumes, sizes, hashes, chain links, counts) and nothing
 * that would reveal contents (no plaintext hashes except the salted inner manifest's, no names).
 * `assertManifest` collects every bad field into one error, so a broken manifest is described whole.
 */
import { coverageProblems, type Coverage } from './coverage.js';
import { AirlockError } from './errors.js';
import { fieldsOf, type Problems } from './fields.js';
import { LIMITS } from './limits.js';

export const FORMAT = 'airlock-bundle';
export const FORMAT_VERSION = 1;
/** The cleartext manifest's file name in the bundle folder. */
export const MANIFEST_FILE = 'manifest.json';
/** The stock-tool restore steps' file name in the bundle folder (SPEC.md 8). */
export const RESTORE_FILE = 'RESTORE.txt';
/** manifest.json is read whole; anything larger is refused before parsing. */
export const MANIFEST_LIMIT = LIMITS.manifestBytes;

export const SITE_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;
export const SHA256_RE = /^[0-9a-f]{64}$/;
const FINGERPRINT_RE = /^SHA256:[A-Za-z0-9+/]{43}$/;
const RECIPIENT_RE = /^age1[02-9ac-hj-np-z]{58}$/;
const TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$/;
/** FAT32 cannot hold a file of 4 GiB or more. */
export const FAT32_MAX_FILE = 4 * 1024 ** 3 - 1;
export const MAX_VOLUMES = LIMITS.volumes;
/** The smallest volume the format allows; the CLI asks for at least 1 MiB. */
export const MIN_VOLUME_SIZE = 4096;

export type Compression = 'none' | 'zstd';

export interface Volume {
  name: string;
  size: number;
  sha256: string;
}

export interface Payload {
  encryption: 'age-v1';
  compression: Compression;
  /** every volume but the last has exactly this size */
  volumeSize: number;
  volumes: Volume[];
  /** total ciphertext bytes, the sum of the volume sizes */
  size: number;
  /** sha256 of the whole age file, the volumes concatenated in order */
  sha256: string;
}

export interface Inner {
  /** sha256 of the MANIFEST.sha256 entry; salted, so it confirms no guess about contents */
  sha256: string;
  /** the number of lines of MANIFEST.sha256: every tar entry but MANIFEST.sha256 itself */
  entries: number;
}

/** Counts an auditor may see; later tiers add their own sections to `coverage`. */
export interface Contents {
  /** config and secret files exported as tar entries */
  files: number;
  /** directories, symlinks, hardlinks and special files recorded as metadata only */
  metadata: number;
  /** plaintext bytes of all payload entries (before compression) */
  bytes: number;
}

export interface Manifest {
  format: typeof FORMAT;
  version: typeof FORMAT_VERSION;
  site: string;
  seq: number;
  /** sha256 of the previous bundle's SHA256SUMS; absent only for seq 1 */
  prev?: string;
  created: string;
  tool: string;
  /** fingerprint of the Ed25519 key that signs SHA256SUMS, as `ssh-keygen -l` prints it */
  signer: string;
  recipients: string[];
  payload: Payload;
  inner: Inner;
  contents: Contents;
  /** what the bundle claims about the databases it carries (coverage.ts); absent without PostgreSQL */
  coverage?: Coverage;
}

/** The folder name of a bundle: `<site>-<seq as 8 digits>`. */
export function bundleName(site: string, seq: number): string {
  return `${site}-${String(seq).padStart(8, '0')}`;
}

/** What a bundle folder is called while it is written (SPEC.md 1): never read as a bundle. */
export const PARTIAL_SUFFIX = '.partial';

/** The name of volume `i` of `count`: at least 3 digits, wider when needed, so a plain sort orders them. */
export function volumeName(i: number, count: number): string {
  const width = Math.max(3, String(Math.max(count - 1, 0)).length);
  return `payload.${String(i).padStart(width, '0')}`;
}

const obj = fieldsOf;

function int(v: unknown, where: string, p: Problems, min: number, max = Number.MAX_SAFE_INTEGER): v is number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    p.push(`${where}: must be an integer from ${min} to ${max}`);
    return false;
  }
  return true;
}

function str(v: unknown, where: string, p: Problems, re: RegExp, what: string): v is string {
  if (typeof v !== 'string' || !re.test(v)) {
    p.push(`${where}: must be ${what}`);
    return false;
  }
  return true;
}

/**
 * Checks that `v` is a v1 manifest: every field present, typed and within its range, volumes named,
 * sized and summed consistently. Throws `malformed` listing every problem found.
 */
export function assertManifest(v: unknown): asserts v is Manifest {
  const p: Problems = [];
  const m = obj(
    v,
    'manifest',
    p,
    ['format', 'version', 'site', 'seq', 'created', 'tool', 'signer', 'recipients', 'payload', 'inner', 'contents'],
    ['prev', 'coverage'],
  );
  if (m) {
    if (m.format !== FORMAT) p.push(`format: must be "${FORMAT}"`);
    if (m.version !== FORMAT_VERSION) p.push(`version: this tool reads version ${FORMAT_VERSION}`);
    str(m.site, 'site', p, SITE_RE, 'a site id (lowercase letters, digits, ".", "_", "-"; at most 63)');
    if (int(m.seq, 'seq', p, 1)) {
      if (m.seq === 1 && 'prev' in m) p.push('prev: must be absent for seq 1');
      if (m.seq > 1) str(m.prev, 'prev', p, SHA256_RE, "the sha256 of the previous bundle's SHA256SUMS");
    }
    str(m.created, 'created', p, TIME_RE, 'a UTC time like 2026-01-31T12:00:00.000Z');
    if (typeof m.created === 'string' && Number.isNaN(Date.parse(m.created))) p.push('created: not a real time');
    str(m.tool, 'tool', p, /^[ -~]{1,100}$/, 'printable ASCII of at most 100 characters');
    str(m.signer, 'signer', p, FINGERPRINT_RE, 'an SSH key fingerprint SHA256:...');
    if (!Array.isArray(m.recipients) || m.recipients.length < 1 || m.recipients.length > LIMITS.recipients) {
      p.push(`recipients: must list 1 to ${LIMITS.recipients} age recipients`);
    } else {
      m.recipients.forEach((r, i) => str(r, `recipients[${i}]`, p, RECIPIENT_RE, 'an age X25519 recipient age1...'));
    }
    assertPayload(m.payload, p);
    const inner = obj(m.inner, 'inner', p, ['sha256', 'entries']);
    if (inner) {
      str(inner.sha256, 'inner.sha256', p, SHA256_RE, 'a lowercase sha256');
      int(inner.entries, 'inner.entries', p, 1);
    }
    const c = obj(m.contents, 'contents', p, ['files', 'metadata', 'bytes']);
    if (c) {
      int(c.files, 'contents.files', p, 0);
      int(c.metadata, 'contents.metadata', p, 0);
      int(c.bytes, 'contents.bytes', p, 0);
    }
    if (m.coverage !== undefined) p.push(...coverageProblems(m.coverage));
  }
  if (p.length > 0) throw new AirlockError('malformed', `manifest.json: ${p.join('; ')}`);
}

function assertPayload(v: unknown, p: Problems): void {
  const pl = obj(v, 'payload', p, ['encryption', 'compression', 'volumeSize', 'volumes', 'size', 'sha256']);
  if (!pl) return;
  if (pl.encryption !== 'age-v1') p.push('payload.encryption: must be "age-v1"');
  if (pl.compression !== 'none' && pl.compression !== 'zstd') p.push('payload.compression: must be "none" or "zstd"');
  const volumeSizeOk = int(pl.volumeSize, 'payload.volumeSize', p, MIN_VOLUME_SIZE);
  str(pl.sha256, 'payload.sha256', p, SHA256_RE, 'a lowercase sha256');
  const sizeOk = int(pl.size, 'payload.size', p, 1);
  if (!Array.isArray(pl.volumes) || pl.volumes.length < 1 || pl.volumes.length > MAX_VOLUMES) {
    p.push(`payload.volumes: must list 1 to ${MAX_VOLUMES} volumes`);
    return;
  }
  let sum = 0;
  const n = pl.volumes.length;
  pl.volumes.forEach((vol, i) => {
    const where = `payload.volumes[${i}]`;
    const o = obj(vol, where, p, ['name', 'size', 'sha256']);
    if (!o) return;
    if (o.name !== volumeName(i, n)) p.push(`${where}.name: must be ${volumeName(i, n)}`);
    str(o.sha256, `${where}.sha256`, p, SHA256_RE, 'a lowercase sha256');
    if (int(o.size, `${where}.size`, p, 1)) {
      sum += o.size;
      if (volumeSizeOk) {
        const volumeSize = pl.volumeSize as number;
        if (i < n - 1 && o.size !== volumeSize) p.push(`${where}.size: every volume but the last must be ${volumeSize} bytes`);
        if (i === n - 1 && o.size > volumeSize) p.push(`${where}.size: larger than volumeSize`);
      }
    }
  });
  if (sizeOk && sum !== pl.size) p.push(`payload.size: ${String(pl.size)} is not the sum of the volume sizes (${sum})`);
}
