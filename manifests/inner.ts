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
import { LIMITS } from './limits.js';
import { ENTRY_PATH_RE, type IndexRecord, type SourceFields, type VersionChangedRecord, type VersionRemovedRecord } from './records.js';
import { formatSumLine, parseSumLines, type SumLine } from './sums.js';

export const SALT = 'SALT';
export const SALT_SIZE = 32;
export const INNER_MANIFEST = 'MANIFEST.sha256';
/** MANIFEST.sha256 is read whole; about 10 million entries. */
export const INNER_MANIFEST_LIMIT = LIMITS.innerManifestBytes;

/** Formats MANIFEST.sha256 in tar order. */
export function formatInnerManifest(lines: readonly SumLine[]): string {
  return lines.map(formatSumLine).join('');
}

/** Parses MANIFEST.sha256. Throws `malformed` on a bad line, a bad name or a duplicate. */
export function parseInnerManifest(bytes: Uint8Array): SumLine[] {
  return parseSumLines(bytes, INNER_MANIFEST, ENTRY_PATH_RE, false, INNER_MANIFEST_LIMIT);
}

/** A record of the configuration tier, which carries a `source` path to lay out on restore. */
export type SourceRecord = Extract<IndexRecord, SourceFields>;

export function isSourceRecord(r: { type: string }): r is SourceRecord {
  return r.type === 'file' || r.type === 'dir' || r.type === 'symlink' || r.type === 'hardlink' || r.type === 'special';
}

/** Record types of the object tier that change versions an earlier bundle of the chain holds (SPEC.md 6.3). */
export type ObjectChangeRecord = VersionChangedRecord | VersionRemovedRecord;

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/**
 * What is wrong with a `version-changed` or `version-removed` record beyond its fields' kinds, or
 * undefined: a bucket, key and version id that are not empty, the time the export found the change,
 * and for a change a lock of x-amz-object-lock-* headers only.
 */
export function objectChangeProblem(r: ObjectChangeRecord): string | undefined {
  for (const f of ['bucket', 'key', 'versionId'] as const) if (r[f] === '') return `a ${r.type} record without ${f}`;
  if (!ISO_TIME.test(r.detected) || Number.isNaN(Date.parse(r.detected))) return `a ${r.type} record without the time it was found (detected)`;
  if (r.type === 'version-changed' && r.lock !== undefined && !Object.keys(r.lock).every((k) => k.startsWith('x-amz-object-lock-'))) {
    return 'a version-changed record whose lock is not an object of x-amz-object-lock-* text values';
  }
  return undefined;
}

/**
 * The rules a restore relies on for `source` paths (SPEC.md 6.3): absolute and normalised, each named
 * once, and nothing placed under a path that is not a folder (a symbolic link above a file would let a
 * restore write through it). Returns one message per violation.
 */
export function checkSources(records: readonly Pick<SourceRecord, 'type' | 'source'>[]): string[] {
  const problems: string[] = [];
  const kind = new Map<string, string>();
  for (const r of records) {
    const s = r.source;
    if (!isSourcePath(s)) {
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
  return (
    s.length > 1 &&
    s.length <= 4096 &&
    s.startsWith('/') &&
    !s.includes('\0') &&
    s
      .slice(1)
      .split('/')
      .every((c) => c !== '' && c !== '.' && c !== '..')
  );
}
