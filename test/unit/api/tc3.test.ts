import { createHash, createHmac } from 'node:crypto';
import {
  AuthError,
  AuthErrorCode,
  canonicalRequest,
  hostWithoutPort,
  MAX_AUTHORIZATION_CHARS,
  parseAuthorization,
  signingKey,
  signingKeyCacheSize,
  signTc3,
  SignTc3Input,
  stringToSign,
  tc3Work,
  Tc3Request,
  utcDate,
  verifyTc3,
} from '../../../src/api/tc3';

const SECRET_ID = 'AKIDEXAMPLE';
const SECRET_KEY = 'SECRETKEYEXAMPLE';
const TS = 1700000000;
const BODY = Buffer.from('{"KeyId":"23e80852-1e38-11e9-b129-5cb9019b4b01","Plaintext":"aGVsbG8="}');
const sha256 = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');
const lookup = (id: string): Buffer | undefined => (id === SECRET_ID ? Buffer.from(SECRET_KEY) : undefined);

/** A request as Node's http server hands it over, signed as `sign` says. */
function request(over: Partial<SignTc3Input> = {}, extraHeaders: Record<string, string> = {}): Tc3Request {
  const headers = {
    'content-type': 'application/json',
    host: 'kms.tencentcloudapi.com',
    'x-tc-timestamp': String(TS),
    'x-tc-action': 'Encrypt',
    ...extraHeaders,
  };
  const input: SignTc3Input = { secretId: SECRET_ID, secretKey: SECRET_KEY, service: 'kms', timestamp: TS, headers, body: BODY, ...over };
  return { method: input.method ?? 'POST', url: input.url, headers: { ...input.headers, authorization: signTc3(input) }, body: input.body };
}

async function codeOf(p: Promise<unknown>): Promise<AuthErrorCode | 'accepted'> {
  try {
    await p;
    return 'accepted';
  } catch (e) {
    if (e instanceof AuthError) return e.code;
    throw e;
  }
}

describe('the reference test vector (§4)', () => {
  test('payload hash, canonical-request hash, scope and signature', async () => {
    expect(sha256(BODY)).toBe('e7ff4f9b820ed7f96fbdf9c58bbb7966f967470eaa4cecf5050fd32cfacfbcbc');
    const canonical = canonicalRequest({
      method: 'POST',
      path: '/',
      query: '',
      headers: [
        ['content-type', 'application/json'],
        ['host', 'kms.tencentcloudapi.com'],
      ],
      payloadHash: sha256(BODY),
    });
    expect(sha256(canonical)).toBe('4e0426d2e3eec4964f3b94389b958d4f0b66663efdf53c0b5d4ccab1f8516f63');
    expect(stringToSign(TS, utcDate(TS), 'kms', canonical).split('\n')[2]).toBe('2023-11-14/kms/tc3_request');
    const req = request();
    expect(req.headers.authorization).toBe(
      'TC3-HMAC-SHA256 Credential=AKIDEXAMPLE/2023-11-14/kms/tc3_request, SignedHeaders=content-type;host, Signature=217168bdb54b0be895fdce107405a2ed76a5ab4b64b50b121784baa2c8f267a2',
    );
    await expect(verifyTc3(req, lookup, TS)).resolves.toEqual({
      secretId: SECRET_ID,
      service: 'kms',
      timestamp: TS,
      signature: Buffer.from('217168bdb54b0be895fdce107405a2ed76a5ab4b64b50b121784baa2c8f267a2', 'hex'),
    });
  });
});

