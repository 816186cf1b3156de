/*
 * Every option of every airlock command and every config-file key, declared once (pgBackRest's
 * config.yaml is the model): its name on the command line and in the file, its kind (which parses
 * and checks a value, from either place, the one way), its default, its help, and the commands that
 * take it. The commands' options and --help (cli/options.ts), the config file's keys (config.ts)
 * and the README's table are made from or checked against this table.
 *
 * An option is read from the flag, else from the config file given with --config (when it has a
 * key and the command reads it from there), else from its default. A key without a flag is set in
 * the file only (thresholds, the schedule). Two options may share a flag when they mean different
 * things (--to: the medium of an export, the target folder of a restore); no command takes both.
 *
 * airlock-verify is not in the table, and the table is not in manifests/ for it: the auditor's tool
 * stands alone on the format library and Node (its parseArgs declaration and help are in
 * verifier/cli.ts), reads no config file, and has seven options, of which only --allowed-signers,
 * --identity and --json are spelled like these; the table carries the agent's own notions (config
 * keys, durations, sizes, which commands read what), which the format library should not.
 */
import { AirlockError } from '../manifests/errors.js';
import { INNER_MANIFEST } from '../manifests/inner.js';
import { SITE_RE } from '../manifests/manifest.js';

export type CommandPath =
  | 'keygen'
  | 'export'
  | 'check'
  | 'restore files'
  | 'restore objects'
  | 'restore pg'
  | 'media init'
  | 'media copy'
  | 'media list'
  | 'drill'
  | 'standby init'
  | 'standby apply'
  | 'standby status'
  | 'standby promote'
  | 'status'
  | 'prune'
  | 'run'
  | 'runbook'
  | 'wal-push'
  | 'wal-ingest'
  | 'wal-fetch';

/** How a value is written and what it becomes. `parse` returns undefined for a value that is not one. */
export interface Kind {
  /** what a good value is, for "--port 0: not a port" */
  what: string;
  parse: (text: string) => unknown;
  /** a flag without a value (true when given) */
  boolean?: true;
  /** given again, it adds to a list (the config file's key likewise) */
  list?: 'repeat' | 'variadic';
}

