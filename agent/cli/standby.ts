/*
 * airlock standby init|apply|status|promote: a warm standby at the recovery site, fed by the media
 * that arrive (agent/standby.ts). status speaks Nagios like airlock status (0 ok, 1 warning,
 * 2 critical, 3 unknown).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { parseIdentities } from '../../manifests/age/keys.js';
import { writeFileAtomic } from '../../manifests/atomic.js';
import { AirlockError, exitCodeOf, fromSystemError } from '../../manifests/errors.js';
import { escapeText } from '../../manifests/escape.js';
import type { BundleReport } from '../../verifier/verify.js';
import { now } from '../clock.js';
import { versionBin } from '../postgres/programs.js';
import { parseTargetTime, type Target } from '../restore/pg.js';
import { pickVerifiedBundle } from '../restore/pick.js';
import { refuseUnsafeTarget } from '../restore/staging.js';
import { applyStandby, askReplay, initStandby, promoteStandby, readStandbyState, serverRuns, type StandbyState } from '../standby.js';
import { collectStandbyStatus, standbyPrometheusDown, standbyPrometheusText, standbyStatusText, type StandbyStatusInput } from '../standby-status.js';
import { LEVEL_EXIT, nagiosUnknown } from '../status.js';
import { interruptible, note } from './common.js';
import { command, resolveOptions, type Flags } from './options.js';

interface StandbyFlags {
  from?: string[];
  identity?: string;
  allowedSigners?: string;
  site?: string;
  standby?: string;
  pgdata?: string;
  port?: number;
  pgUser: string;
  pgBin?: string;
  timeout: number;
  airlockCli?: string;
  targetTime?: string;
  targetName?: string;
  latest?: boolean;
  rebase?: boolean;
  prometheus?: string;
  standbyLagWarning: number;
  standbyLagCritical: number;
  json?: boolean;
}

const sayer = (flags: StandbyFlags) => (line: string) => {
  if (!flags.json) note(line);
};

async function identitiesOf(file: string): Promise<Uint8Array[]> {
  return parseIdentities(
    await readFile(file, 'utf8').catch((e: unknown) => {
      throw fromSystemError(e, file);
    }),
  );
}

/** Verifies the media of `flags` (the whole set, volume bytes as they are decrypted) and returns the bundles of `site`. */
async function verifyMedia(flags: StandbyFlags, site: string | undefined): Promise<BundleReport[]> {
  const verified: BundleReport[] = [];
  await pickVerifiedBundle(flags.from ?? [], flags.allowedSigners ?? '', site, undefined, verified, { volumes: 'size' });
  return verified;
}

const binOf = (flags: StandbyFlags, major: number) => flags.pgBin ?? versionBin(major);

function server(flags: StandbyFlags, major: number) {
  return { bin: binOf(flags, major), user: flags.pgUser, timeoutMs: flags.timeout * 1000 };
}

async function initCommand(flags: StandbyFlags): Promise<void> {
  const pgdata = path.resolve(flags.pgdata as string);
  const dir = path.resolve(flags.standby ?? `${pgdata}.standby`);
  await refuseUnsafeTarget(pgdata);
  await refuseUnsafeTarget(dir);
  const identities = await identitiesOf(flags.identity as string);
  const say = sayer(flags);
  const verified = await verifyMedia(flags, flags.site);
  say(`${verified.length} bundle(s) verified; laying down the standby in ${pgdata}`);
  const major = verified.find((b) => b.manifest?.coverage?.postgres)?.manifest?.coverage?.postgres?.major ?? 0;
  const r = await interruptible((signal) =>
    initStandby({
      ...server(flags, major),
      verified,
      identities,
      pgdata,
      dir,
      port: flags.port ?? 5433,
      walFetch: { node: process.execPath, cli: path.resolve(flags.airlockCli ?? process.argv[1] ?? '') },
      signal,
      say,
      notes: note,
    }),
  );
  say(
    `the standby of ${r.state.site} runs on port ${r.state.port} (socket in ${pgdata}): base backup of seq ${r.state.baseSeq}, WAL up to seq ${r.state.applied.seq}, replayed to ${r.replay.replayLsn}`,
  );
  say(`feed it with: airlock standby apply --standby ${dir} --from MEDIA ...`);
  process.stdout.write(flags.json ? `${JSON.stringify({ standby: dir, state: r.state, replay: r.replay })}\n` : `${dir}\n`);
}

async function applyCommand(flags: StandbyFlags): Promise<void> {
  const dir = path.resolve(flags.standby as string);
  const identities = await identitiesOf(flags.identity as string);
  const say = sayer(flags);
  const state = await readStandbyState(dir);
  const r = await interruptible((signal) =>
    applyStandby({
      ...server(flags, state.major),
      dir,
      verify: (s) => verifyMedia(flags, s.site),
      identities,
      rebase: flags.rebase === true,
      signal,
      say,
      notes: note,
    }),
  );
  if (r.applied.length === 0) say(`nothing new: the standby holds every bundle of the media (up to seq ${r.state.applied.seq})`);
  else say(`applied seq ${r.applied.join(', ')} (${r.walFiles} WAL file(s)); replayed to ${r.replay?.replayLsn ?? '(no restore point)'}`);
  process.stdout.write(
    flags.json
      ? `${JSON.stringify({ applied: r.applied, walFiles: r.walFiles, seq: r.state.applied.seq, replay: r.replay ?? null })}\n`
      : `${r.state.applied.seq}\n`,
  );
}

