/*
 * Loading the appliance's keys from files. The signing key must be private to its owner (as ssh
 * insists); recipients are public and come from the command line or the config.
 */
import { readFile, stat } from 'node:fs/promises';
import { parseRecipient } from '../manifests/age/keys.js';
import { AirlockError, fromSystemError } from '../manifests/errors.js';
import { parsePrivateKey, type SigningKey } from '../manifests/sshkey.js';

/** Reads an OpenSSH Ed25519 private key. Throws `bad-key` when others may read it or it is not one. */
export async function loadSigningKey(file: string): Promise<SigningKey> {
  let text: string;
  try {
    const s = await stat(file);
    if ((s.mode & 0o077) !== 0) {
      throw new AirlockError('bad-key', `${file}: the signing key is readable by others (mode ${(s.mode & 0o777).toString(8)})`, { hint: `chmod 600 ${file}` });
    }
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw fromSystemError(e, file);
  }
  return parsePrivateKey(text);
}

/** Checks every recipient; throws `bad-recipient` naming the first bad one. */
export function checkRecipients(recipients: readonly string[]): void {
  if (recipients.length === 0) {
    throw new AirlockError('usage', 'no recipient given', { hint: 'give --recipient age1... (recommended: the recovery site and an escrow key)' });
  }
  for (const r of recipients) parseRecipient(r);
}
