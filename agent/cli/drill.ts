/*
 * airlock drill: restore the newest media set into throwaway places, check it, time it, report.
 */
import { mkdtempSync } from 'node:fs';
import { readFile, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { note } from './common.js';
import { command, resolveOptions, type Flags } from './options.js';
import { parseIdentities } from '../../manifests/age/keys.js';
import { runChild } from '../../manifests/child.js';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import { assertWritableTarget, writeFileAtomic } from '../../manifests/atomic.js';
import type { BundleReport } from '../../verifier/verify.js';
import { drillText, runDrill, runStandbyDrill, type DrillReport } from '../drill.js';
import { pickVerifiedBundle } from '../restore/pick.js';

interface DrillFlags {
  from?: string[];
  identity?: string;
  allowedSigners?: string;
  standby?: string;
  report?: string;
  scratch?: string;
  osUser: string;
  pgUser: string;
  pgBin?: string;
  airlockCli?: string;
  timeout: number;
  site?: string;
  keep?: boolean;
  json?: boolean;
}

async function osUser(name: string): Promise<{ uid: number; gid: number }> {
  const u = await runChild('id', ['-u', name], { capture: true });
  const g = await runChild('id', ['-g', name], { capture: true });
  if (u.code !== 0 || g.code !== 0)
    throw new AirlockError('usage', `--os-user ${name}: no such user`, {
      hint: 'the throwaway cluster runs as this user when the drill runs as root (PostgreSQL refuses root)',
    });
  return { uid: Number(u.stdout.toString('utf8').trim()), gid: Number(g.stdout.toString('utf8').trim()) };
}

/** The media, key and signers a drill of media needs; a drill of a standby needs none. Throws `usage`. */
function mediaOf(flags: DrillFlags): { from: string[]; identity: string; allowedSigners: string } {
  const { from, identity, allowedSigners } = flags;
  if (from === undefined || from.length === 0)
    throw new AirlockError('usage', '--from is required', {
      hint: 'give --from MEDIA, the medium or folder holding the bundles, or --standby DIR to check a standby',
    });
  if (identity === undefined)
    throw new AirlockError('usage', '--identity is required', { hint: 'give --identity FILE, the age identity of the recovery site' });
  if (allowedSigners === undefined)
    throw new AirlockError('usage', '--allowed-signers is required', { hint: 'give --allowed-signers FILE naming the site key' });
  return { from, identity, allowedSigners };
}

async function drillCommand(flags: DrillFlags): Promise<void> {
  if (flags.report !== undefined) {
    await assertWritableTarget(`${flags.report}.json`);
  }
  const say = (line: string): void => {
    if (!flags.json) note(line);
  };
  if (flags.standby !== undefined) {
    if (flags.from !== undefined && flags.from.length > 0)
      throw new AirlockError('usage', '--standby checks a running standby; --from restores media: give one of them', {
        hint: 'apply new media with standby apply first',
      });
    return finish(flags, await runStandbyDrill({ dir: flags.standby, pgUser: flags.pgUser, pgBin: flags.pgBin, now: () => new Date(), say }));
  }
  const media = mediaOf(flags);
  const identities = parseIdentities(
    await readFile(media.identity, 'utf8').catch((e: unknown) => {
      throw fromSystemError(e, media.identity);
    }),
  );
  const user = process.getuid?.() === 0 ? await osUser(flags.osUser) : undefined;
  // a scratch folder the drill made is its own to remove; one given with --scratch is the operator's
  const made = flags.scratch === undefined;
  const scratch = flags.scratch ?? mkdtempSync(path.join(tmpdir(), 'airlock-drill-'));
  const report = await runDrill({
    from: media.from,
    identities,
    verify: async () => {
      const verified: BundleReport[] = [];
      await pickVerifiedBundle(media.from, media.allowedSigners, flags.site, undefined, verified);
      return verified;
    },
    scratch,
    osUser: user,
    pgUser: flags.pgUser,
    pgBin: flags.pgBin,
    airlockCli: path.resolve(flags.airlockCli ?? (process.argv[1] as string)),
    timeoutMs: flags.timeout * 1000,
    now: () => new Date(),
    keep: flags.keep === true,
    say,
  }).finally(async () => {
    if (!made) return;
    if (flags.keep) say(`the restored data is kept in ${scratch}`);
    else await rmdir(scratch).catch(() => say(`warning: could not remove ${scratch}`));
  });
  await finish(flags, report);
}

/** Writes and prints the report; throws `drill-failed` when it did not pass. */
async function finish(flags: DrillFlags, report: DrillReport): Promise<void> {
  const text = drillText(report);
  if (flags.report !== undefined) {
    await writeFileAtomic(`${flags.report}.json`, `${JSON.stringify(report, null, 2)}\n`);
    await writeFileAtomic(`${flags.report}.txt`, text);
  }
  process.stdout.write(flags.json ? `${JSON.stringify(report)}\n` : text);
  if (report.result !== 'pass') {
    const why =
      report.checks
        .filter((c) => c.result === 'fail')
        .map((c) => c.name)
        .join(', ') || 'nothing could be restored';
    throw new AirlockError('drill-failed', `the drill failed: ${why}`, {
      hint: flags.report ? `the report is in ${flags.report}.txt` : 'the lines above say why',
    });
  }
}

export function register(program: Command): void {
  command(
    program,
    'drill',
    'restore drill: verify the media set, restore it into throwaway places, check and time it; or check a running standby (--standby)',
  ).action((flags: Flags) => drillCommand(resolveOptions<DrillFlags>('drill', flags)));
}
