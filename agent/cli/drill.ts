/*
 * airlock drill: restore the newest media set into throwaway places, check it, time it, report.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { readFile, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { note, withRecoverySettings, type Unresolved } from './common.js';
import { parseIdentities } from '../../manifests/age/keys.js';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import { assertWritableTarget, writeFileAtomic } from '../../verifier/atomic.js';
import type { BundleReport } from '../../verifier/verify.js';
import { drillText, runDrill } from '../drill.js';
import { pickVerifiedBundle } from '../restore/pick.js';

interface DrillFlags {
  from: string;
  identity: string;
  allowedSigners: string;
  report?: string;
  scratch?: string;
  osUser?: string;
  pgUser?: string;
  pgBin?: string;
  airlockCli?: string;
  timeout?: string;
  site?: string;
  keep?: boolean;
  json?: boolean;
}

function osUser(name: string): { uid: number; gid: number } {
  const u = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (u.status !== 0 || g.status !== 0) throw new AirlockError('usage', `--os-user ${name}: no such user`, { hint: 'the throwaway cluster runs as this user when the drill runs as root (PostgreSQL refuses root)' });
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
}

async function drillCommand(flags: DrillFlags): Promise<void> {
  const identities = parseIdentities(await readFile(flags.identity, 'utf8').catch((e: unknown) => Promise.reject(fromSystemError(e, flags.identity))));
  const timeout = Number(flags.timeout ?? '3600');
  if (!Number.isFinite(timeout) || timeout <= 0) throw new AirlockError('usage', `--timeout ${flags.timeout}: not a number of seconds`);
  if (flags.report !== undefined) {
    await assertWritableTarget(`${flags.report}.json`);
  }
  const user = process.getuid?.() === 0 ? osUser(flags.osUser ?? 'postgres') : undefined;
  const say = (line: string) => void (flags.json ? undefined : note(line));
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
    pgUser: flags.pgUser ?? 'postgres',
    pgBin: flags.pgBin,
    airlockCli: path.resolve(flags.airlockCli ?? (process.argv[1] as string)),
    timeoutMs: timeout * 1000,
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
    const why = report.checks.filter((c) => c.result === 'fail').map((c) => c.name).join(', ') || 'nothing could be restored';
    throw new AirlockError('drill-failed', `the drill failed: ${why}`, { hint: flags.report ? `the report is in ${flags.report}.txt` : 'the lines above say why' });
  }
}

export function register(program: Command): void {
  program
    .command('drill')
    .description('restore drill: verify the media set, restore it into throwaway places, check and time it')
    .option('--from <path>', 'the media set: a folder holding bundles')
    .option('--identity <file>', 'the age identity file of the recovery site')
    .option('--allowed-signers <file>', 'OpenSSH allowed_signers naming the site key')
    .option('--config <file>', 'read medium, identity and allowed-signers from this config file (flags win)')
    .option('--report <prefix>', 'write the report to PREFIX.json and PREFIX.txt')
    .option('--scratch <dir>', 'where the throwaway cluster and folders go (default a new temp folder)')
    .option('--os-user <user>', 'when run as root: the OS user the throwaway cluster runs as (default postgres)')
    .option('--pg-user <role>', 'the role that checks the restored cluster (default postgres)')
    .option('--pg-bin <dir>', 'the folder of pg_ctl, psql, pg_amcheck (default: the backed-up major version\'s)')
    .option('--airlock-cli <file>', 'the airlock main.js the cluster\'s user runs for restore_command (default: this one)')
    .option('--timeout <seconds>', 'how long recovery may take (default 3600)')
    .option('--site <site>', 'the site, when the folder holds bundles of several')
    .option('--keep', 'keep the scratch folders (the cluster is stopped either way)')
    .option('--json', 'print the report as JSON')
    .action((flags: Unresolved<DrillFlags>) => drillCommand(withRecoverySettings(flags)));
}
