// Builds the auditor's one-file verifier: verifier/cli.ts and the format library it imports, bundled
// by esbuild into one ES module that needs nothing but node (18, Debian 12's own, or newer).
// Usage: node scripts/bundle-verifier.mjs OUT.mjs
import { build } from 'esbuild';

const out = process.argv[2];
if (!out) {
  console.error('usage: node scripts/bundle-verifier.mjs OUT.mjs');
  process.exit(2);
}
await build({
  entryPoints: ['verifier/cli.ts'],
  outfile: out,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node18',
  legalComments: 'none',
  logLevel: 'warning',
});
