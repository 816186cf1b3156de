/*
 * Errors and exit codes: the one table.
 *
 * Every failure that a caller may branch on is an AirlockError with a code from the closed union
 * below. Each code maps to exactly one exit code, so `airlock` and `airlock-verify` end the same way
 * for the same cause, and the table printed by `--help` and in the docs is generated from here.
 * Messages are lowercase without a final period; the hint says what to do about it.
 */

export const EXIT = {
  ok: 0,
  /** verification found a problem, or a restore refused because of one */
  failed: 1,
  /** bad command line, bad config */
  usage: 2,
  /** an input (key, bundle, file) is missing or unreadable */
  input: 3,
  /** the state forbids it: target exists, seq conflict, lock held, lost state */
  conflict: 4,
  /** a source (files, PostgreSQL, S3) failed while exporting */
  source: 5,
  /** the medium or the state directory failed: I/O error, no space */
  medium: 6,
  /** a bug: please report it */
  internal: 70,
  /** stopped by SIGINT or SIGTERM; nothing half-written was left looking finished */
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/**
 * Error code -> exit code, each with when it is raised. Adding a code means adding its exit code and
 * its comment here (a unit test checks that every code has one).
 */
const CODES = {
  /** a bad command line: unknown option, missing or malformed argument, options that exclude each other (exit 2) */
  usage: EXIT.usage,
  /** a config file that cannot be read as one: unknown key, bad value, a key given twice (exit 2) */
  'config-invalid': EXIT.usage,
  /** --volume-size over what the medium's file system holds (4 GiB - 1 on FAT32) (exit 2) */
  'volume-too-large': EXIT.usage,
  /** a restore of a base backup with a tablespace that no --tablespace-map names (exit 2) */
  'tablespace-unmapped': EXIT.usage,
  /** a file, folder or key the command was pointed at does not exist (exit 3) */
  'not-found': EXIT.input,
  /** a signing key or credentials file that is unreadable, malformed or readable by others (exit 3) */
  'bad-key': EXIT.input,
  /** an age recipient that is not a valid X25519 public key (exit 3) */
  'bad-recipient': EXIT.input,
  /** an age identity file that is not a valid X25519 secret key, or matches no recipient (exit 3) */
  'bad-identity': EXIT.input,
  /** an allowed_signers file that cannot be parsed or names no usable key (exit 3) */
  'bad-allowed-signers': EXIT.input,
  /** no bundle of the site (or with the seq asked for) in the catalog or under the folder given (exit 3) */
  'no-bundle': EXIT.input,
  /** SHA256SUMS.sig does not verify over SHA256SUMS (exit 1) */
  'bad-signature': EXIT.failed,
  /** the signature is good but by a key allowed_signers does not allow for the site (exit 1) */
  'wrong-signer': EXIT.failed,
  /** a file of the bundle (manifest, sums, index, sidecar, header) is not in its format (exit 1) */
  malformed: EXIT.failed,
  /** age decryption failed: no identity matches, or a header or chunk does not authenticate (exit 1) */
  'decrypt-failed': EXIT.failed,
  /** bytes whose sha256 differs from the signed or recorded one (exit 1) */
  'checksum-mismatch': EXIT.failed,
  /** a file or entry whose size differs from the signed or recorded one, or is over its limit (exit 1) */
  'size-mismatch': EXIT.failed,
  /** a tar entry or index record a reader must not lay out: links, devices, unsafe paths (exit 1) */
  'unsafe-entry': EXIT.failed,
  /** a restore refused because the bundle did not verify, or its payload disagreed with its manifests (exit 1) */
  'verification-failed': EXIT.failed,
  /** a WAL file that is not a valid segment of the server's version and size, or has no known sha256 (exit 1) */
  'bad-wal': EXIT.failed,
  /** something that is never overwritten exists: a restore target that is not empty, a bundle folder, a key file, a medium's label (exit 4) */
  'target-exists': EXIT.conflict,
  /** a restore target, or a folder a medium command would write or count through, that is a symbolic link, not a folder, or on another file system (exit 4) */
  'unsafe-target': EXIT.conflict,
  /** the catalog is behind the medium: the state folder was lost or restored from an old copy (exit 4) */
  'state-lost': EXIT.conflict,
  /** a bundle with this seq exists already, or a bundle found is not the one this appliance wrote (exit 4) */
  'seq-conflict': EXIT.conflict,
  /** another airlock command holds the lock of the state folder or medium (exit 4) */
  locked: EXIT.conflict,
  /** the state folder is writable by other users than its owner (exit 4) */
  'unsafe-state': EXIT.conflict,
  /** the catalog was written by a newer airlock (exit 4) */
  incompatible: EXIT.conflict,
  /** a WAL file already held (spool or catalog) under that name with other bytes (exit 4) */
  'wal-conflict': EXIT.conflict,
  /** media for a standby that do not continue the chain it holds: bundles or WAL segments missing in between (exit 4) */
  'standby-gap': EXIT.conflict,
  /** media for a standby whose chain is not the one it holds: another prev hash, another bundle with an applied seq, another cluster (exit 4) */
  'standby-fork': EXIT.conflict,
  /** a standby asked to stop at a target its replay already passed: it cannot rewind (exit 4) */
  'standby-passed': EXIT.conflict,
  /** a standby command on a standby that was promoted: it is a server of its own now (exit 4) */
  'standby-promoted': EXIT.conflict,
  /** a source file changed while it was read (exit 5) */
  'source-changed': EXIT.source,
  /** a source file or folder that may not be read (exit 5) */
  'source-unreadable': EXIT.source,
  /** a file whose size the kernel does not know (a /proc, sysfs or FUSE file that says 0 and holds data) (exit 5) */
  'source-unsized': EXIT.source,
  /** a child tool (pg_basebackup, pg_dump, zstd, par2, ...) exited with an error (exit 5) */
  'child-failed': EXIT.source,
  /** the S3 endpoint did not answer (refused, unknown host, timed out) (exit 5) */
  's3-unreachable': EXIT.source,
  /** the S3 server rejected the credentials or the request's permissions (exit 5) */
  's3-denied': EXIT.source,
  /** any other refusal or unexpected answer of the S3 server (exit 5) */
  's3-failed': EXIT.source,
  /** an object's bytes did not match the size or ETag the server stated (exit 5) */
  'source-corrupt': EXIT.source,
  /** PostgreSQL refused a query or the connection failed (exit 5) */
  'pg-failed': EXIT.source,
  /** the server is a PostgreSQL major version airlock does not support (13 to 17 are) (exit 5) */
  'pg-unsupported': EXIT.source,
  /** an archived WAL file the export waits for did not reach the spool in time (exit 5) */
  'wal-timeout': EXIT.source,
  /** a restored server did not reach what the target asked for (exit 1) */
  'recovery-failed': EXIT.failed,
  /** airlock check found a setting, right or tool that exports need (exit 1) */
  'check-failed': EXIT.failed,
  /** a restore drill found a problem (exit 1) */
  'drill-failed': EXIT.failed,
  /** a bucket named on the command line does not exist on the S3 server (exit 3) */
  'bucket-not-found': EXIT.input,
  /** no space left on the medium or in the state folder (exit 6) */
  'medium-full': EXIT.medium,
  /** no space left in the WAL spool: wal-push cannot take the file, PostgreSQL retries it (exit 6) */
  'spool-full': EXIT.medium,
  /** an I/O error, a read-only file system, or a catalog that cannot be opened (exit 6) */
  io: EXIT.medium,
  /** a bug: a state the code rules out was reached (exit 70) */
  internal: EXIT.internal,
  /** stopped by SIGINT or SIGTERM after cleaning up (exit 130) */
  interrupted: EXIT.interrupted,
} as const satisfies Record<string, ExitCode>;

export type Code = keyof typeof CODES;

/** Every error code, for documentation and tests. */
export const ALL_CODES = Object.keys(CODES) as Code[];

export class AirlockError extends Error {
  readonly code: Code;
  readonly hint: string | undefined;

  constructor(code: Code, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AirlockError';
    this.code = code;
    this.hint = options.hint;
  }

  get exitCode(): ExitCode {
    return CODES[this.code];
  }
}

export function isAirlockError(e: unknown, code?: Code): e is AirlockError {
  return e instanceof AirlockError && (code === undefined || e.code === code);
}

/** The exit code for any thrown value: an AirlockError's own, otherwise internal. */
export function exitCodeOf(e: unknown): ExitCode {
  return e instanceof AirlockError ? e.exitCode : EXIT.internal;
}

/**
 * Maps Node's system errors on a path to a typed error; anything else is returned unchanged.
 * `denied` is the code for a permission error, which depends on what the path was: a source being
 * read (the default), a medium being written (`io`), an input such as a key (`not-found` is wrong
 * there too, so callers pass what fits).
 */
export function fromSystemError(e: unknown, what: string, denied: Code = 'source-unreadable'): unknown {
  const errno = (e as NodeJS.ErrnoException | null)?.code;
  switch (errno) {
    case 'ENOENT':
      return new AirlockError('not-found', `${what}: no such file or directory`, { cause: e });
    case 'EACCES':
    case 'EPERM':
      return new AirlockError(denied, `${what}: permission denied`, { cause: e });
    case 'ENOSPC':
    case 'EDQUOT':
      return new AirlockError('medium-full', `${what}: no space left on device`, {
        cause: e,
        hint: 'free space on the medium or use a larger one; nothing was left behind',
      });
    case 'EIO':
    case 'EROFS':
      return new AirlockError('io', `${what}: ${errno === 'EIO' ? 'input/output error' : 'read-only file system'}`, { cause: e });
    default:
      return e;
  }
}

/**
 * `airlock wal-fetch` runs as PostgreSQL's restore_command, where exit codes mean something else:
 * PostgreSQL takes any status from 1 to 125 as "this file does not exist" and quietly ends recovery
 * (or moves on to the next timeline), and aborts recovery on a status above 125. So wal-fetch exits
 * 1 only when the file is absent, and every other failure, even a bad command line, is above 125:
 * a corrupt or unreadable segment must stop the restore, never shorten it silently.
 */
export const WAL_FETCH_EXIT = {
  ok: 0,
  /** the requested WAL file is not in the folder: PostgreSQL ends recovery here */
  absent: 1,
  /** the file is there but failed its check (checksum mismatch, no known checksum, bad WAL) */
  refused: 126,
  /** anything else: bad arguments, unreadable folder, I/O error, no space, a bug */
  error: 127,
} as const;

/**
 * The exit code of wal-fetch for a thrown value (see WAL_FETCH_EXIT). Never `absent`: wal-fetch
 * reports an absent file by its result, not by an error, so a missing folder or sidecar can never
 * be mistaken for the end of the WAL.
 */
export function walFetchExitCodeOf(e: unknown): number {
  if (!(e instanceof AirlockError)) return WAL_FETCH_EXIT.error;
  if (e.code === 'checksum-mismatch' || e.code === 'bad-wal' || e.code === 'malformed') return WAL_FETCH_EXIT.refused;
  return WAL_FETCH_EXIT.error;
}

/** The exit-code table as printed by `--help` and copied into the docs. */
export const EXIT_TABLE: readonly (readonly [number, string])[] = [
  [EXIT.ok, 'success; for airlock-verify: every check passed'],
  [EXIT.failed, 'verification failed (a finding), or a restore refused because of one'],
  [EXIT.usage, 'usage error: unknown option, missing argument, invalid config'],
  [EXIT.input, 'an input is missing or unreadable: key, allowed_signers, bundle, file, bucket'],
  [EXIT.conflict, "refused by state: target not empty, seq conflict, lock held, lost state, media that do not continue a standby's chain"],
  [EXIT.source, 'a source failed (file changed or unreadable, a child tool failed, PostgreSQL refused or its WAL did not arrive, S3 unreachable or refusing)'],
  [EXIT.medium, 'the medium or state directory failed: I/O error, no space left'],
  [EXIT.internal, 'internal error (a bug; please report it with the message)'],
  [
    EXIT.interrupted,
    'interrupted (SIGINT or SIGTERM); partial output was removed, except the journal of a bucket restore, which the same command run again resumes from',
  ],
  [WAL_FETCH_EXIT.absent, 'wal-fetch only: the requested WAL file is absent (PostgreSQL ends recovery)'],
  [WAL_FETCH_EXIT.refused, 'wal-fetch only: the WAL file is there but failed its check (recovery aborts)'],
  [WAL_FETCH_EXIT.error, 'wal-fetch only: any other failure, bad arguments included (recovery aborts)'],
];

/** `airlock status` and `airlock standby status` speak the monitoring plugins' language instead (Nagios). */
export const STATUS_EXIT_NOTE =
  'airlock status and standby status only (Nagios): 0 ok, 1 warning, 2 critical, 3 unknown (also when the status cannot be taken)';

export function formatExitTable(): string {
  return ['Exit codes:', ...EXIT_TABLE.map(([c, s]) => `  ${String(c).padStart(3)}  ${s}`), `  ${STATUS_EXIT_NOTE}`].join('\n');
}
