/*
 * age v1 encryption and decryption as Node Transform streams, on node:crypto.
 *
 * After the header comes a 16-byte nonce; HKDF(file key, nonce, "payload") keys the STREAM
 * construction: 64 KiB plaintext chunks, each sealed with ChaCha20-Poly1305 under the nonce
 * 11-byte big-endian chunk counter || last-chunk flag. Only the final chunk carries the flag, and it
 * is empty only when the whole plaintext is.
 *
 * Neither side can tell a full chunk is the last one until the input ends, so both hold back
 * one chunk: encryption keeps up to 64 KiB of plaintext, decryption up to one sealed chunk, and a
 * held chunk is sealed or opened as non-final only once a byte after it has arrived. Plaintext is
 * pushed only after its chunk authenticated, so a consumer never sees unauthenticated bytes; as in
 * age (and as the C2SP vectors expect), a chunk that authenticated is released even when the file
 * then turns out truncated or followed by trailing data, and the stream fails right after it.
 *
 * Speed: chunks within one written buffer go to the cipher as slices of it, without a copy. Like
 * PassThrough, the streams keep references to written buffers until they are processed, so a
 * writer must not reuse a buffer after writing it (Node's own readables never do).
 */

import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { AirlockError } from '../errors.js';
import { KEY_SIZE } from './keys.js';
import { AgeError, FILE_KEY_SIZE, MAX_HEADER_BYTES, encodeHeader, parseHeader, unwrapFileKey, wrapX25519 } from './header.js';

export { AgeError, type AgeFailure } from './header.js';

export const CHUNK_SIZE = 65536;
const TAG_SIZE = 16;
const SEALED_CHUNK = CHUNK_SIZE + TAG_SIZE;
const NONCE_SIZE = 16;
/** Input slices a held chunk may span before they are copied together. */
const MAX_PIECES = 8;
/** The counter lives in the low 6 bytes of the 11; 2^48 chunks is 16 EiB of plaintext. */
const MAX_CHUNKS = 2 ** 48;

/** Payload bytes (nonce and STREAM, without the header) for a plaintext of `size` bytes. */
export function payloadSize(size: number): number {
  const chunks = Math.max(1, Math.ceil(size / CHUNK_SIZE));
  return NONCE_SIZE + size + chunks * TAG_SIZE;
}

function payloadKey(fileKey: Uint8Array, nonce: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', fileKey, nonce, 'payload', 32));
}

const asBuffer = (chunk: unknown): Buffer => {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new AirlockError('internal', 'age streams take binary chunks, not strings or objects');
};

/** The STREAM nonce sequence for one payload key. */
class ChunkNonces {
  readonly nonce = Buffer.alloc(12);
  count = 0;

  /** The nonce for the next chunk; createCipheriv copies it, so the buffer can be reused. */
  next(last: boolean): Buffer {
    if (this.count >= MAX_CHUNKS) throw new AirlockError('internal', 'age STREAM chunk counter overflow');
    this.nonce.writeUIntBE(this.count, 5, 6);
    this.nonce[11] = last ? 1 : 0;
    return this.nonce;
  }
}

/**
 * Cuts a byte stream into fixed-size chunks. A chunk that lies within one input buffer is handed
 * out as a slice of it; only a chunk spanning writes is copied into a preallocated buffer. Input is
 * held by reference until a chunk completes (many small writes are copied early, which bounds the
 * list). Measured: a copy is cheap next to the cipher, but each large Buffer the cipher allocates is
 * not, so every chunk goes to the cipher in one contiguous piece.
 */
class Chunker {
  private held: Buffer[] = [];
  private heldLen = 0;
  private readonly scratch: Buffer;

  constructor(private readonly size: number) {
    this.scratch = Buffer.allocUnsafe(size);
  }

  /** Hands every complete chunk that has at least one byte after it to `each`; holds the rest. */
  write(input: Buffer, each: (chunk: Buffer) => void): void {
    let off = 0;
    while (this.heldLen + input.length - off > this.size) {
      const take = this.size - this.heldLen;
      this.held.push(input.subarray(off, off + take));
      off += take;
      const chunk = this.join();
      this.held = [];
      this.heldLen = 0;
      each(chunk);
    }
    if (off === input.length) return;
    this.held.push(off === 0 ? input : input.subarray(off));
    this.heldLen += input.length - off;
    if (this.held.length > MAX_PIECES) this.held = [this.join()];
  }

