/*
 * One export at a time per state folder, by a lock that the kernel holds for its owner. The lock
 * file `<name>.lock` is an empty SQLite database that the holder keeps inside an exclusive
 * transaction; SQLite takes that with an fcntl() record lock on the open file, and the kernel drops
 * such a lock when the process ends, however it ends (exit, crash, SIGKILL; a power cut ends them
 * all). So a dead holder never blocks the next start, and a live one is never taken over: nothing
 * reads a PID, nothing removes the file, nothing is checked and then acted on. (A PID file with a
 * takeover of "stale" locks let two racing starters both remove a dead lock, the second removing
 * the first one's live lock, and then delete that export's partial bundle as a crashed one's.)
 *
 * Why SQLite: Node has no flock() or fcntl(), and better-sqlite3 (the catalog's) already reaches
 * fcntl through SQLite's file locking, which is made for exactly this and works between processes
 * and between connections of one process alike. fcntl locks have one trap: a process that closes
 * any descriptor of the file loses its locks on it, so nothing else in airlock opens a lock file.
 * The file stays when the lock is released: removed, the next starter would lock a new file while
 * a holder still held the old one.
 */
import Database from 'better-sqlite3';
import { chmodSync, existsSync } from 'node:fs';
import path from 'node:path';
import { AirlockError, fromSystemError } from '../manifests/errors.js';
import { ownLikeFolder } from './catalog.js';

/** How long a starter waits for a lock another one is taking at the same moment. */
const RACE_WAIT_MS = 250;

/**
 * Takes the lock `name` in `stateDir` and returns its release function (which may be called more
 * than once). Throws `locked` if another process (or another caller in this one) holds it, and
 * typed system errors when the lock file cannot be opened.
 */
export function acquireLock(stateDir: string, name: string): () => void {
  const file = path.join(stateDir, `${name}.lock`);
  let db: Database.Database | undefined;
  try {
    // a held lock is an answer, not something to wait for; but SQLite takes an exclusive lock in
    // steps (shared first), so two starters at the same moment can each block the other's next
    // step, and with no wait at all both would be refused. A short wait lets the loser step back
    // (SQLite drops its shared lock between tries) and the winner go on.
    db = new Database(file, { timeout: RACE_WAIT_MS });
    chmodSync(file, 0o600);
    ownLikeFolder(file);
    db.exec('BEGIN EXCLUSIVE');
  } catch (e) {
    db?.close();
    const code = (e as { code?: string }).code;
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
      throw new AirlockError('locked', `another airlock ${name} is running`, {
        hint: `wait for it to finish: the lock is released when that process ends (fuser -v ${file} names it)`,
      });
    }
    if (code === 'SQLITE_NOTADB') {
      throw new AirlockError('locked', `${file} is not a lock file of this airlock`, {
        hint: `an older airlock left it; once no airlock ${name} runs, remove it`,
      });
    }
    const typed = fromSystemError(e, file, 'io');
    if (typed instanceof AirlockError) throw typed;
    throw new AirlockError('io', `cannot take the lock ${file}: ${(e as Error).message}`, {
      hint: 'check --state-dir (or AIRLOCK_STATE_DIR) and its permissions',
      cause: e,
    });
  }
  const held = db;
  return () => {
    if (held.open) held.close();
  };
}

/**
 * Takes the lock in the existing lock file `file` when nobody holds it, to learn whether what the
 * lock guards was left by a process that ended: returns the release function, `held` while a live
 * process holds it (or the file is not a lock file, which is no proof of anything), `absent` when
 * there is no such file. Never creates the file. Throws typed system errors.
 */
export function takeIfFree(file: string): (() => void) | 'held' | 'absent' {
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { timeout: 0, fileMustExist: true });
    db.exec('BEGIN EXCLUSIVE');
  } catch (e) {
    db?.close();
    const code = (e as { code?: string }).code;
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || code === 'SQLITE_NOTADB') return 'held';
    // better-sqlite3 says so with a TypeError when the folder is gone too
    if (!existsSync(file)) return 'absent';
    const typed = fromSystemError(e, file, 'io');
    if (typed instanceof AirlockError) throw typed;
    throw new AirlockError('io', `cannot read the lock ${file}: ${(e as Error).message}`, { cause: e });
  }
  const held = db;
  return () => {
    if (held.open) held.close();
  };
}
