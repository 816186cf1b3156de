/*
 * A small S3 client on node:http and node:crypto (AWS Signature Version 4; path-style addressing, or
 * virtual-hosted style as an option).
 *
 * Why not a client library: the `minio` client does not URL-escape the key marker when it pages a
 * version listing, mangles non-ASCII metadata, and can return an empty multipart ETag; a backup must
 * see every version of every key exactly, so the few requests airlock needs are written out here,
 * where the escaping is visible. Every path segment and query value is escaped the SigV4 way (RFC
 * 3986 unreserved characters kept, everything else %XX of its UTF-8 bytes), and the same escaped text
 * is both signed and sent, so keys with `+`, `%`, spaces, `..` or unicode reach the server unchanged.
 *
 * Header values are byte strings: Node reads response headers as latin1, so a metadata value that a
 * server stores as raw UTF-8 arrives as one latin1 character per byte; `headerBytes` turns it back
 * into those bytes. Outgoing values are given the same way (one character per byte) and signed as
 * latin1, which is what the server sees on the wire.
 *
 * Virtual-hosted style names the bucket in the Host header (`bucket.host:port`) and the key alone in
 * the path; the connection still goes to the endpoint's address, so no DNS entry per bucket is needed
 * (radosgw's `rgw dns name` and MinIO's MINIO_DOMAIN are what the server needs to accept it).
 *
 * Session credentials (temporary keys from STS) carry a token, sent as x-amz-security-token and signed.
 *
 * Errors: a refused or failed connection is `s3-unreachable` (a certificate that is not trusted too,
 * naming the problem), a rejected signature or key `s3-denied`, a missing bucket `bucket-not-found`,
 * anything else the server refuses `s3-failed`.
 *
 * Retries follow the S3 conventions: 429, 500, 502, 503 and 504 answers and broken connections are
 * retried with capped exponential backoff and full jitter (a random wait between 0 and
 * min(cap, base x 2^attempt)), for idempotent requests only: a write is sent once (see
 * S3Request.retry), and a streamed body cannot be sent again.
 */
import { createHash, createHmac } from 'node:crypto';
import { getMaxListeners, setMaxListeners } from 'node:events';
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { AirlockError } from '../../manifests/errors.js';
import { parseXml, textOf, type XmlNode } from './xml.js';

export interface S3Credentials {
  accessKey: string;
  secretKey: string;
  /** the token of session (temporary) credentials */
  sessionToken?: string;
}

/** When and how long a failed request waits before it is sent again. */
export interface RetryPolicy {
  /** attempts in all, the first included (default 5) */
  attempts: number;
  /** the first wait's upper bound in ms (default 100), doubled per attempt */
  baseMs: number;
  /** no wait is longer than this (default 5,000 ms) */
  capMs: number;
  /** waits `ms` (injectable for tests) */
  sleep: (ms: number) => Promise<void>;
  /** a number in [0, 1) (injectable for tests) */
  random: () => number;
}

export interface S3Options {
  /** http(s)://host:port of the server; path-style requests go below it */
  endpoint: string;
  credentials: S3Credentials;
  /** the region the signature names (default us-east-1) */
  region?: string;
  /** PEM certificates to trust instead of the system's (a private CA) */
  ca?: string | Buffer;
  /** `path` (default): http://host/bucket/key; `virtual`: http://bucket.host/key */
  addressing?: 'path' | 'virtual';
  retry?: Partial<RetryPolicy>;
  /** most requests in flight at once (default 40) */
  maxSockets?: number;
}

