/**
 * CloudAudit 2019-03-19 through the official `tencentcloud.cloudaudit.v20190319.Client` against a
 * running server (make run's installation): LookUpEvents reads the caller's own trail (filters,
 * paging by NextToken, no other tenant's events, no secrets), GetAttributeKey, a sub-account needing
 * `cloudaudit:LookUpEvents`, the other actions refused, bad input with specific codes.
 */
import { Agent } from 'node:http';
import { within } from '../support/poll';
import { codeOf, Credentials, KmsClient, patient, ServerLab } from '../support/server';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const tencentcloud = require('tencentcloud-sdk-nodejs') as {
  cloudaudit: { v20190319: { Client: new (config: object) => KmsClient } };
  cam: { v20190116: { Client: new (config: object) => KmsClient } };
};

type Creds = Pick<Credentials, 'SecretId' | 'SecretKey'>;
type WireEvent = Record<string, unknown> & { EventName: string; EventId: string; RequestID: string; AccountID: number; CloudAuditEvent: string };

describe('CloudAudit API (LookUpEvents, GetAttributeKey) with the official SDK client', () => {
  const lab = new ServerLab();
  let audit: KmsClient;
  let other: Credentials;
  const start = Math.floor(Date.now() / 1000) - 5;
  const now = () => Math.floor(Date.now() / 1000) + 5;

  const client = (which: 'cloudaudit' | 'cam', creds: Creds = lab.root): KmsClient =>
    patient(
      new (which === 'cam' ? tencentcloud.cam.v20190116.Client : tencentcloud.cloudaudit.v20190319.Client)({
        credential: { secretId: creds.SecretId, secretKey: creds.SecretKey },
        region: 'ap-guangzhou',
        profile: { httpProfile: { endpoint: `127.0.0.1:${lab.server.port}`, protocol: 'http://', agent: new Agent({ keepAlive: true }), reqTimeout: 30 } },
      }),
    );

  const lookUp = async (c: KmsClient, params: object): Promise<{ Events: WireEvent[]; NextToken?: string; ListOver: boolean }> =>
    (await c.LookUpEvents({ StartTime: start, EndTime: now(), ...params })) as unknown as { Events: WireEvent[]; NextToken?: string; ListOver: boolean };

  let keyId: string;
  let plaintext: string;

  beforeAll(async () => {
    await lab.start();
    audit = client('cloudaudit');
    other = await lab.server.services.iam.createTenant('audit-other');
    const kms = lab.client();
    keyId = ((await kms.CreateKey({ Alias: 'audited' })) as { KeyId: string }).KeyId;
    plaintext = Buffer.from('a secret that never reaches the trail').toString('base64');
    for (let i = 0; i < 7; i++) await kms.Encrypt({ KeyId: keyId, Plaintext: plaintext, EncryptionContext: JSON.stringify({ i: String(i) }) });
    await lab.client(other).CreateKey({ Alias: 'foreign' });
    await client('cam').ListUsers({});
    // the trail is written in group commits: wait until every event is visible
    await within(
      10_000,
      async () => (await lookUp(audit, { LookupAttributes: [{ AttributeKey: 'EventName', AttributeValue: 'Encrypt' }], MaxResults: 50 })).Events.length === 7,
    );
  }, 60_000);
  afterAll(() => lab.stop());

  test("EventName filter: the caller's events, newest first, with the SDK model's fields and no secret", async () => {
    const r = await lookUp(audit, { LookupAttributes: [{ AttributeKey: 'EventName', AttributeValue: 'Encrypt' }], MaxResults: 50 });
    expect(r.Events).toHaveLength(7);
    expect(r.ListOver).toBe(true);
    const e = r.Events[0];
    expect(e).toMatchObject({
      EventName: 'Encrypt',
      EventSource: 'kms.tencentcloudapi.com',
      SecretId: lab.root.SecretId,
      ResourceRegion: 'ap-guangzhou',
      SourceIPAddress: '127.0.0.1',
    });
    expect(typeof e.EventId).toBe('string');
    expect(Number(e.EventTime)).toBeGreaterThanOrEqual(start);
    const times = r.Events.map((x) => Number(x.EventTime));
    expect([...times].sort((a, b) => b - a)).toEqual(times);
    expect(JSON.parse(e.CloudAuditEvent)).toMatchObject({ eventName: 'Encrypt' });
    const all = JSON.stringify(r);
    expect(all).not.toContain(plaintext);
    expect(all).not.toContain(lab.root.SecretKey);
  });

  test('CAM requests are in the trail with their own EventSource; RequestId and EventId find one event', async () => {
    const cam = await lookUp(audit, { LookupAttributes: [{ AttributeKey: 'EventName', AttributeValue: 'ListUsers' }] });
    expect(cam.Events.map((e) => e.EventSource)).toEqual(['cam.tencentcloudapi.com']);
    const one = cam.Events[0];
    expect((await lookUp(audit, { LookupAttributes: [{ AttributeKey: 'RequestId', AttributeValue: one.RequestID }] })).Events.map((e) => e.EventId)).toEqual([
      one.EventId,
    ]);
    expect((await lookUp(audit, { LookupAttributes: [{ AttributeKey: 'EventId', AttributeValue: one.EventId }] })).Events.map((e) => e.RequestID)).toEqual([
      one.RequestID,
    ]);
  });

  test('paging by NextToken walks every Encrypt once; a forged or altered token is InvalidParameterValue', async () => {
    const filter = { LookupAttributes: [{ AttributeKey: 'EventName', AttributeValue: 'Encrypt' }], MaxResults: 3 };
    const seen: string[] = [];
    let token: string | undefined;
    for (let page = 0; page < 5; page++) {
      const r = await lookUp(audit, token ? { ...filter, NextToken: token } : filter);
      seen.push(...r.Events.map((e) => e.EventId));
      if (r.ListOver) break;
      token = r.NextToken;
      expect(token).toBeTruthy();
    }
    expect(seen).toHaveLength(7);
    expect(new Set(seen).size).toBe(7);
    const first = await lookUp(audit, filter);
    const altered = first.NextToken!.slice(0, -2) + (first.NextToken!.endsWith('AA') ? 'BB' : 'AA');
    expect(await codeOf(lookUp(audit, { ...filter, NextToken: altered }))).toBe('InvalidParameterValue');
    expect(await codeOf(lookUp(audit, { ...filter, NextToken: 'not-a-token' }))).toBe('InvalidParameterValue');
  });

  test("another tenant sees only its own events, and not through the first tenant's NextToken", async () => {
    const theirs = client('cloudaudit', other);
    await within(10_000, async () => (await lookUp(theirs, {})).Events.some((e) => e.EventName === 'CreateKey'));
    const r = await lookUp(theirs, { MaxResults: 50 });
    expect(r.Events.every((e) => e.SecretId === other.SecretId)).toBe(true);
    expect(r.Events.some((e) => e.EventName === 'Encrypt')).toBe(false);
    const mine = await lookUp(audit, { LookupAttributes: [{ AttributeKey: 'EventName', AttributeValue: 'Encrypt' }], MaxResults: 1 });
    expect(
      await codeOf(lookUp(theirs, { LookupAttributes: [{ AttributeKey: 'EventName', AttributeValue: 'Encrypt' }], MaxResults: 1, NextToken: mine.NextToken })),
    ).toBe('InvalidParameterValue');
  });

  test("a sub-account needs cloudaudit:LookUpEvents; with it, it reads its tenant's trail", async () => {
    const cam = client('cam');
    const made = (await cam.AddUser({ Name: 'auditor', UseApi: 1 })) as { Uin: number; SecretId: string; SecretKey: string };
    const auditor = client('cloudaudit', { SecretId: made.SecretId, SecretKey: made.SecretKey });
    expect(await codeOf(lookUp(auditor, {}))).toBe('UnauthorizedOperation');
    const doc = JSON.stringify({ version: '2.0', statement: [{ effect: 'allow', action: ['cloudaudit:LookUpEvents'], resource: '*' }] });
    const { PolicyId } = (await cam.CreatePolicy({ PolicyName: 'audit-reader', PolicyDocument: doc })) as { PolicyId: number };
    await cam.AttachUserPolicy({ PolicyId, AttachUin: made.Uin });
    await within(5_000, async () => (await codeOf(lookUp(auditor, {}).then(() => Promise.reject({ code: 'ok' })))) === 'ok');
    expect((await lookUp(auditor, { LookupAttributes: [{ AttributeKey: 'EventName', AttributeValue: 'Encrypt' }], MaxResults: 50 })).Events).toHaveLength(7);
    // the policy names LookUpEvents only
    expect(await codeOf(auditor.GetAttributeKey({}))).toBe('UnauthorizedOperation');
  });

  test('GetAttributeKey lists the lookup attributes; the other actions are UnsupportedOperation', async () => {
    const r = (await audit.GetAttributeKey({ WebsiteType: 'en' })) as { AttributeKeyDetails: Array<{ Value: string; Label: string }> };
    expect(r.AttributeKeyDetails.map((d) => d.Value)).toEqual(expect.arrayContaining(['EventName', 'RequestId', 'Username', 'ResourceName', 'ReadOnly']));
    expect(await codeOf(audit.DescribeAuditTracks({}))).toBe('UnsupportedOperation');
    expect(await codeOf(audit.StartLogging({ AuditName: 'x' }))).toBe('UnsupportedOperation');
  });

  test.each([
    ['StartTime missing', { EndTime: 1 }, 'MissingParameter'],
    ['StartTime a string', { StartTime: 'yesterday', EndTime: 1 }, 'InvalidParameter'],
    ['an unknown field', { StartTime: 0, EndTime: 1, Colour: 'red' }, 'UnknownParameter'],
    ['StartTime after EndTime', { StartTime: 10, EndTime: 1 }, 'InvalidParameterValue'],
    ['MaxResults over 50', { StartTime: 0, EndTime: 1, MaxResults: 51 }, 'InvalidParameterValue'],
    ['an unknown AttributeKey', { StartTime: 0, EndTime: 1, LookupAttributes: [{ AttributeKey: 'Colour', AttributeValue: 'x' }] }, 'InvalidParameterValue'],
    [
      'an oversize AttributeValue',
      { StartTime: 0, EndTime: 1, LookupAttributes: [{ AttributeKey: 'EventName', AttributeValue: 'x'.repeat(300) }] },
      'InvalidParameterValue',
    ],
    ['LookupAttributes not a list', { StartTime: 0, EndTime: 1, LookupAttributes: 'EventName' }, 'InvalidParameter'],
  ])('bad input: %s → %s', async (_what, params, code) => {
    expect(await codeOf(audit.LookUpEvents(params))).toBe(code);
  });
});
