/*
 * index.jsonl records: the closed set of types SPEC.md 6.3 lists, as one discriminated union, and the
 * one parser that turns a line's JSON into it.
 *
 * The parser checks what every reader relies on: a known `type`, the fields that type carries with
 * their JSON kinds, and for the types with a tar entry its `path`, `size` and `sha256`. What a field's
 * value means (a source path that may be laid out, a header a restore may send, WAL names against the
 * coverage) is checked by the reader that acts on it, which reports it as the finding it is
 * (`unsafe-entry`, `malformed` coverage). Fields beyond the listed ones are kept and ignored.
 */
import { AirlockError } from './errors.js';
import { LIMITS } from './limits.js';
import { FORMAT, FORMAT_VERSION, SHA256_RE, SITE_RE } from './manifest.js';

export const INDEX = 'index.jsonl';
/** One index.jsonl line at most (an S3 key is at most 1 KiB, its metadata 2 KiB). */
export const INDEX_LINE_LIMIT = LIMITS.indexLineBytes;
/** Tar paths the writer generates: short, ASCII, relative, no "." or ".." components. */
export const ENTRY_PATH_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}(\/[A-Za-z0-9_][A-Za-z0-9._-]{0,99}){0,7}$/;

/** The first line: binds the tar to its bundle. */
export interface BundleRecord {
  type: 'bundle';
  format: string;
  version: number;
  site: string;
  seq: number;
  created: string;
}

/** What a record with a tar entry adds: the entry's name, size and hash. */
export interface EntryFields {
  path: string;
  size: number;
  sha256: string;
}

/** The configuration tier's common fields: where the item was and its owner, mode and time. */
export interface SourceFields {
  source: string;
  /** 4 octal digits */
  mode: string;
  uid: number;
  gid: number;
  user?: string;
  group?: string;
  /** ISO time */
  mtime: string;
}

export type FileRecord = { type: 'file' } & SourceFields & EntryFields;
export type DirRecord = { type: 'dir' } & SourceFields;
export type SymlinkRecord = { type: 'symlink'; target: string } & SourceFields;
/** `target` is the `source` of the first name of the file, exported as a `file` */
export type HardlinkRecord = { type: 'hardlink'; target: string } & SourceFields;
export type SpecialRecord = { type: 'special'; kind: string; rdev: number } & SourceFields;

export type Headers = Record<string, string>;

export interface BucketRecord {
  type: 'bucket';
  bucket: string;
  /** '' for the whole bucket */
  prefix: string;
  endpoint: string;
  /** 'Enabled', 'Suspended' or '' for never enabled */
  versioning: string;
  lifecycle: string | null;
  objectLock: string | null;
  tags: Headers | null;
  /** the seq of the earlier bundle this incremental export of the bucket builds on */
  since?: number;
}

export type ObjectRecord = {
  type: 'object';
  bucket: string;
  key: string;
  /** 'null' in an unversioned bucket */
  versionId: string;
  isLatest: boolean;
  lastModified: string;
  etag: string;
  contentType: string;
  storageClass?: string;
  headers: Headers;
  metadata: Headers;
  /** values that are not UTF-8, as base64 of their bytes */
  metadataBase64?: Headers;
  tags: Headers;
  /** for a multipart ETag: the part sizes in order whose upload gives that ETag, when the writer found them */
  parts?: number[];
} & EntryFields;

export interface DeleteMarkerRecord {
  type: 'delete-marker';
  bucket: string;
  key: string;
  versionId: string;
  isLatest: boolean;
  lastModified: string;
}

/** a version an earlier bundle of the chain holds whose tags or lock changed (incremental exports only) */
export interface VersionChangedRecord {
  type: 'version-changed';
  bucket: string;
  key: string;
  versionId: string;
  /** the version's tags now */
  tags: Headers;
  /** in a bucket with object lock: the x-amz-object-lock-* headers the version has now */
  lock?: Headers;
  /** ISO time: when the export found the change */
  detected: string;
}

/** a version or delete marker an earlier bundle of the chain holds that the bucket no longer lists */
export interface VersionRemovedRecord {
  type: 'version-removed';
  bucket: string;
  key: string;
  versionId: string;
  detected: string;
}

