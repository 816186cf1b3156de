// Writes a man page (roff) for a CLI from its own --help, so the page says what the installed
// version does: the top-level help, then each command's (and each subcommand's) help, then the
// exit codes once.
// Usage: node scripts/manpage.mjs NAME VERSION PROGRAM [ARGS...] > NAME.1
import { execFileSync } from 'node:child_process';

const [name, version, ...program] = process.argv.slice(2);
if (!name || !version || program.length === 0) {
  console.error('usage: node scripts/manpage.mjs NAME VERSION PROGRAM [ARGS...]');
  process.exit(2);
}

function help(words) {
  return execFileSync(program[0], [...program.slice(1), ...words, '--help'], { encoding: 'utf8' });
}

/** The help text cut where the exit codes start, and those exit codes. */
function split(text) {
  const at = text.search(/^Exit codes:$/m);
  return at < 0 ? [text.trimEnd(), ''] : [text.slice(0, at).trimEnd(), text.slice(at).trimEnd()];
}

/** The commands a commander help lists (two spaces, then the name), without `help`. */
function commands(text) {
  const block = /(?:^|\n)Commands:\n([\s\S]*?)(?:\n\n|$)/.exec(text)?.[1] ?? '';
  return [...block.matchAll(/^ {2}([a-z][a-z0-9-]*)/gm)].map((m) => m[1]).filter((c) => c !== 'help');
}

/** Text as roff shows it verbatim: backslashes doubled, a leading dot or quote neutralised. */
function verbatim(text) {
  return text
    .split('\n')
    .map((l) => l.replace(/\\/g, '\\e').replace(/^([.'])/, '\\&$1'))
    .join('\n');
}

function section(title, text) {
  return `.SH ${title}\n.nf\n${verbatim(text)}\n.fi\n`;
}

const [top, exitCodes] = split(help([]));
// the NAME line: the help's first sentence
const summary = (top.split('\n\n')[1] ?? name).replace(/\s+/g, ' ').trim().split('. ')[0].replace(/\.$/, '');
let page = `.TH ${name.toUpperCase()} 1 "" "${name} ${version}" "User Commands"\n.SH NAME\n${name} \\- ${summary.replace(/-/g, '\\-')}\n`;
page += section('SYNOPSIS AND OPTIONS', top);
const walk = (words) => {
  for (const c of commands(help(words))) {
    const path = [...words, c];
    page += `.SS ${path.join(' ')}\n.nf\n${verbatim(split(help(path))[0])}\n.fi\n`;
    walk(path);
  }
};
if (commands(top).length > 0) {
  page += '.SH COMMANDS\n';
  walk([]);
}
if (exitCodes) page += section('EXIT STATUS', exitCodes);
page += `.SH SEE ALSO\n${name === 'airlock' ? 'airlock-verify' : 'airlock'}(1), ssh-keygen(1), age(1)\n`;
process.stdout.write(page);
