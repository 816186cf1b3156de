#!/usr/bin/env node
// Runs every test file under test/ with uvu (TypeScript through tsx), streams its output, prints how
// long each file took, slowest first, and ends with one line `N passed, N failed` so a run that
// executed nothing is visible.
// Usage: node scripts/run-tests.mjs [--unit] [PATTERN]
//   PATTERN  a regular expression on the file path under test/ (e.g. 'integration/pitr\.')
//   --unit   only the tests that need no server (test/unit, test/fuzz)
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const args = process.argv.slice(2);
const unit = args.includes('--unit');
const given = args.find((a) => a !== '--unit');
const pattern = unit ? `^(unit|fuzz)/${given ? `.*${given}` : '.*\\.test\\.ts$'}` : (given ?? '\\.test\\.ts$');
const uvu = path.join(root, 'node_modules', 'uvu', 'bin.js');
const child = spawn(process.execPath, ['--import', 'tsx', uvu, 'test', pattern], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'inherit'],
  env: { ...process.env, NO_COLOR: '1' },
});

// uvu prints a file's path on a line of its own when it starts that file's suite; a file's time is
// from there to the next file's line, or to the summary
const FILE_LINE = /^(\S+\.test\.ts)$/;
const timings = [];
let current;
const mark = (name) => {
  const now = performance.now();
  if (current) timings.push({ name: current.name, ms: now - current.start });
  current = name === undefined ? undefined : { name, start: now };
};

let out = '';
let pending = '';
child.stdout.on('data', (d) => {
  out += d;
  process.stdout.write(d);
  pending += d;
  const lines = pending.split('\n');
  pending = lines.pop() ?? '';
  for (const line of lines) {
    const m = FILE_LINE.exec(line.trim());
    if (m) mark(m[1]);
    else if (/^\s*Total:/.test(line)) mark(undefined);
  }
});
child.on('close', (code, signal) => {
  mark(undefined);
  const num = (label) => Number(/\s*(\d+)/.exec(out.split(`${label}:`).at(-1) ?? '')?.[1] ?? 0);
  const total = out.includes('Total:') ? num('Total') : 0;
  const passed = out.includes('Passed:') ? num('Passed') : 0;
  const skipped = out.includes('Skipped:') ? num('Skipped') : 0;
  let failed = total - passed - skipped;
  if ((code !== 0 || signal) && failed === 0) failed = 1; // a crash outside any test still fails
  if (timings.length > 0) {
    process.stdout.write('\nTime per file, slowest first:\n');
    for (const t of timings.sort((a, b) => b.ms - a.ms)) process.stdout.write(`${(t.ms / 1000).toFixed(1).padStart(8)} s  ${t.name}\n`);
  }
  process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  process.exit(failed > 0 || code !== 0 ? 1 : 0);
});
