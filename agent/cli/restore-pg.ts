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
import { pickVerifiedBundle } from '../restore/pick.js';
import { refuseUnsafeTarget } from '../restore/staging.js';
import { versionBin } from '../postgres/programs.js';
import { assertNoPassword } from '../sources/postgres/server.js';
import { interruptible, note, progressReporter, withRecoverySettings, type Unresolved } from './common.js';

interface RestorePgFlags {
  from: string;
  identity: string;
  allowedSigners: string;
  pgdata?: string;
  targetTime?: string;
  targetLsn?: string;
  targetName?: string;
  latest?: boolean;
  orLatest?: boolean;
  port?: string;
  start?: boolean;
  stop?: boolean;
  pgUser?: string;
  pgBin?: string;
  timeout?: string;
  airlockCli?: string;
  dump?: boolean;
  dbname?: string;
  database?: string;
  site?: string;
  seq?: string;
  staging?: string;
  tablespaceMap?: string[];
  jobs?: string;
  json?: boolean;
}

function targetOf(flags: RestorePgFlags): Target {
  const given = [flags.targetTime, flags.targetLsn, flags.targetName, flags.latest ? 'latest' : undefined].filter((x) => x !== undefined);
  if (given.length !== 1) throw new AirlockError('usage', 'give exactly one of --target-time, --target-lsn, --target-name, --latest', { hint: '--latest replays every WAL segment of the set' });
  if (flags.targetTime !== undefined) return parseTargetTime(flags.targetTime);
  if (flags.targetLsn !== undefined) {
    if (!/^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/.test(flags.targetLsn)) throw new AirlockError('usage', `--target-lsn ${flags.targetLsn}: not a WAL location like 0/3000028`);
    return { kind: 'lsn', lsn: flags.targetLsn.toUpperCase() };
  }
  if (flags.targetName !== undefined) {
    if (!/^[ -~]{1,63}$/.test(flags.targetName) || flags.targetName.includes("'")) throw new AirlockError('usage', `--target-name: not a restore point name`);
    return { kind: 'name', name: flags.targetName };
  }
  return { kind: 'latest' };
}

/** --jobs N: a positive integer, or undefined without the flag. Throws `usage`. */
function jobsOf(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(n) || n < 1) throw new AirlockError('usage', `--jobs ${text}: not a positive whole number`, { hint: 'e.g. --jobs 4: pg_restore runs that many jobs in parallel' });
  return n;
}

