/*
 * Verification of bundles on a medium: the auditor's checks, without the key and with it.
 *
 * Keyless, per bundle: the signature over SHA256SUMS (by a key allowed for the manifest's site),
 * every listed file present with its sha256, nothing unlisted, manifest.json well-formed and in
 * agreement with SHA256SUMS and with the volumes on disk, the age header's recipient count. Then,
 * across bundles: the chain (gaps, forks; rollback and withheld bundles against remembered state)
 * and leftover partial folders. With an identity: decrypt every bundle that passed keyless (writing
 * nothing to disk) and check every entry against the inner manifest and the manifest's claims.
 *
 * Nothing stops at the first problem: every finding gets a closed result and the run goes on, so the
 * report lists all of them (the first 100 of each result per bundle by name, the rest counted); only
 * a payload is read no further than its signed sizes allow. Only usage errors (no allowed signers,
 * unreadable paths) throw.
 */
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseHeader } from '../manifests/age/header.js';
import { isAllowed, type AllowedSigner } from '../manifests/allowed-signers.js';
import { parseCanonical } from '../manifests/canonical.js';
import type { RecoveryWindow } from '../manifests/coverage.js';
import { checkChain, type ChainLink, type SiteState } from '../manifests/chain.js';
import { BoundedFindings, moreMessage } from '../manifests/bounded.js';
import { AirlockError, fromSystemError, isAirlockError } from '../manifests/errors.js';
import { digestFile, readPrefix, readSmall, sha256Hex } from '../manifests/hash.js';
import { checkInner } from '../manifests/inner-check.js';
import { LIMITS } from '../manifests/limits.js';
import { MANIFEST_FILE, MANIFEST_LIMIT, PARTIAL_SUFFIX, RESTORE_FILE, assertManifest, bundleName, type Manifest } from '../manifests/manifest.js';
import { openPlaintext } from '../manifests/payload.js';
import { fingerprint } from '../manifests/sshkey.js';
import { BUNDLE_NAMESPACE, SIG_LIMIT, verify as verifySignature } from '../manifests/sshsig.js';
import { SUMS, SUMS_LIMIT, SUMS_SIG, parseSums } from '../manifests/sums.js';
import { readTar } from '../manifests/tar.js';
import { checkContinuity } from './continuity.js';
import { isRecoveryFile } from '../manifests/recovery.js';
import type { Result } from '../manifests/results.js';

export interface Finding {
  result: Exclude<Result, 'ok'>;
  /** the bundle folder (or the path searched, when no bundle is involved) */
  bundle: string;
  /** a file of the bundle, or an entry inside its payload */
  file?: string;
  site?: string;
  seq?: number;
  message: string;
  /** on a summary: how many more findings of this result (in this bundle, or in the set) were counted, not named */
  more?: number;
}

export interface BundleReport {
  path: string;
  site?: string;
  seq?: number;
  created?: string;
  signer?: string;
  size?: number;
  /** sha256 of SHA256SUMS, the bundle's identity */
  sums?: string;
  keyless: 'ok' | 'failed';
  deep: 'ok' | 'failed' | 'skipped' | 'not-run';
  findings: Finding[];
  manifest?: Manifest;
}

export interface Report {
  tool: string;
  checkedAt: string;
  deep: boolean;
  paths: string[];
  bundles: BundleReport[];
  /** findings that concern no single bundle's files: chain, partial folders, empty paths */
  findings: Finding[];
  sites: { site: string; first: number; newest: SiteState; bundles: number; windows?: RecoveryWindow[] }[];
  ok: boolean;
}

export interface VerifyOptions {
  allowedSigners: readonly AllowedSigner[];
  identities?: readonly Uint8Array[];
  state?: ReadonlyMap<string, SiteState>;
  now: Date;
  tool: string;
  signal?: AbortSignal;
  /** called after each bundle, for progress output */
  onBundle?: (b: BundleReport, index: number, total: number) => void;
  /**
   * `size`: check the volumes' sizes only, not their bytes, for a restore that hashes every volume
   * against SHA256SUMS as it decrypts it (and promotes nothing before the last one matched), so the
   * set is not read twice. Everything else (signature, lists, manifest, chain, continuity) is checked.
   */
  volumes?: 'hash' | 'size';
}