export interface S3Request {
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE';
  bucket?: string;
  key?: string;
  /** query parameters in any order; an empty value is sent as `name=` */
  query?: readonly (readonly [string, string])[];
  /** header values as byte strings (one character per byte) */
  headers?: Record<string, string>;
  /** a buffer (signed) or a stream of exactly `contentLength` bytes (sent unsigned) */
  body?: Buffer | Readable;
  contentLength?: number;
  /** statuses that are not errors besides 2xx (e.g. 404 for a probe) */
  accept?: readonly number[];
  /**
   * false for a request that must not be sent twice: a retry after a lost answer would repeat what
   * the server already did (a second delete marker, a second multipart upload). Default true.
   */
  retry?: boolean;
  signal?: AbortSignal;
}

export interface S3Response {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
}

/** The error the server answered with; `classify` turns it into an AirlockError. */
export class S3ServerError extends Error {
  constructor(
    readonly status: number,
    readonly s3Code: string,
    message: string,
    readonly resource: string,
  ) {
    super(message);
    this.name = 'S3ServerError';
  }
}

const EMPTY_SHA256 = createHash('sha256').digest('hex');

/** Answers that say "try again later" by the S3 conventions. */
const RETRY_STATUSES = new Set([429, 500, 502, 503, 504]);

/** The wait before attempt `attempt + 1` (1-based `attempt`): full jitter below a capped exponential. */
export function backoff(policy: Pick<RetryPolicy, 'baseMs' | 'capMs' | 'random'>, attempt: number): number {
  return Math.floor(policy.random() * Math.min(policy.capMs, policy.baseMs * 2 ** (attempt - 1)));
}

/** RFC 3986 escaping as SigV4 wants it: every byte but A-Z a-z 0-9 - . _ ~ as %XX. */
export function uriEscape(s: string, keepSlash = false): string {
  const e = encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return keepSlash ? e.replace(/%2F/g, '/') : e;
}

/**
 * A header value as SigV4 signs it: spaces and tabs trimmed at both ends and runs of them made one
 * space. Values are byte strings, so only those two bytes count: JavaScript's `\s` would also take
 * byte 0xA0, which is in the UTF-8 of "à" or a no-break space, and the server would sign other bytes.
 */
function canonicalValue(v: string): string {
  return v.replace(/^[ \t]+|[ \t]+$/g, '').replace(/[ \t]+/g, ' ');
}

/** The bytes of a header value as Node handed it over (latin1: one character per byte). */
export function headerBytes(v: string): Buffer {
  return Buffer.from(v, 'latin1');
}

/** A UTF-8 string as a header value Node will send byte for byte. */
export function utf8Header(v: string): string {
  return Buffer.from(v, 'utf8').toString('latin1');
}

const NETWORK_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EPIPE', 'ECONNABORTED']);
/** Network errors after which the same request may well succeed (not a refused connection or an unknown host). */
const TRANSIENT_ERRORS = new Set(['ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ETIMEDOUT', 'EPIPE', 'ECONNABORTED']);
/** What the TLS error codes of node mean, for an error that names the certificate problem. */
const TLS_ERRORS: Record<string, string> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'its certificate is signed by no CA trusted here',
  UNABLE_TO_GET_ISSUER_CERT: 'the issuer of its certificate is not trusted here',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'the issuer of its certificate is not trusted here',
  SELF_SIGNED_CERT_IN_CHAIN: 'its certificate chain ends in a self-signed CA not trusted here',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'its certificate is self-signed',
  CERT_HAS_EXPIRED: 'its certificate has expired',
  CERT_NOT_YET_VALID: 'its certificate is not valid yet',
  CERT_SIGNATURE_FAILURE: 'the signature of its certificate does not verify',
  ERR_TLS_CERT_ALTNAME_INVALID: 'its certificate is for another host name',
};

/** Reads a small response body whole (error documents, listings, configurations). */
export async function readBody(body: Readable, limit = 16 * 1024 * 1024): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of body) {
      n += (c as Buffer).byteLength;
      if (n > limit) throw new AirlockError('s3-failed', `the server sent a response over ${limit} bytes where at most that was expected`);
      parts.push(c as Buffer);
    }
  } catch (e) {
    body.destroy();
    if (e instanceof AirlockError) throw e;
    throw new AirlockError('s3-failed', `the connection to the S3 server broke while reading a response: ${(e as Error).message}`, { cause: e });
  }
  return Buffer.concat(parts);
}

