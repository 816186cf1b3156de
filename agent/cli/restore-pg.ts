/*
 * airlock restore pg: verify the whole media set, then restore PostgreSQL to a point in time (a base
 * backup plus WAL, recovered by the server through wal-fetch), or a logical dump through pg_restore.
 */
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { parseIdentities } from '../../manifests/age/keys.js';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import type { BundleReport } from '../../verifier/verify.js';
import { parseTablespaceMaps } from '../restore/tablespaces.js';
import { parseTargetTime, preparePgRestore, restoreDump, startAndRecover, stopRestored, type Target } from '../restore/pg.js';
import { versionBin } from '../postgres/programs.js';
import { pickVerifiedBundle } from '../restore/pick.js';
import { refuseUnsafeTarget } from '../restore/staging.js';
import { assertNoPassword } from '../sources/postgres/server.js';
import { interruptible, note, progressReporter } from './common.js';
import { command, resolveOptions, type Flags } from './options.js';

interface RestorePgFlags {
  from: string[];
  identity: string;
  allowedSigners: string;
  pgdata?: string;
  targetTime?: string;
  targetLsn?: string;
  targetName?: string;
  latest?: boolean;
  orLatest?: boolean;
  port: number;
  start?: boolean;
  stop?: boolean;
  pgUser: string;
  pgBin?: string;
  timeout: number;
  airlockCli?: string;
  dump?: boolean;
  dbname?: string;
  database?: string;
  site?: string;
  seq?: number;
  staging?: string;
  tablespaceMap?: string[];
  jobs?: number;
  json?: boolean;
}

function targetOf(flags: RestorePgFlags): Target {
  const given = [flags.targetTime, flags.targetLsn, flags.targetName, flags.latest ? 'latest' : undefined].filter((x) => x !== undefined);
  if (given.length !== 1)
    throw new AirlockError('usage', 'give exactly one of --target-time, --target-lsn, --target-name, --latest', {
      hint: '--latest replays every WAL segment of the set',
    });
  if (flags.targetTime !== undefined) return parseTargetTime(flags.targetTime);
  if (flags.targetLsn !== undefined) {
    if (!/^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/.test(flags.targetLsn))
      throw new AirlockError('usage', `--target-lsn ${flags.targetLsn}: not a WAL location like 0/3000028`);
    return { kind: 'lsn', lsn: flags.targetLsn.toUpperCase() };
  }
  if (flags.targetName !== undefined) {
    if (!/^[ -~]{1,63}$/.test(flags.targetName) || flags.targetName.includes("'")) throw new AirlockError('usage', `--target-name: not a restore point name`);
    return { kind: 'name', name: flags.targetName };
  }
  return { kind: 'latest' };
}

