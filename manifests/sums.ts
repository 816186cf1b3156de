/*
 * SHA256SUMS: the list that the signature covers, in the exact format `sha256sum --strict -c` reads.
 *
 * One line per file of the bundle except SHA256SUMS and SHA256SUMS.sig: 64 lowercase hex digits, two
 * spaces (text mode), the file name, LF. Lines sorted by name (byte order), no duplicates, no CR, no
 * folders: a bundle is flat, so a name never holds "/" and never is "." or "..". The same text with
 * other names is the inner MANIFEST.sha256 (see inner.ts), whose order is the tar order instead, and
 * a WAL file's `.sha256` sidecar (one line). formatSumLine and parseSumLine are the one place that
 * line is written and read.
 */
import { AirlockError } from './errors.js';
import { LIMITS } from './limits.js';

export const SUMS = 'SHA256SUMS';
export const SUMS_SIG = 'SHA256SUMS.sig';
export const SUMS_LIMIT = LIMITS.sumsBytes;
/** What may be named in a bundle: a plain file name, never a path. */
export const BUNDLE_FILE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;

export interface SumLine {
  name: string;
  sha256: string;
}

/** One line of sha256sum's text format: 64 lowercase hex digits, two spaces, the name, LF. */
export function formatSumLine(l: SumLine): string {
  return `${l.sha256}  ${l.name}\n`;
}

/**
 * Parses one line of sha256sum's format, without its LF; undefined when it is not one. `binary` also
 * takes the `*` that `sha256sum -b` writes instead of the second space (for lists made by hand).
 */
export function parseSumLine(row: string, binary = false): SumLine | undefined {
  const m = (binary ? /^([0-9a-f]{64}) [ *](.+)$/ : /^([0-9a-f]{64}) {2}(.+)$/).exec(row);
  return m ? { sha256: m[1] as string, name: m[2] as string } : undefined;
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Formats SHA256SUMS, sorting by name. Throws `malformed` on a name a bundle may not hold or a duplicate. */
export function formatSums(lines: readonly SumLine[]): string {
  const sorted = [...lines].sort((a, b) => compareBytes(a.name, b.name));
  sorted.forEach((l, i) => {
    if (!BUNDLE_FILE_RE.test(l.name) || l.name === SUMS || l.name === SUMS_SIG) {
      throw new AirlockError('malformed', `SHA256SUMS: ${JSON.stringify(l.name)} may not be listed`);
    }
    if (i > 0 && sorted[i - 1]?.name === l.name) throw new AirlockError('malformed', `SHA256SUMS: ${l.name} listed twice`);
  });
  return sorted.map(formatSumLine).join('');
}

/**
 * Parses checksum lines in sha256sum's text format. `sorted` demands byte order by name (SHA256SUMS);
 * `nameRe` says which names are allowed. Throws `malformed` naming the first bad line.
 */
export function parseSumLines(bytes: Uint8Array, what: string, nameRe: RegExp, sorted: boolean, limit: number): SumLine[] {
  if (bytes.byteLength > limit) throw new AirlockError('malformed', `${what}: ${bytes.byteLength} bytes is over the ${limit}-byte limit`);
  const text = Buffer.from(bytes).toString('utf8');
  if (text.length > 0 && !text.endsWith('\n')) throw new AirlockError('malformed', `${what}: last line has no LF`);
  const out: SumLine[] = [];
  const seen = new Set<string>();
  const rows = text.split('\n');
  rows.pop();
  rows.forEach((row, i) => {
    const parsed = parseSumLine(row);
    const line = `${what} line ${i + 1}`;
    if (!parsed || row.includes('\r')) throw new AirlockError('malformed', `${line}: not "<sha256>  <name>" with LF line ends`);
    const { sha256, name } = parsed;
    if (!nameRe.test(name)) throw new AirlockError('malformed', `${line}: ${JSON.stringify(name)} is not an allowed name`);
    if (seen.has(name)) throw new AirlockError('malformed', `${line}: ${name} listed twice`);
    const prev = out.at(-1);
    if (sorted && prev && compareBytes(prev.name, name) >= 0) throw new AirlockError('malformed', `${line}: not sorted by name`);
    seen.add(name);
    out.push({ name, sha256 });
  });
  return out;
}

/** Parses SHA256SUMS. Throws `malformed` on any deviation from the format. */
export function parseSums(bytes: Uint8Array): SumLine[] {
  const lines = parseSumLines(bytes, SUMS, BUNDLE_FILE_RE, true, SUMS_LIMIT);
  for (const l of lines) {
    if (l.name === SUMS || l.name === SUMS_SIG) throw new AirlockError('malformed', `${SUMS}: may not list ${l.name}`);
  }
  return lines;
}
