/*
 * Named fault points. Tests set AIRLOCK_FAULT to a point's name, or to `seed:N` which picks point
 * N mod (number of points) from the export's list below, and the process kills itself with SIGKILL when it
 * gets there, as a power cut would: no finally blocks, no cleanup. With AIRLOCK_FAULT_SIGNAL=SIGSTOP
 * it stops there instead, alive and holding what it holds, until the test sends SIGCONT (or kills
 * it). Production runs never set them.
 */

/** Fault points only an export of PostgreSQL (with --pg-base and --pg-dump) reaches. */
export const PG_FAULT_POINTS = ['export:after-base', 'export:after-dumps', 'export:after-switch'] as const;
/** Every fault point of an export, in the order it reaches them; `seed:N` picks among these. */
export const FAULT_POINTS = [
  'export:after-intent',
  ...PG_FAULT_POINTS,
  'writer:after-volumes',
  'writer:before-rename',
  'writer:after-rename',
  'export:before-commit',
] as const;
/** A bucket restore, after a version was written and before its journal line; any restore, once a bundle was decrypted into staging and checked. */
export const RESTORE_FAULT_POINTS = ['restore:after-write', 'restore:after-stage'] as const;
export type FaultPoint = (typeof FAULT_POINTS)[number] | (typeof RESTORE_FAULT_POINTS)[number];

/** AIRLOCK_FAULT_SKIP=N lets a point pass N times before it fires (to stop a restore halfway). */
let passes = 0;

function chosen(spec: string): string {
  const m = /^seed:(\d+)$/.exec(spec);
  return m ? (FAULT_POINTS[Number(m[1]) % FAULT_POINTS.length] as string) : spec;
}

/** Kills the process at the named point when the environment asks for it. */
export function faultPoint(name: FaultPoint): void {
  const spec = process.env.AIRLOCK_FAULT;
  if (spec && chosen(spec) === name && passes++ >= Number(process.env.AIRLOCK_FAULT_SKIP ?? 0)) {
    // Straight to stderr rather than through a reporter the command passed in: the next statement
    // kills (or stops) the process, and a write to a pipe or a file is synchronous in Node, so this
    // line is the last thing a test sees; passing a reporter down to every point would change every caller.
    const stop = process.env.AIRLOCK_FAULT_SIGNAL === 'SIGSTOP';
    process.stderr.write(`airlock: fault point ${name} reached, ${stop ? 'stopping' : 'killing'} myself\n`);
    process.kill(process.pid, stop ? 'SIGSTOP' : 'SIGKILL');
  }
}