/** Finds bundle folders and leftover partial folders under each path. Throws `not-found` for a missing path. */
export async function findBundles(paths: readonly string[]): Promise<{ bundles: string[]; partials: string[]; empty: string[] }> {
  const bundles = new Set<string>();
  const partials = new Set<string>();
  const empty: string[] = [];
  async function walk(dir: string, depth: number): Promise<void> {
    if (depth > 8) return;
    const entries = await readdir(dir, { withFileTypes: true });
    if (entries.some((e) => e.name === SUMS || e.name === MANIFEST_FILE || e.name === SUMS_SIG)) {
      if (dir.endsWith(PARTIAL_SUFFIX)) partials.add(dir);
      else bundles.add(dir);
      return;
    }
    if (path.basename(dir).endsWith(PARTIAL_SUFFIX)) {
      partials.add(dir);
      return;
    }
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (e.isDirectory()) await walk(path.join(dir, e.name), depth + 1);
    }
  }
  for (const p of paths) {
    const abs = path.resolve(p);
    let s;
    try {
      s = await stat(abs);
    } catch (e) {
      throw fromSystemError(e, p);
    }
    if (!s.isDirectory()) throw new AirlockError('usage', `${p}: not a folder`, { hint: 'give a bundle folder or a folder that holds bundles' });
    const before = bundles.size + partials.size;
    await walk(abs, 0);
    if (bundles.size + partials.size === before) empty.push(abs);
  }
  return { bundles: [...bundles].sort(), partials: [...partials].sort(), empty };
}

/** The files a v1 bundle may list besides its volumes. */
const CLEARTEXT = [MANIFEST_FILE, RESTORE_FILE];

/**
 * The keyless checks of one bundle folder, in the order trust is built (SPEC.md 4.3): the signature
 * over SHA256SUMS, then each file against SHA256SUMS, and only then the manifest's content.
 * Never throws for what it finds; findings go into the report.
 */
