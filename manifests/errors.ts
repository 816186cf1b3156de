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

/** Error code -> exit code. Adding a code means adding its exit code here. */
const CODES = {
  usage: EXIT.usage,
  'config-invalid': EXIT.usage,
  'volume-too-large': EXIT.usage,
  /** a restore of a base backup with a tablespace that no --tablespace-map names */
  'tablespace-unmapped': EXIT.usage,
  'not-found': EXIT.input,
  'bad-key': EXIT.input,
  'bad-recipient': EXIT.input,
  'bad-identity': EXIT.input,
  'bad-allowed-signers': EXIT.input,
  'no-bundle': EXIT.input,
  'bad-signature': EXIT.failed,
  'wrong-signer': EXIT.failed,
  malformed: EXIT.failed,
  'decrypt-failed': EXIT.failed,
  'checksum-mismatch': EXIT.failed,
  'size-mismatch': EXIT.failed,
  'unsafe-entry': EXIT.failed,
  'verification-failed': EXIT.failed,
  'bad-wal': EXIT.failed,
  'target-exists': EXIT.conflict,
  /** a restore target, or a folder a medium command would write or count through, that is a symbolic link, not a folder, or on another file system */
  'unsafe-target': EXIT.conflict,
  'state-lost': EXIT.conflict,
  'seq-conflict': EXIT.conflict,
  locked: EXIT.conflict,
  /** the state folder is writable by other users than its owner */
  'unsafe-state': EXIT.conflict,
  incompatible: EXIT.conflict,
  'wal-conflict': EXIT.conflict,
  'source-changed': EXIT.source,
  'source-unreadable': EXIT.source,
  /** a file whose size the kernel does not know (a /proc, sysfs or FUSE file that says 0 and holds data) */
  'source-unsized': EXIT.source,
  'child-failed': EXIT.source,
  /** the S3 endpoint did not answer (refused, unknown host, timed out) */
  's3-unreachable': EXIT.source,
  /** the S3 server rejected the credentials or the request's permissions */
  's3-denied': EXIT.source,
  /** any other refusal or unexpected answer of the S3 server */
  's3-failed': EXIT.source,
  /** an object's bytes did not match the size or ETag the server stated */
  'source-corrupt': EXIT.source,
  /** PostgreSQL refused a query or the connection failed */
  'pg-failed': EXIT.source,
  /** the server is a PostgreSQL major version airlock does not support (13 to 17 are) */
  'pg-unsupported': EXIT.source,
  /** an archived WAL file the export waits for did not reach the spool in time */
  'wal-timeout': EXIT.source,
  /** a restored server did not reach what the target asked for */
  'recovery-failed': EXIT.failed,
  /** airlock check found a setting, right or tool that exports need */
  'check-failed': EXIT.failed,
  /** a restore drill found a problem */
  'drill-failed': EXIT.failed,
  'bucket-not-found': EXIT.input,
  'medium-full': EXIT.medium,
  'spool-full': EXIT.medium,
  io: EXIT.medium,
  internal: EXIT.internal,
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
  [EXIT.conflict, 'refused by state: target not empty, seq conflict, lock held, lost state'],
  [EXIT.source, 'a source failed (file changed or unreadable, a child tool failed, PostgreSQL refused or its WAL did not arrive, S3 unreachable or refusing)'],
  [EXIT.medium, 'the medium or state directory failed: I/O error, no space left'],
  [EXIT.internal, 'internal error (a bug; please report it with the message)'],
  [EXIT.interrupted, 'interrupted (SIGINT or SIGTERM); partial output was removed, except the journal of a bucket restore, which the same command run again resumes from'],
  [WAL_FETCH_EXIT.absent, 'wal-fetch only: the requested WAL file is absent (PostgreSQL ends recovery)'],
  [WAL_FETCH_EXIT.refused, 'wal-fetch only: the WAL file is there but failed its check (recovery aborts)'],
  [WAL_FETCH_EXIT.error, 'wal-fetch only: any other failure, bad arguments included (recovery aborts)'],
];

/** `airlock status` speaks the monitoring plugins' language instead (Nagios). */
export const STATUS_EXIT_NOTE = 'airlock status only (Nagios): 0 ok, 1 warning, 2 critical, 3 unknown (also when the status cannot be taken)';

export function formatExitTable(): string {
  return ['Exit codes:', ...EXIT_TABLE.map(([c, s]) => `  ${String(c).padStart(3)}  ${s}`), `  ${STATUS_EXIT_NOTE}`].join('\n');
}
