#!/usr/bin/env node
// Runs every test file under test/ with uvu (TypeScript through tsx), streams its output, and ends
// with one line `N passed, N failed` so a run that executed nothing is visible.
// Usage: node scripts/run-tests.mjs [PATTERN]   (PATTERN: a regular expression on the file path)
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const pattern = process.argv[2] ?? '\\.test\\.ts$';
const uvu = path.join(root, 'node_modules', 'uvu', 'bin.js');
const child = spawn(process.execPath, ['--import', 'tsx', uvu, 'test', pattern], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'inherit'],
  env: { ...process.env, NO_COLOR: '1' },
});
let out = '';
child.stdout.on('data', (d) => {
  out += d;
  process.stdout.write(d);
});
child.on('close', (code, signal) => {
  const num = (label) => Number(/\s*(\d+)/.exec(out.split(`${label}:`).at(-1) ?? '')?.[1] ?? 0);
  const total = out.includes('Total:') ? num('Total') : 0;
  const passed = out.includes('Passed:') ? num('Passed') : 0;
  const skipped = out.includes('Skipped:') ? num('Skipped') : 0;
  let failed = total - passed - skipped;
  if ((code !== 0 || signal) && failed === 0) failed = 1; // a crash outside any test still fails
  process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  process.exit(failed > 0 || code !== 0 ? 1 : 0);
});
