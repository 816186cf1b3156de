/*
 * One export: decide the next seq from the catalog, record the intent, write the bundle, commit.
 *
 * Before deciding, unfinished intents of the site are reconciled against the medium (catalog.ts has
 * the state machine). When the catalog knows nothing of a site whose bundles are already on the
 * medium, the state was lost: writing seq 1 again would fork the chain, so the export refuses until
 * the operator names the bundle to continue from.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Coverage } from '../manifests/coverage.js';
import type { AllowedSigner } from '../manifests/allowed-signers.js';
import { AirlockError, fromSystemError } from '../manifests/errors.js';
import { PARTIAL_SUFFIX, SITE_RE, type Compression } from '../manifests/manifest.js';
import type { SigningKey } from '../manifests/sshkey.js';
import { verifyKeyless, type BundleReport } from '../verifier/verify.js';
import { bundlePath, preparePartial, writeBundle, type SourceItem, type WrittenBundle } from './bundle/writer.js';
import { Catalog } from './catalog.js';
import { faultPoint } from './faults.js';
import { removeTree } from './fsutil.js';
import { acquireLock } from './lock.js';

export interface ExportOptions {
  stateDir: string;
  medium: string;
  site: string;
  signingKey: SigningKey;
  recipients: readonly string[];
  compression: Compression;
  volumeSize: number;
  continueFrom?: string;
  /** forget unfinished exports whose medium is not mounted (the operator knows none finished) */
  abandonUnfinished?: boolean;
  now: () => Date;
  signal?: AbortSignal;
  progress?: (bytes: number) => void;
  /** par2 recovery data for this percentage of the volumes' blocks */
  recoveryPercent?: number;
  /** the manifest's coverage, asked for once every item was written */
  coverage?: () => Coverage | undefined;
  /** WAL files the bundle carries, recorded with the commit */
  walNames?: () => readonly string[];
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

/** Checks a bundle on a medium as this appliance's own: signed by our key for our site, intact. */
async function checkOwnBundle(dir: string, site: string, key: SigningKey, now: Date): Promise<BundleReport> {
  const self: AllowedSigner = { principals: [site], publicKey: key.publicKey, certAuthority: false, line: 0 };
  return verifyKeyless(dir, { allowedSigners: [self], now, tool: 'airlock' });
}

function describe(b: BundleReport): string {
  return b.findings.map((f) => `${f.result}${f.file ? ` ${f.file}` : ''}: ${f.message}`).join('; ');
}

/**
 * Settles intents left by a crashed export. The partial folder is created before the intent is
 * recorded, so an unfinished intent always left either its finished bundle or its partial folder on
 * its medium: the first is adopted (its seq is never reused), the second removed (the seq was never
 * published). Neither there means that medium is not mounted: throws `seq-conflict` rather than
 * guessing, unless `abandonUnchecked` says the operator knows it never held a finished bundle.
 */
async function reconcile(catalog: Catalog, site: string, key: SigningKey, now: Date, abandonUnchecked: boolean): Promise<void> {
  for (const row of catalog.unfinished(site)) {
    if (await exists(row.path)) {
      const b = await checkOwnBundle(row.path, site, key, now);
      if (b.findings.length > 0 || !b.sums || b.seq !== row.seq) {
        throw new AirlockError('seq-conflict', `${row.path} was being written when an export stopped and does not verify: ${describe(b)}`, {
          hint: 'move that folder away after checking it, then export again',
        });
      }
      catalog.importDone(site, row.seq, row.path, b.sums, b.size ?? 0, now);
    } else if (await exists(`${row.path}${PARTIAL_SUFFIX}`)) {
      await removeTree(`${row.path}${PARTIAL_SUFFIX}`);
      catalog.abandon(site, row.seq);
    } else if (abandonUnchecked) {
      catalog.abandon(site, row.seq);
    } else {
      throw new AirlockError('seq-conflict', `an export of ${site} seq ${row.seq} to ${row.path} did not finish and that medium is not here`, {
        hint: `mount the medium that holds ${path.dirname(row.path)} so the export can be reconciled; only if that medium is lost and never held a finished bundle ${row.seq}, add --abandon-unfinished`,
      });
    }
  }
}

/** The finished bundle folders of `site` on a medium, by seq, newest last. */
async function bundlesOnMedium(medium: string, site: string): Promise<{ seq: number; path: string }[]> {
  const dir = path.join(medium, site);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const prefix = `${site}-`;
  return names
    .filter((n) => n.startsWith(prefix) && /^\d{8,}$/.test(n.slice(prefix.length)))
    .map((n) => ({ seq: Number(n.slice(prefix.length)), path: path.join(dir, n) }))
    .sort((a, b) => a.seq - b.seq);
}

