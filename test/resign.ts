/*
 * Test helper: rewrites a real bundle's manifest.json and seals it again as the site's appliance
 * would (SHA256SUMS recomputed, signed with the site's key), so a test can give bundles made by the
 * CLI claims the CLI cannot make yet (PostgreSQL coverage, chosen times). Whatever the callback
 * writes is checked by the verifier like any manifest; this helper checks nothing.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { canonicalJson } from '../manifests/canonical.js';
import type { Manifest } from '../manifests/manifest.js';
import { parsePrivateKey } from '../manifests/sshkey.js';
import { BUNDLE_NAMESPACE, sign } from '../manifests/sshsig.js';
import { SUMS, SUMS_SIG, formatSums, parseSums } from '../manifests/sums.js';

const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

/**
 * Applies `mutate` to the bundle's manifest, rewrites manifest.json canonically, recomputes its line
 * of SHA256SUMS and re-signs SHA256SUMS with the OpenSSH key in `signingKeyFile`. Returns the sha256
 * of the new SHA256SUMS: the `prev` the next bundle of the chain must carry.
 */
export function resign(bundle: string, signingKeyFile: string, mutate: (m: Manifest) => void): string {
  const file = path.join(bundle, 'manifest.json');
  const manifest = JSON.parse(readFileSync(file, 'utf8')) as Manifest;
  mutate(manifest);
  const text = canonicalJson(manifest);
  writeFileSync(file, text);
  const lines = parseSums(readFileSync(path.join(bundle, SUMS))).map((l) => (l.name === 'manifest.json' ? { ...l, sha256: sha256(text) } : l));
  const sums = formatSums(lines);
  writeFileSync(path.join(bundle, SUMS), sums);
  const key = parsePrivateKey(readFileSync(signingKeyFile, 'utf8'));
  writeFileSync(path.join(bundle, SUMS_SIG), sign(key, Buffer.from(sums), BUNDLE_NAMESPACE));
  return sha256(sums);
}

/**
 * Re-signs the bundles of one chain in order, each after `mutate(manifest, index)`, keeping every
 * `prev` pointing at the re-signed predecessor (the first bundle's `prev` is left as it is).
 */
export function resignChain(bundles: readonly string[], signingKeyFile: string, mutate: (m: Manifest, index: number) => void): void {
  let prev: string | undefined;
  bundles.forEach((b, i) => {
    prev = resign(b, signingKeyFile, (m) => {
      if (prev !== undefined) m.prev = prev;
      mutate(m, i);
    });
  });
}
