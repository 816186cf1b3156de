/*
 * airlock restore objects: verify first, then put a bundle's buckets back, either into buckets of an
 * S3 server (every version in order, delete markers, metadata, tags; a version-id map written) or
 * into a folder (each key's newest version at --at, keys mapped to safe paths).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { announceBundle, interruptible, note, progressReporter } from './common.js';
import { command, resolveOptions, type Flags } from './options.js';
import { parseIdentities } from '../../manifests/age/keys.js';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import { restoreObjects, type ObjectTarget } from '../restore/objects.js';
import { pickVerifiedBundle } from '../restore/pick.js';
import { withRepairedBundle } from '../restore/repair.js';
import { refuseUnsafeTarget } from '../restore/staging.js';
import { connectS3 } from '../s3/credentials.js';
import { BUCKET_RE } from '../s3/objects.js';
import type { BundleReport } from '../../verifier/verify.js';

interface RestoreObjectsFlags {
  from: string[];
  identity: string;
  allowedSigners: string;
  endpoint?: string;
  bucketMap?: string[];
  s3Credentials?: string;
  s3Region?: string;
  s3CaFile?: string;
  s3Addressing?: string;
  config?: string;
  idMap?: string;
  to?: string;
  at?: string;
  site?: string;
  seq?: number;
  json?: boolean;
}

/** Parses `SRC=DST` pairs. Throws `usage` for a malformed pair, a bad name or a source given twice. */
export function parseBucketMap(pairs: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const p of pairs) {
    const m = /^([^=]+)=([^=]+)$/.exec(p);
    const [src, dst] = m ? [m[1] as string, m[2] as string] : ['', ''];
    if (!m || !BUCKET_RE.test(src) || !BUCKET_RE.test(dst))
      throw new AirlockError('usage', `--bucket-map ${JSON.stringify(p)}: not SOURCE=DESTINATION bucket names`, {
        hint: 'give --bucket-map records=records-restored',
      });
    if (map.has(src)) throw new AirlockError('usage', `--bucket-map names ${src} twice`);
    map.set(src, dst);
  }
  return map;
}

/** Parses --at: an ISO 8601 time. Throws `usage`. */
export function parseAt(text: string | undefined): number {
  if (text === undefined) return Infinity;
  const t = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$/.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(t)) throw new AirlockError('usage', `--at ${text}: not a time`, { hint: 'give an ISO 8601 time with a zone, e.g. 2025-06-01T12:00:00Z' });
  return t;
}

async function restoreObjectsCommand(flags: RestoreObjectsFlags): Promise<void> {
  const until = parseAt(flags.at);
  const toBucket = flags.endpoint !== undefined || (flags.bucketMap?.length ?? 0) > 0;
  if (toBucket === (flags.to !== undefined)) {
    throw new AirlockError('usage', 'give either --endpoint URL --bucket-map SRC=DST, or --to DIR', {
      hint: 'restore into buckets of an S3 server, or into a folder',
    });
  }
  if (toBucket && (flags.endpoint === undefined || (flags.bucketMap?.length ?? 0) === 0)) {
    throw new AirlockError('usage', '--endpoint and --bucket-map go together', {
      hint: 'give --endpoint http(s)://host:port and --bucket-map SOURCE=DESTINATION for each bucket to restore',
    });
  }
  if (flags.to !== undefined) await refuseUnsafeTarget(flags.to);
  const bucketMap = toBucket ? parseBucketMap(flags.bucketMap ?? []) : new Map<string, string>();
  let identityText: string;
  try {
    identityText = await readFile(flags.identity, 'utf8');
  } catch (e) {
    throw fromSystemError(e, flags.identity);
  }
  const identities = parseIdentities(identityText);
  const connect = () =>
    connectS3({
      endpoint: flags.endpoint as string,
      credentials: flags.s3Credentials,
      region: flags.s3Region,
      caFile: flags.s3CaFile,
      addressing: flags.s3Addressing,
    });
  // a missing key or CA file fails before the bundles are verified
  const client = toBucket ? await connect() : undefined;
  const verified: BundleReport[] = [];
  const bundle = await pickVerifiedBundle(flags.from, flags.allowedSigners, flags.site, flags.seq, verified, { allowRepair: true });
  announceBundle(bundle);

  let target: ObjectTarget;
  if (client) {
    const idMap = flags.idMap ?? `${path.basename(bundle.path)}.id-map.jsonl`;
    target = { kind: 'bucket', client, bucketMap, idMap };
  } else {
    target = { kind: 'folder', to: flags.to as string };
  }
  // an interrupted bucket restore leaves its journal (the id map being written), which a rerun resumes from
  const interrupted =
    target.kind === 'bucket' ? `interrupted; run the same command again to resume (${target.idMap}.partial says what was written)` : undefined;
  try {
    // a progress line per step on a terminal: decrypting the bundles, then writing the versions
    let step: { name: string; bytes: number; line: ReturnType<typeof progressReporter> } | undefined;
    const progress = (name: string, bytes: number) => {
      if (step?.name !== name) {
        step?.line.done();
        step = { name, bytes: 0, line: progressReporter(`airlock: restore objects: ${name === 'decrypt' ? 'decrypting' : 'writing'}`) };
      }
      step.line.update((step.bytes += bytes));
    };
    // a damaged bundle is repaired into a scratch copy beside the folder or the id map
    const beside = target.kind === 'bucket' ? target.idMap : target.to;
    const s = await interruptible(
      (signal) =>
        withRepairedBundle(bundle, beside, (b) => restoreObjects(b, identities, target, { until, signal, verified, progress, notes: note }), {
          signal,
          notes: note,
        }),
      interrupted,
    ).finally(() => step?.line.done());
    for (const k of s.skipped) note(`note: ${k}`);
    if (s.etagsChanged > 0)
      note(
        `note: ${s.etagsChanged} multipart version(s) came back with another ETag (the bundle does not know their part layout); the id map gives both (etag, newEtag)`,
      );
    if (flags.json) process.stdout.write(`${JSON.stringify(s)}\n`);
    else {
      process.stderr.write(
        `airlock: restored ${s.written} ${target.kind === 'bucket' ? 'version(s) and delete marker(s)' : 'object(s)'} of ${s.buckets} bucket(s) from seq ${s.seq}; map in ${s.map}\n`,
      );
      process.stdout.write(`${target.kind === 'bucket' ? s.map : path.resolve(flags.to as string)}\n`);
    }
  } finally {
    client?.close();
  }
}

/** Adds `restore objects` under the `restore` command. */
export function register(restore: Command): void {
  command(restore, 'restore objects', 'restore the buckets of a bundle into buckets of an S3 server, or into a folder').action((flags: Flags) =>
    restoreObjectsCommand(resolveOptions<RestoreObjectsFlags>('restore objects', flags)),
  );
}
