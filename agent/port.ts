/*
 * A free TCP port on 127.0.0.1, for a server airlock starts itself (the drill's throwaway cluster).
 * The port is free when asked; another program could take it before the server binds it, which the
 * server's start then reports.
 */
import { createServer } from 'node:net';
import { AirlockError } from '../manifests/errors.js';

/** A port nothing listens on now. Rejects with the system error when no socket can be bound. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new AirlockError('internal', 'a listening socket has no port'))));
    });
  });
}