export interface BucketSummaryRecord {
  type: 'bucket-summary';
  bucket: string;
  prefix: string;
  versions: number;
  deleteMarkers: number;
  latestObjects: number;
  bytes: number;
  alreadyExported: number;
  /** the version-changed records (absent in bundles written before they existed) */
  changed?: number;
  /** the version-removed records (likewise) */
  removed?: number;
}

export type PgInfoRecord = { type: 'pg-info' } & EntryFields;
/** `file`: the absolute path of a server config file outside the data folder */
export type PgConfigRecord = { type: 'pg-config'; file: string } & EntryFields;
/** row counts and checksums of the tables of `database` at the restore point (export --pg-table-checks) */
export type PgTablesRecord = { type: 'pg-tables'; database: string } & EntryFields;
export type PgBaseRecord = { type: 'pg-base'; part: number } & EntryFields;
export interface PgBaseEndRecord {
  type: 'pg-base-end';
  parts: number;
  bytes: number;
  label: string;
}
/** a part of the tar of tablespace `oid`'s folder */
export type PgTablespaceRecord = { type: 'pg-tblspc'; oid: number; part: number } & EntryFields;
/** `name` and `location` as in coverage.postgres.base.tablespaces (checked there) */
export interface PgTablespaceEndRecord {
  type: 'pg-tblspc-end';
  oid: number;
  name: string;
  location: string;
  prefix: string;
  parts: number;
  bytes: number;
}
export type PgDumpRecord = { type: 'pg-dump'; database: string; part: number } & EntryFields;
export interface PgDumpEndRecord {
  type: 'pg-dump-end';
  database: string;
  prefix: string;
  parts: number;
  bytes: number;
}
export type PgGlobalsRecord = { type: 'pg-globals'; part: number } & EntryFields;
export interface PgGlobalsEndRecord {
  type: 'pg-globals-end';
  parts: number;
  bytes: number;
  passwords: boolean;
}
export type PgWalRecord = { type: 'pg-wal'; name: string; kind: 'segment' | 'partial' | 'history' | 'backup'; timeline: number } & EntryFields;

/** Every record after the bundle record. */
export type IndexRecord =
  | FileRecord
  | DirRecord
  | SymlinkRecord
  | HardlinkRecord
  | SpecialRecord
  | BucketRecord
  | ObjectRecord
  | DeleteMarkerRecord
  | VersionChangedRecord
  | VersionRemovedRecord
  | BucketSummaryRecord
  | PgInfoRecord
  | PgConfigRecord
  | PgTablesRecord
  | PgBaseRecord
  | PgBaseEndRecord
  | PgTablespaceRecord
  | PgTablespaceEndRecord
  | PgDumpRecord
  | PgDumpEndRecord
  | PgGlobalsRecord
  | PgGlobalsEndRecord
  | PgWalRecord;

export type RecordType = IndexRecord['type'];
/** The records that name a tar entry. */
export type EntryRecord = Extract<IndexRecord, EntryFields>;
/** The records that are metadata only: no tar entry. */
export type MetadataRecord = Exclude<IndexRecord, EntryFields>;
/** An entry's record as a source gives it: the writer adds path, size and sha256. */
export type Unplaced<R extends EntryRecord> = Omit<R, keyof EntryFields>;
/** Any entry's record as a source gives it. */
export type UnplacedRecord = EntryRecord extends infer R ? (R extends EntryRecord ? Unplaced<R> : never) : never;

type Kind = 'string' | 'int' | 'ints' | 'boolean' | 'text-or-null' | 'strings' | 'strings-or-null' | 'wal-kind';

interface Schema {
  entry: boolean;
  fields: Readonly<Record<string, Kind>>;
  optional?: Readonly<Record<string, Kind>>;
}

const SOURCE: Schema['fields'] = { source: 'string', mode: 'string', uid: 'int', gid: 'int', mtime: 'string' };
const OWNER_NAMES: Schema['fields'] = { user: 'string', group: 'string' };
const STREAM_END: Schema['fields'] = { parts: 'int', bytes: 'int' };