export async function verifyKeyless(dir: string, opts: VerifyOptions): Promise<BundleReport> {
  const report: BundleReport = { path: dir, keyless: 'ok', deep: 'not-run', findings: [] };
  const found = new BoundedFindings<Finding>(report.findings);
  const add = (result: Finding['result'], message: string, file?: string) => {
    found.add({ result, bundle: dir, message, ...(file !== undefined ? { file } : {}) });
  };
  const done = () => {
    found.finish((result, more) => ({ result, bundle: dir, message: moreMessage(result, more), more }));
    if (report.findings.length > 0) report.keyless = 'failed';
    for (const f of report.findings) if (report.site !== undefined && report.seq !== undefined) Object.assign(f, { site: report.site, seq: report.seq });
    return report;
  };

  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    add('missing', `cannot read the bundle folder: ${(e as Error).message}`);
    return done();
  }
  // only regular files are ever opened: a FIFO would block, a link would lead elsewhere
  const files = new Set(entries.filter((e) => e.isFile()).map((e) => e.name));
  for (const e of entries) {
    if (!e.isFile()) add('extra', `${e.isDirectory() ? 'a folder' : e.isSymbolicLink() ? 'a symbolic link' : 'a special file'} inside a bundle`, e.name);
  }

  // 1. the signed list
  if (!files.has(SUMS)) {
    add('missing', `no ${SUMS}: nothing in this folder can be checked`, SUMS);
    return done();
  }
  let sumsBytes: Buffer;
  let sums;
  try {
    sumsBytes = await readSmall(path.join(dir, SUMS), SUMS_LIMIT);
    sums = parseSums(sumsBytes);
  } catch (e) {
    add('malformed', (e as Error).message, SUMS);
    return done();
  }
  report.sums = sha256Hex(sumsBytes);

  // 2. the signature over it
  let signerKey: Uint8Array | undefined;
  if (!files.has(SUMS_SIG)) add('missing', 'no signature', SUMS_SIG);
  else {
    try {
      const sig = (await readSmall(path.join(dir, SUMS_SIG), SIG_LIMIT)).toString('utf8');
      signerKey = verifySignature(sig, sumsBytes, BUNDLE_NAMESPACE).publicKey;
      report.signer = fingerprint(signerKey);
    } catch (e) {
      add('bad-signature', (e as Error).message, SUMS_SIG);
    }
  }

  // 3. nothing unlisted, nothing missing
  const listed = new Map(sums.map((l) => [l.name, l.sha256]));
  for (const e of entries) {
    if (e.isFile() && e.name !== SUMS && e.name !== SUMS_SIG && !listed.has(e.name)) add('extra', `not listed in ${SUMS}`, e.name);
  }
  for (const name of listed.keys()) if (!files.has(name) && entries.every((e) => e.name !== name)) add('missing', `listed in ${SUMS} but absent`, name);
  for (const required of CLEARTEXT) if (!listed.has(required)) add('missing', `not listed in ${SUMS}`, required);

  // 4. the manifest: read only under a good signature, trusted only once its hash matches
  let manifest: Manifest | undefined;
  if (signerKey && listed.has(MANIFEST_FILE) && files.has(MANIFEST_FILE)) {
    try {
      const bytes = await readSmall(path.join(dir, MANIFEST_FILE), MANIFEST_LIMIT);
      if (sha256Hex(bytes) !== listed.get(MANIFEST_FILE)) add('checksum-mismatch', `sha256 differs from ${SUMS}`, MANIFEST_FILE);
      else {
        const v = parseCanonical(bytes, MANIFEST_FILE, MANIFEST_LIMIT);
        assertManifest(v);
        manifest = v;
      }
    } catch (e) {
      add('malformed', (e as Error).message, MANIFEST_FILE);
    }
  }
  if (manifest && signerKey) {
    report.manifest = manifest;
    report.site = manifest.site;
    report.seq = manifest.seq;
    report.created = manifest.created;
    report.size = manifest.payload.size;
    if (path.basename(dir) !== bundleName(manifest.site, manifest.seq)) add('malformed', `folder name is not ${bundleName(manifest.site, manifest.seq)}`);
    if (fingerprint(signerKey) !== manifest.signer)
      add('wrong-signer', `signed by ${fingerprint(signerKey)} but the manifest names ${manifest.signer}`, SUMS_SIG);
    else if (!isAllowed([...opts.allowedSigners], manifest.site, signerKey, BUNDLE_NAMESPACE, opts.now)) {
      add('wrong-signer', `${fingerprint(signerKey)} is not allowed to sign for site ${manifest.site}`, SUMS_SIG);
    }
    const volumeNames = new Set(manifest.payload.volumes.map((v) => v.name));
    for (const n of listed.keys()) {
      if (!volumeNames.has(n) && !CLEARTEXT.includes(n) && !isRecoveryFile(n)) add('extra', `listed in ${SUMS} but not part of a version 1 bundle`, n);
    }
    for (const v of manifest.payload.volumes) {
      if (!listed.has(v.name)) add('missing', `a volume of the manifest is not listed in ${SUMS}`, v.name);
      else if (listed.get(v.name) !== v.sha256) add('malformed', `sha256 in ${MANIFEST_FILE} differs from ${SUMS}`, v.name);
    }
  }

  // 5. every listed file's bytes; the volumes in order, also hashed as one age file
  const volumes = manifest?.payload.volumes ?? [];
  const isVolume = new Set(volumes.map((v) => v.name));
  // files without a signed size are read only up to their limit (a sparse file costs no disk space)
  const recoveryMax = 2 * (manifest?.payload.size ?? 0) + LIMITS.recoveryFileSlackBytes;
  for (const [name, sha256] of listed) {
    if (name === MANIFEST_FILE || !files.has(name) || isVolume.has(name)) continue;
    opts.signal?.throwIfAborted();
    try {
      const d = await digestFile(path.join(dir, name), [], { max: isRecoveryFile(name) ? recoveryMax : LIMITS.restoreTextBytes });
      if (d.sha256 !== sha256) add('checksum-mismatch', `sha256 differs from ${SUMS}`, name);
    } catch (e) {
      if (isAirlockError(e, 'size-mismatch')) add('size-mismatch', e.message.replace(`${name}: `, ''), name);
      else add('missing', `cannot be read: ${(e as Error).message}`, name);
    }
  }
  if (manifest) {
    const whole = createHash('sha256');
    let intact = true;
    // the medium is damaged either way; the note only says a restore may still succeed
    const repairNote = [...listed.keys()].some(isRecoveryFile) ? ' (the bundle carries recovery data that may repair it)' : '';
    for (const vol of volumes) {
      opts.signal?.throwIfAborted();
      if (!files.has(vol.name)) {
        intact = false;
        continue;
      }
      try {
        // the size first: a volume replaced by a sparse terabyte is found without reading a byte of it
        const size = (await lstat(path.join(dir, vol.name))).size;
        if (size !== vol.size) {
          add('size-mismatch', `${size} bytes, the manifest says ${vol.size}`, vol.name);
          intact = false;
          continue;
        }
        const d = opts.volumes === 'size' ? { size, sha256: listed.get(vol.name) } : await digestFile(path.join(dir, vol.name), [whole], { size: vol.size });
        if (d.sha256 !== listed.get(vol.name)) add('checksum-mismatch', `sha256 differs from ${SUMS}${repairNote}`, vol.name);
        else continue;
      } catch (e) {
        if (isAirlockError(e, 'size-mismatch')) add('size-mismatch', e.message.replace(`${vol.name}: `, ''), vol.name);
        else add('missing', `cannot be read: ${(e as Error).message}`, vol.name);
      }
      intact = false;
    }
    if (intact && opts.volumes !== 'size' && whole.digest('hex') !== manifest.payload.sha256)
      add('malformed', `payload.sha256 in ${MANIFEST_FILE} is not the hash of the volumes`);
    const first = volumes[0];
    if (intact && first) {
      try {
        const h = parseHeader(await readPrefix(path.join(dir, first.name), 64 * 1024));
        if (!h) add('malformed', 'the age header does not end within the first 64 KiB', first.name);
        else {
          const x25519 = h.stanzas.filter((st) => st.type === 'X25519').length;
          if (x25519 !== manifest.recipients.length)
            add('malformed', `the age header has ${x25519} X25519 recipients, the manifest lists ${manifest.recipients.length}`, first.name);
        }
      } catch (e) {
        add('malformed', `not an age file: ${(e as Error).message}`, first.name);
      }
    }
  }
  return done();
}

