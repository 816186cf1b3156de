/*
 * Test helpers: temporary folders removed at exit, the built CLIs run as child processes (as users
 * run them), and a set of real keys made by the real tools.
 */
import { spawn, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EXIT } from '../manifests/errors.js';

export const ROOT = path.resolve(import.meta.dirname, '..');
const temps: string[] = [];
process.on('exit', () => {
  if (!process.env.AIRLOCK_KEEP_TEST_FILES) for (const t of temps) rmSync(t, { recursive: true, force: true });
});

/** A new temporary folder, removed when the test process exits. */
export function tmp(prefix = 'airlock-test-'): string {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  temps.push(d);
  return d;
}

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program with an argument list; never a shell. */
export function run(cmd: string, args: readonly string[], opts: SpawnSyncOptions = {}): Ran {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...opts });
  if (r.error) throw r.error;
  return { code: r.status ?? 128 + (r.signal ? os.constants.signals[r.signal] : 0), stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
}

/** node's options a script's first line gives (`#!/usr/bin/env -S node OPTIONS`), as users' runs get them. */
function launchOptions(script: string): string[] {
  let first = '';
  try {
    first = readFileSync(script, 'utf8').split('\n', 1)[0] ?? '';
  } catch {
    return []; // not built yet: running it fails on its own
  }
  const m = /^#!\/usr\/bin\/env -S node((?: [-\w=]+)*)$/.exec(first);
  return m?.[1]?.split(' ').filter(Boolean) ?? [];
}

/** node's arguments that start the built `airlock` as its executable does: options, then the script. */
export const AIRLOCK: readonly string[] = (() => {
  const main = path.join(ROOT, 'dist/agent/cli/main.js');
  return [...launchOptions(main), main];
})();

export function airlock(args: readonly string[], opts: SpawnSyncOptions = {}): Ran {
  return run(process.execPath, [...AIRLOCK, ...args], opts);
}

/**
 * airlock without blocking this process, for a test that serves something to it from here (a
 * proxy); resolves when it exited.
 */
export function airlockAsync(args: readonly string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<Ran> {
  return nodeAsync([...AIRLOCK, ...args], opts);
}

/** Runs node with `args` without blocking this process (several at once); resolves when it exited, 128 + N for signal N. */
export function nodeAsync(args: readonly string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<Ran> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? 128 + (signal ? os.constants.signals[signal] : 0), stdout, stderr }));
  });
}

export function airlockVerify(args: readonly string[], opts: SpawnSyncOptions = {}): Ran {
  return run(process.execPath, [path.join(ROOT, 'dist/verifier/cli.js'), ...args], opts);
}

export interface Keys {
  dir: string;
  site: string;
  signingKey: string;
  allowedSigners: string;
  identity: string;
  recipient: string;
}

/**
 * The arguments of `airlock export` to `medium` as the site of `keys`, signed and encrypted with
 * them, keeping its state in `state`; `rest` adds the sources and any other option.
 */
export function exportArgs(keys: Keys, medium: string, state: string, rest: readonly string[] = []): string[] {
  return ['export', '--to', medium, '--site', keys.site, '--signing-key', keys.signingKey, '--recipient', keys.recipient, '--state-dir', state, ...rest];
}

/** `restore objects` of the bundles on `medium` into the S3 server at `endpoint`: buckets as `map` says (SRC=DST), the id map at `idMap`. */
export function restoreObjectsArgs(keys: Keys, medium: string, endpoint: string, map: string, idMap: string, rest: readonly string[] = []): string[] {
  return [
    'restore',
    'objects',
    '--from',
    medium,
    '--identity',
    keys.identity,
    '--allowed-signers',
    keys.allowedSigners,
    '--endpoint',
    endpoint,
    '--bucket-map',
    map,
    '--id-map',
    idMap,
    ...rest,
  ];
}

/** A signing key made by `airlock keygen`, its allowed_signers, and an age identity made by `age-keygen`. */
export function makeKeys(site = 'site-a'): Keys {
  const dir = tmp('airlock-keys-');
  const signingKey = path.join(dir, 'signing_key');
  const k = airlock(['keygen', '--signing-key', signingKey, '--site', site]);
  if (k.code !== EXIT.ok) throw new Error(`keygen failed: ${k.stderr}`);
  const allowedSigners = path.join(dir, 'allowed_signers');
  writeFileSync(allowedSigners, k.stdout);
  const identity = path.join(dir, 'identity.txt');
  const a = run('age-keygen', ['-o', identity]);
  if (a.code !== 0) throw new Error(`age-keygen failed: ${a.stderr}`);
  const recipient = /public key: (age1[0-9a-z]+)/.exec(readFileSync(identity, 'utf8'))?.[1];
  if (!recipient) throw new Error('no recipient in the identity file');
  return { dir, site, signingKey, allowedSigners, identity, recipient };
}