describe('accepted signatures', () => {
  test.each<[string, Partial<SignTc3Input>, Record<string, string>]>([
    ['Node SDK: host signed without its port, service = first DNS label', { service: '127' }, { host: '127.0.0.1:8080' }],
    ['Go SDK: host signed with its port', { hostWithPort: true }, { host: 'kms.local:8080' }],
    ['IPv6 host without its port', { service: '[::1]:8080' }, { host: '[::1]:8080' }],
    ['IPv6 host with its port', { hostWithPort: true }, { host: '[::1]:8080' }],
    ['upper-case host (Node lowercases URL.hostname)', {}, { host: 'KMS.Example.COM:443' }],
    ['content-type with a charset, exactly as sent', {}, { 'content-type': 'application/json; charset=UTF-8' }],
    ['extra signed header, value lowercased (official demo)', { extraSignedHeaders: ['x-tc-action'] }, {}],
    ['several extra signed headers', { extraSignedHeaders: ['x-tc-action', 'x-tc-timestamp', 'x-tc-version'] }, { 'x-tc-version': '2019-01-18' }],
    [
      'GET with the query string',
      { method: 'GET', url: '/?KeyId=abc&Limit=10', body: Buffer.alloc(0) },
      { 'content-type': 'application/x-www-form-urlencoded' },
    ],
    ['empty request body {}', { body: Buffer.from('{}') }, {}],
  ])('%s', async (_name, over, headers) => {
    const req = request(over, headers);
    await expect(verifyTc3(req, lookup, TS)).resolves.toMatchObject({ secretId: SECRET_ID, service: over.service ?? 'kms' });
  });

  test('an extra signed header whose value the client did not lowercase', async () => {
    const body = BODY;
    const headers = { 'content-type': 'application/json', host: 'kms.tencentcloudapi.com', 'x-tc-action': 'Encrypt' };
    const canonical = canonicalRequest({ method: 'POST', path: '/', query: '', headers: Object.entries(headers).sort(), payloadHash: sha256(body) });
    const sig = createHmac('sha256', signingKey(Buffer.from(SECRET_KEY), utcDate(TS), 'kms'))
      .update(stringToSign(TS, utcDate(TS), 'kms', canonical))
      .digest('hex');
    const authorization = `TC3-HMAC-SHA256 Credential=${SECRET_ID}/${utcDate(TS)}/kms/tc3_request, SignedHeaders=content-type;host;x-tc-action, Signature=${sig}`;
    await expect(verifyTc3({ method: 'POST', headers: { ...headers, 'x-tc-timestamp': String(TS), authorization }, body }, lookup, TS)).resolves.not.toThrow();
  });

  test('an asynchronous lookup and a Buffer SecretKey', async () => {
    await expect(verifyTc3(request(), async (id) => lookup(id), TS)).resolves.not.toThrow();
  });

  test('unsigned headers may change', async () => {
    const req = request();
    req.headers['x-tc-action'] = 'Decrypt';
    req.headers['user-agent'] = 'other';
    await expect(verifyTc3(req, lookup, TS)).resolves.not.toThrow();
  });
});

