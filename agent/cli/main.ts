#!/usr/bin/env -S node --single-threaded-gc
/*
 * The `airlock` executable. It runs with V8's garbage collector on its own thread only
 * (--single-threaded-gc, on the line above; the package's /usr/bin/airlock passes the same option).
 * An export moves every byte through short-lived buffers (HTTP reads, cipher output), which starts a
 * full collection every few MiB; done by helper threads, these fought the hash workers for the
 * appliance's cores. Measured on a 1.3 GiB bucket export (2 cores, five alternating rounds): 5.9-6.3 s
 * and 8.2-8.6 CPU-s instead of 6.9-7.3 s and 9.5-10.1 CPU-s; file exports and the verifier were unchanged.
 * The option must be given when node starts: set later, V8 may crash.
 *
 * PostgreSQL runs wal-push once per 16 MiB of WAL (and wal-fetch once per
 * segment during recovery), so those two are dispatched here before anything else is loaded: their
 * modules use Node built-ins only, while the full program pulls in commander, better-sqlite3 and the
 * bundle code. Every other command, and help for any command, goes through program.ts.
 */
const [, , command, ...rest] = process.argv;
const wantsHelp = rest.some((a) => a === '--help' || a === '-h');
let code: number;
if ((command === 'wal-push' || command === 'wal-fetch') && !wantsHelp) {
  // PostgreSQL reads wal-fetch's exit 1 as "absent, end recovery": a crash must never look like that
  const crashed = () => process.exit(command === 'wal-fetch' ? 127 : 70);
  process.on('uncaughtException', crashed);
  process.on('unhandledRejection', crashed);
  try {
    const m = command === 'wal-push' ? await import('./wal-push.js') : await import('./wal-fetch.js');
    code = await m.main(rest);
  } catch {
    code = command === 'wal-fetch' ? 127 : 70;
  }
} else {
  code = await (await import('./program.js')).runProgram(process.argv);
}
// stdout may be a pipe that takes a long answer (--json) in pieces: exit only once the last write left
process.stdout.write('', () => process.exit(code));