/**
 * Writes the next bundle of `opts.site` with `items`. Throws `usage` for a bad site, `not-found` for a
 * missing medium, `locked` when another export runs, `state-lost` when the catalog has no history
 * for a site that the medium has bundles of, `seq-conflict` for contradictions, and whatever the
 * writer and the sources throw (the catalog then forgets the intent).
 */
export async function runExport(opts: ExportOptions, items: (seq: number) => AsyncIterable<SourceItem>): Promise<WrittenBundle> {
  if (!SITE_RE.test(opts.site)) {
    throw new AirlockError('usage', `site id ${JSON.stringify(opts.site)} is not valid`, {
      hint: 'use lowercase letters, digits, ".", "_" and "-", at most 63',
    });
  }
  try {
    if (!(await stat(opts.medium)).isDirectory()) throw new AirlockError('usage', `${opts.medium}: not a folder`);
  } catch (e) {
    if (e instanceof AirlockError) throw e;
    throw new AirlockError('not-found', `medium ${opts.medium} is not there`, {
      hint: 'mount the medium and give its mount point with --to',
      cause: fromSystemError(e, opts.medium),
    });
  }
  const medium = path.resolve(opts.medium);
  const catalog = Catalog.open(opts.stateDir);
  let release: (() => void) | undefined;
  try {
    release = acquireLock(opts.stateDir, 'export');
    await reconcile(catalog, opts.site, opts.signingKey, opts.now(), opts.abandonUnfinished === true);
    let last = catalog.lastDone(opts.site);
    const onMedium = await bundlesOnMedium(medium, opts.site);
    const newestOnMedium = onMedium.at(-1);

    if (opts.continueFrom !== undefined) {
      const from = path.resolve(opts.continueFrom);
      const b = await checkOwnBundle(from, opts.site, opts.signingKey, opts.now());
      if (b.findings.length > 0 || !b.sums || b.seq === undefined) {
        throw new AirlockError(
          'verification-failed',
          `--continue-from ${opts.continueFrom} does not verify as a bundle of ${opts.site} signed by this key: ${describe(b)}`,
        );
      }
      if (newestOnMedium && newestOnMedium.seq > b.seq) {
        throw new AirlockError('seq-conflict', `${medium} already holds seq ${newestOnMedium.seq}, newer than the bundle to continue from`, {
          hint: `continue from the newest bundle: --continue-from ${newestOnMedium.path}`,
        });
      }
      if (last && (last.seq !== b.seq || last.sums_sha256 !== b.sums)) {
        throw new AirlockError('seq-conflict', `the catalog already continues from seq ${last.seq}, not from seq ${b.seq}`, {
          hint: 'drop --continue-from; it is only for a lost state folder',
        });
      }
      if (!last) catalog.importDone(opts.site, b.seq, from, b.sums, b.size ?? 0, opts.now());
      last = catalog.lastDone(opts.site);
    } else if (newestOnMedium && newestOnMedium.seq > (last?.seq ?? 0)) {
      // the medium is ahead of the catalog: a lost or restored-from-backup state folder
      throw new AirlockError(
        'state-lost',
        last
          ? `the catalog ends at seq ${last.seq} of ${opts.site} but ${medium} holds seq ${newestOnMedium.seq}`
          : `the catalog has no bundle of ${opts.site} but ${medium} holds ${onMedium.length}`,
        {
          hint: `if the state folder was lost or restored from an old copy, continue the chain with --continue-from ${newestOnMedium.path} (the newest bundle of the site, wherever it is)`,
        },
      );
    }

    const seq = last ? last.seq + 1 : 1;
    const prev = last?.sums_sha256 ?? undefined;
    const target = bundlePath(medium, opts.site, seq);
    // the partial folder first: an intent without it on its medium is then never ambiguous
    await preparePartial(medium, opts.site, seq);
    catalog.intend(opts.site, seq, target, opts.now());
    faultPoint('export:after-intent');
    let written: WrittenBundle;
    try {
      written = await writeBundle(
        {
          medium,
          site: opts.site,
          seq,
          prev,
          recipients: opts.recipients,
          signingKey: opts.signingKey,
          compression: opts.compression,
          volumeSize: opts.volumeSize,
          now: opts.now,
          prepared: true,
          ...(opts.signal ? { signal: opts.signal } : {}),
          ...(opts.progress ? { progress: opts.progress } : {}),
          ...(opts.recoveryPercent ? { recoveryPercent: opts.recoveryPercent } : {}),
          ...(opts.coverage ? { coverage: opts.coverage } : {}),
        },
        items(seq),
      );
    } catch (e) {
      // renamed but not synced to the end: leave the intent for the next start to adopt the bundle
      if (!(await exists(target))) catalog.abandon(opts.site, seq);
      throw e;
    }
    faultPoint('export:before-commit');
    catalog.commit(opts.site, seq, written.sumsSha256, written.manifest.payload.size, opts.now(), opts.walNames?.() ?? []);
    return written;
  } finally {
    release?.();
    catalog.close();
  }
}