async function restorePgCommand(flags: RestorePgFlags): Promise<void> {
  const identities = parseIdentities(
    await readFile(flags.identity, 'utf8').catch((e: unknown) => {
      throw fromSystemError(e, flags.identity);
    }),
  );
  const verified: BundleReport[] = [];
  const say = (line: string): void => {
    if (!flags.json) note(line);
  };

  if (flags.dump) {
    if (flags.dbname === undefined || flags.database === undefined)
      throw new AirlockError('usage', '--dump needs --dbname CONNINFO (where to restore) and --database NAME (which dump)', {
        hint: 'create the empty database first, e.g. createdb restored',
      });
    assertNoPassword(flags.dbname);
    if (flags.tablespaceMap !== undefined)
      throw new AirlockError('usage', '--tablespace-map is for a base backup restore, not --dump', {
        hint: 'a logical dump restores into the tablespaces of the target server',
      });
    const { seq, jobs } = flags;
    await pickVerifiedBundle(flags.from, flags.allowedSigners, flags.site, seq, verified);
    const withDumps = verified
      .filter((b) => (b.manifest?.coverage?.postgres?.dumps ?? 0) > 0 && (seq === undefined || b.seq === seq))
      .sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
    const bundle = withDumps.at(-1);
    if (!bundle) throw new AirlockError('no-bundle', `no bundle under ${flags.from.join(', ')} holds logical dumps`, { hint: 'export with --pg-dump' });
    say(`restoring the dump of ${flags.database} from seq ${bundle.seq}`);
    const bin = flags.pgBin ?? versionBin(bundle.manifest?.coverage?.postgres?.major ?? 0);
    const r = await interruptible((signal) =>
      restoreDump(bundle, identities, flags.database as string, flags.dbname as string, bin, path.resolve(flags.staging ?? tmpdir()), {
        signal,
        jobs,
        notes: note,
      }),
    );
    if (flags.json) process.stdout.write(`${JSON.stringify({ seq: bundle.seq, database: flags.database, parts: r.parts })}\n`);
    else say(`restored ${flags.database} from seq ${bundle.seq}`);
    return;
  }

  if (flags.pgdata === undefined) throw new AirlockError('usage', 'give --pgdata DIR (a new or empty data folder)');
  if (flags.jobs !== undefined) throw new AirlockError('usage', '--jobs is for --dump', { hint: 'recovery of a base backup replays WAL in one process' });
  await refuseUnsafeTarget(flags.pgdata);
  await refuseUnsafeTarget(`${path.resolve(flags.pgdata)}.wal`);
  const tablespaceMap = parseTablespaceMaps(flags.tablespaceMap ?? []);
  for (const m of tablespaceMap) await refuseUnsafeTarget(m.dir);
  const target = targetOf(flags);
  const { port, timeout } = flags;
  // every volume used is hashed against SHA256SUMS as it is decrypted, before anything is promoted
  await pickVerifiedBundle(flags.from, flags.allowedSigners, flags.site, undefined, verified, { volumes: 'size' });
  say(`${verified.length} bundle(s) verified (signatures, lists, chain, WAL continuity; volume bytes as they are read); preparing ${flags.pgdata}`);
  const cli = flags.airlockCli ?? process.argv[1] ?? '';
  let progress: ReturnType<typeof progressReporter> | undefined;
  const r = await interruptible((signal) =>
    preparePgRestore({
      verified,
      identities,
      pgdata: flags.pgdata as string,
      target,
      orLatest: flags.orLatest === true,
      port,
      tablespaceMap,
      walFetch: { node: process.execPath, cli: path.resolve(cli) },
      signal,
      say,
      notes: note,
      progress: (bytes, total) => (progress ??= progressReporter('airlock: restore pg', total)).update(bytes),
    }),
  );
  progress?.done();
  for (const w of r.warnings) note(`warning: ${w}`);
  say(`${r.pgdata} laid down from the base backup of seq ${r.baseSeq} with ${r.walFiles} WAL file(s) from seq ${r.bundles.join(', ')} in ${r.walDir}`);
  for (const t of r.tablespaces) say(`tablespace ${t.oid} (${JSON.stringify(t.name)}) laid down in ${t.dir}`);
  const major = verified.find((b) => b.seq === r.baseSeq)?.manifest?.coverage?.postgres?.major ?? 0;
  const bin = flags.pgBin ?? versionBin(major);
  let recovered;
  if (flags.start || flags.stop) {
    // a server of another major refuses the data folder; say which programs it needs before that
    if (bin === undefined)
      note(
        `warning: PostgreSQL ${major}'s programs are not in /usr/lib/postgresql/${major}/bin; pg_ctl is taken from PATH and must be ${major}'s (else install postgresql-${major} or give --pg-bin)`,
      );
    say(`starting the server on port ${port} and waiting for recovery to end`);
    recovered = await startAndRecover(r, { bin, user: flags.pgUser, timeoutMs: timeout * 1000 });
    say(
      `recovered to ${recovered.replayLsn}${recovered.lastCommit ? `, the last transaction replayed committed at ${recovered.lastCommit}` : ' (no transaction replayed after the base backup)'}; promoted to timeline ${recovered.timeline} after ${(recovered.recoveryMs / 1000).toFixed(1)} s`,
    );
    say(`the server (pid ${recovered.pid}) accepts connections on port ${port}, socket in ${r.pgdata}`);
    if (flags.stop) {
      await stopRestored(r.pgdata, bin);
      say('server stopped');
    }
  } else {
    say(
      `start it with: pg_ctl -D ${r.pgdata} start (as the data folder's owner); it recovers through airlock wal-fetch from ${r.walDir} and promotes at the target`,
    );
  }
  if (flags.json) process.stdout.write(`${JSON.stringify({ ...r, ...(recovered ? { recovered } : {}) })}\n`);
  else process.stdout.write(`${r.pgdata}\n`);
}

export function register(restore: Command): void {
  command(restore, 'restore pg', 'verify the media set, then restore PostgreSQL to a point in time (or a logical dump with --dump)').action((flags: Flags) =>
    restorePgCommand(resolveOptions<RestorePgFlags>('restore pg', flags)),
  );
}