describe('refused signatures', () => {
  const auth = request().headers.authorization as string;
  const withAuth = (authorization: string | undefined): Tc3Request => ({ ...request(), headers: { ...request().headers, authorization } });
  test.each<[string, AuthErrorCode, Tc3Request]>([
    ['no Authorization', 'AuthFailure.InvalidAuthorization', withAuth(undefined)],
    ['empty Authorization', 'AuthFailure.InvalidAuthorization', withAuth('')],
    ['another algorithm', 'AuthFailure.InvalidAuthorization', withAuth(auth.replace('TC3-HMAC-SHA256', 'TC3-HMAC-SHA1'))],
    ['v1 style', 'AuthFailure.InvalidAuthorization', withAuth('HmacSHA256 Signature=abc')],
    ['algorithm only', 'AuthFailure.InvalidAuthorization', withAuth('TC3-HMAC-SHA256')],
    ['no Credential', 'AuthFailure.InvalidAuthorization', withAuth(auth.replace(/Credential=[^,]*, /, ''))],
    ['Credential twice', 'AuthFailure.InvalidAuthorization', withAuth(auth.replace('SignedHeaders', 'Credential=a/2023-11-14/kms/tc3_request, SignedHeaders'))],
    ['unknown field', 'AuthFailure.InvalidAuthorization', withAuth(`${auth}, Extra=1`)],
    ['scope with 3 parts', 'AuthFailure.InvalidAuthorization', withAuth(auth.replace('/kms/tc3_request', '/tc3_request'))],
    ['scope not ending in tc3_request', 'AuthFailure.InvalidAuthorization', withAuth(auth.replace('tc3_request', 'tc2_request'))],
    ['empty SecretId', 'AuthFailure.InvalidAuthorization', withAuth(auth.replace('AKIDEXAMPLE', ''))],
    ['empty service', 'AuthFailure.InvalidAuthorization', withAuth(auth.replace('/kms/', '//'))],
    ['malformed date', 'AuthFailure.InvalidAuthorization', withAuth(auth.replace('2023-11-14', '20231114'))],
    ['scope date is not the UTC date of the timestamp', 'AuthFailure.InvalidAuthorization', withAuth(auth.replace('2023-11-14', '2023-11-15'))],
    ['SignedHeaders without host', 'AuthFailure.InvalidAuthorization', withAuth(auth.replace('content-type;host', 'content-type'))],
    ['SignedHeaders without content-type', 'AuthFailure.InvalidAuthorization', withAuth(auth.replace('content-type;host', 'host'))],
    ['SignedHeaders not sorted', 'AuthFailure.InvalidAuthorization', withAuth(auth.replace('content-type;host', 'host;content-type'))],
    ['SignedHeaders upper case', 'AuthFailure.InvalidAuthorization', withAuth(auth.replace('content-type;host', 'Content-Type;host'))],
    [
      'SignedHeaders naming an Object.prototype member',
      'AuthFailure.InvalidAuthorization',
      withAuth(auth.replace('content-type;host', 'constructor;content-type;host')),
    ],
    ['SignedHeaders naming an absent header', 'AuthFailure.InvalidAuthorization', withAuth(auth.replace('content-type;host', 'content-type;host;x-absent'))],
    ['short Signature', 'AuthFailure.InvalidAuthorization', withAuth(auth.slice(0, -2))],
    ['non-hex Signature', 'AuthFailure.InvalidAuthorization', withAuth(`${auth.slice(0, -1)}g`)],
    ['no X-TC-Timestamp', 'AuthFailure.InvalidAuthorization', { ...request(), headers: { ...request().headers, 'x-tc-timestamp': undefined } }],
    ['X-TC-Timestamp not a number', 'AuthFailure.InvalidAuthorization', { ...request(), headers: { ...request().headers, 'x-tc-timestamp': '17e8' } }],
    ['no Host header', 'AuthFailure.InvalidAuthorization', { ...request(), headers: { ...request().headers, host: undefined } }],
    ['two Authorization headers', 'AuthFailure.InvalidAuthorization', { ...request(), headers: { ...request().headers, authorization: [auth, auth] } }],
    ['unknown SecretId', 'AuthFailure.SecretIdNotFound', withAuth(auth.replace('AKIDEXAMPLE', 'AKIDOTHER'))],
    ['another signature', 'AuthFailure.SignatureFailure', withAuth(auth.replace(/Signature=[0-9a-f]{64}/, `Signature=${'0'.repeat(64)}`))],
    ['another service in the scope', 'AuthFailure.SignatureFailure', withAuth(auth.replace('/kms/', '/cvm/'))],
    ['body changed', 'AuthFailure.SignatureFailure', { ...request(), body: Buffer.from(BODY.toString().replace('aGVsbG8=', 'aGVsbG9=')) }],
    [
      'content-type changed',
      'AuthFailure.SignatureFailure',
      { ...request(), headers: { ...request().headers, 'content-type': 'application/json; charset=utf-8' } },
    ],
    ['host changed', 'AuthFailure.SignatureFailure', { ...request(), headers: { ...request().headers, host: 'other.example.com' } }],
    ['method changed', 'AuthFailure.SignatureFailure', { ...request(), method: 'PUT' }],
    ['path changed', 'AuthFailure.SignatureFailure', { ...request(), url: '/x' }],
    [
      'signed extra header changed',
      'AuthFailure.SignatureFailure',
      {
        ...request({ extraSignedHeaders: ['x-tc-action'] }),
        headers: { ...request({ extraSignedHeaders: ['x-tc-action'] }).headers, 'x-tc-action': 'Decrypt' },
      },
    ],
    ['signed with another SecretKey', 'AuthFailure.SignatureFailure', request({ secretKey: 'SECRETKEYEXAMPLF' })],
  ])('%s → %s', async (_name, code, req) => {
    expect(await codeOf(verifyTc3(req, lookup, TS))).toBe(code);
  });

  test.each<[number, AuthErrorCode | 'accepted']>([
    [-301, 'AuthFailure.SignatureExpire'],
    [301, 'AuthFailure.SignatureExpire'],
    [-300, 'accepted'],
    [300, 'accepted'],
    [600, 'AuthFailure.SignatureExpire'],
  ])('server time %p s from the timestamp → %s', async (offset, code) => {
    expect(await codeOf(verifyTc3(request(), lookup, TS + offset))).toBe(code);
  });

  test('a malformed request is refused before the SecretId is looked up', async () => {
    const looked: string[] = [];
    const req = { ...request(), headers: { ...request().headers, 'x-tc-timestamp': 'soon' } };
    expect(
      await codeOf(
        verifyTc3(
          req,
          (id) => {
            looked.push(id);
            return undefined;
          },
          TS,
        ),
      ),
    ).toBe('AuthFailure.InvalidAuthorization');
    expect(looked).toEqual([]);
  });

  test('messages never carry the SecretKey, the signature or the body', async () => {
    const bad = { ...request(), body: Buffer.from('{"Plaintext":"c2VjcmV0"}') };
    const err = await verifyTc3(bad, lookup, TS).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthError);
    const text = `${(err as Error).message} ${String(err)}`;
    for (const secret of [SECRET_KEY, 'c2VjcmV0', (bad.headers.authorization as string).slice(-64)]) expect(text).not.toContain(secret);
  });
});

