/*
 * Named fault points. Tests set AIRLOCK_FAULT to a point's name (or `seed:N`, which picks one of the
 * points reached, deterministically) and the process kills itself with SIGKILL when it gets there, as a
 * power cut would: no finally blocks, no cleanup. Production runs never set it.
 */

let reached = 0;

function pick(spec: string, name: string): boolean {
  if (spec === name) return true;
  const m = /^seed:(\d+)$/.exec(spec);
  if (!m) return false;
  // the point number `seed mod 16` among those reached in this run is the one that fires
  reached++;
  return reached - 1 === Number(m[1]) % 16;
}

/** Kills the process at the named point when the environment asks for it. */
export function faultPoint(name: string): void {
  const spec = process.env.AIRLOCK_FAULT;
  if (spec && pick(spec, name)) {
    process.stderr.write(`airlock: fault point ${name} reached, killing myself\n`);
    process.kill(process.pid, 'SIGKILL');
  }
}
