/*
 * The pieces of the object tier that need no server: XML reading, SigV4 escaping, credentials files,
 * bucket specs and maps, --at times. Everything that talks to S3 is tested against radosgw in
 * test/integration/objects.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AirlockError, isAirlockError } from '../../manifests/errors.js';
import { parseAt, parseBucketMap } from '../../agent/cli/restore-objects.js';
import { uriEscape, utf8Header, headerBytes } from '../../agent/s3/client.js';
import { connectS3, loadCredentials, parseCredentials } from '../../agent/s3/credentials.js';
import { parseXml, textOf } from '../../agent/s3/xml.js';
import { checkTargets, parseBucketSpec } from '../../agent/sources/objects.js';

function throwsCode(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (e) {
    assert.ok(isAirlockError(e), `not an AirlockError: ${String(e)}`);
    assert.is(e.code, code);
    return;
  }
  assert.unreachable(`expected ${code}`);
}

test('xml: document order, entities, CDATA, self-closing tags', () => {
  const doc = parseXml(
    '<?xml version="1.0"?><R xmlns="x"><!-- c --><V><Key>a&amp;b &lt;&#233;&#x65E5;&gt;</Key></V><D><Key><![CDATA[<raw>]]></Key></D><V/><E></E></R>',
  );
  assert.equal(
    doc.children.map((c) => c.name),
    ['V', 'D', 'V', 'E'],
  );
  assert.is(textOf(doc.children[0] as never, 'Key'), 'a&b <é日>');
  assert.is(textOf(doc.children[1] as never, 'Key'), '<raw>');
  throwsCode(() => parseXml('<R><A></R>'), 's3-failed');
  throwsCode(() => parseXml('<R>&bogus;</R>'), 's3-failed');
  throwsCode(() => parseXml('<A/><B/>'), 's3-failed');
});

test('SigV4 escaping keeps only unreserved characters, slashes on request', () => {
  assert.is(uriEscape("a b+c%/ü*!'()~._-"), 'a%20b%2Bc%25%2F%C3%BC%2A%21%27%28%29~._-');
  assert.is(uriEscape('x/../y', true), 'x/../y');
  assert.is(headerBytes(utf8Header('grüße 日本')).toString('utf8'), 'grüße 日本');
});

test('credentials: AWS shared-file syntax, default section only', () => {
  assert.equal(parseCredentials('[other]\naws_access_key_id = X\n[default]\naws_access_key_id = AK\naws_secret_access_key = S K\n', 'f'), {
    accessKey: 'AK',
    secretKey: 'S K',
  });
  assert.equal(parseCredentials('access_key=A\nsecret_key=B\n', 'f'), { accessKey: 'A', secretKey: 'B' });
  throwsCode(() => parseCredentials('[prod]\naws_access_key_id = A\naws_secret_access_key = B\n', 'f'), 'bad-key');
  // session credentials: the token beside the key pair, in the file or the environment
  assert.equal(parseCredentials('[default]\naws_access_key_id = A\naws_secret_access_key = B\naws_session_token = T/k+n==\n', 'f'), {
    accessKey: 'A',
    secretKey: 'B',
    sessionToken: 'T/k+n==',
  });
});

test('credentials from the environment take AWS_SESSION_TOKEN; the server options are checked before anything is sent', async () => {
  assert.equal(await loadCredentials(undefined, { AWS_ACCESS_KEY_ID: 'A', AWS_SECRET_ACCESS_KEY: 'B', AWS_SESSION_TOKEN: 'T' }), {
    accessKey: 'A',
    secretKey: 'B',
    sessionToken: 'T',
  });
  assert.equal(await loadCredentials(undefined, { AWS_ACCESS_KEY_ID: 'A', AWS_SECRET_ACCESS_KEY: 'B' }), { accessKey: 'A', secretKey: 'B' });
  const base = { endpoint: 'http://127.0.0.1:1', credentials: undefined, region: undefined, caFile: undefined, addressing: undefined };
  for (const bad of [{ addressing: 'dns' }, { region: 'EU West' }]) {
    const e = await connectS3({ ...base, ...bad }).then(
      () => undefined,
      (x: unknown) => x,
    );
    assert.ok(e instanceof AirlockError && e.code === 'usage', String(e));
  }
  const missing = await connectS3({ ...base, caFile: '/nonexistent/ca.pem' }).then(
    () => undefined,
    (x: unknown) => x,
  );
  assert.ok(missing instanceof AirlockError && missing.code === 'not-found', String(missing));
});

test('bucket specs, bucket maps and --at times', () => {
  assert.equal(parseBucketSpec('records'), { bucket: 'records', prefix: '' });
  assert.equal(parseBucketSpec('media/2025/ü x'), { bucket: 'media', prefix: '2025/ü x' });
  for (const bad of ['', 'A', 'ab', 'a..b', '-ab', '192.168.1.1', 'x'.repeat(64)]) throwsCode(() => parseBucketSpec(bad), 'usage');
  checkTargets(['a-1', 'a-1/x/', 'b-1/x/'].map(parseBucketSpec).slice(1).concat(parseBucketSpec('a-1/y')));
  throwsCode(() => checkTargets(['a-1', 'a-1/x/'].map(parseBucketSpec)), 'usage');
  throwsCode(() => checkTargets(['a-1/x', 'a-1/x/y'].map(parseBucketSpec)), 'usage');
  assert.equal(
    [...parseBucketMap(['a-1=b-1', 'c-2=d-2'])],
    [
      ['a-1', 'b-1'],
      ['c-2', 'd-2'],
    ],
  );
  throwsCode(() => parseBucketMap(['a-1']), 'usage');
  throwsCode(() => parseBucketMap(['a-1=b-1', 'a-1=c-1']), 'usage');
  assert.is(parseAt(undefined), Infinity);
  assert.is(parseAt('2025-06-01T12:00:00Z'), Date.UTC(2025, 5, 1, 12));
  assert.is(parseAt('2025-06-01T14:00:00+02:00'), Date.UTC(2025, 5, 1, 12));
  throwsCode(() => parseAt('2025-06-01 12:00'), 'usage');
  throwsCode(() => parseAt('yesterday'), 'usage');
});

test.run();
