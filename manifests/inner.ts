/*
 * The inner manifest: what the tar inside the payload holds, readable only with the key.
 *
 * Tar order: `SALT` (32 random bytes) first, then the payload entries, then `index.jsonl`, then
 * `MANIFEST.sha256` last. MANIFEST.sha256 is plain `sha256sum -c` text over every other entry in tar
 * order, SALT included; since SALT is random, the hash of MANIFEST.sha256 that the cleartext manifest
 * carries confirms no guess about any file. index.jsonl says what each entry is: its first line binds
 * the tar to its bundle (site, seq), every other line is one record, and every record with a `path`
 * names exactly one tar entry. Links, folders and devices exist only as records, never as entries.
 */
import { AirlockError } from './errors.js';
import { LIMITS } from './limits.js';
import { FORMAT, FORMAT_VERSION, SHA256_RE, SITE_RE } from './manifest.js';
import { parseSumLines, type SumLine } from './sums.js';

export const SALT = 'SALT';
export const SALT_SIZE = 32;
export const INDEX = 'index.jsonl';
export const INNER_MANIFEST = 'MANIFEST.sha256';
/** One index.jsonl line at most (an S3 key is at most 1 KiB, its metadata 2 KiB). */
export const INDEX_LINE_LIMIT = LIMITS.indexLineBytes;
/** MANIFEST.sha256 is read whole; about 10 million entries. */
export const INNER_MANIFEST_LIMIT = LIMITS.innerManifestBytes;

/** Tar paths the writer generates: short, ASCII, relative, no "." or ".." components. */
export const ENTRY_PATH_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}(\/[A-Za-z0-9_][A-Za-z0-9._-]{0,99}){0,7}$/;

export interface BundleRecord {
  type: 'bundle';
  site: string;
  seq: number;
  created: string;
}

/** A record's common shape; tiers add their own fields. `path`, `size` and `sha256` go together. */
export interface IndexRecord {
  type: string;
  path?: string;
  size?: number;
  sha256?: string;
  [field: string]: unknown;
}

/** Formats MANIFEST.sha256 in tar order. */
export function formatInnerManifest(lines: readonly SumLine[]): string {
  return lines.map((l) => `${l.sha256}  ${l.name}\n`).join('');
}

/** Parses MANIFEST.sha256. Throws `malformed` on a bad line, a bad name or a duplicate. */
export function parseInnerManifest(bytes: Uint8Array): SumLine[] {
  return parseSumLines(bytes, INNER_MANIFEST, ENTRY_PATH_RE, false, INNER_MANIFEST_LIMIT);
}

/**
 * Parses one index.jsonl line (1-based `n`). The first line must be the bundle record.
 * Throws `malformed` naming the line.
 */
export function parseIndexLine(text: string, n: number): IndexRecord {
  const where = `${INDEX} line ${n}`;
  if (Buffer.byteLength(text) > INDEX_LINE_LIMIT) throw new AirlockError('malformed', `${where}: longer than ${INDEX_LINE_LIMIT} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new AirlockError('malformed', `${where}: not valid JSON`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new AirlockError('malformed', `${where}: not an object`);
  const r = v as IndexRecord;
  if (typeof r.type !== 'string' || !/^[a-z][a-z-]{0,31}$/.test(r.type)) throw new AirlockError('malformed', `${where}: no record type`);
  if (n === 1) {
    const b = r as unknown as BundleRecord & { format?: unknown; version?: unknown };
    if (r.type !== 'bundle' || b.format !== FORMAT || b.version !== FORMAT_VERSION || typeof b.site !== 'string' || !SITE_RE.test(b.site) || !Number.isSafeInteger(b.seq)) {
      throw new AirlockError('malformed', `${where}: the first line must be the bundle record (format, version, site, seq)`);
    }
  } else if (r.type === 'bundle') {
    throw new AirlockError('malformed', `${where}: a second bundle record`);
  }
  if ('path' in r) {
    if (typeof r.path !== 'string' || !ENTRY_PATH_RE.test(r.path)) throw new AirlockError('malformed', `${where}: bad entry path`);
    if (!Number.isSafeInteger(r.size) || (r.size as number) < 0) throw new AirlockError('malformed', `${where}: bad size`);
    if (typeof r.sha256 !== 'string' || !SHA256_RE.test(r.sha256)) throw new AirlockError('malformed', `${where}: bad sha256`);
  }
  return r;
}

/** Record types of the object tier that change versions an earlier bundle of the chain holds (SPEC.md 6.3). */
export const OBJECT_CHANGE_TYPES = new Set(['version-changed', 'version-removed']);

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/**
 * What is wrong with a `version-changed` or `version-removed` record, or undefined: no tar entry, a
 * bucket, key and version id, the time the export found the change, and for a change its tags as an
 * object of text and its optional lock as x-amz-object-lock-* headers.
 */
export function objectChangeProblem(r: IndexRecord): string | undefined {
  if ('path' in r) return `a ${r.type} record names no tar entry`;
  for (const f of ['bucket', 'key', 'versionId']) if (typeof r[f] !== 'string' || r[f] === '') return `a ${r.type} record without ${f}`;
  if (typeof r.detected !== 'string' || !ISO_TIME.test(r.detected) || Number.isNaN(Date.parse(r.detected))) return `a ${r.type} record without the time it was found (detected)`;
  if (r.type === 'version-changed') {
    const t = r.tags;
    if (t === null || typeof t !== 'object' || Array.isArray(t) || !Object.values(t).every((v) => typeof v === 'string')) return 'a version-changed record whose tags are not an object of text values';
    const l = r.lock;
    if (l !== undefined && (l === null || typeof l !== 'object' || Array.isArray(l) || !Object.entries(l).every(([k, v]) => k.startsWith('x-amz-object-lock-') && typeof v === 'string'))) {
      return 'a version-changed record whose lock is not an object of x-amz-object-lock-* text values';
    }
  }
  return undefined;
}

/** Record types of the configuration tier, which carry a `source` path to lay out on restore. */
export const SOURCE_TYPES = new Set(['file', 'dir', 'symlink', 'hardlink', 'special']);

/**
 * The rules a restore relies on for `source` paths (SPEC.md 6.3): absolute and normalised, each named
 * once, and nothing placed under a path that is not a folder (a symbolic link above a file would let a
 * restore write through it). Returns one message per violation.
 */
export function checkSources(records: readonly IndexRecord[]): string[] {
  const problems: string[] = [];
  const kind = new Map<string, string>();
  for (const r of records) {
    if (!SOURCE_TYPES.has(r.type)) continue;
    const s = r.source;
    if (typeof s !== 'string' || !isSourcePath(s)) {
      problems.push(`source ${JSON.stringify(s)} is not an absolute, normalised path`);
      continue;
    }
    if (kind.has(s)) problems.push(`source ${s} is named twice`);
    kind.set(s, r.type);
  }
  for (const s of kind.keys()) {
    for (let i = s.indexOf('/', 1); i > 0; i = s.indexOf('/', i + 1)) {
      const above = kind.get(s.slice(0, i));
      if (above !== undefined && above !== 'dir') problems.push(`source ${s} lies under ${s.slice(0, i)}, which is a ${above}, not a folder`);
    }
  }
  return problems;
}

/** An absolute POSIX path without empty, "." or ".." components, NUL or a trailing slash. */
export function isSourcePath(s: string): boolean {
  return s.length > 1 && s.length <= 4096 && s.startsWith('/') && !s.includes('\0') && s.slice(1).split('/').every((c) => c !== '' && c !== '.' && c !== '..');
}