describe('nothing before authentication is expensive or remembered (security §6)', () => {
  const auth = request().headers.authorization as string;
  const withAuth = (authorization: string): Tc3Request => ({ ...request(), headers: { ...request().headers, authorization } });

  test('2,000 requests with long unique service names: all refused as malformed, no signing key cached, no key derived', async () => {
    const cached = signingKeyCacheSize();
    const derived = tc3Work.keyDerivations;
    for (let i = 0; i < 2_000; i++) {
      const service = `svc${i}-${'x'.repeat(400)}`;
      expect(await codeOf(verifyTc3(withAuth(auth.replace('/kms/', `/${service}/`)), lookup, TS))).toBe('AuthFailure.InvalidAuthorization');
    }
    expect(signingKeyCacheSize()).toBe(cached);
    expect(tc3Work.keyDerivations).toBe(derived);
  });

  test.each([
    ['a dot', 'kms.x'],
    ['a slash-free odd character', 'k%ms'],
    ['64 characters', 'k'.repeat(64)],
    ['a port past 5 digits', 'localhost:123456'],
  ])('a service with %s is refused', async (_n, service) => {
    expect(await codeOf(verifyTc3(withAuth(auth.replace('/kms/', `/${service}/`)), lookup, TS))).toBe('AuthFailure.InvalidAuthorization');
  });

  test('a service the Node SDK derives from "localhost:8080" is accepted', async () => {
    await expect(verifyTc3(request({ service: 'localhost:8080' }), lookup, TS)).resolves.toMatchObject({ service: 'localhost:8080' });
  });

  test('a date that is no calendar date is refused', async () => {
    expect(await codeOf(verifyTc3(withAuth(auth.replace('2023-11-14', '2023-02-30')), lookup, TS))).toBe('AuthFailure.InvalidAuthorization');
  });

  test('1,000 wrong signatures with well-formed unique service names: nothing cached; a verified one is', async () => {
    const cached = signingKeyCacheSize();
    for (let i = 0; i < 1_000; i++) {
      const req = request({ service: `svc-${i}`, secretKey: 'SECRETKEYEXAMPLF' });
      expect(await codeOf(verifyTc3(req, lookup, TS))).toBe('AuthFailure.SignatureFailure');
    }
    expect(signingKeyCacheSize()).toBe(cached);
    await verifyTc3(request({ service: 'svc-verified' }), lookup, TS);
    expect(signingKeyCacheSize()).toBe(cached + 1);
  });

  test(`an Authorization header over ${MAX_AUTHORIZATION_CHARS} characters is refused unread: no lookup, no HMAC`, async () => {
    const looked: string[] = [];
    const hmacs = tc3Work.signatureHmacs;
    const long = auth.replace('SignedHeaders=content-type;host', `SignedHeaders=content-type;host;${'x-a;'.repeat(600)}x-z`);
    const err = await verifyTc3(withAuth(long), (id) => (looked.push(id), lookup(id)), TS).catch((e: AuthError) => e);
    expect(err).toMatchObject({ code: 'AuthFailure.InvalidAuthorization', message: expect.stringContaining(`longer than ${MAX_AUTHORIZATION_CHARS}`) });
    expect(looked).toEqual([]);
    expect(tc3Work.signatureHmacs).toBe(hmacs);
  });
});

