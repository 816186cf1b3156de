/*
 * The architecture's import rules, enforced: the verifier stands alone (manifests/ and Node built-ins
 * only, never agent/ or a database or S3 client), the format library knows nothing of the agent,
 * commands are the top (nothing imports agent/cli/), and a restore imports no source: what both sides
 * share lives in agent/postgres/ (WAL rules, programs, SQL) and agent/s3/ (the S3 protocol).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROOT } from '../helpers.js';

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = path.join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function importsOf(text: string): string[] {
  return [
    ...text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|require\(\s*['"]([^'"]+)['"]\s*\)/g),
  ].map((m) => m[1] ?? m[2] ?? m[3] ?? '');
}

function check(dir: string, allowedRoots: string[]): string[] {
  const bad: string[] = [];
  for (const f of files(path.join(ROOT, dir))) {
    for (const spec of importsOf(readFileSync(f, 'utf8'))) {
      if (spec.startsWith('node:')) continue;
      if (!spec.startsWith('.')) {
        bad.push(`${path.relative(ROOT, f)} imports package ${spec}`);
        continue;
      }
      const target = path.relative(ROOT, path.resolve(path.dirname(f), spec));
      if (!allowedRoots.some((r) => target.startsWith(`${r}/`))) bad.push(`${path.relative(ROOT, f)} imports ${target}`);
    }
  }
  return bad;
}

test('verifier/ imports only manifests/ and Node built-ins', () => {
  assert.equal(check('verifier', ['verifier', 'manifests']), []);
  assert.ok(files(path.join(ROOT, 'verifier')).length >= 3);
});

test('manifests/ imports only itself and Node built-ins', () => {
  assert.equal(check('manifests', ['manifests']), []);
});

/** The imports of the files under `dir` (but `except`) that resolve inside one of `forbidden`. */
function importsInto(dir: string, forbidden: string[], except: string[] = []): string[] {
  const bad: string[] = [];
  for (const f of files(path.join(ROOT, dir))) {
    if (except.some((e) => path.relative(ROOT, f).startsWith(e))) continue;
    for (const spec of importsOf(readFileSync(f, 'utf8')).filter((s) => s.startsWith('.'))) {
      const target = path.relative(ROOT, path.resolve(path.dirname(f), spec));
      if (forbidden.some((r) => target.startsWith(`${r}/`))) bad.push(`${path.relative(ROOT, f)} imports ${target}`);
    }
  }
  return bad;
}

test('no module of agent/ imports a command (agent/cli/)', () => {
  assert.equal(importsInto('agent', ['agent/cli'], ['agent/cli/']), []);
});

test('agent/postgres/ imports neither side; no restore imports a source', () => {
  assert.equal(importsInto('agent/postgres', ['agent/sources', 'agent/restore', 'agent/cli']), []);
  assert.equal(importsInto('agent/restore', ['agent/sources']), []);
});

test('the object restore imports no source; agent/s3/ (the S3 protocol) imports neither sources nor restores', () => {
  const into = (dir: string, forbidden: string) =>
    (dir.endsWith('.ts') ? [path.join(ROOT, dir)] : files(path.join(ROOT, dir))).flatMap((f) =>
      importsOf(readFileSync(f, 'utf8'))
        .filter((spec) => spec.startsWith('.') && path.relative(ROOT, path.resolve(path.dirname(f), spec)).startsWith(`${forbidden}/`))
        .map((spec) => `${path.relative(ROOT, f)} imports ${spec}`),
    );
  assert.equal(into('agent/restore/objects.ts', 'agent/sources'), []);
  assert.equal([...into('agent/s3', 'agent/sources'), ...into('agent/s3', 'agent/restore')], []);
});

test('the rule catches a bad import', () => {
  const sample = "import x from 'pg';\nimport {\n  y,\n} from '../agent/catalog.js';\nconst m = await import('minio');\nexport { z } from './z.js';\n";
  assert.equal(importsOf(sample), ['pg', '../agent/catalog.js', 'minio', './z.js']);
});

test.run();
