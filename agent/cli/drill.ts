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
import { drillText, runDrill } from '../drill.js';
import { pickVerifiedBundle } from '../restore/pick.js';

interface DrillFlags {
  from: string[];
  identity: string;
  allowedSigners: string;
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

async function drillCommand(flags: DrillFlags): Promise<void> {
  const identities = parseIdentities(
    await readFile(flags.identity, 'utf8').catch((e: unknown) => {
      throw fromSystemError(e, flags.identity);
    }),
  );
  if (flags.report !== undefined) {
    await assertWritableTarget(`${flags.report}.json`);
  }
  const user = process.getuid?.() === 0 ? await osUser(flags.osUser) : undefined;
  const say = (line: string): void => {
    if (!flags.json) note(line);
  };
  // a scratch folder the drill made is its own to remove; one given with --scratch is the operator's
  const made = flags.scratch === undefined;
  const scratch = flags.scratch ?? mkdtempSync(path.join(tmpdir(), 'airlock-drill-'));
  const report = await runDrill({
    from: flags.from,
    identities,
    verify: async () => {
      const verified: BundleReport[] = [];
      await pickVerifiedBundle(flags.from, flags.allowedSigners, flags.site, undefined, verified);
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
  command(program, 'drill', 'restore drill: verify the media set, restore it into throwaway places, check and time it').action((flags: Flags) =>
    drillCommand(resolveOptions<DrillFlags>('drill', flags)),
  );
}
