/*
 * What airlock makes of psql's failures, and which server majors it takes (agent/sources/postgres/
 * server.ts). The messages are psql's own, as its versions 15 and 17 print them.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { isAirlockError } from '../../manifests/errors.js';
import { psqlFailure } from '../../agent/postgres/programs.js';
import { assertSupportedMajor } from '../../agent/sources/postgres/server.js';

test("psqlFailure: the server's ERROR line, never the statement or caret lines; a failed connection's first line", () => {
  assert.is(
    psqlFailure('ERROR:  permission denied for function pg_create_restore_point\n', 3),
    'ERROR: permission denied for function pg_create_restore_point',
  );
  // without VERBOSITY=terse psql adds the statement and a caret: the ERROR line still wins
  assert.is(psqlFailure('ERROR:  syntax error at or near "SELEC"\nLINE 1: SELEC 1\n        ^\n', 1), 'ERROR: syntax error at or near "SELEC"');
  assert.is(psqlFailure('psql:<stdin>:2: ERROR:  relation "nope" does not exist\n', 3), 'ERROR: relation "nope" does not exist');
  assert.is(
    psqlFailure(
      'psql: error: connection to server on socket "/run/x/.s.PGSQL.1" failed: No such file or directory\n\tIs the server running locally and accepting connections on that socket?\n',
      2,
    ),
    'connection to server on socket "/run/x/.s.PGSQL.1" failed: No such file or directory',
  );
  assert.is(
    psqlFailure('psql: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  password authentication failed for user "airlock"\n', 2),
    'connection to server at "127.0.0.1", port 5432 failed: FATAL: password authentication failed for user "airlock"',
  );
  assert.is(psqlFailure('', 2), 'psql exited with status 2');
});

test('assertSupportedMajor: 13 to 17 pass; another major is pg-unsupported naming it', () => {
  for (const major of [13, 14, 15, 16, 17]) assertSupportedMajor(major, `PostgreSQL ${major}.1`);
  for (const major of [12, 18]) {
    try {
      assertSupportedMajor(major, `PostgreSQL ${major}.0 on x86_64-pc-linux-gnu`);
      assert.unreachable(`${major} passed`);
    } catch (e) {
      assert.ok(isAirlockError(e) && e.code === 'pg-unsupported', String(e));
      assert.match(
        (e as Error).message,
        `the server is postgresql ${major} (PostgreSQL ${major}.0 on x86_64-pc-linux-gnu), which airlock does not support (postgresql 13 to 17)`,
      );
    }
  }
});

test.run();
