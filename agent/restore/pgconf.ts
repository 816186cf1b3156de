/*
 * The configuration a restored cluster starts with.
 *
 * A base backup carries the source's postgresql.conf and postgresql.auto.conf, and a bundle sealed by
 * a stolen appliance key can put anything there: recovery_end_command and archive_cleanup_command
 * run programs, the *_preload_libraries and dynamic_library_path load libraries (one can ship inside
 * the data folder), log_directory, external_pid_file and data_directory write or move paths,
 * include directives pull in other files. So the server never reads a carried file: they move to
 * airlock-source-config/ for the operator to review, and airlock writes postgresql.conf itself from
 * the recovery settings and a short list of the source's settings (KEPT), each value checked
 * against the pattern of its kind and written quoted. Everything else takes PostgreSQL's default.
 */
import { lstat, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** The folder inside a restored data folder that holds the source's configuration files. */
export const SOURCE_CONFIG_DIR = 'airlock-source-config';

type Kind = 'number' | 'word' | 'text';

/**
 * The source settings a restore keeps. None runs a program, loads a library or names a path.
 * SECURITY.md lists them with the reasons.
 */
export const KEPT: Readonly<Record<string, Kind>> = {
  // recovery stops ("insufficient parameter settings") unless these are at least the source's
  max_connections: 'number',
  max_worker_processes: 'number',
  max_wal_senders: 'number',
  max_prepared_transactions: 'number',
  max_locks_per_transaction: 'number',
  // memory and WAL sizing: a restore should perform like its source
  shared_buffers: 'number',
  work_mem: 'number',
  maintenance_work_mem: 'number',
  effective_cache_size: 'number',
  temp_buffers: 'number',
  wal_buffers: 'number',
  max_wal_size: 'number',
  min_wal_size: 'number',
  checkpoint_timeout: 'number',
  checkpoint_completion_target: 'number',
  max_parallel_workers: 'number',
  max_parallel_workers_per_gather: 'number',
  max_replication_slots: 'number',
  dynamic_shared_memory_type: 'word',
  // what the WAL records, so the restored cluster can be backed up and replicated as its source was
  wal_level: 'word',
  wal_log_hints: 'word',
  full_page_writes: 'word',
  wal_compression: 'word',
  track_commit_timestamp: 'word',
  // how values are read and printed: queries must answer as they did at the source
  datestyle: 'text',
  intervalstyle: 'word',
  timezone: 'text',
  log_timezone: 'text',
  lc_messages: 'text',
  lc_monetary: 'text',
  lc_numeric: 'text',
  lc_time: 'text',
  default_text_search_config: 'text',
  client_encoding: 'word',
  extra_float_digits: 'number',
  standard_conforming_strings: 'word',
  password_encryption: 'word',
  // planner and maintenance
  random_page_cost: 'number',
  seq_page_cost: 'number',
  effective_io_concurrency: 'number',
  default_statistics_target: 'number',
  autovacuum: 'word',
  jit: 'word',
};

const VALUE: Readonly<Record<Kind, RegExp>> = {
  number: /^-?\d+(\.\d+)?\s*(B|kB|MB|GB|TB|us|ms|s|min|h|d)?$/,
  word: /^[A-Za-z_]{1,32}$/,
  // locale and time zone names, a datestyle list, a text search configuration: never a path upwards
  text: /^(?!.*\.\.)(?!\/)[A-Za-z0-9_.+@,/ -]{1,64}$/,
};

export interface SourceSettings {
  /** name (lowercase) to value, the last assignment winning, as PostgreSQL reads the files in order */
  settings: Map<string, string>;
  /** include, include_dir and include_if_exists lines, which a restore never follows */
  includes: string[];
}

/**
 * Reads postgresql.conf syntax: `name [=] value [# comment]`, a value quoted ('' or \' inside) or a
 * bare token. Lines it cannot read are skipped: nothing read here reaches the server unchecked.
 */
export function parseConf(text: string, into: SourceSettings = { settings: new Map(), includes: [] }): SourceSettings {
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=?\s*(.*)$/.exec(line);
    if (!m) continue;
    const name = (m[1] as string).toLowerCase();
    const rest = m[2] as string;
    let value: string | undefined;
    if (rest.startsWith("'")) {
      let v = '';
      for (let i = 1; i < rest.length; i++) {
        const c = rest[i] as string;
        if (c === '\\' && i + 1 < rest.length) v += rest.charAt(++i);
        else if (c === "'" && rest[i + 1] === "'") {
          v += "'";
          i++;
        } else if (c === "'") {
          value = v;
          break;
        } else v += c;
      }
    } else value = /^([^\s#]*)/.exec(rest)?.[1];
    if (value === undefined) continue;
    if (name === 'include' || name === 'include_dir' || name === 'include_if_exists') into.includes.push(`${name} '${value}'`);
    else into.settings.set(name, value);
  }
  return into;
}

/** The KEPT settings of `source` whose values pass their pattern, and the names of every other one. */
export function keptSettings(source: SourceSettings): { kept: [string, string][]; dropped: string[] } {
  const kept: [string, string][] = [];
  const dropped: string[] = [];
  for (const [name, value] of source.settings) {
    const kind = KEPT[name];
    if (kind !== undefined && VALUE[kind].test(value)) kept.push([name, value]);
    else dropped.push(name);
  }
  return { kept, dropped };
}

/** A PostgreSQL configuration string value. */
export function confString(v: string): string {
  // the config parser reads backslash escapes inside quoted values
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

const exists = (p: string) =>
  lstat(p).then(
    () => true,
    () => false,
  );

export interface CarriedConfig {
  /** the source's path of a configuration file the bundle carries, e.g. /etc/postgresql/15/main/pg_hba.conf */
  file: string;
  /** where it was staged */
  staged: string;
}

/**
 * Moves the source's configuration out of the server's way and writes the configuration the
 * restored server starts with: the KEPT source settings, then `airlock` (the recovery settings,
 * port, socket, archiving off), which come last and win. pg_hba.conf and pg_ident.conf stay (they
 * run nothing); a source that kept them elsewhere gets its carried copies. tablespace_map is gone by
 * now (tablespaces.ts replaced it with links to the mapped folders).
 * Returns what the operator should be told, naming the data folder `shownAs` (where it will be).
 */
export async function writeRestoreConfig(data: string, carried: readonly CarriedConfig[], airlock: readonly string[], shownAs = data): Promise<string[]> {
  // pg_ctl restart would start the server with the source's command line; standby.signal would keep it from ever promoting
  for (const name of ['postmaster.opts', 'postmaster.pid', 'standby.signal']) await rm(path.join(data, name), { force: true });

  const keep = path.join(data, SOURCE_CONFIG_DIR);
  await mkdir(keep, { mode: 0o700 });
  const kept = new Map<string, string>();
  for (const name of ['postgresql.conf', 'postgresql.auto.conf']) {
    if (!(await exists(path.join(data, name)))) continue;
    await rename(path.join(data, name), path.join(keep, name));
    kept.set(name, `the base backup's ${name}`);
  }
  for (const c of carried) {
    const base = path.basename(c.file);
    if (!/^[A-Za-z0-9._-]+$/.test(base) || kept.has(base)) continue;
    await rename(c.staged, path.join(keep, base));
    kept.set(base, c.file);
  }
  const source: SourceSettings = { settings: new Map(), includes: [] };
  for (const name of ['postgresql.conf', 'postgresql.auto.conf']) {
    if (kept.has(name)) parseConf(await readFile(path.join(keep, name), 'latin1'), source);
  }
  for (const [name, fallback] of [
    ['pg_hba.conf', 'local all all peer\n'],
    ['pg_ident.conf', ''],
  ] as const) {
    if (await exists(path.join(data, name))) continue;
    const text = kept.has(name)
      ? await readFile(path.join(keep, name))
      : `# written by airlock restore pg: the source's ${name} was not in the bundle\n${fallback}`;
    await writeFile(path.join(data, name), text, { mode: 0o600 });
  }
  const { kept: settings, dropped: notKept } = keptSettings(source);
  // what airlock sets itself (port, socket, archiving, recovery) replaces the source's on purpose
  const ours = parseConf(airlock.join('\n')).settings;
  const dropped = notKept.filter((name) => !ours.has(name));
  const lines = [
    "# written by airlock restore pg. The source's configuration files are in",
    `# ${SOURCE_CONFIG_DIR}/ (${[...kept.values()].join(', ') || 'none carried'}): review them and carry over what this`,
    "# server needs. Only the settings below were taken from them: see airlock's SECURITY.md.",
    ...settings.map(([name, value]) => `${name} = ${confString(value)}`),
    '',
    ...airlock,
    '',
  ];
  await writeFile(path.join(data, 'postgresql.conf'), lines.join('\n'), { mode: 0o600 });
  await writeFile(path.join(data, 'postgresql.auto.conf'), '# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n', {
    mode: 0o600,
  });
  const notes = [
    `the source's configuration is in ${path.join(shownAs, SOURCE_CONFIG_DIR)} for review; the restored server starts from a postgresql.conf airlock wrote, with ${settings.length} of its settings`,
  ];
  if (dropped.length > 0)
    notes.push(
      `source settings not carried over (they may run programs, load libraries or name paths, or are not on airlock's list): ${dropped.slice(0, 30).join(', ')}${dropped.length > 30 ? ` and ${dropped.length - 30} more` : ''}`,
    );
  if (source.includes.length > 0) notes.push(`the source's configuration includes other files, which were not read: ${source.includes.slice(0, 5).join('; ')}`);
  return notes;
}