  /** The held bytes in one buffer: at the end of the input, the final chunk. */
  rest(): Buffer {
    return this.join();
  }

  /** The held slices as one buffer, copied into scratch unless there is just one. */
  private join(): Buffer {
    if (this.held.length <= 1) return this.held[0] ?? this.scratch.subarray(0, 0);
    const first = this.held[0]!;
    const inScratch = first.buffer === this.scratch.buffer && first.byteOffset === this.scratch.byteOffset;
    let at = inScratch ? first.length : 0;
    for (const p of inScratch ? this.held.slice(1) : this.held) at += p.copy(this.scratch, at);
    return this.scratch.subarray(0, at);
  }
}

/**
 * A Transform from plaintext to a binary age file encrypted to X25519 `recipients`.
 * `options.fileKey` and `options.nonce` exist only for deterministic tests.
 * @throws AirlockError('bad-recipient') synchronously for an empty list or a key that is not 32 bytes
 */
export function encryptStream(recipients: Uint8Array[], options: { fileKey?: Uint8Array; nonce?: Uint8Array } = {}): Transform {
  if (recipients.length === 0) throw new AirlockError('bad-recipient', 'no recipients given', { hint: 'give at least one age1... recipient' });
  for (const r of recipients) {
    if (r.length !== KEY_SIZE) throw new AirlockError('bad-recipient', `an X25519 public key is ${KEY_SIZE} bytes, got ${r.length}`);
  }
  const fileKey = options.fileKey ?? randomBytes(FILE_KEY_SIZE);
  const nonce = options.nonce ?? randomBytes(NONCE_SIZE);
  if (fileKey.length !== FILE_KEY_SIZE || nonce.length !== NONCE_SIZE) throw new AirlockError('internal', 'bad age file key or nonce length');

  let prologue: Buffer | undefined = Buffer.concat([
    encodeHeader(
      recipients.map((r) => wrapX25519(fileKey, r)),
      fileKey,
    ),
    nonce,
  ]);
  const key = payloadKey(fileKey, nonce);
  const nonces = new ChunkNonces();
  const chunker = new Chunker(CHUNK_SIZE);

  // The ciphertext and the tag are pushed as they come: measured, joining them into one buffer
  // costs more (a large allocation and a copy) than the extra push.
  const seal = (t: Transform, plain: Buffer, last: boolean): void => {
    if (prologue) t.push(prologue);
    prologue = undefined;
    const cipher = createCipheriv('chacha20-poly1305', key, nonces.next(last), { authTagLength: TAG_SIZE });
    if (plain.length > 0) t.push(cipher.update(plain));
    cipher.final();
    t.push(cipher.getAuthTag());
    nonces.count++;
  };

  return new Transform({
    transform(chunk: unknown, _enc: BufferEncoding, done: TransformCallback) {
      try {
        chunker.write(asBuffer(chunk), (plain) => seal(this, plain, false));
        done();
      } catch (e) {
        done(e as Error);
      }
    },
    flush(done: TransformCallback) {
      try {
        seal(this, chunker.rest(), true);
        done();
      } catch (e) {
        done(e as Error);
      }
    },
  });
}

const payloadError = (why: string): AgeError =>
  new AgeError('payload', `age payload ${why}`, { hint: 'the file is truncated, corrupt or was modified; nothing after the failing point is trustworthy' });

/**
 * A Transform from a binary age file to its plaintext, trying each X25519 identity (32-byte
 * secret) against each recipient stanza. Failures surface as the stream's error.
 * @throws AirlockError('bad-identity') synchronously for an empty list or a key that is not 32 bytes;
 *   the stream fails with AgeError (reason header, no-match, hmac or payload)
 */