/** Decrypts a bundle that passed keyless checks and checks its payload; adds findings to `report`. */
export async function verifyDeep(report: BundleReport, identities: readonly Uint8Array[], signal?: AbortSignal, checkWhole = false): Promise<void> {
  const manifest = report.manifest;
  if (!manifest || report.keyless !== 'ok') {
    report.deep = 'skipped';
    return;
  }
  const base = { bundle: report.path, site: manifest.site, seq: manifest.seq };
  try {
    const plain = openPlaintext(report.path, manifest.payload, identities, signal, undefined, checkWhole);
    const problems = await checkInner(readTar(plain), manifest);
    for (const p of problems)
      report.findings.push({
        ...base,
        result: p.result,
        ...(p.file !== '' ? { file: p.file } : {}),
        message: p.message,
        ...(p.more !== undefined ? { more: p.more } : {}),
      });
  } catch (e) {
    const code = e instanceof AirlockError ? e.code : undefined;
    const result: Finding['result'] =
      code === 'decrypt-failed'
        ? 'decrypt-failed'
        : code === 'checksum-mismatch'
          ? 'checksum-mismatch'
          : code === 'size-mismatch'
            ? 'size-mismatch'
            : code === 'not-found'
              ? 'missing'
              : 'malformed';
    report.findings.push({ ...base, result, message: `payload: ${(e as Error).message}` });
  }
  report.deep = report.findings.length > 0 ? 'failed' : 'ok';
}

/**
 * The keyless and the deep check of one bundle, reading each volume once: the keyless pass checks the
 * volumes' sizes only, and the deep pass hashes every volume (and the payload as a whole) as it
 * decrypts it. Only when the deep pass fails is the keyless pass run in full, so the report says what
 * a keyless check finds (a damaged volume, and the deep check skipped) exactly as if it had run first.
 */