export class S3Client {
  readonly endpoint: URL;
  private readonly region: string;
  private readonly credentials: S3Credentials;
  private readonly agent: http.Agent;
  private readonly transport: typeof http | typeof https;
  private readonly virtual: boolean;
  private readonly retry: RetryPolicy;
  private dayKey: { day: string; key: Buffer } | undefined;

  /** Throws `usage` for an endpoint that is not an http(s) URL without a path. */
  constructor(opts: S3Options) {
    let u: URL;
    try {
      u = new URL(opts.endpoint);
    } catch {
      throw new AirlockError('usage', `${opts.endpoint}: not a URL`, { hint: 'give the S3 endpoint as http://host:port or https://host:port' });
    }
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || (u.pathname !== '/' && u.pathname !== '') || u.search || u.username || u.password) {
      throw new AirlockError('usage', `${opts.endpoint}: not an S3 endpoint URL`, { hint: 'give http(s)://host:port, without a path, query or credentials' });
    }
    this.endpoint = u;
    this.region = opts.region ?? 'us-east-1';
    this.credentials = opts.credentials;
    this.transport = u.protocol === 'https:' ? https : http;
    this.virtual = opts.addressing === 'virtual';
    this.retry = { attempts: 5, baseMs: 100, capMs: 5000, sleep: (ms) => sleep(ms), random: Math.random, ...opts.retry };
    const agentOptions = { keepAlive: true, maxSockets: opts.maxSockets ?? 40 };
    this.agent =
      u.protocol === 'https:' ? new https.Agent({ ...agentOptions, ...(opts.ca !== undefined ? { ca: opts.ca } : {}) }) : new http.Agent(agentOptions);
  }

  close(): void {
    this.agent.destroy();
  }

  /** The SigV4 signing key of `day` (YYYYMMDD), derived once a day rather than once a request. */
  private signingKey(day: string): Buffer {
    if (this.dayKey?.day !== day) {
      let k: Buffer = createHmac('sha256', `AWS4${this.credentials.secretKey}`).update(day).digest();
      for (const part of [this.region, 's3', 'aws4_request']) k = createHmac('sha256', k).update(part).digest();
      this.dayKey = { day, key: k };
    }
    return this.dayKey.key;
  }

  private sign(method: string, pathText: string, query: string, headers: Record<string, string>, payloadHash: string, now: Date): string {
    const amzDate = now
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d{3}/, '');
    const day = amzDate.slice(0, 8);
    headers['x-amz-date'] = amzDate;
    headers['x-amz-content-sha256'] = payloadHash;
    const names = Object.keys(headers)
      .map((h) => h.toLowerCase())
      .sort();
    const canonicalHeaders = names.map((n) => `${n}:${canonicalValue(String(headers[n]))}\n`).join('');
    const signed = names.join(';');
    const canonical = [method, pathText, query, canonicalHeaders, signed, payloadHash].join('\n');
    const scope = `${day}/${this.region}/s3/aws4_request`;
    const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(Buffer.from(canonical, 'latin1')).digest('hex')].join('\n');
    const signature = createHmac('sha256', this.signingKey(day)).update(toSign).digest('hex');
    return `AWS4-HMAC-SHA256 Credential=${this.credentials.accessKey}/${scope}, SignedHeaders=${signed}, Signature=${signature}`;
  }

  private resource(r: S3Request): string {
    return r.bucket === undefined ? this.endpoint.host : r.key === undefined ? `bucket ${r.bucket}` : `${r.bucket}/${r.key}`;
  }

  private once(r: S3Request): Promise<S3Response> {
    // virtual-hosted: the bucket is in the host name, so the key is the whole path
    const inHost = this.virtual && r.bucket !== undefined;
    let pathText = '/';
    if (r.bucket !== undefined && !inHost) pathText += uriEscape(r.bucket);
    if (r.key !== undefined) pathText += `${inHost ? '' : '/'}${uriEscape(r.key, true)}`;
    const query = [...(r.query ?? [])]
      .map(([k, v]) => [uriEscape(k), uriEscape(v)] as const)
      .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
      .map(([k, v]) => `${k}=${v}`)
      .join('&');
    const host = inHost ? `${r.bucket}.${this.endpoint.host}` : this.endpoint.host;
    const headers: Record<string, string> = { host };
    for (const [k, v] of Object.entries(r.headers ?? {})) headers[k.toLowerCase()] = v;
    if (this.credentials.sessionToken !== undefined) headers['x-amz-security-token'] = this.credentials.sessionToken;
    let payloadHash = EMPTY_SHA256;
    if (Buffer.isBuffer(r.body)) {
      payloadHash = createHash('sha256').update(r.body).digest('hex');
      headers['content-length'] = String(r.body.byteLength);
    } else if (r.body) {
      payloadHash = 'UNSIGNED-PAYLOAD';
      if (r.contentLength === undefined) throw new AirlockError('internal', 'a streamed S3 body needs its length');
      headers['content-length'] = String(r.contentLength);
    } else if (r.method === 'PUT' || r.method === 'POST') {
      headers['content-length'] = '0';
    }
    // each request in flight listens on the signal; dozens at once are expected, not a leak
    if (r.signal && getMaxListeners(r.signal) < 256) setMaxListeners(256, r.signal);
    headers.authorization = this.sign(r.method, pathText, query, headers, payloadHash, new Date());
    return new Promise<S3Response>((resolve, reject) => {
      const req = this.transport.request(
        {
          protocol: this.endpoint.protocol,
          hostname: this.endpoint.hostname,
          port: this.endpoint.port,
          method: r.method,
          path: query ? `${pathText}?${query}` : pathText,
          headers,
          agent: this.agent,
          // the certificate must name the host the request names
          ...(inHost && this.endpoint.protocol === 'https:' ? { servername: host.replace(/:\d+$/, '') } : {}),
          timeout: 120_000,
          ...(r.signal ? { signal: r.signal } : {}),
        },
        (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res }),
      );
      req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
      req.on('error', (e) => {
        // a file stream feeding the request must not stay open
        if (r.body && !Buffer.isBuffer(r.body)) r.body.destroy();
        reject(e);
      });
      if (Buffer.isBuffer(r.body)) req.end(r.body);
      else if (r.body) {
        r.body.on('error', (e) => req.destroy(e));
        r.body.pipe(req);
      } else req.end();
    });
  }

  /**
   * Sends one request and returns the response with its body unread. Throws `s3-unreachable`,
   * `s3-denied`, `bucket-not-found` or `s3-failed` (see the top of this file).
   */
  async request(r: S3Request): Promise<S3Response> {
    const replayable = r.retry !== false && (r.body === undefined || Buffer.isBuffer(r.body));
    for (let attempt = 1; ; attempt++) {
      const again = replayable && attempt < this.retry.attempts && !r.signal?.aborted;
      let res: S3Response;
      try {
        res = await this.once(r);
      } catch (e) {
        if (again && TRANSIENT_ERRORS.has((e as NodeJS.ErrnoException).code ?? '')) {
          await this.retry.sleep(backoff(this.retry, attempt));
          continue;
        }
        throw this.classify(e, r);
      }
      if ((res.status >= 200 && res.status < 300) || r.accept?.includes(res.status)) return res;
      // the server may answer before it read a streamed body: that file stream must not stay open
      if (r.body && !Buffer.isBuffer(r.body)) r.body.destroy();
      const text = await readBody(res.body, 1024 * 1024).catch(() => Buffer.alloc(0));
      if (again && RETRY_STATUSES.has(res.status)) {
        await this.retry.sleep(backoff(this.retry, attempt));
        continue;
      }
      let code = '';
      let message = '';
      if (text.byteLength > 0) {
        try {
          const doc = parseXml(text.toString('utf8'));
          code = textOf(doc, 'Code') ?? '';
          message = textOf(doc, 'Message') ?? '';
        } catch {
          // not an S3 error document: keep the status
        }
      }
      throw this.classify(new S3ServerError(res.status, code, message || `HTTP ${res.status}`, this.resource(r)), r);
    }
  }

  /** Maps a failure of request `r` to a typed error. */
  private classify(e: unknown, r: S3Request): AirlockError {
    if (e instanceof AirlockError) return e;
    const where = this.endpoint.origin;
    if (e instanceof S3ServerError) {
      if (e.s3Code === 'NoSuchBucket' || (e.status === 404 && r.method === 'HEAD' && r.bucket !== undefined && r.key === undefined)) {
        return new AirlockError('bucket-not-found', `bucket ${r.bucket ?? '?'} does not exist on ${where}`, {
          hint: 'check the bucket name (--bucket or --bucket-map) and the endpoint',
          cause: e,
        });
      }
      if (e.status === 403 || e.status === 401 || ['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied'].includes(e.s3Code)) {
        return new AirlockError('s3-denied', `${where} refused the request for ${e.resource}: ${e.s3Code || `HTTP ${e.status}`}`, {
          hint: 'check the access key and secret (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or --s3-credentials) and their permissions',
          cause: e,
        });
      }
      if (e.s3Code === 'BadDigest') {
        return new AirlockError(
          's3-failed',
          `${where} refused ${r.method} ${e.resource}: the body it received does not have the Content-MD5 sent with it (BadDigest); it changed on the way`,
          {
            hint: 'check the network path to the S3 server (a proxy or middlebox that alters bodies); run the same command again to resume',
            cause: e,
          },
        );
      }
      return new AirlockError('s3-failed', `${where} answered ${e.status}${e.s3Code ? ` ${e.s3Code}` : ''} for ${r.method} ${e.resource}: ${e.message}`, {
        cause: e,
      });
    }
    const err = (e ?? {}) as NodeJS.ErrnoException;
    if (err.name === 'AbortError' || r.signal?.aborted) return new AirlockError('internal', 'interrupted', { cause: e });
    const tls = TLS_ERRORS[err.code ?? ''];
    if (tls !== undefined) {
      return new AirlockError('s3-unreachable', `${where} is not trusted: ${tls} (${String(err.code)})`, {
        hint: "give --s3-ca-file with the CA certificate (PEM) that signed the server's certificate, or check the endpoint's host name",
        cause: e,
      });
    }
    if (NETWORK_ERRORS.has(err.code ?? '')) {
      return new AirlockError(
        's3-unreachable',
        `cannot reach ${where}: ${err.code === 'ECONNREFUSED' ? 'connection refused' : err.code === 'ENOTFOUND' ? 'host not found' : err.message || err.code}`,
        {
          hint: 'check --s3-endpoint (scheme, host and port) and that the S3 server is running',
          cause: e,
        },
      );
    }
    return new AirlockError('s3-failed', `${r.method} ${this.resource(r)} failed: ${err.message || String(e)}`, { cause: e });
  }

  /** Sends a request and parses its XML answer. Throws what `request` throws. */
  async xml(r: S3Request): Promise<XmlNode> {
    const res = await this.request(r);
    return parseXml((await readBody(res.body)).toString('utf8'));
  }

  /** Sends a request and drains its body; returns the headers. Throws what `request` throws. */
  async call(r: S3Request): Promise<S3Response> {
    const res = await this.request(r);
    await readBody(res.body);
    return res;
  }
}

/** A response header as one string (the first, when a header came several times). */
export function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

export { EMPTY_SHA256 };