/** Parses a duration in seconds: `90`, `90s`, `5m`, `26h`, `7d`. */
export function parseDuration(v: string): number | undefined {
  const m = /^(\d+)\s*(s|m|min|h|d)?$/.exec(v.trim());
  if (!m) return undefined;
  const unit = { s: 1, m: 60, min: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'min' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

/** Writes seconds back the way parseDuration reads them, in the largest unit that divides them. */
export function formatDuration(seconds: number): string {
  const unit = (
    [
      ['d', 86400],
      ['h', 3600],
      ['m', 60],
    ] as const
  ).find(([, n]) => seconds % n === 0);
  return unit ? `${seconds / unit[1]}${unit[0]}` : `${seconds}s`;
}

/** Parses `1G`, `650M`, `64K`, `1GiB` or a plain byte count. */
export function parseSize(v: string): number | undefined {
  const m = /^(\d+)\s*([KMGT]?)(i?B)?$/i.exec(v.trim());
  if (!m) return undefined;
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[(m[2] ?? '').toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  const n = Number(m[1]) * mult;
  return Number.isSafeInteger(n) ? n : undefined;
}

const whole = (min: number, max: number, what: string): Kind => ({
  what,
  parse: (v) => (/^\d{1,16}$/.test(v) && Number(v) >= min && Number(v) <= max ? Number(v) : undefined),
});

export const KINDS = {
  text: { what: 'a value', parse: (v: string) => v },
  list: { what: 'a value', parse: (v: string) => v, list: 'repeat' },
  variadic: { what: 'a value', parse: (v: string) => v, list: 'variadic' },
  flag: { what: 'true or false', parse: (v: string) => (v === 'true' ? true : v === 'false' ? false : undefined), boolean: true },
  seconds: { what: 'a number of seconds', parse: (v: string) => (/^\d{1,9}(\.\d{1,6})?$/.test(v) && Number(v) > 0 ? Number(v) : undefined) },
  duration: { what: 'a duration like 90s, 5m, 26h or 7d', parse: (v: string) => ((parseDuration(v) ?? 0) > 0 ? parseDuration(v) : undefined) },
  percent: { what: 'a percentage like 20%', parse: (v: string) => (/^\d{1,2}(\.\d+)?%?$/.test(v) ? Number(v.replace(/%$/, '')) / 100 : undefined) },
  volumeSize: {
    what: 'a size of at least 1M, like 1G, 650M or 4294967295',
    parse: (v: string) => ((parseSize(v) ?? 0) >= 1024 * 1024 ? parseSize(v) : undefined),
  },
  compression: { what: 'zstd or none', parse: (v: string) => (v === 'zstd' || v === 'none' ? v : undefined) },
  seq: whole(1, Number.MAX_SAFE_INTEGER, 'a bundle number'),
  port: whole(1, 65535, 'a port'),
  copies: whole(1, 99, 'a number of media from 1 to 99'),
  share: whole(1, 100, 'a whole number from 1 to 100'),
  jobs: whole(1, Number.MAX_SAFE_INTEGER, 'a positive whole number'),
} satisfies Record<string, Kind>;

/** How one command takes an option, where it differs from the option's own declaration. */
export interface Use {
  help?: string;
  /** `flag`: the config file's key is not read by this command; `file`: it has no flag here */
  source?: 'flag' | 'file';
  /** the hint of the `usage` error when it is missing */
  required?: string;
}

export interface OptionSpec {
  /** --FLAG on the command line; absent for a key the config file alone sets */
  flag?: string;
  /** its key in the config file; absent when the file cannot set it */
  key?: string;
  kind: keyof typeof KINDS;
  /** the value's name in --help */
  arg?: string;
  default?: string;
  help: string;
  /**
   * A check of the config file's value, up front with the file's other problems. On the command
   * line the value meets the check of what uses it (the export's site check, the recipient parser,
   * the S3 client), which carries its own error code and hint.
   */
  fileCheck?: { re: RegExp; what: string };
  commands: Partial<Record<CommandPath, Use>>;
}

const RECOVERY = ['restore files', 'restore objects', 'restore pg', 'drill'] as const;
/** the commands that read the standby's folder and state */
const STANDBY = ['standby init', 'standby apply', 'standby status', 'standby promote'] as const;
/** the commands that verify media for a standby: init and apply need them; status and promote read them when given */
const STANDBY_MEDIA = ['standby init', 'standby apply'] as const;
const each = (paths: readonly CommandPath[], use: Use = {}) => Object.fromEntries(paths.map((p) => [p, use])) as Partial<Record<CommandPath, Use>>;
const fromFile = (hint?: string): Use => ({ source: 'file', ...(hint !== undefined ? { required: hint } : {}) });

export const OPTIONS: readonly OptionSpec[] = [
  // shared by many commands
  {
    flag: 'to',
    key: 'medium',
    kind: 'text',
    arg: 'medium',
    help: 'the medium: a mounted folder; the bundle goes to MEDIUM/SITE/SITE-SEQ',
    commands: { export: { required: 'give --to MEDIUM (the mount point of the medium)' } },
  },
  {
    flag: 'from',
    key: 'medium',
    kind: 'list',
    arg: 'path',
    help: 'the media set: a bundle, or a folder holding bundles (the newest is restored); repeat it for a chain spread over several media',
    commands: {
      ...each(['restore files', 'restore objects', 'restore pg', ...STANDBY_MEDIA], {
        required: 'give --from MEDIA, the medium or folder holding the bundles (or medium = ... in the file given with --config)',
      }),
      drill: {},
      'standby status': { help: 'also say how far the standby is behind the newest bundle verified on these media' },
      'standby promote': { help: 'media that arrived since the last apply: verified against the standby, their WAL replayed up to the target' },
    },
  },
  {
    flag: 'identity',
    key: 'identity',
    kind: 'text',
    arg: 'file',
    help: 'the age identity file of the recovery site',
    commands: {
      ...each(['restore files', 'restore objects', 'restore pg', ...STANDBY_MEDIA], {
        required: 'give --identity FILE, the age identity of the recovery site (or identity = ... in the file given with --config)',
      }),
      drill: {},
      'standby promote': { help: 'with --from: the age identity file of the recovery site' },
    },
  },
  {
    flag: 'allowed-signers',
    key: 'allowed-signers',
    kind: 'text',
    arg: 'file',
    help: 'OpenSSH allowed_signers naming the site key',
    commands: {
      ...each(['restore files', 'restore objects', 'restore pg', ...STANDBY_MEDIA], {
        required: 'give --allowed-signers FILE naming the site key (or allowed-signers = ... in the file given with --config)',
      }),
      drill: {},
      ...each(['standby status', 'standby promote'], { help: 'with --from: OpenSSH allowed_signers naming the site key' }),
      'media copy': { help: 'or: OpenSSH allowed_signers naming the keys bundles may be signed by' },
    },
  },
  {
    flag: 'site',
    key: 'site',
    kind: 'text',
    arg: 'site',
    help: 'the site id (lowercase letters, digits, ".", "_", "-")',
    fileCheck: { re: SITE_RE, what: 'a valid site id' },
    commands: {
      export: { required: 'give --site SITE' },
      status: { required: 'give --site SITE' },
      prune: { required: 'give --site SITE' },
      keygen: { help: 'the site id the allowed_signers line names' },
      ...each([...RECOVERY, 'standby init'], { source: 'flag', help: 'the site, when the folder holds bundles of several' }),
      run: fromFile('put site = SITE into the config file'),
      runbook: fromFile('put site = SITE into the config file'),
    },
  },
  {
    flag: 'signing-key',
    key: 'signing-key',
    kind: 'text',
    arg: 'file',
    help: 'the appliance Ed25519 signing key (OpenSSH format, mode 0600)',
    commands: {
      export: { required: 'give --signing-key FILE (made by airlock keygen)' },
      'media copy': { help: 'the appliance signing key: bundles must be signed by it (only its public half is used)' },
      keygen: { source: 'flag', help: 'write an Ed25519 signing key here (0600) and FILE.pub; prints the allowed_signers line' },
      runbook: fromFile(),
    },
  },
  {
    flag: 'state-dir',
    key: 'state-dir',
    kind: 'text',
    arg: 'dir',
    help: 'the state folder (default $AIRLOCK_STATE_DIR or /var/lib/airlock)',
    commands: { ...each(['export', 'media init', 'media copy', 'status', 'prune', 'wal-ingest']), run: fromFile(), runbook: fromFile() },
  },
  {
    flag: 'wal-spool',
    key: 'spool',
    kind: 'text',
    arg: 'dir',
    help: 'the WAL spool: the folder archive_command (airlock wal-push) writes into',
    commands: { ...each(['export', 'check', 'status']), prune: { required: 'give --wal-spool DIR' }, run: fromFile() },
  },
  {
    flag: 'spool',
    key: 'spool',
    kind: 'text',
    arg: 'dir',
    help: 'the spool folder (or spool = in --config, or AIRLOCK_SPOOL)',
    commands: each(['wal-push', 'wal-ingest']),
  },
  {
    flag: 'pg',
    key: 'pg',
    kind: 'text',
    arg: 'conninfo',
    help: 'PostgreSQL: the connection (libpq string or URL; the password from PGPASSFILE or PGPASSWORD, never here)',
    commands: {
      export: {},
      check: { required: 'give --pg CONNINFO, the connection to the server' },
      status: { help: 'ask the server too: pg_stat_archiver, and whether it wrote WAL that is not in the spool yet (the exact on-appliance RPO)' },
      run: fromFile(),
    },
  },
  {
    flag: 'pg-bin',
    key: 'pg-bin',
    kind: 'text',
    arg: 'dir',
    help: "PostgreSQL: the folder of its client programs (default: the server version's)",
    commands: {
      export: {},
      check: {},
      ...each(['restore pg', 'drill', ...STANDBY], {
        source: 'flag',
        help: "the folder of pg_ctl, psql, pg_restore, pg_amcheck (default: the backed-up major version's)",
      }),
    },
  },

  // export
  {
    flag: 'recipient',
    key: 'recipient',
    kind: 'list',
    arg: 'age1...',
    help: 'an age recipient; give two: the recovery site and an escrow key',
    fileCheck: { re: /^age1[0-9a-z]{58}$/, what: 'an age recipient (age1...)' },
    commands: { export: {}, runbook: fromFile() },
  },
  { flag: 'files', key: 'files', kind: 'variadic', arg: 'path', help: 'config and secret files or folders to carry', commands: { export: {} } },
  {
    flag: 's3-endpoint',
    key: 's3-endpoint',
    kind: 'text',
    arg: 'url',
    help: 'the S3 server holding the buckets to export: http(s)://host:port',
    fileCheck: { re: /^https?:\/\/[^/?#@\s]+\/?$/, what: 'an http(s)://host:port URL' },
    commands: { export: {} },
  },
  {
    flag: 'bucket',
    key: 'bucket',
    kind: 'variadic',
    arg: 'bucket',
    help: 'a bucket to export (every version when versioned), or the keys under a prefix',
    commands: { export: {} },
  },
  {
    flag: 's3-credentials',
    key: 's3-credentials',
    kind: 'text',
    arg: 'file',
    help: 'S3 keys in AWS credentials syntax, mode 0600 (default: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN)',
    commands: each(['export', 'restore objects']),
  },
  {
    flag: 's3-region',
    key: 's3-region',
    kind: 'text',
    arg: 'region',
    help: 'the region the S3 server expects in signatures (default us-east-1)',
    fileCheck: { re: /^[a-z0-9][a-z0-9-]{0,62}$/, what: 'a region name like us-east-1' },
    commands: each(['export', 'restore objects']),
  },
  {
    flag: 's3-ca-file',
    key: 's3-ca-file',
    kind: 'text',
    arg: 'file',
    help: 'trust the CA certificates in this PEM file for an https endpoint (a private CA)',
    commands: each(['export', 'restore objects']),
  },
  {
    flag: 's3-addressing',
    key: 's3-addressing',
    kind: 'text',
    arg: 'path|virtual',
    help: 'path: http://host/bucket/key (default); virtual: http://bucket.host/key',
    fileCheck: { re: /^(path|virtual)$/, what: 'path or virtual' },
    commands: each(['export', 'restore objects']),
  },
  { flag: 'pg-base', key: 'pg-base', kind: 'flag', help: 'PostgreSQL: take a physical base backup (pg_basebackup) into the bundle', commands: { export: {} } },
  {
    flag: 'pg-dump',
    key: 'pg-dump',
    kind: 'flag',
    help: 'PostgreSQL: take pg_dump -Fc of every database and pg_dumpall --globals-only',
    commands: { export: {} },
  },
  {
    flag: 'pg-table-checks',
    key: 'pg-table-checks',
    kind: 'flag',
    help: 'PostgreSQL: record row counts and checksums of every table at the restore point, for drills (holds writers while it reads)',
    commands: { export: {} },
  },
  {
    flag: 'wal-timeout',
    key: 'wal-timeout',
    kind: 'seconds',
    arg: 'seconds',
    default: '120',
    help: "PostgreSQL: how long to wait for the restore point's WAL to be archived",
    commands: { export: {} },
  },
  { flag: 'incremental', kind: 'flag', help: 'buckets: leave out the versions that earlier bundles of this site already hold', commands: { export: {} } },
  {
    flag: 'compress',
    key: 'compress',
    kind: 'compression',
    arg: 'zstd|none',
    default: 'zstd',
    help: 'compress the tar with zstd before encryption (stretches that look random are stored as they are)',
    commands: { export: {} },
  },
  {
    flag: 'recovery-percent',
    key: 'recovery-percent',
    kind: 'share',
    arg: 'n',
    help: 'also write par2 recovery data able to rebuild N% of the volumes (1-100)',
    commands: { export: {} },
  },
  {
    flag: 'volume-size',
    key: 'volume-size',
    kind: 'volumeSize',
    arg: 'size',
    default: '1G',
    help: 'size of each payload volume (at most 4G-1 on FAT32)',
    commands: { export: {} },
  },
  { flag: 'not-fat32', key: 'not-fat32', kind: 'flag', help: 'the medium is not FAT32: allow volumes of 4 GiB and more', commands: { export: {} } },
  { flag: 'continue-from', kind: 'text', arg: 'bundle', help: 'the state folder was lost: continue the chain after this bundle', commands: { export: {} } },
  {
    flag: 'abandon-unfinished',
    kind: 'flag',
    help: 'forget an interrupted export whose medium is lost (only if it never held a finished bundle)',
    commands: { export: {} },
  },
  {
    flag: 'no-read-back',
    kind: 'flag',
    help: 'do not read the bundle back from the medium afterwards (then this copy does not count for retention)',
    commands: { export: {} },
  },

  // check
  { flag: 'max-archive-timeout', kind: 'seconds', arg: 'seconds', default: '60', help: 'the largest archive_timeout that passes', commands: { check: {} } },

  // the restores and the drill
  {
    flag: 'seq',
    kind: 'seq',
    arg: 'n',
    help: 'restore this bundle instead of the newest',
    commands: {
      'restore files': {},
      'restore objects': {},
      'restore pg': { help: 'with --dump: the bundle to take the dump from (default the newest with dumps)' },
    },
  },
  {
    flag: 'to',
    kind: 'text',
    arg: 'dir',
    help: 'a new or empty folder to restore into',
    commands: {
      'restore files': {
        required: 'give --to DIR, a new or empty folder; files go to DIR/<original path>',
        help: 'a new or empty folder; files go to DIR/<original path>',
      },
      'restore objects': { help: 'restore into this new or empty folder instead: DIR/<bucket>/<key as a safe path>' },
    },
  },
  { flag: 'endpoint', kind: 'text', arg: 'url', help: 'the S3 server to restore into: http(s)://host:port', commands: { 'restore objects': {} } },
  {
    flag: 'bucket-map',
    kind: 'variadic',
    arg: 'src=dst',
    help: 'restore bucket SRC of the bundle into bucket DST (new or empty)',
    commands: { 'restore objects': {} },
  },
  {
    flag: 'id-map',
    kind: 'text',
    arg: 'file',
    help: 'where to write the map of source version ids to new ones (default ./<bundle>.id-map.jsonl)',
    commands: { 'restore objects': {} },
  },
  {
    flag: 'at',
    kind: 'text',
    arg: 'time',
    help: 'restore history up to this time (ISO 8601); into a folder: the version current then',
    commands: { 'restore objects': {} },
  },
  {
    flag: 'pgdata',
    kind: 'text',
    arg: 'dir',
    help: 'a new or empty data folder; its WAL goes to DIR.wal beside it',
    commands: {
      'restore pg': {},
      'standby init': { required: 'give --pgdata DIR, a new or empty data folder for the standby', help: 'a new or empty data folder for the standby' },
    },
  },
  {
    flag: 'standby',
    key: 'standby',
    kind: 'text',
    arg: 'dir',
    help: "the standby's folder: its state, its WAL folder and its lock (mode 0700, on the data folder's file system)",
    commands: {
      'standby init': { help: "the standby's folder to make: its state, its WAL folder, its lock (default DIR.standby beside --pgdata, on its file system)" },
      ...each(['standby apply', 'standby status', 'standby promote'], { required: "give --standby DIR, the standby's folder that standby init made" }),
      drill: { source: 'flag', help: 'check the running standby of this folder read-only instead of restoring the media (no --from needed)' },
    },
  },
  {
    flag: 'target-time',
    kind: 'text',
    arg: 'time',
    help: 'recover to this time; it must carry an offset (2026-03-01T12:00:00Z)',
    commands: {
      'restore pg': {},
      'standby promote': { help: 'end recovery at this time (with an offset) and promote; it must lie after what the standby replayed' },
    },
  },
  {
    flag: 'tablespace-map',
    kind: 'list',
    arg: 'oid-or-name=dir',
    help: 'a new or empty folder for a tablespace of the base backup (repeatable; every tablespace needs one)',
    commands: { 'restore pg': {} },
  },
  { flag: 'target-lsn', kind: 'text', arg: 'lsn', help: 'recover to this WAL location', commands: { 'restore pg': {} } },
  {
    flag: 'target-name',
    kind: 'text',
    arg: 'name',
    help: 'recover to this restore point (every export creates airlock-SITE-SEQ)',
    commands: { 'restore pg': {}, 'standby promote': { help: 'end recovery at this restore point and promote; it must not be replayed yet' } },
  },
  {
    flag: 'latest',
    kind: 'flag',
    help: 'recover every WAL segment of the set',
    commands: { 'restore pg': {}, 'standby promote': { help: 'promote once every WAL file the standby holds is replayed' } },
  },
  { flag: 'or-latest', kind: 'flag', help: 'with --target-time after the newest data: restore the newest instead of refusing', commands: { 'restore pg': {} } },
  {
    flag: 'port',
    kind: 'port',
    arg: 'port',
    default: '5433',
    help: 'the port of the restored server; it listens on localhost only',
    commands: { 'restore pg': {}, 'standby init': { help: 'the port of the standby; it listens on localhost only' } },
  },
  {
    flag: 'start',
    kind: 'flag',
    help: 'start the server, wait until recovery ended and check it reached the target; leave it running',
    commands: { 'restore pg': {} },
  },
  { flag: 'stop', kind: 'flag', help: 'like --start, then stop the server again', commands: { 'restore pg': {} } },
  {
    flag: 'pg-user',
    kind: 'text',
    arg: 'role',
    default: 'postgres',
    help: 'the role that checks the restored cluster',
    commands: each(['restore pg', 'drill', ...STANDBY]),
  },
  {
    flag: 'timeout',
    kind: 'seconds',
    arg: 'seconds',
    default: '3600',
    help: 'how long recovery may take',
    commands: {
      ...each(['restore pg', 'drill', 'standby init', 'standby promote']),
      'standby apply': { help: 'how long to wait for the standby to replay what was added' },
    },
  },
  {
    flag: 'airlock-cli',
    kind: 'text',
    arg: 'file',
    help: "the airlock main.js the cluster's user runs for restore_command (default: this one)",
    commands: each(['restore pg', 'drill', 'standby init']),
  },
  {
    flag: 'rebase',
    kind: 'flag',
    help: 'when the new media carry a newer base backup: stop the standby and lay it down again from it (else only their WAL is applied)',
    commands: { 'standby apply': {} },
  },
  { flag: 'dump', kind: 'flag', help: 'restore a logical dump instead: needs --dbname and --database', commands: { 'restore pg': {} } },
  { flag: 'dbname', kind: 'text', arg: 'conninfo', help: 'with --dump: the database to restore into (it must exist)', commands: { 'restore pg': {} } },
  { flag: 'database', kind: 'text', arg: 'name', help: 'with --dump: the dumped database to restore', commands: { 'restore pg': {} } },
  {
    flag: 'staging',
    kind: 'text',
    arg: 'dir',
    help: 'with --dump: where the decrypted dump waits for pg_restore (default the temp folder)',
    commands: { 'restore pg': {} },
  },
  {
    flag: 'jobs',
    kind: 'jobs',
    arg: 'n',
    help: 'with --dump: run pg_restore with N parallel jobs, from a file in the staging folder (default: one, streamed)',
    commands: { 'restore pg': {} },
  },
  { flag: 'report', kind: 'text', arg: 'prefix', help: 'write the report to PREFIX.json and PREFIX.txt', commands: { drill: {} } },
  { flag: 'scratch', kind: 'text', arg: 'dir', help: 'where the throwaway cluster and folders go (default a new temp folder)', commands: { drill: {} } },
  {
    flag: 'os-user',
    kind: 'text',
    arg: 'user',
    default: 'postgres',
    help: 'when run as root: the OS user the throwaway cluster runs as',
    commands: { drill: {} },
  },
  { flag: 'keep', kind: 'flag', help: 'keep the scratch folders (the cluster is stopped either way)', commands: { drill: {} } },

  // media, keys, status, prune, the agent, the runbook, the WAL commands
  {
    flag: 'label',
    kind: 'text',
    arg: 'label',
    help: 'a name for people, written on the medium (letters, digits, space, ".", "_", "-")',
    commands: { 'media init': { required: 'give --label LABEL' } },
  },
  {
    flag: 'force',
    kind: 'flag',
    help: 'label a medium that has a label or bundles already (a new UUID: copies under the old one stop counting)',
    commands: { 'media init': {} },
  },
  { flag: 'age', kind: 'text', arg: 'file', help: 'recovery site only: write an age identity here (0600); prints its recipient', commands: { keygen: {} } },
  {
    flag: 'prometheus',
    kind: 'text',
    arg: 'file',
    help: 'also write the figures as a Prometheus text file (atomically)',
    commands: { status: {}, 'standby status': {} },
  },
  {
    key: 'standby-lag-warning',
    kind: 'duration',
    default: '26h',
    help: 'standby status: warning when the newest restore point the standby replayed is this old',
    commands: { 'standby status': fromFile() },
  },
  {
    key: 'standby-lag-critical',
    kind: 'duration',
    default: '50h',
    help: 'standby status: critical when the newest restore point the standby replayed is this old',
    commands: { 'standby status': fromFile() },
  },
  { key: 'wal-age-warning', kind: 'duration', default: '5m', help: 'status: warning when the newest WAL is this old', commands: { status: fromFile() } },
  { key: 'wal-age-critical', kind: 'duration', default: '15m', help: 'status: critical when the newest WAL is this old', commands: { status: fromFile() } },
  {
    key: 'spool-free-warning',
    kind: 'percent',
    default: '20%',
    help: 'status: warning when the spool has less free space than this',
    commands: { status: fromFile() },
  },
  {
    key: 'spool-free-critical',
    kind: 'percent',
    default: '5%',
    help: 'status: critical when the spool has less free space than this',
    commands: { status: fromFile() },
  },
  {
    key: 'offsite-rpo-warning',
    kind: 'duration',
    default: '26h',
    help: 'status: warning when the newest bundle verified on a medium is this old',
    commands: { status: fromFile() },
  },
  {
    key: 'offsite-rpo-critical',
    kind: 'duration',
    default: '50h',
    help: 'status: critical when the newest bundle verified on a medium is this old',
    commands: { status: fromFile() },
  },
  {
    flag: 'min-copies',
    key: 'min-copies',
    kind: 'copies',
    arg: 'n',
    default: '2',
    help: 'verified media a bundle must be on before its WAL leaves the spool',
    commands: { prune: {} },
  },
  {
    flag: 'retention',
    key: 'retention',
    kind: 'duration',
    arg: 'duration',
    default: '400d',
    help: "the catalog's window: pruned WAL records and job runs older than this are forgotten",
    commands: { prune: {} },
  },
  { flag: 'dry-run', kind: 'flag', help: 'list what would be removed, remove nothing', commands: { prune: {} } },
  { flag: 'once', kind: 'flag', help: 'one pass, then exit (non-zero when a job failed): for cron, timers and tests', commands: { run: {} } },
  {
    key: 'medium',
    kind: 'list',
    help: 'airlock run: the media, one line each; an export goes to the first mounted, then is copied to the others mounted',
    commands: { run: fromFile() },
  },
  { key: 'export-every', kind: 'duration', default: '1h', help: 'airlock run: an export (WAL, files, buckets) this often', commands: { run: fromFile() } },
  { key: 'base-every', kind: 'duration', default: '24h', help: 'airlock run: a base backup and dumps this often', commands: { run: fromFile() } },
  {
    flag: 'from',
    kind: 'list',
    arg: 'medium',
    help: "read the bundles' manifests on this medium (repeatable) instead of where the catalog wrote them",
    commands: { runbook: {} },
  },
  {
    flag: 'from',
    key: 'wal-from',
    kind: 'text',
    arg: 'dir',
    help: 'the folder holding the WAL files (and their .sha256 sidecars)',
    commands: { 'wal-fetch': { required: 'give --from DIR, the folder holding the extracted wal files (or wal-from = DIR in the file given with --config)' } },
  },
  {
    flag: 'standby',
    kind: 'flag',
    help: 'the server is a warm standby that standby apply feeds: a file announced by its sidecar but not placed yet is absent, not an error',
    commands: { 'wal-fetch': {} },
  },
  {
    flag: 'sums',
    kind: 'text',
    arg: 'file',
    help: `a sha256sum index (the bundle's ${INNER_MANIFEST}) for files without a sidecar`,
    commands: { 'wal-fetch': {} },
  },

  // every command, last in every help
  {
    flag: 'config',
    kind: 'text',
    arg: 'file',
    help: 'read settings from this config file (flags win)',
    commands: {
      ...each(['keygen', 'export', 'check', ...RECOVERY, ...STANDBY, 'media init', 'media copy', 'status', 'prune', 'wal-push', 'wal-ingest', 'wal-fetch']),
      'media list': { help: 'checked like every config file; list needs nothing from it' },
      run: {
        help: 'the config file: site, keys, sources, medium, export-every, base-every',
        required: 'the config names the site, keys, sources, medium and schedule (see the README)',
      },
      runbook: { help: "the agent's config file: site, recipients, signing key, state folder", required: "give the agent's config file" },
    },
  },
  {
    flag: 'json',
    kind: 'flag',
    help: 'print the result as JSON',
    commands: each(['export', 'check', ...RECOVERY, ...STANDBY, 'media init', 'media copy', 'media list', 'status', 'prune', 'wal-ingest']),
  },
];

/** An option as one command takes it. */
export interface Taken {
  spec: OptionSpec;
  use: Use;
  /** the flag on this command, if it has one here */
  flag: string | undefined;
  /** the config key this command reads, if it reads one */
  key: string | undefined;
  /** the property of the parsed options: the flag's (commander's camelCase, --no-x gives x), else the key's */
  name: string;
}

const camel = (s: string) => s.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** The options `command` takes, in the table's order. */
export function optionsOf(command: CommandPath): Taken[] {
  return OPTIONS.flatMap((spec) => {
    const use = spec.commands[command];
    if (!use) return [];
    const flag = use.source === 'file' ? undefined : spec.flag;
    const key = use.source === 'flag' ? undefined : spec.key;
    return [{ spec, use, flag, key, name: camel((flag ?? key ?? '').replace(/^no-/, '')) }];
  });
}

/** The option's value from text: its kind's parse, or `usage` naming the option and what it wants. */
export function parseValue(t: Taken, text: string, command: CommandPath): unknown {
  const v = KINDS[t.spec.kind].parse(text);
  if (v === undefined)
    throw new AirlockError('usage', `--${t.flag ?? t.key} ${text}: not ${KINDS[t.spec.kind].what}`, { hint: `see airlock ${command} --help` });
  return v;
}

/**
 * What the config file may hold: each key with its kind and up-front check. A key is a list when
 * any option reads it as one (`medium`: the media of `run`); an option of one value takes the first.
 */
export function configKeys(): Map<string, { kind: Kind; list: boolean; fileCheck?: OptionSpec['fileCheck'] }> {
  const keys = new Map<string, { kind: Kind; list: boolean; fileCheck?: OptionSpec['fileCheck'] }>();
  for (const spec of OPTIONS) {
    if (spec.key === undefined) continue;
    const kind: Kind = KINDS[spec.kind];
    const list = kind.list !== undefined || keys.get(spec.key)?.list === true;
    keys.set(spec.key, { kind: keys.get(spec.key)?.kind ?? kind, list, ...(spec.fileCheck ? { fileCheck: spec.fileCheck } : {}) });
  }
  return keys;
}
