/**
 * Authentication failures, the policy matrix (root, sub-accounts with each preset, a custom deny),
 * tenant isolation, and malformed raw HTTP requests — against a running server.
 */
import { request } from 'node:http';
import { signTc3 } from '../../src/api/tc3';
import { codeOf, Credentials, KmsClient, ServerLab } from '../support/server';

interface Envelope {
  Response: { Error?: { Code: string; Message: string }; RequestId: string; [k: string]: unknown };
}

describe('auth, policies, tenants and raw HTTP', () => {
  const lab = new ServerLab();
  let root: KmsClient;
  let rootKey: string;

  beforeAll(async () => {
    await lab.start();
    root = lab.client();
    rootKey = (await root.CreateKey({ Alias: 'auth-root-key' })).KeyId as string;
  }, 60_000);
  afterAll(() => lab.stop());

  /** A request signed like the Go SDK (host with port, service kms), with optional tampering. */
  let seq = 0;
  /** Signs `x-test-seq` too (unique per request: a signature serves once, docs/security.md §1) unless `plain`. */
  function raw(opts: {
    action?: string;
    body?: string | Buffer;
    creds?: Pick<Credentials, 'SecretId' | 'SecretKey'>;
    timestamp?: number;
    headers?: Record<string, string | undefined>;
    sign?: boolean;
    plain?: boolean;
    tamper?: (b: Buffer) => Buffer;
  }): Promise<{ status: number; body: Envelope }> {
    const body = Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body ?? '{}');
    const creds = opts.creds ?? lab.root;
    const timestamp = opts.timestamp ?? Math.floor(Date.now() / 1000);
    const host = `127.0.0.1:${lab.server.port}`;
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      host,
      'x-tc-action': opts.action ?? 'ListKeys',
      'x-tc-version': '2019-01-18',
      'x-tc-region': 'ap-guangzhou',
      'x-tc-timestamp': String(timestamp),
    };
    if (!opts.plain) headers['x-test-seq'] = String(seq++);
    const extraSignedHeaders = opts.plain ? [] : ['x-test-seq'];
    if (opts.sign !== false)
      headers.authorization = signTc3({
        secretId: creds.SecretId,
        secretKey: creds.SecretKey,
        service: 'kms',
        timestamp,
        headers,
        body,
        hostWithPort: true,
        extraSignedHeaders,
      });
    for (const [k, v] of Object.entries(opts.headers ?? {})) {
      if (v === undefined) delete headers[k];
      else headers[k] = v;
    }
    const sent = opts.tamper ? opts.tamper(body) : body;
    return new Promise((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port: lab.server.port, method: 'POST', path: '/', headers: { ...headers, 'content-length': String(sent.length) } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString()) as Envelope }));
        },
      );
      req.on('error', reject);
      req.end(sent);
    });
  }

  const code = async (p: Promise<{ status: number; body: Envelope }>) => {
    const r = await p;
    expect(r.status).toBe(200);
    expect(typeof r.body.Response.RequestId).toBe('string');
    return r.body.Response.Error?.Code;
  };

  describe('authentication', () => {
    test('a Go-SDK-style signature (host with port, service kms) is accepted', async () => {
      expect(await code(raw({ plain: true }))).toBeUndefined();
    });
    test.each([
      ['unknown SecretId', { creds: { SecretId: 'AKIDunknownunknownunknownunknown0', SecretKey: 'x' } }, 'AuthFailure.SecretIdNotFound'],
      ['wrong SecretKey', { creds: { SecretId: '', SecretKey: 'wrong' } }, 'AuthFailure.SignatureFailure'],
      ['body changed after signing', { tamper: (b: Buffer) => Buffer.from(b.toString().replace('}', ' }')) }, 'AuthFailure.SignatureFailure'],
      ['timestamp 10 minutes old', { timestamp: Math.floor(Date.now() / 1000) - 600 }, 'AuthFailure.SignatureExpire'],
      ['no Authorization header', { sign: false }, 'AuthFailure.InvalidAuthorization'],
      ['garbage Authorization header', { headers: { authorization: 'Basic abc' } }, 'AuthFailure.InvalidAuthorization'],
    ])('%s → %s', async (_name, opts, expected) => {
      const o = { ...opts } as Parameters<typeof raw>[0];
      if (o.creds && o.creds.SecretId === '') o.creds = { SecretId: lab.root.SecretId, SecretKey: 'wrong' };
      expect(await code(raw(o))).toBe(expected);
    });
    test('the SDK with a wrong SecretKey gets AuthFailure.SignatureFailure', async () => {
      expect(await codeOf(lab.client({ SecretId: lab.root.SecretId, SecretKey: 'not-the-key' }).ListKeys({}))).toBe('AuthFailure.SignatureFailure');
    });
  });

  describe('malformed requests get an envelope with a specific code', () => {
    test.each([
      ['bad JSON', { body: '{"Limit": ' }, 'InvalidParameter'],
      ['a JSON array', { body: '[]' }, 'InvalidParameter'],
      ['wrong type', { body: '{"Limit":"ten"}' }, 'InvalidParameter'],
      ['unknown field', { body: '{"Bogus":1}' }, 'UnknownParameter'],
      ['missing required field', { action: 'Encrypt', body: '{"Plaintext":"aGk="}' }, 'MissingParameter'],
      ['bad base64', { action: 'Encrypt', body: '{"KeyId":"k","Plaintext":"%%%"}' }, 'InvalidParameterValue'],
      ['unknown action', { action: 'FlyToTheMoon' }, 'InvalidAction'],
      ['missing action header', { headers: { 'x-tc-action': undefined } }, 'MissingParameter'],
      ['wrong version', { headers: { 'x-tc-version': '2017-03-12' } }, 'NoSuchVersion'],
      ['missing region', { headers: { 'x-tc-region': undefined } }, 'MissingParameter'],
    ])('%s', async (_name, opts, expected) => {
      expect(await code(raw(opts as Parameters<typeof raw>[0]))).toBe(expected);
    });
    test('an oversize body → RequestSizeLimitExceeded', async () => {
      expect(await code(raw({ action: 'Encrypt', body: Buffer.alloc(300 * 1024, 0x20) }))).toBe('RequestSizeLimitExceeded');
    });
    test('deeply nested JSON is refused, not crashed on', async () => {
      const deep = '{"Tags":' + '['.repeat(5000) + ']'.repeat(5000) + ',"Alias":"x"}';
      expect(await code(raw({ action: 'CreateKey', body: deep }))).toBe('InvalidParameter');
    });
  });

  describe('policies', () => {
    let full: KmsClient;
    let readOnly: KmsClient;
    let creator: KmsClient;
    let denied: KmsClient;
    let nobody: KmsClient;

    beforeAll(async () => {
      const iam = lab.server.services.iam;
      const tenant = String(lab.root.Uin);
      full = lab.client(await iam.createUser(tenant, 'full', { preset: 'QcloudKMSFullAccess' }));
      readOnly = lab.client(await iam.createUser(tenant, 'reader', { preset: 'QcloudKMSReadOnlyAccess' }));
      creator = lab.client(await iam.createUser(tenant, 'creator', { preset: 'QcloudKMSCreatorFullAccess' }));
      const denyUser = await iam.createUser(tenant, 'no-decrypt', { preset: 'QcloudKMSFullAccess' });
      await iam.attachPolicy(String(denyUser.Uin), 'deny-decrypt', {
        version: '2.0',
        statement: [{ effect: 'deny', action: ['kms:Decrypt'], resource: ['*'] }],
      });
      denied = lab.client(denyUser);
      nobody = lab.client(await iam.createUser(tenant, 'nobody', {}));
    });

    test('root may do everything on its own keys', async () => {
      await expect(root.Encrypt({ KeyId: rootKey, Plaintext: 'aGk=' })).resolves.not.toThrow();
    });
    test('a sub-account without policies may do nothing', async () => {
      expect(await codeOf(nobody.ListKeys({}))).toBe('UnauthorizedOperation');
      expect(await codeOf(nobody.Encrypt({ KeyId: rootKey, Plaintext: 'aGk=' }))).toBe('UnauthorizedOperation');
    });
    test('QcloudKMSFullAccess: everything', async () => {
      const blob = (await full.Encrypt({ KeyId: rootKey, Plaintext: 'aGk=' })).CiphertextBlob;
      await expect(full.Decrypt({ CiphertextBlob: blob })).resolves.toMatchObject({ Plaintext: 'aGk=' });
      await expect(full.CreateKey({ Alias: 'made-by-full' })).resolves.not.toThrow();
    });
    test('QcloudKMSReadOnlyAccess: describe and list, no crypto, no changes', async () => {
      await expect(readOnly.DescribeKey({ KeyId: rootKey })).resolves.not.toThrow();
      await expect(readOnly.ListKeyDetail({})).resolves.not.toThrow();
      expect(await codeOf(readOnly.Encrypt({ KeyId: rootKey, Plaintext: 'aGk=' }))).toBe('UnauthorizedOperation');
      // the SDK signs one-second timestamps, not the action: DisableKey({KeyId}) in the second of DescribeKey({KeyId}) is that signature re-aimed (security §1)
      await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 5));
      expect(await codeOf(readOnly.DisableKey({ KeyId: rootKey }))).toBe('UnauthorizedOperation');
      expect(await codeOf(readOnly.CreateKey({ Alias: 'ro-made' }))).toBe('UnauthorizedOperation');
    });
    test('QcloudKMSCreatorFullAccess: full access to its own keys only', async () => {
      const own = (await creator.CreateKey({ Alias: 'made-by-creator' })).KeyId as string;
      await expect(creator.Encrypt({ KeyId: own, Plaintext: 'aGk=' })).resolves.not.toThrow();
      await expect(creator.DisableKey({ KeyId: own })).resolves.not.toThrow();
      expect(await codeOf(creator.Encrypt({ KeyId: rootKey, Plaintext: 'aGk=' }))).toBe('UnauthorizedOperation');
    });
    test('an explicit deny wins over a preset allow', async () => {
      const blob = (await denied.Encrypt({ KeyId: rootKey, Plaintext: 'aGk=' })).CiphertextBlob;
      expect(await codeOf(denied.Decrypt({ CiphertextBlob: blob }))).toBe('UnauthorizedOperation');
    });
  });

  describe('tenant isolation', () => {
    test("tenant B using tenant A's KeyId gets CmkNotFound; B's lists never show A's keys", async () => {
      const b = lab.client(await lab.server.services.iam.createTenant('tenant-b'));
      expect(await codeOf(b.DescribeKey({ KeyId: rootKey }))).toBe('ResourceUnavailable.CmkNotFound');
      expect(await codeOf(b.Encrypt({ KeyId: rootKey, Plaintext: 'aGk=' }))).toBe('ResourceUnavailable.CmkNotFound');
      const blob = (await root.Encrypt({ KeyId: rootKey, Plaintext: 'aGkgQg==' })).CiphertextBlob;
      expect(await codeOf(b.Decrypt({ CiphertextBlob: blob }))).toBe('InvalidParameterValue.InvalidCiphertext');
      expect((await b.ListKeys({})).TotalCount).toBe(0);
      expect(await codeOf(b.CreateKey({ Alias: 'b-in-a-cluster', HsmClusterId: 'cls-dev-dedicated' }))).toBe('InvalidParameterValue.InvalidHsmClusterId');
      expect(await b.GetServiceStatus({})).toMatchObject({ ExclusiveHSMEnabled: false, ExclusiveHSMList: [] });
    });
  });

  describe('audit', () => {
    test('every request, allowed or not, is one audit event without secrets; the chain verifies', async () => {
      const audit = lab.server.services.audit;
      await audit.flush();
      const page = await audit.query({ eventName: 'Encrypt', limit: 1000 });
      expect(page.events.length).toBeGreaterThan(3);
      expect(page.events.some((e) => e.errorCode === 'UnauthorizedOperation')).toBe(true);
      expect(page.events.every((e) => e.accountUin === String(lab.root.Uin) || e.errorCode !== '')).toBe(true);
      const all: string[] = [];
      await audit.export((line) => all.push(line));
      const dump = all.join('\n');
      expect(dump).not.toContain(lab.root.SecretKey);
      expect(dump).not.toContain('aGk=');
      expect((await audit.verify()).ok).toBe(true);
    });
  });
});