describe('signed headers a server requires (tc3.requireSignedHeaders)', () => {
  const required = { requiredSignedHeaders: ['x-tc-action', 'x-tc-region', 'x-tc-timestamp'] };
  const regionHeaders = { 'x-tc-region': 'ap-guangzhou' };

  test('a request signed like the SDKs (content-type;host) is refused, naming what is missing', async () => {
    const err = await verifyTc3(request(), lookup, TS, required).catch((e: AuthError) => e);
    expect(err).toMatchObject({ code: 'AuthFailure.InvalidAuthorization', message: expect.stringContaining('x-tc-action') });
  });

  test('a request signing all three is accepted, and changing any of them breaks the signature', async () => {
    const signed = request({ extraSignedHeaders: ['x-tc-action', 'x-tc-region', 'x-tc-timestamp'] }, regionHeaders);
    await expect(verifyTc3(signed, lookup, TS, required)).resolves.not.toThrow();
    for (const [name, value] of [
      ['x-tc-action', 'DisableKey'],
      ['x-tc-region', 'ap-shanghai'],
      ['x-tc-timestamp', String(TS + 1)],
    ]) {
      expect(await codeOf(verifyTc3({ ...signed, headers: { ...signed.headers, [name]: value } }, lookup, TS, required))).toBe('AuthFailure.SignatureFailure');
    }
  });
});

describe('pieces', () => {
  test.each<[string, string]>([
    ['kms.local:8080', 'kms.local'],
    ['kms.local', 'kms.local'],
    ['127.0.0.1:80', '127.0.0.1'],
    ['[::1]:8080', '[::1]'],
    ['[::1]', '[::1]'],
  ])('hostWithoutPort(%p) = %p', (host, expected) => {
    expect(hostWithoutPort(host)).toBe(expected);
  });
  test('parseAuthorization reads the fields', () => {
    const a = parseAuthorization(request({ extraSignedHeaders: ['x-tc-action'] }).headers.authorization as string);
    expect(a).toMatchObject({ secretId: SECRET_ID, date: '2023-11-14', service: 'kms', signedHeaders: ['content-type', 'host', 'x-tc-action'] });
    expect(a.signature).toHaveLength(32);
  });
  test.each<[number, string]>([
    [0, '1970-01-01'],
    [TS, '2023-11-14'],
    [1700006399, '2023-11-14'],
    [1700006400, '2023-11-15'],
  ])('utcDate(%p) = %p', (ts, d) => {
    expect(utcDate(ts)).toBe(d);
  });
});
