/*
 * The config file: `key = value` lines, `#` comments, a key given again adds to a list. Every
 * problem is collected with its line number and reported at once. Secrets never live here: the file
 * names key files, never key material. Command-line flags win over the file.
 *
 *   site = plant-7
 *   medium = /media/airlock
 *   signing-key = /etc/airlock/signing_key
 *   recipient = age1...          # the recovery site
 *   recipient = age1...          # escrow
 *   files = /etc/platform
 *   compress = zstd
 *   volume-size = 1G
 *   state-dir = /var/lib/airlock
 *   spool = /var/spool/airlock-wal   # where wal-push puts WAL files, written by the database's user
 *   s3-endpoint = http://127.0.0.1:7480
 *   bucket = records              # a whole bucket
 *   bucket = media/2025/          # or the keys under a prefix
 *   s3-credentials = /etc/airlock/s3-credentials   # mode 0600; or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
 *   s3-region = eu-central-1      # what the server expects in signatures (default us-east-1)
 *   s3-ca-file = /etc/airlock/site-ca.pem   # the private CA of an https endpoint
 *   s3-addressing = virtual       # bucket in the host name (default: path)
 */
import { readFileSync } from 'node:fs';
import { AirlockError, fromSystemError } from '../manifests/errors.js';

export interface ConfigKey {
  list: boolean;
  check?: (v: string) => string | undefined;
}

const durationCheck = (v: string) => (parseDuration(v) === undefined ? 'not a duration like 90s, 5m, 26h or 7d' : undefined);
const percentCheck = (v: string) => (/^\d{1,2}(\.\d+)?%?$/.test(v) ? undefined : 'not a percentage like 20%');

export const CONFIG_KEYS: Record<string, ConfigKey> = {
  site: { list: false, check: (v) => (/^[a-z0-9][a-z0-9._-]{0,62}$/.test(v) ? undefined : 'not a valid site id') },
  medium: { list: true },
  'signing-key': { list: false },
  recipient: { list: true, check: (v) => (/^age1[0-9a-z]{58}$/.test(v) ? undefined : 'not an age recipient (age1...)') },
  files: { list: true },
  compress: { list: false, check: (v) => (v === 'zstd' || v === 'none' ? undefined : 'must be zstd or none') },
  'volume-size': { list: false, check: (v) => (parseSize(v) === undefined ? 'not a size like 1G, 650M or 4294967295' : undefined) },
  'not-fat32': { list: false, check: (v) => (v === 'true' || v === 'false' ? undefined : 'must be true or false') },
  'recovery-percent': { list: false, check: (v) => (/^(100|[1-9]\d?)$/.test(v) ? undefined : 'must be a whole number from 1 to 100') },
  'state-dir': { list: false },
  spool: { list: false },
  's3-endpoint': { list: false, check: (v) => (/^https?:\/\/[^/?#@\s]+\/?$/.test(v) ? undefined : 'not an http(s)://host:port URL') },
  bucket: { list: true },
  's3-credentials': { list: false },
  's3-region': { list: false, check: (v) => (/^[a-z0-9][a-z0-9-]{0,62}$/.test(v) ? undefined : 'not a region name like us-east-1') },
  's3-ca-file': { list: false },
  's3-addressing': { list: false, check: (v) => (v === 'path' || v === 'virtual' ? undefined : 'must be path or virtual') },
  pg: { list: false },
  'pg-base': { list: false, check: (v) => (v === 'true' || v === 'false' ? undefined : 'must be true or false') },
  'pg-dump': { list: false, check: (v) => (v === 'true' || v === 'false' ? undefined : 'must be true or false') },
  'pg-bin': { list: false },
  'wal-age-warning': { list: false, check: durationCheck },
  'wal-age-critical': { list: false, check: durationCheck },
  'offsite-rpo-warning': { list: false, check: durationCheck },
  'offsite-rpo-critical': { list: false, check: durationCheck },
  'spool-free-warning': { list: false, check: percentCheck },
  'spool-free-critical': { list: false, check: percentCheck },
  'export-every': { list: false, check: durationCheck },
  'base-every': { list: false, check: durationCheck },
  retention: { list: false, check: durationCheck },
  identity: { list: false },
  'wal-from': { list: false },
  'allowed-signers': { list: false },
  'min-copies': { list: false, check: (v) => (/^[1-9]\d?$/.test(v) ? undefined : 'not a number of media from 1 to 99') },
  'pg-table-checks': { list: false, check: (v) => (v === 'true' || v === 'false' ? undefined : 'must be true or false') },
  'wal-timeout': { list: false, check: (v) => (/^\d+$/.test(v) && Number(v) > 0 ? undefined : 'not a number of seconds') },
};

export type Config = Map<string, string[]>;

/** Parses a duration in seconds: `90`, `90s`, `5m`, `26h`, `7d`. */
export function parseDuration(v: string): number | undefined {
  const m = v.trim().match(/^(\d+)\s*(s|m|min|h|d)?$/);
  if (!m) return undefined;
  const unit = { s: 1, m: 60, min: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'min' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

/** Parses `1G`, `650M`, `64K`, `1GiB` or a plain byte count. */
export function parseSize(v: string): number | undefined {
  const m = v.trim().match(/^(\d+)\s*([KMGT]?)(i?B)?$/i);
  if (!m) return undefined;
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[(m[2] ?? '').toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  const n = Number(m[1]) * mult;
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Parses config text; throws `config-invalid` listing every problem with its line. */
export function parseConfig(text: string, file: string): Config {
  const out: Config = new Map();
  const problems: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (line === '') return;
    const m = line.match(/^([a-z][a-z0-9-]*)\s*=\s*(.*)$/);
    const where = `${file}:${i + 1}`;
    if (!m) {
      problems.push(`${where}: not "key = value"`);
      return;
    }
    const [, key, value] = m as unknown as [string, string, string];
    const spec = CONFIG_KEYS[key];
    if (!spec) {
      problems.push(`${where}: unknown key ${key}`);
      return;
    }
    if (value === '') {
      problems.push(`${where}: ${key} has no value`);
      return;
    }
    const bad = spec.check?.(value);
    if (bad) problems.push(`${where}: ${key}: ${bad}`);
    if (!spec.list && out.has(key)) problems.push(`${where}: ${key} given twice`);
    out.set(key, [...(out.get(key) ?? []), value]);
  });
  if (problems.length > 0) {
    throw new AirlockError('config-invalid', `${problems.length} problem(s) in the config: ${problems.join('; ')}`, { hint: 'fix every line named and run again' });
  }
  return out;
}

/** Reads and parses the config file. Throws `not-found` or `config-invalid`. */
export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw fromSystemError(e, file);
  }
  return parseConfig(text, file);
}
