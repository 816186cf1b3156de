/*
 * Canonical JSON, the one serialisation of manifest.json and of every JSON line airlock writes.
 *
 * Object keys sorted by UTF-16 code unit (JavaScript's default sort), two-space indentation, LF line
 * ends, one final LF; strings as JSON.stringify writes them (UTF-8, no needless escapes); numbers only
 * as safe integers, since anything wider (64-bit identifiers, LSNs) is carried as a string. A reader
 * re-serialises what it parsed and compares bytes, so two writers cannot disagree on the same manifest.
 */
import { AirlockError } from './errors.js';

/** Returns `value` with object keys sorted at every depth; throws `malformed` on a non-integer number. */
function sortKeys(value: unknown, where: string): unknown {
  if (Array.isArray(value)) return value.map((v, i) => sortKeys(v, `${where}[${i}]`));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = sortKeys(v, `${where}.${k}`);
    }
    return out;
  }
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw new AirlockError('malformed', `${where}: number ${value} is not a safe integer`);
  }
  return value;
}

/** The canonical multi-line form (manifest.json). Throws `malformed` on a non-integer number. */
export function canonicalJson(value: unknown): string {
  return `${JSON.stringify(sortKeys(value, '$'), null, 2)}\n`;
}

/** The canonical one-line form (index.jsonl lines, without the LF). */
export function canonicalLine(value: unknown): string {
  return JSON.stringify(sortKeys(value, '$'));
}

/**
 * Parses JSON text of at most `limit` bytes that must be in canonical form: the bytes themselves are
 * compared with the canonical serialisation of what they parse to, so a byte-order mark, bytes that
 * are not UTF-8 or any other spelling of the same value is refused, never smoothed over by a decoder.
 * Throws `malformed` when it is too large, not UTF-8, not JSON, or not canonical.
 */
export function parseCanonical(bytes: Uint8Array, what: string, limit: number): unknown {
  if (bytes.byteLength > limit) {
    throw new AirlockError('malformed', `${what}: ${bytes.byteLength} bytes is over the ${limit}-byte limit`);
  }
  let text: string;
  try {
    // ignoreBOM keeps a byte-order mark in the text, where JSON.parse refuses it
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new AirlockError('malformed', `${what}: not UTF-8`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // not the engine's message: it differs between Node.js versions, and the verifier says the same on all
    throw new AirlockError('malformed', `${what}: not valid JSON${text.startsWith('\ufeff') ? ' (it starts with a byte-order mark)' : ''}`);
  }
  let again: string;
  try {
    again = canonicalJson(value);
  } catch (e) {
    throw new AirlockError('malformed', `${what}: ${(e as Error).message}`);
  }
  if (!Buffer.from(again, 'utf8').equals(bytes)) throw new AirlockError('malformed', `${what}: not in canonical form`);
  return value;
}