async function restorePgCommand(flags: RestorePgFlags): Promise<void> {
  const identities = parseIdentities(await readFile(flags.identity, 'utf8').catch((e: unknown) => Promise.reject(fromSystemError(e, flags.identity))));
  const verified: BundleReport[] = [];
  const say = (line: string) => void (flags.json ? undefined : note(line));

  if (flags.dump) {
    if (flags.dbname === undefined || flags.database === undefined) throw new AirlockError('usage', '--dump needs --dbname CONNINFO (where to restore) and --database NAME (which dump)', { hint: 'create the empty database first, e.g. createdb restored' });
    assertNoPassword(flags.dbname);
    const jobs = jobsOf(flags.jobs);
    if (flags.tablespaceMap !== undefined) throw new AirlockError('usage', '--tablespace-map is for a base backup restore, not --dump', { hint: 'a logical dump restores into the tablespaces of the target server' });
    const seq = flags.seq === undefined ? undefined : Number(flags.seq);
    await pickVerifiedBundle(flags.from, flags.allowedSigners, flags.site, seq, verified);
    const withDumps = verified.filter((b) => (b.manifest?.coverage?.postgres?.dumps ?? 0) > 0 && (seq === undefined || b.seq === seq)).sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
    const bundle = withDumps.at(-1);
    if (!bundle) throw new AirlockError('no-bundle', `no bundle under ${flags.from} holds logical dumps`, { hint: 'export with --pg-dump' });
    say(`restoring the dump of ${flags.database} from seq ${bundle.seq}`);
    const bin = flags.pgBin ?? versionBin(bundle.manifest?.coverage?.postgres?.major ?? 0);
    const r = await interruptible((signal) => restoreDump(bundle, identities, flags.database as string, flags.dbname as string, bin, path.resolve(flags.staging ?? tmpdir()), { signal, jobs, notes: note }));
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
  const port = Number(flags.port ?? '5433');
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new AirlockError('usage', `--port ${flags.port}: not a port`);
  const timeout = Number(flags.timeout ?? '3600');
  if (!Number.isFinite(timeout) || timeout <= 0) throw new AirlockError('usage', `--timeout ${flags.timeout}: not a number of seconds`);
  // every volume used is hashed against SHA256SUMS as it is decrypted, before anything is promoted
  await pickVerifiedBundle(flags.from, flags.allowedSigners, flags.site, undefined, verified, { volumes: 'size' });
  say(`${verified.length} bundle(s) verified (signatures, lists, chain, WAL continuity; volume bytes as they are read); preparing ${flags.pgdata}`);
  const cli = flags.airlockCli ?? (process.argv[1] as string);
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
    if (bin === undefined) note(`warning: PostgreSQL ${major}'s programs are not in /usr/lib/postgresql/${major}/bin; pg_ctl is taken from PATH and must be ${major}'s (else install postgresql-${major} or give --pg-bin)`);
    say(`starting the server on port ${port} and waiting for recovery to end`);
    recovered = await startAndRecover(r, { bin, user: flags.pgUser ?? 'postgres', timeoutMs: timeout * 1000 });
    say(`recovered to ${recovered.replayLsn}${recovered.lastCommit ? `, the last transaction replayed committed at ${recovered.lastCommit}` : ' (no transaction replayed after the base backup)'}; promoted to timeline ${recovered.timeline} after ${(recovered.recoveryMs / 1000).toFixed(1)} s`);
    say(`the server (pid ${recovered.pid}) accepts connections on port ${port}, socket in ${r.pgdata}`);
    if (flags.stop) {
      await stopRestored(r.pgdata, bin);
      say('server stopped');
    }
  } else {
    say(`start it with: pg_ctl -D ${r.pgdata} start (as the data folder's owner); it recovers through airlock wal-fetch from ${r.walDir} and promotes at the target`);
  }
  if (flags.json) process.stdout.write(`${JSON.stringify({ ...r, ...(recovered ? { recovered } : {}) })}\n`);
  else process.stdout.write(`${r.pgdata}\n`);
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** Adds `restore pg` to the `restore` command. */
export function register(restore: Command): void {
  restore
    .command('pg')
    .description('verify the media set, then restore PostgreSQL to a point in time (or a logical dump with --dump)')
    .option('--from <path>', 'the media set: a folder holding bundles')
    .option('--identity <file>', 'the age identity file of the recovery site')
    .option('--allowed-signers <file>', 'OpenSSH allowed_signers naming the site key')
    .option('--config <file>', 'read medium, identity and allowed-signers from this config file (flags win)')
    .option('--pgdata <dir>', 'a new or empty data folder; its WAL goes to DIR.wal beside it')
    .option('--tablespace-map <oid-or-name=dir>', 'a new or empty folder for a tablespace of the base backup (repeatable; every tablespace needs one)', collect)
    .option('--target-time <time>', 'recover to this time; it must carry an offset (2026-03-01T12:00:00Z)')
    .option('--target-lsn <lsn>', 'recover to this WAL location')
    .option('--target-name <name>', 'recover to this restore point (every export creates airlock-SITE-SEQ)')
    .option('--latest', 'recover every WAL segment of the set')
    .option('--or-latest', 'with --target-time after the newest data: restore the newest instead of refusing')
    .option('--port <port>', 'the port of the restored server (default 5433); it listens on localhost only')
    .option('--start', 'start the server, wait until recovery ended and check it reached the target; leave it running')
    .option('--stop', 'like --start, then stop the server again')
    .option('--pg-user <role>', 'the role that checks the restored server (default postgres)')
    .option('--pg-bin <dir>', 'the folder of pg_ctl, psql, pg_restore (default: the backed-up major version\'s)')
    .option('--timeout <seconds>', 'how long recovery may take (default 3600)')
    .option('--airlock-cli <file>', 'the airlock main.js the server\'s user runs for restore_command (default: this one)')
    .option('--dump', 'restore a logical dump instead: needs --dbname and --database')
    .option('--dbname <conninfo>', 'with --dump: the database to restore into (it must exist)')
    .option('--database <name>', 'with --dump: the dumped database to restore')
    .option('--staging <dir>', 'with --dump: where the decrypted dump waits for pg_restore (default the temp folder)')
    .option('--jobs <n>', 'with --dump: run pg_restore with N parallel jobs, from a file in the staging folder (default: one, streamed)')
    .option('--site <site>', 'the site, when the folder holds bundles of several')
    .option('--seq <n>', 'with --dump: the bundle to take the dump from (default the newest with dumps)')
    .option('--json', 'print the result as JSON')
    .action((flags: Unresolved<RestorePgFlags>) => restorePgCommand(withRecoverySettings(flags)));
}
