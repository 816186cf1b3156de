/*
 * Just enough XML for S3 responses: elements, text, the five named entities and numeric character
 * references, comments, CDATA and the XML declaration; attributes are skipped (S3 only puts xmlns
 * there). S3 answers are small (a listing page is at most 1,000 entries), so a page is parsed whole
 * into a tree that keeps document order, which matters: a version listing interleaves <Version> and
 * <DeleteMarker> elements newest first, and that order is the history.
 */
import { AirlockError } from '../../manifests/errors.js';

export interface XmlNode {
  name: string;
  children: XmlNode[];
  text: string;
}

const NAMED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** XML 1.0's Char production: what a character reference may stand for. */
function isXmlChar(c: number): boolean {
  return c === 0x9 || c === 0xa || c === 0xd || (c >= 0x20 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd) || (c >= 0x10000 && c <= 0x10ffff);
}

function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (whole, e: string) => {
    if (e.startsWith('#')) {
      // Past U+10FFFF, fromCodePoint throws a RangeError; a surrogate would make a key no bundle can hold.
      const c = e.startsWith('#x') ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      if (!isXmlChar(c)) throw new AirlockError('s3-failed', `the server sent XML with a character reference to no character: ${whole.slice(0, 40)}`);
      return String.fromCodePoint(c);
    }
    const v = NAMED[e];
    if (v === undefined) throw new AirlockError('s3-failed', `the server sent XML with an unknown entity ${whole}`);
    return v;
  });
}

/** Parses `text` into its root element. Throws `s3-failed` when it is not well-formed enough to read. */
export function parseXml(text: string): XmlNode {
  const bad = (why: string) => new AirlockError('s3-failed', `the server sent malformed XML: ${why}`, { hint: 'check that --s3-endpoint is an S3 server' });
  const root: XmlNode = { name: '#document', children: [], text: '' };
  const stack: XmlNode[] = [root];
  let i = 0;
  while (i < text.length) {
    const lt = text.indexOf('<', i);
    const top = stack[stack.length - 1] as XmlNode;
    if (lt < 0) {
      top.text += decodeEntities(text.slice(i));
      break;
    }
    if (lt > i) top.text += decodeEntities(text.slice(i, lt));
    if (text.startsWith('<?', lt)) {
      const end = text.indexOf('?>', lt);
      if (end < 0) throw bad('unterminated declaration');
      i = end + 2;
    } else if (text.startsWith('<!--', lt)) {
      const end = text.indexOf('-->', lt);
      if (end < 0) throw bad('unterminated comment');
      i = end + 3;
    } else if (text.startsWith('<![CDATA[', lt)) {
      const end = text.indexOf(']]>', lt);
      if (end < 0) throw bad('unterminated CDATA');
      top.text += text.slice(lt + 9, end);
      i = end + 3;
    } else if (text.startsWith('</', lt)) {
      const end = text.indexOf('>', lt);
      if (end < 0) throw bad('unterminated end tag');
      const name = text.slice(lt + 2, end).trim();
      if (stack.length < 2 || top.name !== name) throw bad(`unexpected </${name}>`);
      stack.pop();
      i = end + 1;
    } else {
      const end = text.indexOf('>', lt);
      if (end < 0) throw bad('unterminated tag');
      const selfClosing = text[end - 1] === '/';
      const inner = text.slice(lt + 1, selfClosing ? end - 1 : end);
      const name = /^[^\s/>]+/.exec(inner)?.[0];
      if (!name) throw bad('a tag without a name');
      const node: XmlNode = { name, children: [], text: '' };
      top.children.push(node);
      if (!selfClosing) stack.push(node);
      i = end + 1;
    }
  }
  if (stack.length !== 1) throw bad(`<${(stack[stack.length - 1] as XmlNode).name}> is not closed`);
  const el = root.children[0];
  if (!el || root.children.length !== 1) throw bad('not exactly one root element');
  return el;
}

/** The first child element called `name`. */
export function child(node: XmlNode, name: string): XmlNode | undefined {
  return node.children.find((c) => c.name === name);
}

/** The text of the first child element called `name`, or undefined when there is none. */
export function textOf(node: XmlNode, name: string): string | undefined {
  return child(node, name)?.text;
}

/** Escapes text for an XML element body. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&${{ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": 'apos' }[c]};`);
}