async function verifyBoth(dir: string, opts: VerifyOptions, identities: readonly Uint8Array[]): Promise<BundleReport> {
  if (opts.volumes !== 'size') {
    const quick = await verifyKeyless(dir, { ...opts, volumes: 'size' });
    if (quick.keyless !== 'ok') return withDeep(await verifyKeyless(dir, opts), identities, opts.signal);
    await verifyDeep(quick, identities, opts.signal, true);
    if (quick.deep === 'ok') return quick;
    const full = await verifyKeyless(dir, opts);
    if (full.keyless !== 'ok') {
      full.deep = 'skipped';
      return full;
    }
    return quick;
  }
  return withDeep(await verifyKeyless(dir, opts), identities, opts.signal);
}

async function withDeep(report: BundleReport, identities: readonly Uint8Array[], signal?: AbortSignal): Promise<BundleReport> {
  await verifyDeep(report, identities, signal);
  return report;
}

/** Verifies every bundle under `paths` and the chains they form. Throws only for unusable paths. */
export async function verifyPaths(paths: readonly string[], opts: VerifyOptions): Promise<Report> {
  const found = await findBundles(paths);
  const findings: Finding[] = [];
  // findings of the set are bounded like a bundle's: a medium may hold any number of partial folders
  const setFindings = new BoundedFindings<Finding>(findings);
  for (const p of found.partials)
    setFindings.add({ result: 'partial', bundle: p, message: 'leftover partial bundle: an export was interrupted; it is not part of any set' });
  for (const p of found.empty) setFindings.add({ result: 'missing', bundle: p, message: 'no bundle found here' });

  const bundles: BundleReport[] = [];
  for (const [i, dir] of found.bundles.entries()) {
    const b = opts.identities && opts.identities.length > 0 ? await verifyBoth(dir, opts, opts.identities) : await verifyKeyless(dir, opts);
    bundles.push(b);
    opts.onBundle?.(b, i, found.bundles.length);
  }

  const links: ChainLink[] = [];
  for (const b of bundles) {
    const m = b.manifest;
    if (m && b.sums && b.signer && !b.findings.some((f) => f.result === 'bad-signature' || f.result === 'wrong-signer')) {
      links.push({ site: m.site, seq: m.seq, prev: m.prev, sums: b.sums, location: b.path });
    }
  }
  const chain = checkChain(links, opts.state);
  for (const p of chain.problems) {
    setFindings.add({ result: p.kind, bundle: p.locations[0] ?? p.site, site: p.site, seq: p.seq, message: p.message });
  }
  const windows = new Map<string, RecoveryWindow[]>();
  for (const s of chain.sites) {
    const c = checkContinuity(
      s.site,
      bundles.filter((b) => b.site === s.site),
    );
    for (const f of c.findings) setFindings.add(f);
    windows.set(s.site, c.windows);
  }
  setFindings.finish((result, more) => ({ result, bundle: paths.map((p) => path.resolve(p)).join(', '), message: moreMessage(result, more), more }));
  const ok = findings.length === 0 && bundles.every((b) => b.findings.length === 0);
  return {
    tool: opts.tool,
    checkedAt: opts.now.toISOString(),
    deep: (opts.identities?.length ?? 0) > 0,
    paths: paths.map((p) => path.resolve(p)),
    bundles,
    findings,
    sites: chain.sites.map((s) => {
      const w = windows.get(s.site) ?? [];
      return { site: s.site, first: s.first, newest: s.newest, bundles: s.bundles.length, ...(w.length > 0 ? { windows: w } : {}) };
    }),
    ok,
  };
}

/** Every finding of a report: per bundle first, then the cross-bundle ones. */
export function allFindings(r: Report): Finding[] {
  return [...r.bundles.flatMap((b) => b.findings), ...r.findings];
}

/** How many findings `findings` stand for: one for each named one, `more` for each summary. */
export function countFindings(findings: readonly Finding[]): number {
  return findings.reduce((n, f) => n + (f.more ?? 1), 0);
}

/** Reads an allowed_signers file; the verifier refuses to run without one. */
export async function readAllowedSigners(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw fromSystemError(e, file);
  }
}
