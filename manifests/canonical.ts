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
 * Parses JSON text of at most `limit` bytes that must be in canonical form.
 * Throws `malformed` when it is too large, not JSON, or not canonical.
 */
export function parseCanonical(bytes: Uint8Array, what: string, limit: number): unknown {
  if (bytes.byteLength > limit) {
    throw new AirlockError('malformed', `${what}: ${bytes.byteLength} bytes is over the ${limit}-byte limit`);
  }
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new AirlockError('malformed', `${what}: not valid JSON (${(e as Error).message.toLowerCase()})`);
  }
  let again: string;
  try {
    again = canonicalJson(value);
  } catch (e) {
    throw new AirlockError('malformed', `${what}: ${(e as Error).message}`);
  }
  // Bytes, not decoded text: the decoder drops a byte-order mark and turns bytes that are not UTF-8
  // into U+FFFD, so equal text can come from other bytes than the canonical ones.
  if (!Buffer.from(again, 'utf8').equals(bytes)) throw new AirlockError('malformed', `${what}: not in canonical form`);
  return value;
}
