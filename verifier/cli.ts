#!/usr/bin/env node
/*
 * airlock-verify: the auditor's tool. It needs the allowed_signers file (an unchecked signature proves
 * nothing) and, for the deep check only, an age identity file. It prints one line per finding, one per
 * bundle, a summary and `status: ok|error`, or one JSON document with --json, and exits 0 only when
 * every check passed. It depends on the format library and Node alone.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseIdentities } from '../manifests/age/keys.js';
import { parseAllowedSigners } from '../manifests/allowed-signers.js';
import { assertWritableTarget, writeFileAtomic } from '../manifests/atomic.js';
import { AirlockError, EXIT, formatExitTable, fromSystemError } from '../manifests/errors.js';
import { escapeText } from '../manifests/escape.js';
import { printError, wantsJson } from '../manifests/print-error.js';
import { RESULTS } from '../manifests/results.js';
import { BUNDLE_NAMESPACE } from '../manifests/sshsig.js';
import { SUMS, SUMS_SIG } from '../manifests/sums.js';
import { VERSION } from '../manifests/version.js';
import { renderHtml } from './report-html.js';
import { readState, writeState } from './state.js';
import { renderText, reportJson } from './report-text.js';
import { readAllowedSigners, verifyPaths } from './verify.js';

const NAME = 'airlock-verify';

/** `text` wrapped at spaces to lines of at most `width` columns. */
function wrap(text: string, width: number): string {
  const lines: string[] = [];
  for (const word of text.split(' ')) {
    const last = lines.at(-1);
    if (last !== undefined && last.length + 1 + word.length <= width) lines[lines.length - 1] = `${last} ${word}`;
    else lines.push(word);
  }
  return lines.join('\n');
}

const HELP = `Usage: ${NAME} --allowed-signers FILE [--identity FILE] [--state FILE] [--json] [--report FILE.html] PATH...

Verifies airlock bundles. PATH is a bundle folder or any folder holding bundles
(searched recursively). Without a key it checks the signature, ${SUMS}, the
manifest, every volume and the chain of bundles; with --identity it also
decrypts every bundle in memory and checks every entry inside.

Options:
  --allowed-signers FILE  OpenSSH allowed_signers: "<site> ssh-ed25519 AAAA..." (required)
  --identity FILE         age identity file (AGE-SECRET-KEY-1...): adds the deep check
  --state FILE            remember the newest bundle per site here; reports rollbacks,
                          bundles that contradict what was seen before, and bundles
                          withheld between the one seen before and the set's first
  --json                  print one JSON document instead of lines
  --report FILE.html      also write the auditor's report: one self-contained HTML
                          file (verdict, a timeline per site, every bundle and
                          finding, the stock-tool commands), printable on A4;
                          the output and the exit code stay the same
  -q, --quiet             print findings and the summary only, not one line per bundle
  -h, --help              this help
  --version               the version

${wrap(`Results: ${RESULTS.join(', ')}.`, 80)}
wal-gap: a WAL segment in no bundle of the set; timeline-break: a timeline switch
without its history, or a bundle of another cluster.

The same keyless check with stock tools, per bundle folder B of site S:
  ssh-keygen -Y verify -f allowed_signers -I S -n ${BUNDLE_NAMESPACE} -s B/${SUMS_SIG} < B/${SUMS}
  (cd B && sha256sum --strict -c ${SUMS})

${formatExitTable()}
`;

/** Errors quote paths and names from the medium: printError shows them escaped (exact with --json). */
function fail(e: unknown): never {
  process.exit(printError(NAME, e, wantsJson(process.argv.slice(2))));
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        'allowed-signers': { type: 'string' },
        identity: { type: 'string' },
        state: { type: 'string' },
        json: { type: 'boolean', default: false },
        report: { type: 'string' },
        quiet: { type: 'boolean', short: 'q', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', default: false },
      },
    });
  } catch (e) {
    throw new AirlockError('usage', (e as Error).message.toLowerCase().replace(/\.$/, ''), { hint: `see ${NAME} --help` });
  }
  const { values: v, positionals } = parsed;
  if (v.help) {
    process.stdout.write(HELP);
    return EXIT.ok;
  }
  if (v.version) {
    process.stdout.write(`${NAME} ${VERSION}\n`);
    return EXIT.ok;
  }
  if (!v['allowed-signers'])
    throw new AirlockError('usage', '--allowed-signers is required', {
      hint: 'an unchecked signature proves nothing; ask the site for its allowed_signers line',
    });
  if (positionals.length === 0) throw new AirlockError('usage', 'no PATH given', { hint: `${NAME} --allowed-signers FILE PATH...` });

  const allowedSigners = parseAllowedSigners(await readAllowedSigners(v['allowed-signers']));
  if (allowedSigners.length === 0) throw new AirlockError('bad-allowed-signers', `${v['allowed-signers']}: no ed25519 key in it`);
  let identities: Uint8Array[] | undefined;
  if (v.identity) {
    let text: string;
    try {
      text = await readFile(v.identity, 'utf8');
    } catch (e) {
      throw fromSystemError(e, v.identity);
    }
    identities = parseIdentities(text);
  }
  // a report that cannot be written is found out before a long check, not after
  if (v.report !== undefined) await assertWritableTarget(v.report);
  const state = v.state ? await readState(v.state) : undefined;
  const tty = process.stderr.isTTY && !v.json;
  const report = await verifyPaths(positionals, {
    allowedSigners,
    ...(identities ? { identities } : {}),
    ...(state ? { state } : {}),
    now: new Date(),
    tool: `${NAME} ${VERSION}`,
    onBundle: (b, i, total) => {
      if (tty) process.stderr.write(`\r${NAME}: checked ${i + 1}/${total} ${escapeText(path.basename(b.path))}\x1b[K${i + 1 === total ? '\n' : ''}`);
    },
  });
  if (v.state && state) await writeState(v.state, state, report);
  process.stdout.write(v.json ? `${JSON.stringify(reportJson(report), null, 2)}\n` : renderText(report, v.quiet));
  if (v.report !== undefined) await writeFileAtomic(v.report, renderHtml(report));
  return report.ok ? EXIT.ok : EXIT.failed;
}

// stdout may be a pipe that takes the report in pieces: exit only once the last write left, or the
// reader gets the findings without the verdict
main(process.argv.slice(2)).then((code) => process.stdout.write('', () => process.exit(code)), fail);
