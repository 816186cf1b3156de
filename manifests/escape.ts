/*
 * Text for a terminal or a log, from strings that a medium, a bucket, a tar or a server chose: file
 * and folder names, object keys, messages that quote them. A terminal obeys what such a string holds
 * (ESC sequences clear the screen and move the cursor, a CR or LF starts a forged line, a bidi
 * override shows a name backwards), so a courier could print a green `status: ok` over a failed
 * check. escapeText shows every such character visibly instead, the way a C string would write it,
 * and leaves every other character as it is:
 *
 *   \  -> \\            (so an escape in the output always means one in the input)
 *   LF, CR, TAB -> \n \r \t; other C0 controls and DEL -> \xNN
 *   C1 controls (U+0080-009F, CSI among them), bidi controls (U+061C, U+200E-200F, U+202A-202E,
 *   U+2066-2069), U+2028-2029, U+FEFF, U+FFFD (what a decoder leaves of bytes that were not UTF-8)
 *   and lone surrogates -> \uNNNN
 *   bytes that are not UTF-8 (when given bytes) -> \xNN
 *
 * Machine output (`--json`) is not passed through it: JSON carries the exact string.
 */

const HEX = (n: number, width: number) => n.toString(16).padStart(width, '0');

const UNSAFE =
  /[\\\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff\ufffd]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

function escapeChar(c: string): string {
  switch (c) {
    case '\\':
      return '\\\\';
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return '\\t';
  }
  const code = c.charCodeAt(0);
  return code < 0x80 ? `\\x${HEX(code, 2)}` : `\\u${HEX(code, 4)}`;
}

function escapeString(s: string): string {
  return s.replace(UNSAFE, escapeChar);
}

/** The length of the valid UTF-8 sequence at `i`, or 0 when the byte there does not start one. */
function utf8Length(b: Uint8Array, i: number): number {
  const c = b[i] as number;
  const cont = (k: number) => i + k < b.length && ((b[i + k] as number) & 0xc0) === 0x80;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    const c1 = b[i + 1] as number;
    // no overlong forms (E0 80..9F) and no surrogates (ED A0..BF)
    if ((c === 0xe0 && c1 < 0xa0) || (c === 0xed && c1 >= 0xa0)) return 0;
    return cont(1) && cont(2) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    const c1 = b[i + 1] as number;
    if ((c === 0xf0 && c1 < 0x90) || (c === 0xf4 && c1 >= 0x90)) return 0;
    return cont(1) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

/**
 * `text` made safe to print on a terminal or into a log: every control, bidi or invalid character
 * shown as an escape (see the top of this file). Bytes are decoded as UTF-8 first, each byte that is
 * not part of a valid sequence shown as \xNN. Never throws.
 */
export function escapeText(text: string | Uint8Array): string {
  if (typeof text === 'string') return escapeString(text);
  let out = '';
  let start = 0;
  let i = 0;
  const flush = (end: number) => {
    if (end > start) out += escapeString(Buffer.from(text.buffer, text.byteOffset + start, end - start).toString('utf8'));
  };
  while (i < text.length) {
    const n = utf8Length(text, i);
    if (n > 0) {
      i += n;
      continue;
    }
    flush(i);
    out += `\\x${HEX(text[i] as number, 2)}`;
    i++;
    start = i;
  }
  flush(i);
  return out;
}

/**
 * An unexpected error for a bug report: its message escaped whole (it may quote a name), then its
 * stack frames one per line, each escaped (frames name this program's files, but a path may hold
 * anything). Never throws.
 */
export function escapeStack(e: unknown): string {
  if (!(e instanceof Error)) return escapeText(String(e));
  const stack = e.stack ?? '';
  const frames = stack.indexOf('\n    at ');
  const head = escapeText(`${e.name}: ${e.message}`);
  return frames < 0
    ? head
    : `${head}\n${stack
        .slice(frames + 1)
        .split('\n')
        .map(escapeText)
        .join('\n')}`;
}
