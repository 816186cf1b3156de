/*
 * airlock keygen: the appliance's Ed25519 signing key (OpenSSH format, so ssh-keygen can use it
 * too) with the allowed_signers line auditors need; or, at the recovery site only, an age identity.
 */
import type { Command } from 'commander';
import { generateIdentity } from '../../manifests/age/keys.js';
import { writeFileAtomic } from '../../manifests/atomic.js';
import { AirlockError } from '../../manifests/errors.js';
import { fingerprint, generateSigningKey } from '../../manifests/sshkey.js';
import { command, resolveOptions, type Flags } from './options.js';

interface KeygenFlags {
  signingKey?: string;
  age?: string;
  site?: string;
}

/** Writes a new key file whole, never over an existing one (a key killed halfway is no key). Throws `target-exists`. */
async function writeKey(file: string, text: string, mode: number): Promise<void> {
  if (!(await writeFileAtomic(file, text, { mode, exclusive: true }))) {
    throw new AirlockError('target-exists', `${file} already exists`, { hint: 'never overwrite a key; choose another file name' });
  }
}

async function keygen(flags: KeygenFlags): Promise<void> {
  if ((flags.signingKey === undefined) === (flags.age === undefined)) {
    throw new AirlockError('usage', 'give exactly one of --signing-key FILE and --age FILE', {
      hint: 'the appliance needs --signing-key; --age is for the recovery site',
    });
  }
  if (flags.age !== undefined) {
    const id = generateIdentity();
    const text = `# created: ${new Date().toISOString()}\n# public key: ${id.recipient}\n${id.identity}\n`;
    await writeKey(flags.age, text, 0o600);
    process.stderr.write(`airlock: wrote the age identity ${flags.age}; keep it at the recovery site, never on the appliance\n`);
    process.stdout.write(`${id.recipient}\n`);
    return;
  }
  const file = flags.signingKey as string;
  const site = flags.site;
  if (site === undefined) throw new AirlockError('usage', '--site is required', { hint: 'the allowed_signers line names the site: give --site SITE' });
  const key = generateSigningKey(`airlock ${site}`);
  for (const [f, text, mode] of [
    [file, key.privateKeyText, 0o600],
    [`${file}.pub`, `${key.publicKeyLine}\n`, 0o644],
  ] as const) {
    await writeKey(f, text, mode);
  }
  process.stderr.write(`airlock: wrote ${file} (keep private) and ${file}.pub; fingerprint ${fingerprint(key.publicKey)}\n`);
  process.stderr.write('airlock: give auditors this allowed_signers line:\n');
  process.stdout.write(`${site} ${key.publicKeyLine}\n`);
}

export function register(program: Command): void {
  command(program, 'keygen', 'make the appliance signing key (--signing-key), or a recovery-site age identity (--age)').action((flags: Flags) =>
    keygen(resolveOptions<KeygenFlags>('keygen', flags)),
  );
}
