/*
 * airlock runbook: the site's whole recovery procedure, printed from the config, the catalog and the
 * bundles' cleartext manifests: which media to fetch, which keys to bring, and the commands in order
 * (airlock's, and where each bundle's RESTORE.txt gives the stock-tool way). Meant to be printed and
 * kept with the media; regenerate it after each base backup.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { parseCanonical } from '../../manifests/canonical.js';
import { AirlockError } from '../../manifests/errors.js';
import { MANIFEST_FILE, MANIFEST_LIMIT, RESTORE_FILE, assertManifest, type Manifest } from '../../manifests/manifest.js';
import { findBundles } from '../../verifier/verify.js';
import { Catalog, resolveStateDir } from '../catalog.js';
import { now } from '../clock.js';
import { loadSigningKey } from '../keys.js';
import { shellQuote } from '../../manifests/shell.js';
import { formatPublicKeyLine } from '../../manifests/sshkey.js';
import { VERSION } from '../../manifests/version.js';
import { command, resolveOptions, type Flags } from './options.js';

interface RunbookFlags {
  site: string;
  recipient?: string[];
  signingKey?: string;
  stateDir?: string;
  from?: string[];
}

/** The manifests of the site's bundles: on the given media, else where the catalog says they were written. */
async function manifests(site: string, from: readonly string[], catalogPaths: readonly string[]): Promise<Map<number, { m: Manifest; where: string }>> {
  const found = new Map<number, { m: Manifest; where: string }>();
  const dirs = from.length > 0 ? (await findBundles(from)).bundles : catalogPaths;
  for (const dir of dirs) {
    try {
      const v = parseCanonical(await readFile(path.join(dir, MANIFEST_FILE)), MANIFEST_FILE, MANIFEST_LIMIT);
      assertManifest(v);
      if (v.site === site && !found.has(v.seq)) found.set(v.seq, { m: v, where: dir });
    } catch {
      // not mounted, or not a bundle of this site: the runbook says what it could not read
    }
  }
  return found;
}

