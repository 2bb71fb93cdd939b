/**
 * CAM 2019-01-16 through the official `tencentcloud.cam.v20190116.Client` against a running server
 * (make run's installation): every served action, a CAM-made policy governing a CAM-made
 * sub-account's KMS calls, inactive and deleted keys, tenant isolation, paging, bad input, and the
 * dispatch between APIs (unknown versions, a scope naming another API).
 */
import { request } from 'node:http';
import { Agent } from 'node:http';
import fc from 'fast-check';
import { CAM_MAXIMA, CAM_SCHEMAS, CamAction } from '../../src/api/cam-params';
import type { FieldSpec, Fields } from '../../src/api/params';
import { signTc3 } from '../../src/api/tc3';
import { codeOf, Credentials, KmsClient, patient, ServerLab } from '../support/server';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const tencentcloud = require('tencentcloud-sdk-nodejs') as { cam: { v20190116: { Client: new (config: object) => KmsClient } } };

type Creds = Pick<Credentials, 'SecretId' | 'SecretKey'>;

const ENCRYPT_ONLY = JSON.stringify({
  version: '2.0',
  statement: [{ effect: 'allow', action: ['kms:Encrypt', 'kms:ListKeys'], resource: '*' }],
});

describe('CAM API (users, access keys, policies) with the official SDK client', () => {
  const lab = new ServerLab();
  let cam: KmsClient;
  let otherTenant: Credentials;

  const camClient = (creds: Creds = lab.root): KmsClient =>
    patient(
      new tencentcloud.cam.v20190116.Client({
        credential: { secretId: creds.SecretId, secretKey: creds.SecretKey },
        region: '',
        profile: { httpProfile: { endpoint: `127.0.0.1:${lab.server.port}`, protocol: 'http://', agent: new Agent({ keepAlive: true }), reqTimeout: 30 } },
      }),
    );

  beforeAll(async () => {
    await lab.start();
    cam = camClient();
    otherTenant = await lab.server.services.iam.createTenant('other-tenant');
  }, 60_000);
  afterAll(() => lab.stop());

  test('AddUser (UseApi 1 returns a key pair that works), GetUser, ListUsers, UpdateUser', async () => {
    const made = await cam.AddUser({ Name: 'alice', Remark: 'first', ConsoleLogin: 0, UseApi: 1 });
    expect(made).toMatchObject({ Name: 'alice', Uin: expect.any(Number), SecretId: expect.any(String), SecretKey: expect.any(String) });
    const plain = await cam.AddUser({ Name: 'bob' });
    expect(plain.SecretKey).toBeUndefined();

    expect(await cam.GetUser({ Name: 'alice' })).toMatchObject({ Name: 'alice', Uin: made.Uin, Remark: 'first', ConsoleLogin: 0 });
    await cam.UpdateUser({ Name: 'alice', Remark: 'changed', ConsoleLogin: 1 });
    expect(await cam.GetUser({ Name: 'alice' })).toMatchObject({ Remark: 'changed', ConsoleLogin: 1 });
    const names = ((await cam.ListUsers({})).Data as Array<{ Name: string }>).map((u) => u.Name);
    expect(names).toEqual(expect.arrayContaining(['alice', 'bob']));

    // the new sub-account's key signs; with no policy it may do nothing
    const alice = lab.client({ SecretId: made.SecretId as string, SecretKey: made.SecretKey as string });
    expect(await codeOf(alice.ListKeys({}))).toBe('UnauthorizedOperation');
    expect(await codeOf(cam.AddUser({ Name: 'alice' }))).toBe('ResourceInUse');
    expect(await codeOf(cam.GetUser({ Name: 'nobody' }))).toBe('ResourceNotFound.UserNotExist');
  });

  test('access keys: at most 2 per account, listed without secrets, Inactive refused with AuthFailure, deleted refused', async () => {
    const { Uin } = await cam.AddUser({ Name: 'keys-user' });
    const first = (await cam.CreateAccessKey({ TargetUin: Uin })).AccessKey as Record<string, string>;
    expect(first).toMatchObject({ AccessKeyId: expect.any(String), SecretAccessKey: expect.any(String), Status: 'Active' });
    const second = (await cam.CreateAccessKey({ TargetUin: Uin })).AccessKey as Record<string, string>;
    expect(await codeOf(cam.CreateAccessKey({ TargetUin: Uin }))).toBe('OperationDenied.AccessKeyOverLimit');

    const listed = (await cam.ListAccessKeys({ TargetUin: Uin })).AccessKeys as Array<Record<string, string>>;
    expect(listed.map((k) => k.AccessKeyId).sort()).toEqual([first.AccessKeyId, second.AccessKeyId].sort());
    expect(JSON.stringify(listed)).not.toContain(first.SecretAccessKey);

    const policyId = (await cam.CreatePolicy({ PolicyName: 'keys-user-list', PolicyDocument: ENCRYPT_ONLY })).PolicyId;
    await cam.AttachUserPolicy({ PolicyId: policyId, AttachUin: Uin });
    const user = lab.client({ SecretId: first.AccessKeyId, SecretKey: first.SecretAccessKey });
    await user.ListKeys({});

    await cam.UpdateAccessKey({ AccessKeyId: first.AccessKeyId, Status: 'Inactive', TargetUin: Uin });
    expect(await codeOf(user.ListKeys({}))).toMatch(/^AuthFailure\./);
    expect(
      ((await cam.ListAccessKeys({ TargetUin: Uin })).AccessKeys as Array<Record<string, string>>).find((k) => k.AccessKeyId === first.AccessKeyId),
    ).toMatchObject({
      Status: 'Inactive',
    });
    await cam.UpdateAccessKey({ AccessKeyId: first.AccessKeyId, Status: 'Active', TargetUin: Uin });
    await user.ListKeys({ Limit: 1 });

    await cam.DeleteAccessKey({ AccessKeyId: first.AccessKeyId, TargetUin: Uin });
    expect(await codeOf(user.ListKeys({ Limit: 2 }))).toMatch(/^AuthFailure\./);
    expect(await codeOf(cam.DeleteAccessKey({ AccessKeyId: first.AccessKeyId, TargetUin: Uin }))).toBe('ResourceNotFound.SecretNotExist');
    expect(await codeOf(cam.UpdateAccessKey({ AccessKeyId: second.AccessKeyId, Status: 'Sleeping', TargetUin: Uin }))).toBe('InvalidParameterValue');
  });

  test('DeleteUser: refused while it has keys unless Force 1; then its keys stop working at once', async () => {
    const made = await cam.AddUser({ Name: 'doomed', UseApi: 1 });
    const id = (await cam.CreatePolicy({ PolicyName: 'doomed-list', PolicyDocument: ENCRYPT_ONLY })).PolicyId;
    await cam.AttachUserPolicy({ PolicyId: id, AttachUin: made.Uin });
    const doomed = lab.client({ SecretId: made.SecretId as string, SecretKey: made.SecretKey as string });
    await doomed.ListKeys({});
    expect(await codeOf(cam.DeleteUser({ Name: 'doomed' }))).toBe('OperationDenied');
    await cam.DeleteUser({ Name: 'doomed', Force: 1 });
    expect(await codeOf(doomed.ListKeys({ Limit: 3 }))).toMatch(/^AuthFailure\./);
    expect(await codeOf(cam.GetUser({ Name: 'doomed' }))).toBe('ResourceNotFound.UserNotExist');
    expect((await cam.ListEntitiesForPolicy({ PolicyId: id })).TotalNum).toBe(0);
  });

  test('a policy made through CAM governs a CAM-made sub-account; UpdatePolicy and DetachUserPolicy take effect', async () => {
    const { KeyId } = await lab.client().CreateKey({ Alias: 'cam-governed' });
    const made = await cam.AddUser({ Name: 'governed', UseApi: 1 });
    const user = lab.client({ SecretId: made.SecretId as string, SecretKey: made.SecretKey as string });
    const id = (await cam.CreatePolicy({ PolicyName: 'encrypt-only', PolicyDocument: ENCRYPT_ONLY, Description: 'encrypt, list' })).PolicyId as number;
    await cam.AttachUserPolicy({ PolicyId: id, AttachUin: made.Uin });
    expect(await codeOf(cam.AttachUserPolicy({ PolicyId: id, AttachUin: made.Uin }))).toBe('ResourceInUse');

    const { CiphertextBlob } = await user.Encrypt({ KeyId, Plaintext: Buffer.from('hi').toString('base64') });
    expect(await codeOf(user.Decrypt({ CiphertextBlob }))).toBe('UnauthorizedOperation');

    const withDecrypt = JSON.stringify({ version: '2.0', statement: [{ effect: 'allow', action: ['kms:Encrypt', 'kms:Decrypt'], resource: '*' }] });
    await cam.UpdatePolicy({ PolicyId: id, PolicyDocument: withDecrypt });
    expect(Buffer.from((await user.Decrypt({ CiphertextBlob })).Plaintext as string, 'base64').toString()).toBe('hi');
    expect(JSON.parse((await cam.GetPolicy({ PolicyId: id })).PolicyDocument as string)).toEqual(JSON.parse(withDecrypt));

    expect((await cam.ListAttachedUserPolicies({ TargetUin: made.Uin })).List).toEqual([
      expect.objectContaining({ PolicyId: id, PolicyName: 'encrypt-only', PolicyType: 'User' }),
    ]);
    expect((await cam.ListEntitiesForPolicy({ PolicyId: id })).List).toEqual([expect.objectContaining({ Uin: made.Uin, Name: 'governed', RelatedType: 1 })]);

    await cam.DetachUserPolicy({ PolicyId: id, DetachUin: made.Uin });
    expect(await codeOf(user.Encrypt({ KeyId, Plaintext: 'aGk=' }))).toBe('UnauthorizedOperation');
    expect(await codeOf(cam.DetachUserPolicy({ PolicyId: id, DetachUin: made.Uin }))).toBe('ResourceNotFound.PolicyIdNotFound');

    // a preset through CAM
    const presets = (await cam.ListPolicies({ Scope: 'QCS' })).List as Array<{ PolicyId: number; PolicyName: string; Type: number }>;
    const full = presets.find((p) => p.PolicyName === 'QcloudKMSFullAccess');
    expect(full?.Type).toBe(2);
    await cam.AttachUserPolicy({ PolicyId: full?.PolicyId, AttachUin: made.Uin });
    await user.Encrypt({ KeyId, Plaintext: 'aGk=' });
    expect((await cam.ListAttachedUserPolicies({ TargetUin: made.Uin })).List).toEqual([
      expect.objectContaining({ PolicyName: 'QcloudKMSFullAccess', PolicyType: 'QCS', CreateMode: 2 }),
    ]);

    // a sub-account with kms:* only may not use CAM; with cam:* it may, on its own tenant
    expect(await codeOf(camClient({ SecretId: made.SecretId as string, SecretKey: made.SecretKey as string }).ListUsers({}))).toBe('UnauthorizedOperation');
    const admin = JSON.stringify({ version: '2.0', statement: [{ effect: 'allow', action: 'cam:*', resource: '*' }] });
    const adminId = (await cam.CreatePolicy({ PolicyName: 'cam-admin', PolicyDocument: admin })).PolicyId;
    await cam.AttachUserPolicy({ PolicyId: adminId, AttachUin: made.Uin });
    const delegated = camClient({ SecretId: made.SecretId as string, SecretKey: made.SecretKey as string });
    expect(((await delegated.ListUsers({})).Data as unknown[]).length).toBeGreaterThan(0);
    expect(await codeOf(delegated.ListAccessKeys({ TargetUin: lab.root.Uin }))).toBe('UnauthorizedOperation');

    await cam.DeletePolicy({ PolicyId: [id, adminId] });
    expect(await codeOf(cam.GetPolicy({ PolicyId: id }))).toBe('ResourceNotFound.PolicyIdNotFound');
    expect(await codeOf(delegated.ListUsers({}))).toBe('UnauthorizedOperation');
    expect(await codeOf(cam.DeletePolicy({ PolicyId: [full?.PolicyId] }))).toBe('OperationDenied');
  });

  test('ListPolicies: scopes, keyword, paging; CreatePolicy refuses a bad document saying where', async () => {
    for (let i = 0; i < 5; i++) await cam.CreatePolicy({ PolicyName: `paged-${i}`, PolicyDocument: ENCRYPT_ONLY });
    const page1 = await cam.ListPolicies({ Scope: 'Local', Keyword: 'paged-', Rp: 2, Page: 1 });
    const page3 = await cam.ListPolicies({ Scope: 'Local', Keyword: 'PAGED-', Rp: 2, Page: 3 });
    expect(page1.TotalNum).toBe(5);
    expect((page1.List as unknown[]).length).toBe(2);
    expect((page3.List as Array<{ PolicyName: string }>).map((p) => p.PolicyName)).toEqual(['paged-4']);
    const all = await cam.ListPolicies({ Rp: 200 });
    const names = (all.List as Array<{ PolicyName: string }>).map((p) => p.PolicyName);
    expect(names).toEqual(expect.arrayContaining(['QcloudKMSFullAccess', 'QcloudKMSReadOnlyAccess', 'QcloudKMSCreatorFullAccess', 'paged-0']));
    expect(await codeOf(cam.ListPolicies({ Scope: 'Everything' }))).toBe('InvalidParameter.ParamError');
    expect(await codeOf(cam.ListPolicies({ Rp: 201 }))).toBe('InvalidParameter.ParamError');

    const bad = JSON.stringify({ version: '2.0', statement: [{ effect: 'permit', action: 'kms:*', resource: '*' }] });
    try {
      await cam.CreatePolicy({ PolicyName: 'bad', PolicyDocument: bad });
      throw new Error('accepted');
    } catch (e) {
      expect((e as { code: string }).code).toBe('InvalidParameter.PolicyDocumentError');
      expect((e as Error).message).toContain('statement[0].effect');
    }
    expect(await codeOf(cam.CreatePolicy({ PolicyName: 'paged-0', PolicyDocument: ENCRYPT_ONLY }))).toBe('ResourceInUse');
    expect(await codeOf(cam.CreatePolicy({ PolicyName: 'QcloudKMSFullAccess', PolicyDocument: ENCRYPT_ONLY }))).toBe('InvalidParameter.PolicyDocumentError');
  });

  test('UpdatePolicy renames a policy on every sub-account it is attached to, keeping its effect', async () => {
    const made = await cam.AddUser({ Name: 'renamed-holder', UseApi: 1 });
    const user = lab.client({ SecretId: made.SecretId as string, SecretKey: made.SecretKey as string });
    const id = (await cam.CreatePolicy({ PolicyName: 'before-rename', PolicyDocument: ENCRYPT_ONLY })).PolicyId;
    await cam.AttachUserPolicy({ PolicyId: id, AttachUin: made.Uin });
    await cam.UpdatePolicy({ PolicyId: id, PolicyName: 'after-rename', Description: 'renamed' });
    expect((await cam.ListAttachedUserPolicies({ TargetUin: made.Uin })).List).toEqual([expect.objectContaining({ PolicyId: id, PolicyName: 'after-rename' })]);
    expect(await cam.GetPolicy({ PolicyId: id })).toMatchObject({ PolicyName: 'after-rename', Description: 'renamed', Type: 1 });
    await user.ListKeys({});
    expect(await codeOf(cam.UpdatePolicy({ PolicyId: id, PolicyDocument: '{"version":"1.0"}' }))).toBe('InvalidParameter.PolicyDocumentError');
  });

  test("tenant isolation: another tenant's users, keys and policies are not found", async () => {
    const mine = await cam.AddUser({ Name: 'isolated', UseApi: 1 });
    const myPolicy = (await cam.CreatePolicy({ PolicyName: 'isolated-p', PolicyDocument: ENCRYPT_ONLY })).PolicyId;
    const other = camClient(otherTenant);
    expect(await codeOf(other.GetUser({ Name: 'isolated' }))).toBe('ResourceNotFound.UserNotExist');
    expect(await codeOf(other.ListAccessKeys({ TargetUin: mine.Uin }))).toBe('ResourceNotFound.UserNotExist');
    expect(await codeOf(other.UpdateAccessKey({ AccessKeyId: mine.SecretId, Status: 'Inactive' }))).toBe('ResourceNotFound.SecretNotExist');
    expect(await codeOf(other.DeleteAccessKey({ AccessKeyId: mine.SecretId }))).toBe('ResourceNotFound.SecretNotExist');
    expect(await codeOf(other.GetPolicy({ PolicyId: myPolicy }))).toBe('ResourceNotFound.PolicyIdNotFound');
    expect(await codeOf(other.DeletePolicy({ PolicyId: [myPolicy] }))).toBe('ResourceNotFound.PolicyIdNotFound');
    expect(await codeOf(other.ListEntitiesForPolicy({ PolicyId: myPolicy }))).toBe('ResourceNotFound.PolicyIdNotFound');
    expect(await codeOf(other.DeleteUser({ Name: 'isolated', Force: 1 }))).toBe('ResourceNotFound.UserNotExist');
    const theirUsers = ((await other.ListUsers({})).Data as Array<{ Name: string }>).map((u) => u.Name);
    expect(theirUsers).not.toContain('isolated');
    const theirPolicies = ((await other.ListPolicies({ Scope: 'Local' })).List as unknown[]).length;
    expect(theirPolicies).toBe(0);
    const theirs = await other.AddUser({ Name: 'isolated' });
    expect(await codeOf(cam.AttachUserPolicy({ PolicyId: myPolicy, AttachUin: theirs.Uin }))).toBe('ResourceNotFound.UserNotExist');
    // the key still works for its owner
    await cam.GetUser({ Name: 'isolated' });
  });

  test('kmsctl (IamService) and CAM see the same data', async () => {
    const iam = lab.server.services.iam;
    await iam.createUser(String(lab.root.Uin), 'from-kmsctl', { preset: 'QcloudKMSReadOnlyAccess' });
    const u = await cam.GetUser({ Name: 'from-kmsctl' });
    expect((await cam.ListAttachedUserPolicies({ TargetUin: u.Uin })).List).toEqual([expect.objectContaining({ PolicyName: 'QcloudKMSReadOnlyAccess' })]);
    await cam.AddUser({ Name: 'from-cam' });
    expect((await iam.listUsers(String(lab.root.Uin))).map((x) => x.name)).toContain('from-cam');
  });

  test.each<[string, object, string]>([
    ['AddUser', {}, 'MissingParameter'],
    ['AddUser', { Name: 7 }, 'InvalidParameter'],
    ['AddUser', { Name: 'ok', Colour: 'red' }, 'UnknownParameter'],
    ['AddUser', { Name: 'x'.repeat(65) }, 'InvalidParameterValue'],
    ['AddUser', { Name: 'bad name!' }, 'InvalidParameter.ParamError'],
    ['AddUser', { Name: 'ok2', ConsoleLogin: 5 }, 'InvalidParameter.ParamError'],
    ['GetUser', { Name: ['a'] }, 'InvalidParameter'],
    ['UpdateUser', { Name: 'alice', Remark: 'r'.repeat(256) }, 'InvalidParameterValue'],
    ['CreateAccessKey', { TargetUin: '1' }, 'InvalidParameter'],
    ['CreateAccessKey', { TargetUin: 299999999999 }, 'ResourceNotFound.UserNotExist'],
    ['UpdateAccessKey', { AccessKeyId: 'AKIDx' }, 'MissingParameter'],
    ['CreatePolicy', { PolicyName: 'p', PolicyDocument: 'not json' }, 'InvalidParameter.PolicyDocumentError'],
    ['CreatePolicy', { PolicyName: 'p', PolicyDocument: 'x'.repeat(7000) }, 'InvalidParameterValue'],
    ['CreatePolicy', { PolicyName: 'p', PolicyDocument: { version: '2.0' } }, 'InvalidParameter'],
    ['GetPolicy', { PolicyId: 1.5 }, 'InvalidParameter'],
    ['GetPolicy', { PolicyId: 999999 }, 'ResourceNotFound.PolicyIdNotFound'],
    ['UpdatePolicy', { PolicyName: 'x' }, 'MissingParameter'],
    ['DeletePolicy', { PolicyId: [] }, 'InvalidParameter'],
    ['DeletePolicy', { PolicyId: 5 }, 'InvalidParameter'],
    ['ListEntitiesForPolicy', { PolicyId: 1, EntityFilter: 'Everyone' }, 'InvalidParameterValue'],
    ['ListAttachedUserPolicies', { TargetUin: 299999999998, Page: 0 }, 'ResourceNotFound.UserNotExist'],
    ['ListAttachedUserPolicies', {}, 'MissingParameter'],
  ])('%s %j → %s', async (action, body, code) => {
    expect(await codeOf(cam[action](body))).toBe(code);
  });

  describe('every field of every served CAM action: wrong type, unknown field, oversize → its own code, never InternalError', () => {
    const wrong = (spec: FieldSpec): unknown => (spec.kind === 'integer' ? 'one' : spec.kind === 'array' ? {} : spec.kind === 'object' ? [] : 42);
    const valid = (spec: FieldSpec): unknown => (spec.kind === 'integer' ? 1 : spec.kind === 'array' ? [] : spec.kind === 'object' ? {} : 'x');
    const required = (fields: Fields): Record<string, unknown> =>
      Object.fromEntries(
        Object.entries(fields)
          .filter(([, f]) => f.required)
          .map(([k, f]) => [k, valid(f)]),
      );
    const cases = (Object.keys(CAM_SCHEMAS) as CamAction[]).flatMap((action) => {
      const fields = CAM_SCHEMAS[action] as Fields;
      const out: Array<[string, string, Record<string, unknown>, string]> = [
        [action, 'unknown field', { ...required(fields), Unexpected: 1 }, 'UnknownParameter'],
      ];
      for (const [name, spec] of Object.entries(fields)) {
        out.push([action, `${name} of the wrong type`, { ...required(fields), [name]: wrong(spec) }, 'InvalidParameter']);
        const chars = CAM_MAXIMA[name]?.chars;
        if (spec.kind === 'string' && chars !== undefined)
          out.push([action, `${name} over ${chars} characters`, { ...required(fields), [name]: 'y'.repeat(chars + 1) }, 'InvalidParameterValue']);
      }
      return out;
    });
    test.each(cases)('%s: %s', async (action, _what, body, code) => {
      expect(await codeOf(cam[action](body))).toBe(code);
    });
  });

  test('SecretKeys made through CAM reach neither the request log nor the audit trail', async () => {
    const made = await cam.AddUser({ Name: 'secretive', UseApi: 1 });
    const key = (await cam.CreateAccessKey({ TargetUin: made.Uin })).AccessKey as Record<string, string>;
    const audit = lab.server.services.audit;
    await audit.flush();
    const lines: string[] = [];
    await audit.export((l) => lines.push(l));
    const trail = lines.join('');
    expect(trail).toContain('CreateAccessKey');
    for (const secret of [made.SecretKey as string, key.SecretAccessKey]) {
      expect(trail).not.toContain(secret);
      expect(JSON.stringify(lab.logs)).not.toContain(secret);
    }
  });

  test('other CAM actions of the SDK answer UnsupportedOperation; unknown ones InvalidAction', async () => {
    expect(await codeOf(cam.CreateRole({ RoleName: 'r', PolicyDocument: '{}' }))).toBe('UnsupportedOperation');
    expect(await codeOf(cam.CreateGroup({ GroupName: 'g' }))).toBe('UnsupportedOperation');
    expect(await codeOf(cam.SetMfaFlag({ OpUin: 1 }))).toBe('UnsupportedOperation');
  });

  test('property: random bodies to random served CAM actions never get InternalError, always a well-formed envelope', async () => {
    const seed = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : Date.now() % 2 ** 31;
    process.stdout.write(`CAM fuzz seed ${seed}\n`);
    const raw = new tencentcloud.cam.v20190116.Client({
      credential: { secretId: lab.root.SecretId, secretKey: lab.root.SecretKey },
      region: '',
      profile: { httpProfile: { endpoint: `127.0.0.1:${lab.server.port}`, protocol: 'http://', agent: new Agent({ keepAlive: true }), reqTimeout: 30 } },
    });
    const actions = Object.keys(CAM_SCHEMAS) as CamAction[];
    const value = fc.oneof(fc.string({ maxLength: 300 }), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.anything({ maxDepth: 2 }));
    const shaped = (a: CamAction): fc.Arbitrary<Record<string, unknown>> =>
      fc.record(Object.fromEntries(Object.keys(CAM_SCHEMAS[a] as Fields).map((k) => [k, value])), { requiredKeys: [] });
    const call = fc.constantFrom(...actions).chain((a) => fc.tuple(fc.constant(a), fc.oneof(shaped(a), fc.dictionary(fc.string({ maxLength: 20 }), value))));
    await fc.assert(
      fc.asyncProperty(call, async ([action, body]) => {
        const code = await raw[action](body).then(
          () => 'Success',
          (e: { code?: string; requestId?: string }) => e.code ?? 'no code',
        );
        expect(code).not.toBe('InternalError');
        expect(code).not.toBe('no code');
      }),
      { seed, numRuns: 300 },
    );
    expect(lab.logs.filter((l) => l.code === 'InternalError')).toEqual([]);
  }, 120_000);

  describe('dispatch', () => {
    let seq = 0;
    function raw(version: string | undefined, service: string, action: string, creds: Creds = lab.root): Promise<{ Error?: { Code: string } }> {
      const body = Buffer.from('{}');
      const timestamp = Math.floor(Date.now() / 1000);
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        host: `127.0.0.1:${lab.server.port}`,
        'x-tc-action': action,
        'x-tc-region': 'ap-guangzhou',
        'x-tc-timestamp': String(timestamp),
        'x-test-seq': String(seq++),
      };
      if (version !== undefined) headers['x-tc-version'] = version;
      headers.authorization = signTc3({
        secretId: creds.SecretId,
        secretKey: creds.SecretKey,
        service,
        timestamp,
        headers,
        body,
        hostWithPort: true,
        extraSignedHeaders: ['x-test-seq'],
      });
      return new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: lab.server.port, method: 'POST', path: '/', headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => resolve((JSON.parse(Buffer.concat(chunks).toString()) as { Response: { Error?: { Code: string } } }).Response));
        });
        req.on('error', reject);
        req.end(body);
      });
    }

    test.each<[string | undefined, string, string, string | undefined]>([
      ['2019-01-16', 'cam', 'ListUsers', undefined],
      ['2019-01-16', '127', 'ListUsers', undefined],
      ['2019-01-18', 'kms', 'ListKeys', undefined],
      ['2019-01-18', 'kms-internal', 'ListKeys', undefined],
      ['2019-01-16', 'kms', 'ListUsers', 'NoSuchVersion'],
      ['2019-01-18', 'cam', 'ListKeys', 'NoSuchVersion'],
      ['2017-03-12', 'cvm', 'DescribeInstances', 'NoSuchVersion'],
      [undefined, 'kms', 'ListKeys', 'NoSuchVersion'],
      ['2019-01-16', 'cam', 'ListKeys', 'InvalidAction'],
      ['2019-03-19', 'cloudaudit', 'StartLogging', 'UnsupportedOperation'],
      ['2019-03-19', '127', 'StartLogging', 'UnsupportedOperation'],
      // served: the empty body lacks StartTime
      ['2019-03-19', 'cloudaudit', 'LookUpEvents', 'MissingParameter'],
      ['2019-03-19', 'kms', 'LookUpEvents', 'NoSuchVersion'],
      ['2019-01-18', 'kms', 'ListUsers', 'InvalidAction'],
    ])('version %p, scope %p, %s → %p', async (version, service, action, code) => {
      expect((await raw(version, service, action)).Error?.Code).toBe(code);
    });

    test('audit events carry the API they were for (eventSource)', async () => {
      const audit = lab.server.services.audit;
      const append = audit.append.bind(audit);
      const seen: Array<{ eventName: string; eventSource?: string }> = [];
      audit.append = (e) => {
        seen.push({ eventName: e.eventName, eventSource: e.eventSource });
        append(e);
      };
      try {
        await cam.ListUsers({});
        await lab.client().ListKeys({ Limit: 7 });
      } finally {
        audit.append = append;
      }
      expect(seen).toEqual([
        { eventName: 'ListUsers', eventSource: 'cam.tencentcloudapi.com' },
        { eventName: 'ListKeys', eventSource: 'kms.tencentcloudapi.com' },
      ]);
    });
  });
});
