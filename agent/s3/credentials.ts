/*
 * S3 credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or from a file
 * that only its owner may read, never from the command line, where every user sees them in `ps`.
 * The file uses the AWS shared-credentials syntax (`aws_access_key_id = ...`, an optional
 * `[default]` section), so an existing one can be pointed at. Session (temporary) credentials add a
 * token: AWS_SESSION_TOKEN, or `aws_session_token` in the file, as the AWS CLI reads them.
 */
import { readFile, stat } from 'node:fs/promises';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import { S3Client, type S3Credentials } from './client.js';

/** Parses a credentials file's text: the `[default]` section, or the lines before any section. */
export function parseCredentials(text: string, file: string): S3Credentials {
  const values = new Map<string, string>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[\s*([^\]]*?)\s*\]$/.exec(line);
    if (s) {
      section = s[1] ?? '';
      continue;
    }
    if (section !== '' && section !== 'default') continue;
    const m = /^([A-Za-z_]+)\s*=\s*(.*)$/.exec(line);
    if (m) values.set((m[1] as string).toLowerCase(), (m[2] as string).trim());
  }
  const accessKey = values.get('aws_access_key_id') ?? values.get('access_key');
  const secretKey = values.get('aws_secret_access_key') ?? values.get('secret_key');
  if (!accessKey || !secretKey) {
    throw new AirlockError('bad-key', `${file} has no aws_access_key_id and aws_secret_access_key`, {
      hint: 'write "aws_access_key_id = ..." and "aws_secret_access_key = ..." lines into it',
    });
  }
  const sessionToken = values.get('aws_session_token');
  return sessionToken ? { accessKey, secretKey, sessionToken } : { accessKey, secretKey };
}

/**
 * The credentials from `file` when given, else from the environment. Throws `bad-key` for a file
 * that others may read or that lacks a key, `not-found` for a missing file, and `usage` when there
 * are no credentials at all.
 */
export async function loadCredentials(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<S3Credentials> {
  if (file !== undefined) {
    let text: string;
    try {
      const s = await stat(file);
      if ((s.mode & 0o077) !== 0) {
        throw new AirlockError('bad-key', `${file} may be read by other users (mode ${(s.mode & 0o777).toString(8)})`, { hint: `chmod 600 ${file}` });
      }
      text = await readFile(file, 'utf8');
    } catch (e) {
      if (e instanceof AirlockError) throw e;
      throw fromSystemError(e, file);
    }
    return parseCredentials(text, file);
  }
  const accessKey = env.AWS_ACCESS_KEY_ID;
  const secretKey = env.AWS_SECRET_ACCESS_KEY;
  const sessionToken = env.AWS_SESSION_TOKEN;
  if (accessKey && secretKey) return sessionToken ? { accessKey, secretKey, sessionToken } : { accessKey, secretKey };
  throw new AirlockError('usage', 'no S3 credentials given', {
    hint: 'set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give --s3-credentials FILE (mode 0600)',
  });
}

/** How to reach an S3 server, as the config file and the flags give it. */
export interface S3Settings {
  endpoint: string;
  /** a credentials file; the environment when undefined */
  credentials: string | undefined;
  region: string | undefined;
  /** a PEM file of the CA certificates to trust (a private CA) */
  caFile: string | undefined;
  addressing: string | undefined;
}

/**
 * A client for `s`: credentials loaded (see loadCredentials), the CA file read. Throws what
 * loadCredentials throws, `not-found` for a missing CA file and `usage` for a bad addressing style,
 * region or endpoint.
 */
export async function connectS3(s: S3Settings): Promise<S3Client> {
  if (s.addressing !== undefined && s.addressing !== 'path' && s.addressing !== 'virtual') {
    throw new AirlockError('usage', `--s3-addressing ${s.addressing}: must be path or virtual`, {
      hint: 'path (http://host/bucket/key) is the default; virtual names the bucket in the host name',
    });
  }
  if (s.region !== undefined && !/^[a-z0-9][a-z0-9-]{0,62}$/.test(s.region))
    throw new AirlockError('usage', `--s3-region ${s.region}: not a region name`, { hint: 'give the region the server is configured with, e.g. us-east-1' });
  let ca: Buffer | undefined;
  if (s.caFile !== undefined) {
    try {
      ca = await readFile(s.caFile);
    } catch (e) {
      throw fromSystemError(e, s.caFile);
    }
    if (!ca.includes('-----BEGIN CERTIFICATE-----'))
      throw new AirlockError('bad-key', `${s.caFile} holds no PEM certificate`, {
        hint: 'give --s3-ca-file the CA certificate in PEM form (-----BEGIN CERTIFICATE-----)',
      });
  }
  const credentials = await loadCredentials(s.credentials);
  return new S3Client({
    endpoint: s.endpoint,
    credentials,
    ...(s.region !== undefined ? { region: s.region } : {}),
    ...(ca ? { ca } : {}),
    ...(s.addressing === 'virtual' ? { addressing: 'virtual' as const } : {}),
  });
}
