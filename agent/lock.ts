/*
 * One export at a time per state folder: a lock file created exclusively, holding the owner's PID.
 * A lock whose process is gone (killed, power cut) is stale and taken over.
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { AirlockError } from '../manifests/errors.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock `name` in `stateDir` and returns its release function. Throws `locked` if it is held. */
export function acquireLock(stateDir: string, name: string): () => void {
  const file = path.join(stateDir, `${name}.lock`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => rmSync(file, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number(readFileSync(file, 'utf8').trim());
      if (Number.isSafeInteger(pid) && pid > 0 && alive(pid)) {
        throw new AirlockError('locked', `another airlock ${name} is running (pid ${pid})`, { hint: `wait for it to finish; if no such process exists, remove ${file}` });
      }
      rmSync(file, { force: true });
    }
  }
  throw new AirlockError('locked', `cannot take ${file}`);
}