/** Per type (SPEC.md 6.3): whether it names a tar entry, and its fields. */
const SCHEMAS: Readonly<Record<RecordType, Schema>> = {
  file: { entry: true, fields: SOURCE, optional: OWNER_NAMES },
  dir: { entry: false, fields: SOURCE, optional: OWNER_NAMES },
  symlink: { entry: false, fields: { ...SOURCE, target: 'string' }, optional: OWNER_NAMES },
  hardlink: { entry: false, fields: { ...SOURCE, target: 'string' }, optional: OWNER_NAMES },
  special: { entry: false, fields: { ...SOURCE, kind: 'string', rdev: 'int' }, optional: OWNER_NAMES },
  bucket: {
    entry: false,
    fields: {
      bucket: 'string',
      prefix: 'string',
      endpoint: 'string',
      versioning: 'string',
      lifecycle: 'text-or-null',
      objectLock: 'text-or-null',
      tags: 'strings-or-null',
    },
    optional: { since: 'int' },
  },
  object: {
    entry: true,
    fields: {
      bucket: 'string',
      key: 'string',
      versionId: 'string',
      isLatest: 'boolean',
      lastModified: 'string',
      etag: 'string',
      contentType: 'string',
      headers: 'strings',
      metadata: 'strings',
      tags: 'strings',
    },
    optional: { storageClass: 'string', metadataBase64: 'strings', parts: 'ints' },
  },
  'delete-marker': { entry: false, fields: { bucket: 'string', key: 'string', versionId: 'string', isLatest: 'boolean', lastModified: 'string' } },
  'version-changed': {
    entry: false,
    fields: { bucket: 'string', key: 'string', versionId: 'string', tags: 'strings', detected: 'string' },
    optional: { lock: 'strings' },
  },
  'version-removed': { entry: false, fields: { bucket: 'string', key: 'string', versionId: 'string', detected: 'string' } },
  'bucket-summary': {
    entry: false,
    fields: { bucket: 'string', prefix: 'string', versions: 'int', deleteMarkers: 'int', latestObjects: 'int', bytes: 'int', alreadyExported: 'int' },
    optional: { changed: 'int', removed: 'int' },
  },
  'pg-info': { entry: true, fields: {} },
  'pg-config': { entry: true, fields: { file: 'string' } },
  'pg-tables': { entry: true, fields: { database: 'string' } },
  'pg-base': { entry: true, fields: { part: 'int' } },
  'pg-base-end': { entry: false, fields: { ...STREAM_END, label: 'string' } },
  'pg-tblspc': { entry: true, fields: { oid: 'int', part: 'int' } },
  'pg-tblspc-end': { entry: false, fields: { ...STREAM_END, oid: 'int', name: 'string', location: 'string', prefix: 'string' } },
  'pg-dump': { entry: true, fields: { database: 'string', part: 'int' } },
  'pg-dump-end': { entry: false, fields: { ...STREAM_END, database: 'string', prefix: 'string' } },
  'pg-globals': { entry: true, fields: { part: 'int' } },
  'pg-globals-end': { entry: false, fields: { ...STREAM_END, passwords: 'boolean' } },
  'pg-wal': { entry: true, fields: { name: 'string', kind: 'wal-kind', timeline: 'int' } },
};

/** Every record type but the bundle record's, in SPEC.md 6.3's order (tested against it). */
export const RECORD_TYPES = Object.keys(SCHEMAS) as RecordType[];

const isRecordType = (t: string): t is RecordType => Object.hasOwn(SCHEMAS, t);

function isStrings(v: unknown): boolean {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
}

function hasKind(v: unknown, kind: Kind): boolean {
  switch (kind) {
    case 'string':
      return typeof v === 'string';
    case 'int':
      return Number.isSafeInteger(v) && (v as number) >= 0;
    case 'ints':
      return Array.isArray(v) && v.every((x) => Number.isSafeInteger(x) && (x as number) >= 0);
    case 'boolean':
      return typeof v === 'boolean';
    case 'text-or-null':
      return v === null || typeof v === 'string';
    case 'strings':
      return isStrings(v);
    case 'strings-or-null':
      return v === null || isStrings(v);
    case 'wal-kind':
      return v === 'segment' || v === 'partial' || v === 'history' || v === 'backup';
  }
}

