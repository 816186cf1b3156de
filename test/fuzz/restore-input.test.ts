/*
 * Fuzzing what restore pg reads that its user or the bundle chose: the source's postgresql.conf and
 * postgresql.auto.conf (bytes from the bundle, which a stolen appliance key can fill with anything)
 * and --target-time (text from the terminal). What the restored server is given must never carry a
 * quote, a line end or a setting off airlock's list, however the file is damaged; a target time is
 * accepted only as an instant written the one way PostgreSQL reads, and refused only with `usage`.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { KEPT, confString, keptSettings, parseConf } from '../../agent/restore/pgconf.js';
import { parseTargetTime } from '../../agent/restore/pg.js';
import { ascii, assertLinear, check, fc, mutate, mutations, typedOnly } from './fuzz.js';

const CONF = Buffer.from(
  [
    "# a source's postgresql.conf",
    "shared_buffers = '128MB'",
    'work_mem=4MB   # per sort',
    "timezone = 'Europe/Berlin'",
    "datestyle = 'iso, mdy'",
    'max_connections 100',
    "recovery_end_command = 'touch /tmp/x'",
    "shared_preload_libraries = 'pg_stat_statements'",
    "include_if_exists = 'conf.d/extra.conf'",
    "lc_messages = 'en_US.UTF-8'",
    "log_directory = 'log'",
    '',
  ].join('\n'),
);
const CONF_TOKENS = ascii(
  "'",
  "''",
  '\\',
  "\\'",
  '\n',
  '\r\n',
  '#',
  '=',
  ' ',
  '\t',
  'include ',
  'include_dir ',
  "'..'",
  '/',
  '../../',
  'shared_buffers = ',
  'timezone = ',
  'work_mem = ',
  '\u0000',
  'MB',
  '1e9',
  '-1',
);

test('a damaged source configuration: parseConf never throws, and what a restore keeps is on the list, of its kind, and written as one quoted value', () => {
  let keptAny = 0;
  check(mutations(6), 3000, (ms) => {
    const text = mutate(CONF, ms, { fields: [], tokens: CONF_TOKENS }).toString('latin1');
    const { kept, dropped } = keptSettings(parseConf(text));
    if (kept.length > 0) keptAny++;
    for (const [name, value] of kept) {
      assert.ok(Object.hasOwn(KEPT, name), name);
      assert.ok(!/['\\\n\r\0]/.test(value) && !value.includes('..') && !value.startsWith('/'), `${name} = ${JSON.stringify(value)}`);
      const line = `${name} = ${confString(value)}`;
      // the line airlock writes parses back to the same single setting
      assert.equal([...parseConf(line).settings], [[name, value]]);
    }
    // names are reported as PostgreSQL reads them: lower case, one identifier
    for (const name of [...kept.map(([k]) => k), ...dropped]) assert.match(name, /^[a-z_][a-z0-9_.]*$/);
  });
  assert.ok(keptAny > 0, 'some damaged files still had settings to keep');
});

test('parseConf is linear in the file', async () => {
  const make = (n: number) => Array.from({ length: n }, (_, i) => `setting_${i} = '${'v'.repeat(40)}' # ${i}`).join('\n');
  await assertLinear('postgresql.conf lines', make, (t: string) => keptSettings(parseConf(t)), 20_000);
});

const TIME = ascii('2026-03-01T12:00:00Z', '2026-03-01 13:00:00.250+01:00', '2026-12-31T23:59:59.999999-0530');
const TIME_TOKENS = ascii(
  'T',
  't',
  ' ',
  'Z',
  'z',
  '+',
  '-',
  ':',
  '.',
  '0',
  '9',
  '24',
  '60',
  '99',
  '+15',
  '+16:00',
  '-00',
  '1969',
  '\n',
  "'",
  '\u0000',
  '2026-02-29',
  '2024-02-29',
);

test('a target time from the terminal: refused only with usage; accepted, it is one instant written as PostgreSQL reads it, whatever form it came in', () => {
  let accepted = 0;
  check(fc.record({ base: fc.nat({ max: TIME.length - 1 }), ms: mutations(3) }), 3000, ({ base, ms }) => {
    const text = mutate(TIME[base] as Uint8Array, ms, { fields: [4, 7, 10, 13, 16, 19], tokens: TIME_TOKENS }).toString('latin1');
    let t: ReturnType<typeof parseTargetTime> | undefined;
    typedOnly(['usage'], () => (t = parseTargetTime(text)));
    if (!t) return;
    assert.match(t.pg, /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}\+00$/, `${JSON.stringify(text)} -> ${t.pg}`);
    // the written form names the same instant, and reads back as itself
    assert.is(parseTargetTime(t.pg).us, t.us);
    assert.is(parseTargetTime(t.pg).pg, t.pg);
    accepted++;
  });
  assert.ok(accepted > 0, 'some damaged times were still times');
});

test.run();
