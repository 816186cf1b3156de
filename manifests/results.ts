/*
 * Verification results (SPEC.md 9): the closed set every check ends in, in one place. The verifier's
 * findings, its --help, README.md and SPEC.md all name these; a unit test holds the docs to this list.
 */
export const RESULTS = [
  'ok',
  'missing',
  'extra',
  'checksum-mismatch',
  'size-mismatch',
  'bad-signature',
  'wrong-signer',
  'chain-gap',
  'fork',
  'rollback',
  'withheld',
  'partial',
  'unsafe-entry',
  'malformed',
  'decrypt-failed',
  'wal-gap',
  'timeline-break',
] as const;

export type Result = (typeof RESULTS)[number];