export function decryptStream(identities: Uint8Array[]): Transform {
  if (identities.length === 0) throw new AirlockError('bad-identity', 'no identities given', { hint: 'give at least one AGE-SECRET-KEY-1... identity' });
  for (const id of identities) {
    if (id.length !== KEY_SIZE) throw new AirlockError('bad-identity', `an X25519 secret key is ${KEY_SIZE} bytes, got ${id.length}`);
  }

  let phase: 'header' | 'nonce' | 'payload' = 'header';
  // Header and nonce bytes until the payload key is known, as the pieces written: joining them on
  // every write made byte-sized writes quadratic, so they are joined only when a parse can decide.
  let held: Buffer[] = [];
  let heldBytes = 0;
  let fileKey: Buffer | undefined;
  let key: Buffer | undefined;
  const nonces = new ChunkNonces();
  const chunker = new Chunker(SEALED_CHUNK);

  /** Opens one sealed chunk; undefined if it does not authenticate with this flag. */
  const tryOpen = (sealed: Buffer, last: boolean): Buffer | undefined => {
    const decipher = createDecipheriv('chacha20-poly1305', key!, nonces.next(last), { authTagLength: TAG_SIZE });
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_SIZE));
    const plain = decipher.update(sealed.subarray(0, sealed.length - TAG_SIZE));
    try {
      decipher.final();
    } catch {
      return undefined;
    }
    return plain;
  };

  /** Opens and pushes a chunk that has bytes after it, so it must not be the final one. */
  const openMiddle = (t: Transform, sealed: Buffer): void => {
    const plain = tryOpen(sealed, false);
    if (plain === undefined) {
      // A genuine final chunk followed by more bytes: like age, release what authenticated, then
      // fail on the trailing data.
      const final = tryOpen(sealed, true);
      if (final === undefined) throw payloadError(`chunk ${nonces.count + 1} failed authentication`);
      t.push(final);
      throw payloadError(`has data after its final chunk (chunk ${nonces.count + 1})`);
    }
    nonces.count++;
    t.push(plain);
  };

  /** Opens and pushes the held bytes at the end of the input, which must be the final chunk. */
  const openFinal = (t: Transform): void => {
    const sealed = chunker.rest();
    if (sealed.length === 0) throw payloadError('has no chunks');
    if (sealed.length < TAG_SIZE) throw payloadError(`chunk ${nonces.count + 1} is shorter than its tag`);
    if (sealed.length === TAG_SIZE && nonces.count > 0) throw payloadError('ends with an empty chunk after other chunks');
    const plain = tryOpen(sealed, true);
    if (plain === undefined) {
      // A full chunk that opens as non-final is genuine data from a truncated file: like age,
      // release it (it authenticated) and then fail.
      const early = sealed.length === SEALED_CHUNK ? tryOpen(sealed, false) : undefined;
      if (early === undefined) throw payloadError(`chunk ${nonces.count + 1} failed authentication`);
      t.push(early);
      throw payloadError(`is truncated after chunk ${nonces.count + 1}: the final chunk is missing`);
    }
    if (plain.length > 0) t.push(plain);
  };

  /** Consumes header and nonce bytes; returns the rest of `input` once the payload starts. */
  const readHead = (input: Buffer, eof: boolean): Buffer | undefined => {
    const first = heldBytes === 0;
    held.push(input);
    heldBytes += input.length;
    // Parsing only when a line may have ended keeps byte-sized writes from being quadratic; at the
    // size bound too, or a header without line ends would be held without limit.
    if (phase === 'header' && !(first || eof || input.includes(0x0a) || heldBytes >= MAX_HEADER_BYTES)) return undefined;
    let head = held.length === 1 ? (held[0] as Buffer) : Buffer.concat(held);
    held = [head];
    if (phase === 'header') {
      const header = parseHeader(head);
      if (header === undefined) {
        if (eof)
          throw new AgeError('header', head.length === 0 ? 'the age file is empty' : 'the age header is truncated', {
            hint: 'the file is truncated or is not an age file',
          });
        return undefined;
      }
      fileKey = unwrapFileKey(header, identities);
      head = head.subarray(header.length);
      held = [head];
      heldBytes = head.length;
      phase = 'nonce';
    }
    if (head.length < NONCE_SIZE) {
      if (eof) throw new AgeError('header', 'the age file is truncated before its payload nonce', { hint: 'the file is truncated' });
      return undefined;
    }
    key = payloadKey(fileKey!, head.subarray(0, NONCE_SIZE));
    const rest = head.subarray(NONCE_SIZE);
    held = [];
    heldBytes = 0;
    phase = 'payload';
    return rest;
  };

  return new Transform({
    transform(chunk: unknown, _enc: BufferEncoding, done: TransformCallback) {
      try {
        const input = phase === 'payload' ? asBuffer(chunk) : readHead(asBuffer(chunk), false);
        if (input !== undefined) chunker.write(input, (sealed) => openMiddle(this, sealed));
        done();
      } catch (e) {
        done(e as Error);
      }
    },
    flush(done: TransformCallback) {
      try {
        if (phase !== 'payload' && readHead(Buffer.alloc(0), true) === undefined) throw new AirlockError('internal', 'age header state');
        openFinal(this);
        done();
      } catch (e) {
        done(e as Error);
      }
    },
  });
}
