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
import { configKeys } from './options.js';

/** Each key of the file (options.ts declares them with the command-line options), and its values. */
export type Config = Map<string, string[]>;

const KEYS = configKeys();

/** Parses config text; throws `config-invalid` listing every problem with its line. */
export function parseConfig(text: string, file: string): Config {
  const out: Config = new Map();
  const problems: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (line === '') return;
    const m = /^([a-z][a-z0-9-]*)\s*=\s*(.*)$/.exec(line);
    const where = `${file}:${i + 1}`;
    if (!m) {
      problems.push(`${where}: not "key = value"`);
      return;
    }
    const [, key, value] = m as unknown as [string, string, string];
    const spec = KEYS.get(key);
    if (!spec) {
      problems.push(`${where}: unknown key ${key}`);
      return;
    }
    if (value === '') {
      problems.push(`${where}: ${key} has no value`);
      return;
    }
    if (spec.kind.parse(value) === undefined) problems.push(`${where}: ${key}: not ${spec.kind.what}`);
    else if (spec.fileCheck && !spec.fileCheck.re.test(value)) problems.push(`${where}: ${key}: not ${spec.fileCheck.what}`);
    if (!spec.list && out.has(key)) problems.push(`${where}: ${key} given twice`);
    out.set(key, [...(out.get(key) ?? []), value]);
  });
  if (problems.length > 0) {
    throw new AirlockError('config-invalid', `${problems.length} problem(s) in the config: ${problems.join('; ')}`, {
      hint: 'fix every line named and run again',
    });
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