function targetOf(flags: StandbyFlags): Target {
  const given = [flags.targetTime, flags.targetName, flags.latest ? 'latest' : undefined].filter((x) => x !== undefined);
  if (given.length !== 1)
    throw new AirlockError('usage', 'give exactly one of --target-time, --target-name, --latest', {
      hint: '--latest promotes once everything the standby holds is replayed',
    });
  if (flags.targetTime !== undefined) return parseTargetTime(flags.targetTime);
  if (flags.targetName !== undefined) {
    if (!/^[ -~]{1,63}$/.test(flags.targetName) || flags.targetName.includes("'")) throw new AirlockError('usage', '--target-name: not a restore point name');
    return { kind: 'name', name: flags.targetName };
  }
  return { kind: 'latest' };
}

async function promoteCommand(flags: StandbyFlags): Promise<void> {
  const dir = path.resolve(flags.standby as string);
  const target = targetOf(flags);
  const withMedia = flags.from !== undefined && flags.from.length > 0;
  if (withMedia && (flags.identity === undefined || flags.allowedSigners === undefined))
    throw new AirlockError('usage', '--from needs --identity and --allowed-signers', {
      hint: 'the new media are verified and decrypted like standby apply does',
    });
  const identities = withMedia ? await identitiesOf(flags.identity as string) : [];
  const say = sayer(flags);
  const state = await readStandbyState(dir);
  const r = await interruptible((signal) =>
    promoteStandby({
      ...server(flags, state.major),
      dir,
      target,
      ...(withMedia ? { fresh: { verify: (s: StandbyState) => verifyMedia(flags, s.site), identities } } : {}),
      signal,
      say,
      notes: note,
    }),
  );
  say(
    `promoted to timeline ${r.timeline ?? '?'} after ${r.seconds.toFixed(1)} s${r.lastCommit ? `; the last transaction replayed committed at ${r.lastCommit}` : ''}; the server accepts writes on port ${state.port}`,
  );
  process.stdout.write(flags.json ? `${JSON.stringify(r)}\n` : `${r.seconds.toFixed(1)}\n`);
}

async function statusCommand(flags: StandbyFlags): Promise<number> {
  const dir = path.resolve(flags.standby as string);
  const state = await readStandbyState(dir);
  const thresholds = { lagWarning: flags.standbyLagWarning, lagCritical: flags.standbyLagCritical };
  let replay: StandbyStatusInput['replay'];
  try {
    replay = await askReplay(state, { bin: binOf(flags, state.major), user: flags.pgUser });
  } catch (e) {
    replay = { error: e instanceof Error ? e.message : String(e), running: await serverRuns(state.pgdata) };
  }
  let media: StandbyStatusInput['media'];
  if (flags.from !== undefined && flags.from.length > 0) {
    if (flags.allowedSigners === undefined)
      throw new AirlockError('usage', '--from needs --allowed-signers', { hint: 'the media are verified (keyless) before they count' });
    try {
      // keyless: the signature, lists and chain; the volumes' sizes, not their bytes (status reads no payload)
      const verified = await verifyMedia(flags, state.site);
      media = {
        newest: verified
          .filter((b) => b.site === state.site)
          .sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0))
          .at(-1),
      };
    } catch (e) {
      media = { error: e instanceof Error ? e.message : String(e) };
    }
  }
  const status = collectStandbyStatus({ state, now: now(), thresholds, replay, ...(media ? { media } : {}) });
  if (flags.prometheus !== undefined) await writeFileAtomic(flags.prometheus, standbyPrometheusText(status));
  process.stdout.write(flags.json ? `${JSON.stringify(status)}\n` : standbyStatusText(status, thresholds));
  return LEVEL_EXIT[status.level];
}

export function register(program: Command): void {
  const standby = program.command('standby').description('a warm standby at the recovery site, fed by the media that arrive');
  command(standby, 'standby init', 'verify the media set, lay down the newest base backup and the WAL after it, and start PostgreSQL as a standby').action(
    (flags: Flags) => initCommand(resolveOptions<StandbyFlags>('standby init', flags)),
  );
  command(standby, 'standby apply', "verify new media against the standby's chain, add their WAL and wait until it is replayed (idempotent)").action(
    (flags: Flags) => applyCommand(resolveOptions<StandbyFlags>('standby apply', flags)),
  );
  command(standby, 'standby promote', 'end recovery at the target (within what the standby holds) and promote; prints the seconds it took').action(
    (flags: Flags) => promoteCommand(resolveOptions<StandbyFlags>('standby promote', flags)),
  );
  command(standby, 'standby status', 'the standby: bundle and restore point applied, replay position and time, how far behind the media; Nagios exit codes')
    .addHelpText('after', '\nExit status (Nagios): 0 ok, 1 warning, 2 critical, 3 unknown (also for a usage error).')
    .action(async (raw: Flags) => {
      let code: number;
      try {
        code = await statusCommand(resolveOptions<StandbyFlags>('standby status', raw));
      } catch (e) {
        // as airlock status: a status that cannot be taken is "unknown", with a plugin line and a file that says "down"
        const { printError } = await import('./common.js');
        printError(e, raw.json === true);
        code = e instanceof AirlockError && exitCodeOf(e) === 130 ? 130 : LEVEL_EXIT.unknown;
        if (raw.json !== true) process.stdout.write(`${escapeText(nagiosUnknown(e instanceof Error ? e.message : String(e)))}\n`);
        if (typeof raw.prometheus === 'string') await writeFileAtomic(raw.prometheus, standbyPrometheusDown()).catch((w: unknown) => printError(w));
      }
      process.exitCode = code;
    });
}
