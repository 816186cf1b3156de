/*
 * airlock wal-ingest: the agent's side of the spool, run as the agent's own user. Checks every
 * finished file in the spool (sidecar hash, every page header of a segment, history and backup
 * contents) and records the good ones in the catalog. A bad file is reported by name and left out;
 * the command goes on with the rest and fails at the end. The long-running agent calls the same
 * function. Without a connection to the server it holds segments to the catalog's cluster identity
 * (an empty catalog takes it from the first segment that checks); an export takes the server's.
 */
import type { Command } from 'commander';
import { AirlockError } from '../../manifests/errors.js';
import { Catalog, resolveStateDir } from '../catalog.js';
import { ingestSpool } from '../spool.js';
import { printError } from './common.js';
import { command, resolveOptions, type Flags } from './options.js';
import { resolveSpool } from './wal-push.js';

interface IngestFlags {
  spool?: string;
  stateDir?: string;
  json?: boolean;
}

async function walIngest(flags: IngestFlags): Promise<void> {
  const spool = resolveSpool(flags.spool);
  const catalog = Catalog.open(resolveStateDir(flags.stateDir));
  try {
    const r = ingestSpool(catalog, spool);
    if (flags.json) {
      process.stdout.write(
        `${JSON.stringify({
          ingested: r.ingested.map((w) => w.name),
          known: r.known,
          waiting: r.waiting,
          problems: r.problems.map((p) => ({ code: p.code, message: p.message })),
        })}\n`,
      );
    } else {
      for (const w of r.ingested) process.stdout.write(`${w.name}\n`);
    }
    process.stderr.write(
      `airlock: wal-ingest: ${r.ingested.length} ingested, ${r.known.length} already known, ${r.waiting.length} waiting, ${r.problems.length} refused\n`,
    );
    if (r.problems.length > 0) {
      for (const p of r.problems.slice(0, -1)) printError(p, flags.json === true);
      const last = r.problems.at(-1) as AirlockError;
      throw last;
    }
  } finally {
    catalog.close();
  }
}

export function register(program: Command): void {
  command(program, 'wal-ingest', 'check the files in the wal spool and record the good ones in the catalog').action((flags: Flags) =>
    walIngest(resolveOptions<IngestFlags>('wal-ingest', flags)),
  );
}
