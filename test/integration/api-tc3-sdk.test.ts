/**
 * The official Node SDK (tencentcloud-sdk-nodejs) signs requests against a plain node:http server;
 * verifyTc3 must accept exactly what it sends, and refuse it once anything signed is altered.
 */
import * as http from 'node:http';
import type { AddressInfo, LookupFunction } from 'node:net';
import type { LookupAddress } from 'node:dns';
import { kms } from 'tencentcloud-sdk-nodejs';
import { AuthError, AuthErrorCode, signTc3, Tc3Request, verifyTc3 } from '../../src/api/tc3';

const SECRET_ID = 'AKIDsdkintegration0001';
const SECRET_KEY = Buffer.from('sdk-integration-secret-key-0001');
const lookup = (id: string): Buffer | undefined => (id === SECRET_ID ? SECRET_KEY : undefined);

interface Captured extends Tc3Request {
  url: string;
}

let server: http.Server;
let port = 0;
const captured: Captured[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      captured.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers }, body: Buffer.concat(chunks) });
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{"Response":{"RequestId":"x"}}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** A client of the real SDK; the agent keeps it off any http_proxy of the environment. */
function client(endpoint: string, agent: http.Agent = new http.Agent()): InstanceType<typeof kms.v20190118.Client> {
  return new kms.v20190118.Client({
    credential: { secretId: SECRET_ID, secretKey: SECRET_KEY.toString() },
    region: 'ap-guangzhou',
    profile: { httpProfile: { endpoint, protocol: 'http://', agent, reqTimeout: 30 } },
  });
}

async function captureCall(call: () => Promise<unknown>): Promise<Captured> {
  const before = captured.length;
  await expect(call()).resolves.toEqual({ RequestId: 'x' });
  expect(captured.length).toBe(before + 1);
  return captured[before];
}

async function codeOf(req: Tc3Request, look = lookup, now?: number): Promise<AuthErrorCode | 'accepted'> {
  const at = now ?? Number(req.headers['x-tc-timestamp']);
  try {
    await verifyTc3(req, look, at);
    return 'accepted';
  } catch (e) {
    if (e instanceof AuthError) return e.code;
    throw e;
  }
}

/** Resolves every name to 127.0.0.1 (both callback shapes: Node 20 asks with `all: true`). */
const toLoopback: LookupFunction = (_host, options, callback) => {
  const cb = callback as unknown as (e: null, address: string | LookupAddress[], family?: number) => void;
  if (options.all) cb(null, [{ address: '127.0.0.1', family: 4 }]);
  else cb(null, '127.0.0.1', 4);
};

const calls: Array<[string, (c: InstanceType<typeof kms.v20190118.Client>) => Promise<unknown>]> = [
  [
    'Encrypt',
    (c) => c.Encrypt({ KeyId: '23e80852-1e38-11e9-b129-5cb9019b4b01', Plaintext: Buffer.from('hello').toString('base64'), EncryptionContext: '{"a":"ü"}' }),
  ],
  ['DescribeKeys (array)', (c) => c.DescribeKeys({ KeyIds: ['a', 'b'], MemberAccount: { MemberUin: 1 } })],
  ['GetServiceStatus (empty request)', (c) => c.GetServiceStatus()],
  ['ListKeyDetail (nested objects)', (c) => c.ListKeyDetail({ Limit: 5, TagFilters: [{ TagKey: 'k', TagValue: ['v'] }] })],
];

describe.each<[string, string, string, http.Agent | undefined]>([
  ['endpoint 127.0.0.1:PORT (service "127")', '127.0.0.1', '127', undefined],
  ['endpoint kms.local:PORT resolved to 127.0.0.1 (service "kms")', 'kms.local', 'kms', new http.Agent({ lookup: toLoopback })],
])('official SDK, %s', (_name, host, service, agent) => {
  test.each(calls)('%s is accepted; altered copies are refused', async (_action, call) => {
    const req = await captureCall(() => call(client(`${host}:${port}`, agent)));
    expect(req.method).toBe('POST');
    expect(req.headers.host).toBe(`${host}:${port}`);
    const ts = Number(req.headers['x-tc-timestamp']);
    await expect(verifyTc3(req, lookup, ts)).resolves.toEqual({ secretId: SECRET_ID, service, timestamp: ts, signature: expect.any(Buffer) });
    await expect(verifyTc3(req, async (id) => lookup(id), ts)).resolves.not.toThrow();

    const body = Buffer.from(req.body);
    body[body.length - 2] ^= 0x01;
    expect(await codeOf({ ...req, body })).toBe('AuthFailure.SignatureFailure');
    expect(await codeOf(req, () => Buffer.from('another-secret-key'))).toBe('AuthFailure.SignatureFailure');
    expect(await codeOf(req, () => undefined)).toBe('AuthFailure.SecretIdNotFound');
    expect(await codeOf(req, lookup, ts + 600)).toBe('AuthFailure.SignatureExpire');
    expect(await codeOf(req, lookup, ts - 600)).toBe('AuthFailure.SignatureExpire');
    const moved = String(ts + 600);
    expect(await codeOf({ ...req, headers: { ...req.headers, 'x-tc-timestamp': moved } }, lookup, ts + 600)).not.toBe('accepted');
  });
});

test('a request signed like the Go SDK (host with its port, service kms, x-tc-action signed) over real HTTP', async () => {
  const body = Buffer.from('{"KeyId":"k","Plaintext":"aGk="}');
  const ts = Math.floor(Date.now() / 1000);
  const headers = { 'content-type': 'application/json', host: `127.0.0.1:${port}`, 'x-tc-action': 'Encrypt', 'x-tc-timestamp': String(ts) };
  const authorization = signTc3({
    secretId: SECRET_ID,
    secretKey: SECRET_KEY,
    service: 'kms',
    timestamp: ts,
    headers,
    body,
    hostWithPort: true,
    extraSignedHeaders: ['x-tc-action'],
  });
  const req = await captureCall(
    () =>
      new Promise((resolve, reject) => {
        const r = http.request(
          { host: '127.0.0.1', port, method: 'POST', path: '/', agent: new http.Agent(), headers: { ...headers, authorization } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve((JSON.parse(Buffer.concat(chunks).toString()) as { Response: unknown }).Response));
          },
        );
        r.on('error', reject);
        r.end(body);
      }),
  );
  await expect(verifyTc3(req, lookup, ts)).resolves.toEqual({ secretId: SECRET_ID, service: 'kms', timestamp: ts, signature: expect.any(Buffer) });
  expect(await codeOf({ ...req, headers: { ...req.headers, 'x-tc-action': 'Decrypt' } })).toBe('AuthFailure.SignatureFailure');
});
