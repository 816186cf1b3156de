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
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Error code -> exit code. Adding a code means adding its exit code here. */
const CODES = {
  usage: EXIT.usage,
  'config-invalid': EXIT.usage,
  'volume-too-large': EXIT.usage,
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
  'target-exists': EXIT.conflict,
  'state-lost': EXIT.conflict,
  'seq-conflict': EXIT.conflict,
  locked: EXIT.conflict,
  incompatible: EXIT.conflict,
  'source-changed': EXIT.source,
  'source-unreadable': EXIT.source,
  'child-failed': EXIT.source,
  /** the S3 endpoint did not answer (refused, unknown host, timed out) */
  's3-unreachable': EXIT.source,
  /** the S3 server rejected the credentials or the request's permissions */
  's3-denied': EXIT.source,
  /** any other refusal or unexpected answer of the S3 server */
  's3-failed': EXIT.source,
  /** an object's bytes did not match the size or ETag the server stated */
  'source-corrupt': EXIT.source,
  'bucket-not-found': EXIT.input,
  'medium-full': EXIT.medium,
  io: EXIT.medium,
  internal: EXIT.internal,
} as const satisfies Record<string, ExitCode>;

export type Code = keyof typeof CODES;

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

/** Maps Node's system errors on a path to a typed error; anything else is returned unchanged. */
export function fromSystemError(e: unknown, what: string): unknown {
  const errno = (e as NodeJS.ErrnoException | null)?.code;
  switch (errno) {
    case 'ENOENT':
      return new AirlockError('not-found', `${what}: no such file or directory`, { cause: e });
    case 'EACCES':
    case 'EPERM':
      return new AirlockError('source-unreadable', `${what}: permission denied`, { cause: e });
    case 'ENOSPC':
    case 'EDQUOT':
      return new AirlockError('medium-full', `${what}: no space left on device`, {
        cause: e,
        hint: 'use a larger medium or a smaller --volume-size; nothing was left behind',
      });
    case 'EIO':
    case 'EROFS':
      return new AirlockError('io', `${what}: ${errno === 'EIO' ? 'input/output error' : 'read-only file system'}`, { cause: e });
    default:
      return e;
  }
}

/** The exit-code table as printed by `--help` and copied into the docs. */
export const EXIT_TABLE: readonly (readonly [number, string])[] = [
  [EXIT.ok, 'success; for airlock-verify: every check passed'],
  [EXIT.failed, 'verification failed (a finding), or a restore refused because of one'],
  [EXIT.usage, 'usage error: unknown option, missing argument, invalid config'],
  [EXIT.input, 'an input is missing or unreadable: key, allowed_signers, bundle, file, bucket'],
  [EXIT.conflict, 'refused by state: target not empty, seq conflict, lock held, lost state'],
  [EXIT.source, 'a source or S3 server failed (file changed or unreadable, a child tool failed, S3 unreachable or refusing)'],
  [EXIT.medium, 'the medium or state directory failed: I/O error, no space left'],
  [EXIT.internal, 'internal error (a bug; please report it with the message)'],
];

export function formatExitTable(): string {
  return ['Exit codes:', ...EXIT_TABLE.map(([c, s]) => `  ${String(c).padStart(2)}  ${s}`)].join('\n');
}
