/*
 * Rewrites a bundle's manifest.json and signs it again with the site's key, as only the holder of
 * the signing key could: SHA256SUMS gets the new hash and a new signature, so every keyless check of
 * the bundle itself passes and only what the manifest now claims (continuity, coverage) can catch it.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { canonicalJson } from '../manifests/canonical.js';
import { sha256Hex } from '../manifests/hash.js';
import type { Manifest } from '../manifests/manifest.js';
import { parsePrivateKey } from '../manifests/sshkey.js';
import { BUNDLE_NAMESPACE, sign } from '../manifests/sshsig.js';
import { SUMS, SUMS_SIG, formatSums, parseSums } from '../manifests/sums.js';

export function resignManifest(bundle: string, signingKeyFile: string, mutate: (m: Manifest) => void): Manifest {
  const file = path.join(bundle, 'manifest.json');
  const manifest = JSON.parse(readFileSync(file, 'utf8')) as Manifest;
  mutate(manifest);
  const text = canonicalJson(manifest);
  writeFileSync(file, text);
  const lines = parseSums(readFileSync(path.join(bundle, SUMS))).map((l) => (l.name === 'manifest.json' ? { ...l, sha256: sha256Hex(text) } : l));
  const sums = formatSums(lines);
  writeFileSync(path.join(bundle, SUMS), sums);
  writeFileSync(path.join(bundle, SUMS_SIG), sign(parsePrivateKey(readFileSync(signingKeyFile, 'utf8')), Buffer.from(sums), BUNDLE_NAMESPACE));
  return manifest;
}
