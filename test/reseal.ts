/*
 * Re-seals a bundle after changing what is inside its payload, as only the holder of the site's
 * signing key (an appliance taken over) could: the payload is decrypted with the recovery identity,
 * `change` edits the entries' bytes, and airlock's own writer seals the result again under the same
 * site, seq, prev, creation time and coverage claims, with the inner manifest, the index hashes,
 * SHA256SUMS and the signature all made anew. Every check of the bundle itself then passes; only
 * what the contents mean can give the change away.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseIdentities } from '../manifests/age/keys.js';
import { hasEntry, type IndexRecord, type UnplacedRecord } from '../manifests/records.js';
import type { Manifest } from '../manifests/manifest.js';
import { openPlaintext } from '../manifests/payload.js';
import { parsePrivateKey } from '../manifests/sshkey.js';
import { readTar } from '../manifests/tar.js';
import { writeBundle, type SourceItem } from '../agent/bundle/writer.js';
import type { Keys } from './helpers.js';

interface Entry {
  bytes: Buffer;
  mode: number;
  mtime: number;
  pax: Record<string, string>;
}

/** Entries to add at the end of the payload, and a change to the manifest's claims to go with them. */
export interface Additions {
  entries?: { name: string; bytes: Buffer; record: UnplacedRecord }[];
  manifest?: (m: Manifest) => void;
}

/**
 * Writes a re-sealed copy of `bundle` onto `medium`, after `change` edited the payload entries (tar
 * path -> bytes), with `add` appended. Returns the new bundle's path.
 */
export async function resealBundle(
  bundle: string,
  medium: string,
  keys: Keys,
  change: (entries: Map<string, Buffer>) => void,
  add: Additions = {},
): Promise<string> {
  const manifest = JSON.parse(readFileSync(path.join(bundle, 'manifest.json'), 'utf8')) as Manifest;
  const entries = new Map<string, Entry>();
  for await (const { entry, body } of readTar(openPlaintext(bundle, manifest.payload, parseIdentities(readFileSync(keys.identity, 'utf8'))))) {
    const parts: Buffer[] = [];
    for await (const c of body) parts.push(c);
    entries.set(entry.path, { bytes: Buffer.concat(parts), mode: entry.mode, mtime: entry.mtime, pax: entry.pax });
  }
  const bytes = new Map([...entries].map(([name, e]) => [name, e.bytes]));
  change(bytes);
  const records = (entries.get('index.jsonl')?.bytes.toString('utf8') ?? '')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as IndexRecord | { type: 'bundle' })
    .filter((r) => r.type !== 'bundle');
  const items: SourceItem[] = records.map((r): SourceItem => {
    if (!hasEntry(r)) return { kind: 'record', record: r };
    const { path: name, size: _size, sha256: _sha256, ...record } = r;
    const e = entries.get(name) as Entry;
    const body = bytes.get(name) as Buffer;
    return {
      kind: 'entry',
      name,
      size: body.length,
      mode: e.mode,
      mtime: e.mtime,
      pax: e.pax,
      open: async function* () {
        yield body;
      },
      record: record,
    };
  });
  for (const e of add.entries ?? [])
    items.push({
      kind: 'entry',
      name: e.name,
      size: e.bytes.length,
      mode: 0o600,
      mtime: Math.floor(Date.parse(manifest.created) / 1000),
      open: async function* () {
        yield e.bytes;
      },
      record: e.record,
    });
  add.manifest?.(manifest);
  async function* all() {
    yield* items;
  }
  const w = await writeBundle(
    {
      medium,
      site: manifest.site,
      seq: manifest.seq,
      prev: manifest.prev,
      recipients: manifest.recipients,
      signingKey: parsePrivateKey(readFileSync(keys.signingKey, 'utf8')),
      compression: manifest.payload.compression,
      volumeSize: manifest.payload.volumeSize,
      now: () => new Date(manifest.created),
      coverage: () => manifest.coverage,
    },
    all(),
  );
  return w.path;
}
