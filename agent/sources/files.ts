/*
 * The configuration and secrets tier: files and folders given by path, walked without following
 * symbolic links, in byte order of names so two exports of the same tree produce the same index.
 * Regular files become tar entries named files/NNNNNN; their original path, mode, owner and time go
 * into the index record. Folders, symbolic links, hard links (a second name of a file already
 * exported) and special files are records only: they never become tar link or device entries.
 *
 * A file is read through one open descriptor and checked before and after: if it changed while being
 * read, the export fails (source-changed) rather than storing a torn copy. It is read to its end, one
 * byte past the size the kernel gave: a /proc or sysfs file that says 0 and holds data fails the
 * export (source-unsized) rather than being exported empty.
 */
import { lstatSync, readFileSync } from 'node:fs';
import { lstat, open, opendir, readlink } from 'node:fs/promises';
import path from 'node:path';
import { AirlockError, fromSystemError } from '../../manifests/errors.js';
import type { SourceFields } from '../../manifests/records.js';
import type { SourceItem } from '../bundle/writer.js';

const READ_SIZE = 1024 * 1024;

function idNames(file: string): Map<number, string> {
  const names = new Map<number, string>();
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const [name, , id] = line.split(':');
      if (name && id && /^\d+$/.test(id) && !names.has(Number(id))) names.set(Number(id), name);
    }
  } catch {
    // no /etc/passwd (a container): numeric ids only
  }
  return names;
}

function mode(m: number): string {
  return (m & 0o7777).toString(8).padStart(4, '0');
}

function specialKind(s: { isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }): string {
  if (s.isFIFO()) return 'fifo';
  if (s.isSocket()) return 'socket';
  if (s.isCharacterDevice()) return 'char-device';
  if (s.isBlockDevice()) return 'block-device';
  return 'unknown';
}

/** Reads exactly `size` bytes of `file`, failing with `source-changed` if it changes meanwhile. */
async function* readExactly(file: string, size: number, ino: number, mtimeMs: number): AsyncGenerator<Buffer> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    throw fromSystemError(e, file);
  }
  const handle = fh;
  let next: Promise<Buffer> | undefined;
  try {
    const before = await handle.stat();
    const changed = () => new AirlockError('source-changed', `${file}: changed while it was exported`, { hint: 'run the export again when the file is quiet' });
    if (before.ino !== ino || before.size !== size || before.mtimeMs !== mtimeMs) throw changed();
    // one read ahead: the next block comes from the disk while this one is hashed and encrypted
    const readAt = (at: number) => {
      const want = Math.min(READ_SIZE, size - at);
      return handle.read(Buffer.allocUnsafe(want), 0, want, at).then(({ bytesRead, buffer }) => (bytesRead === want ? buffer : buffer.subarray(0, bytesRead)));
    };
    let done = 0;
    next = size > 0 ? readAt(0) : undefined;
    while (next) {
      const buf = await next;
      next = undefined;
      if (buf.byteLength === 0) throw changed();
      done += buf.byteLength;
      if (done < size) {
        next = readAt(done);
        // a failure is thrown where it is awaited; until then it must not count as unhandled
        next.catch(() => {});
      }
      yield buf;
    }
    // read to the end: the size the kernel gives is not always what the file holds (/proc, sysfs
    // and FUSE files say 0, or a page, whatever they hold), and a file cut short must never look whole
    const { bytesRead: beyond } = await handle.read(Buffer.alloc(1), 0, 1, size);
    if (beyond > 0 && size === 0) {
      throw new AirlockError(
        'source-unsized',
        `${file}: its size is given as 0 but it holds data (a /proc, sysfs or FUSE file), so it cannot be exported as it is`,
        {
          hint: 'copy it into a regular file and export the copy, or leave it out of --files',
        },
      );
    }
    const after = await handle.stat();
    if (beyond > 0 || after.size !== size || after.mtimeMs !== mtimeMs) throw changed();
  } catch (e) {
    throw fromSystemError(e, file);
  } finally {
    await next?.catch(() => undefined);
    await handle.close();
  }
}

/**
 * Yields the items for `roots` (files or folders, absolute or relative to the working folder).
 * Throws `not-found` for a missing root and `source-unreadable` for a file or folder it may not read;
 * an export never silently leaves out part of what it was asked for.
 */
export async function* fileItems(roots: readonly string[]): AsyncGenerator<SourceItem> {
  const users = idNames('/etc/passwd');
  const groups = idNames('/etc/group');
  const firstName = new Map<string, string>(); // dev:ino -> first path, for hard links
  let n = 0;

  async function* visit(p: string): AsyncGenerator<SourceItem> {
    let s;
    try {
      s = await lstat(p);
    } catch (e) {
      throw fromSystemError(e, p);
    }
    const user = users.get(s.uid);
    const group = groups.get(s.gid);
    const owner: SourceFields = {
      source: p,
      mode: mode(s.mode),
      uid: s.uid,
      gid: s.gid,
      ...(user !== undefined ? { user } : {}),
      ...(group !== undefined ? { group } : {}),
      mtime: new Date(s.mtimeMs).toISOString(),
    };
    if (s.isSymbolicLink()) {
      yield { kind: 'record', record: { type: 'symlink', ...owner, target: await readlink(p) } };
    } else if (s.isDirectory()) {
      yield { kind: 'record', record: { type: 'dir', ...owner } };
      let names: string[];
      try {
        const d = await opendir(p);
        names = [];
        for await (const e of d) names.push(e.name);
      } catch (e) {
        throw fromSystemError(e, p);
      }
      names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      for (const name of names) yield* visit(path.join(p, name));
    } else if (s.isFile()) {
      const key = `${s.dev}:${s.ino}`;
      const first = s.nlink > 1 ? firstName.get(key) : undefined;
      if (first !== undefined) {
        yield { kind: 'record', record: { type: 'hardlink', ...owner, target: first } };
        return;
      }
      if (s.nlink > 1) firstName.set(key, p);
      n++;
      const name = `files/${String(n).padStart(6, '0')}`;
      const { size, ino, mtimeMs } = s;
      yield {
        kind: 'entry',
        name,
        size,
        mode: 0o600,
        mtime: Math.floor(mtimeMs / 1000),
        open: () => readExactly(p, size, ino, mtimeMs),
        record: { type: 'file', ...owner },
      };
    } else {
      yield { kind: 'record', record: { type: 'special', ...owner, kind: specialKind(s), rdev: s.rdev } };
    }
  }

  // a root inside another root would be exported twice: keep only the outermost
  const absolute = [...new Set(roots.map((r) => path.resolve(r)))];
  const outermost = absolute.filter((r) => !absolute.some((o) => o !== r && (r.startsWith(`${o}/`) || o === '/')));
  for (const root of roots) {
    const abs = path.resolve(root);
    try {
      lstatSync(abs);
    } catch (e) {
      throw new AirlockError('not-found', `${root}: no such file or folder`, { hint: 'check the --files paths', cause: e });
    }
  }
  for (const abs of outermost) yield* visit(abs);
}