const KIND_TEXT: Readonly<Record<Kind, string>> = {
  string: 'a string',
  int: 'a whole number',
  ints: 'a list of whole numbers',
  boolean: 'true or false',
  'text-or-null': 'a string or null',
  strings: 'an object of strings',
  'strings-or-null': 'an object of strings or null',
  'wal-kind': 'segment, partial, history or backup',
};

/**
 * Parses one index.jsonl line (1-based `n`): the bundle record when `n` is 1, a record of the union
 * otherwise. Throws `malformed` naming the line.
 */
export function parseIndexLine(text: string, n: 1): BundleRecord;
export function parseIndexLine(text: string, n: number): BundleRecord | IndexRecord;
export function parseIndexLine(text: string, n: number): BundleRecord | IndexRecord {
  const where = `${INDEX} line ${n}`;
  if (Buffer.byteLength(text) > INDEX_LINE_LIMIT) throw new AirlockError('malformed', `${where}: longer than ${INDEX_LINE_LIMIT} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new AirlockError('malformed', `${where}: not valid JSON`);
  }
  if (n !== 1) {
    assertIndexRecord(v, where);
    return v;
  }
  const b = v as Partial<Record<keyof BundleRecord, unknown>> | null;
  if (
    b === null ||
    typeof b !== 'object' ||
    b.type !== 'bundle' ||
    b.format !== FORMAT ||
    b.version !== FORMAT_VERSION ||
    typeof b.site !== 'string' ||
    !SITE_RE.test(b.site) ||
    !Number.isSafeInteger(b.seq)
  ) {
    throw new AirlockError('malformed', `${where}: the first line must be the bundle record (format, version, site, seq)`);
  }
  return v as BundleRecord;
}

/**
 * Checks that `v`, one parsed index.jsonl line other than the first, is a record of a type SPEC.md
 * 6.3 lists with that type's fields. Throws `malformed` naming `where` and every bad field.
 */
export function assertIndexRecord(v: unknown, where: string): asserts v is IndexRecord {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new AirlockError('malformed', `${where}: not an object`);
  const r = v as Record<string, unknown>;
  if (typeof r.type !== 'string' || !/^[a-z][a-z-]{0,31}$/.test(r.type)) throw new AirlockError('malformed', `${where}: no record type`);
  if (r.type === 'bundle') throw new AirlockError('malformed', `${where}: a second bundle record`);
  if (!isRecordType(r.type)) throw new AirlockError('malformed', `${where}: unknown record type ${r.type}`);
  const schema = SCHEMAS[r.type];
  const problems: string[] = [];
  for (const [field, kind] of Object.entries(schema.fields)) if (!hasKind(r[field], kind)) problems.push(`${field} must be ${KIND_TEXT[kind]}`);
  for (const [field, kind] of Object.entries(schema.optional ?? {}))
    if (field in r && !hasKind(r[field], kind)) problems.push(`${field} must be ${KIND_TEXT[kind]}`);
  if (problems.length > 0) throw new AirlockError('malformed', `${where}: ${r.type} record: ${problems.join('; ')}`);
  if (schema.entry || 'path' in r) {
    if (typeof r.path !== 'string' || !ENTRY_PATH_RE.test(r.path)) throw new AirlockError('malformed', `${where}: bad entry path`);
    if (!Number.isSafeInteger(r.size) || (r.size as number) < 0) throw new AirlockError('malformed', `${where}: bad size`);
    if (typeof r.sha256 !== 'string' || !SHA256_RE.test(r.sha256)) throw new AirlockError('malformed', `${where}: bad sha256`);
    if (!schema.entry) throw new AirlockError('malformed', `${where}: a ${r.type} record names no tar entry`);
  }
}

/** Whether a record names a tar entry. */
export function hasEntry(r: IndexRecord): r is EntryRecord {
  return SCHEMAS[r.type].entry;
}