async function runbookCommand(flags: RunbookFlags): Promise<void> {
  const { site, signingKey: keyFile } = flags;
  const recipients = flags.recipient ?? [];
  const stateDir = resolveStateDir(flags.stateDir);
  const catalog = Catalog.open(stateDir);
  let rows;
  let copies: Map<number, string[]>;
  try {
    rows = catalog.doneBundles(site);
    copies = new Map(rows.map((r) => [r.seq, catalog.copies(site, r.seq).map((c) => `${catalog.medium(c.media_uuid)?.label ?? '?'} (${c.media_uuid})`)]));
  } finally {
    catalog.close();
  }
  const found = await manifests(
    site,
    flags.from ?? [],
    rows.map((r) => r.path),
  );
  const seqs = [...new Set([...rows.map((r) => r.seq), ...found.keys()])].sort((a, b) => a - b);
  if (seqs.length === 0)
    throw new AirlockError('no-bundle', `no bundle of ${site} in the catalog of ${stateDir}${flags.from ? ` or under ${flags.from.join(', ')}` : ''}`);
  const newest = seqs.at(-1) as number;
  const base = [...found.entries()]
    .filter(([, x]) => x.m.coverage?.postgres?.base)
    .map(([seq]) => seq)
    .at(-1);
  const needed = base === undefined ? [newest] : seqs.filter((q) => q >= base);
  const pg = base === undefined ? undefined : found.get(base)?.m.coverage?.postgres;
  const lastPoint = [...found.values()]
    .map((x) => x.m.coverage?.postgres?.restorePoint)
    .filter((p) => p !== undefined)
    .at(-1);
  const signerLine = keyFile
    ? `${site} ${formatPublicKeyLine((await loadSigningKey(keyFile)).publicKey, site)}`
    : `${site} ssh-ed25519 AAAA... (the line airlock keygen printed)`;

  const out: string[] = [];
  const line = (t = '') => out.push(t);
  line(`RECOVERY RUNBOOK, SITE ${site}`);
  line(`generated ${now().toISOString()} by airlock ${VERSION}; bundles ${seqs[0]} to ${newest} known`);
  line();
  line('1. Fetch these media (counted by UUID; any one copy of each bundle will do):');
  for (const q of needed) {
    const where = copies.get(q) ?? [];
    const m = found.get(q)?.m;
    const what = m?.coverage?.postgres?.base ? 'base backup + WAL' : m?.coverage?.postgres ? 'WAL' : 'files/buckets';
    line(
      `   seq ${q} (${what}${m ? `, ${m.created}` : ''}): ${where.length > 0 ? where.join(', ') : 'no verified copy recorded; find it by its folder name'} ${site}-${String(q).padStart(8, '0')}`,
    );
  }
  line();
  line('2. Bring the keys:');
  line("   - the allowed_signers file with this line (it proves the bundles are the appliance's):");
  line(`     ${signerLine}`);
  line('   - the age identity of one of these recipients (kept at the recovery site or in escrow):');
  for (const r of recipients) line(`     ${r}`);
  line();
  line('3. Verify the whole set first (no key needed); it must end with "status: ok" and list');
  line('   the window to restore to:');
  line('   airlock-verify --allowed-signers allowed_signers MEDIA...');
  line();
  line(`4. Configuration and secrets, from seq ${newest}:`);
  line('   airlock restore files --from MEDIA --identity key.txt --allowed-signers allowed_signers --to /srv/restored');
  line('   then copy each file from /srv/restored/<original path> into place, owners and modes as restored.');
  if (pg && base !== undefined) {
    line();
    line(`5. PostgreSQL ${pg.major}: the base backup of seq ${base} (ended ${pg.base?.stopTime}) and the WAL of seq ${needed.join(', ')}`);
    line(`   reach the restore point ${lastPoint ? `${lastPoint.name} (${lastPoint.time})` : 'of the newest bundle'}. Into an empty data folder:`);
    line('   airlock restore pg --from MEDIA --identity key.txt --allowed-signers allowed_signers \\');
    // each tablespace needs a new folder; its name and source folder only in prose, JSON-quoted
    for (const t of pg.base?.tablespaces ?? []) line(`     --tablespace-map ${t.oid}=/var/lib/postgresql/tablespaces/${t.oid} \\`);
    line(`     --pgdata /var/lib/postgresql/${pg.major}/main --target-name ${shellQuote(lastPoint?.name ?? 'NAME')} --port 5432 --start`);
    line("   (or --target-time '2026-03-01 12:00:00+00' for an earlier moment, or --latest)");
    for (const t of pg.base?.tablespaces ?? [])
      line(`   Tablespace ${t.oid} is ${JSON.stringify(t.name)}, on the source in ${JSON.stringify(t.location)}: any new or empty folder will do.`);
    line(`   Without airlock: ${RESTORE_FILE} of seq ${base}, steps 1 to 4 and 6a; then steps 1 to 4 and 6 of every`);
    line(`   later bundle's ${RESTORE_FILE} in order; then step 6c of seq ${base}'s.`);
    line('   The restored server has archive_mode = off and listens on localhost: re-enable archiving');
    line('   (and point it at a new spool) only once it is the production server again.');
  }
  line();
  line(`${pg ? '6' : '5'}. Buckets, every version, into empty buckets of the new S3 server:`);
  line('   airlock restore objects --from MEDIA --identity key.txt --allowed-signers allowed_signers \\');
  line('     --endpoint http://S3-HOST:PORT --bucket-map BUCKET=BUCKET');
  line();
  line(`${pg ? '7' : '6'}. Prove it: a drill on the same media, with its report kept:`);
  line('   airlock drill --from MEDIA --identity key.txt --allowed-signers allowed_signers --report drill');
  const missing = needed.filter((q) => !found.has(q));
  if (missing.length > 0) {
    line();
    line(`Note: the manifests of seq ${missing.join(', ')} could not be read here (medium not mounted); give --from MEDIA for exact facts.`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

export function register(program: Command): void {
  command(program, 'runbook', "print the site's full recovery procedure: media to fetch, keys to bring, commands in order").action((flags: Flags) =>
    runbookCommand(resolveOptions<RunbookFlags>('runbook', flags)),
  );
}
