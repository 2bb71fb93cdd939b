import { createHmac, randomUUID } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  DEFAULT_MAX_RESULTS,
  GET_ATTRIBUTE_KEY_FIELDS,
  LOOKUP_EVENTS_FIELDS,
  cloudAuditEventJson,
  eventToWire,
  getAttributeKeyAnswer,
  lookUpEventsAction,
  lookUpEventsRequest,
} from '../../../src/api/cloudaudit-wire';
import { ParamError } from '../../../src/api/params';
import { LinkMac } from '../../../src/audit/link-mac';
import { NewAuditEvent, StoredAuditEvent, toAuditEvent } from '../../../src/audit/event';
import { SqliteAuditLog } from '../../../src/audit/sqlite-audit-log';

const SDK = path.dirname(require.resolve('tencentcloud-sdk-nodejs/package.json'));
const MODELS = fs.readFileSync(path.join(SDK, 'tencentcloud/services/cloudaudit/v20190319/cloudaudit_models.d.ts'), 'utf8');

/** `interface X` of cloudaudit_models.d.ts: field → type. */
function sdkInterface(name: string): Map<string, string> {
  const m = new RegExp(`export interface ${name} \\{([\\s\\S]*?)\\n\\}`).exec(MODELS);
  if (!m) throw new Error(`no ${name} in the SDK models`);
  return new Map([...m[1].matchAll(/^\s+(\w+)\??:\s*([^;]+);/gm)].map((f) => [f[1], f[2]]));
}
const jsType = (sdk: string): string => (sdk === 'number' ? 'number' : sdk === 'string' ? 'string' : sdk === 'boolean' ? 'boolean' : 'object');

const T = 1_700_000_123_456;
function stored(over: Partial<NewAuditEvent> = {}, seq = 1): StoredAuditEvent {
  const e = toAuditEvent(
    {
      eventName: 'Encrypt',
      accountUin: '100001',
      subAccountUin: '100001',
      secretId: 'AKIDexample',
      sourceIp: '10.1.2.3',
      region: 'ap-guangzhou',
      requestId: randomUUID(),
      resource: randomUUID(),
      errorCode: '',
      time: T,
      ...over,
    },
    () => T,
  );
  return { ...e, seq, prevHash: '0'.repeat(64), hash: 'a'.repeat(64) };
}

function paramError(fn: () => unknown): { code: string; field: string | undefined } | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof ParamError) return { code: e.code, field: e.field };
    throw e;
  }
  return undefined;
}

describe('CloudAudit request fields', () => {
  test('LookUpEvents and GetAttributeKey declare the SDK models’ request fields with their JSON types', () => {
    for (const [fields, name] of [
      [LOOKUP_EVENTS_FIELDS, 'LookUpEventsRequest'],
      [GET_ATTRIBUTE_KEY_FIELDS, 'GetAttributeKeyRequest'],
    ] as const) {
      const sdk = sdkInterface(name);
      expect(Object.keys(fields).sort()).toEqual([...sdk.keys()].sort());
      for (const [k, spec] of Object.entries(fields)) {
        const want = jsType(sdk.get(k) as string);
        expect([k, spec.kind === 'integer' ? 'number' : spec.kind === 'string' ? 'string' : 'object']).toEqual([k, want]);
      }
    }
  });
});

describe('LookUpEvents parameters', () => {
  test('map onto a lookup of the caller’s tenant: seconds to an inclusive millisecond range, one attribute, defaults', () => {
    expect(lookUpEventsRequest({ StartTime: 1700000000, EndTime: 1700000100 }, '100')).toEqual({
      tenant: '100',
      startTime: 1700000000000,
      endTime: 1700000100999,
      maxResults: DEFAULT_MAX_RESULTS,
    });
    const r = lookUpEventsRequest(
      {
        StartTime: 1,
        EndTime: 2,
        MaxResults: 50,
        NextToken: 'abc',
        Mode: 'quick',
        LookupAttributes: [{ AttributeKey: 'EventName', AttributeValue: 'Decrypt' }],
      },
      '100',
    );
    expect(r).toMatchObject({ maxResults: 50, nextToken: 'abc', attribute: { key: 'EventName', value: 'Decrypt' } });
    const attr = (AttributeKey: string, AttributeValue: string) =>
      lookUpEventsRequest({ StartTime: 1, EndTime: 2, LookupAttributes: [{ AttributeKey, AttributeValue }] }, '100').attribute;
    expect(attr('Username', 'root')).toEqual({ key: 'Username', value: '100' });
    expect(attr('Username', '100007')).toEqual({ key: 'Username', value: '100007' });
    expect(attr('PrincipalId', '100007')).toEqual({ key: 'Username', value: '100007' });
    expect(attr('ActionType', 'Read')).toEqual({ key: 'ReadOnly', value: 'true' });
    expect(attr('ActionType', 'Write')).toEqual({ key: 'ReadOnly', value: 'false' });
    expect(attr('ReadOnly', 'false')).toEqual({ key: 'ReadOnly', value: 'false' });
    for (const k of ['RequestId', 'ResourceType', 'ResourceName', 'AccessKeyId', 'EventId']) expect(attr(k, 'v')).toEqual({ key: k, value: 'v' });
  });

  test.each([
    [{ EndTime: 2 }, 'MissingParameter', 'StartTime'],
    [{ StartTime: 1 }, 'MissingParameter', 'EndTime'],
    [{ StartTime: '1', EndTime: 2 }, 'InvalidParameter', 'StartTime'],
    [{ StartTime: 1.5, EndTime: 2 }, 'InvalidParameter', 'StartTime'],
    [{ StartTime: -1, EndTime: 2 }, 'InvalidParameterValue', 'StartTime'],
    [{ StartTime: 1, EndTime: 1_700_000_000_000_000 }, 'InvalidParameterValue', 'EndTime'],
    [{ StartTime: 3, EndTime: 2 }, 'InvalidParameterValue', 'StartTime'],
    [{ StartTime: 1, EndTime: 2, MaxResults: 0 }, 'InvalidParameterValue', 'MaxResults'],
    [{ StartTime: 1, EndTime: 2, MaxResults: 51 }, 'InvalidParameterValue', 'MaxResults'],
    [{ StartTime: 1, EndTime: 2, MaxResults: '5' }, 'InvalidParameter', 'MaxResults'],
    [{ StartTime: 1, EndTime: 2, Mode: 'fast' }, 'InvalidParameterValue', 'Mode'],
    [{ StartTime: 1, EndTime: 2, NextToken: 'x'.repeat(300) }, 'InvalidParameterValue', 'NextToken'],
    [{ StartTime: 1, EndTime: 2, NextToken: 7 }, 'InvalidParameter', 'NextToken'],
    [{ StartTime: 1, EndTime: 2, LookupAttributes: {} }, 'InvalidParameter', 'LookupAttributes'],
    [{ StartTime: 1, EndTime: 2, LookupAttributes: ['x'] }, 'InvalidParameter', 'LookupAttributes.0'],
    [{ StartTime: 1, EndTime: 2, LookupAttributes: [{ AttributeValue: 'x' }] }, 'MissingParameter', 'LookupAttributes.0.AttributeKey'],
    [{ StartTime: 1, EndTime: 2, LookupAttributes: [{ AttributeKey: 'EventName' }] }, 'MissingParameter', 'LookupAttributes.0.AttributeValue'],
    [
      { StartTime: 1, EndTime: 2, LookupAttributes: [{ AttributeKey: 'Tags', AttributeValue: 'x' }] },
      'InvalidParameterValue',
      'LookupAttributes.0.AttributeKey',
    ],
    [
      { StartTime: 1, EndTime: 2, LookupAttributes: [{ AttributeKey: 'toString', AttributeValue: 'x' }] },
      'InvalidParameterValue',
      'LookupAttributes.0.AttributeKey',
    ],
    [
      { StartTime: 1, EndTime: 2, LookupAttributes: [{ AttributeKey: 'ReadOnly', AttributeValue: 'yes' }] },
      'InvalidParameterValue',
      'LookupAttributes.0.AttributeValue',
    ],
    [
      { StartTime: 1, EndTime: 2, LookupAttributes: [{ AttributeKey: 'EventName', AttributeValue: 'E'.repeat(257) }] },
      'InvalidParameterValue',
      'LookupAttributes.0.AttributeValue',
    ],
    [
      {
        StartTime: 1,
        EndTime: 2,
        LookupAttributes: [
          { AttributeKey: 'EventName', AttributeValue: 'a' },
          { AttributeKey: 'EventName', AttributeValue: 'b' },
        ],
      },
      'InvalidParameterValue',
      'LookupAttributes',
    ],
    ['not an object', 'InvalidParameter', undefined],
  ])('%j → %s naming %s', (body, code, field) => {
    expect(paramError(() => lookUpEventsRequest(body, '100'))).toEqual({ code, field });
  });
});

describe('events on the wire', () => {
  test('every field of the SDK model’s Event that the trail can fill, with its type', () => {
    const w = eventToWire(stored({ subAccountUin: '100007', errorCode: 'UnauthorizedOperation', eventSource: 'cam.tencentcloudapi.com' }));
    const sdk = sdkInterface('Event');
    for (const [k, v] of Object.entries(w)) expect([k, typeof v]).toEqual([k, jsType(sdk.get(k) ?? 'missing from the SDK model')]);
    const resource = sdkInterface('Resource');
    expect(Object.keys(w.Resources).sort()).toEqual([...resource.keys()].sort());
    expect(w).toMatchObject({
      Username: '100007',
      EventTime: String(Math.floor(T / 1000)),
      ErrorCode: 1,
      EventSource: 'cam.tencentcloudapi.com',
      AccountID: 100001,
      ResourceRegion: 'ap-guangzhou',
      SourceIPAddress: '10.1.2.3',
      Resources: { ResourceType: 'cam' },
    });
  });

  test('the root account is "root"; success is ErrorCode 0; an event without a source is kms', () => {
    const e = stored();
    expect(eventToWire(e)).toMatchObject({
      Username: 'root',
      ErrorCode: 0,
      EventSource: 'kms.tencentcloudapi.com',
      Resources: { ResourceType: 'kms', ResourceName: e.resource },
    });
  });

  test('CloudAuditEvent is a JSON document of the stored fields only (no request body, no secret)', () => {
    const e = stored({ subAccountUin: '100007', errorCode: 'ResourceUnavailable.CmkDisabled' });
    const doc = JSON.parse(cloudAuditEventJson(e)) as Record<string, unknown>;
    expect(doc).toMatchObject({
      eventId: e.eventId,
      eventName: 'Encrypt',
      readOnly: true,
      userIdentity: { type: 'CAMUser', accountId: '100001', principalId: '100007', secretId: 'AKIDexample' },
      requestID: e.requestId,
      errorCode: 1,
      apiErrorCode: 'ResourceUnavailable.CmkDisabled',
    });
    const values = new Set(Object.values(e).map(String));
    const leaves = (v: unknown): unknown[] => (typeof v === 'object' && v !== null ? Object.values(v).flatMap(leaves) : [v]);
    const derived = new Set([doc.eventTime, doc.readOnly, doc.errorCode, 'CAMUser', 'kms', 2]);
    for (const leaf of leaves(doc)) expect({ leaf, known: values.has(String(leaf)) || derived.has(leaf as string) }).toEqual({ leaf, known: true });
  });

  test('GetAttributeKey lists the served keys, labelled zh by default or en', () => {
    const zh = getAttributeKeyAnswer({});
    expect(zh.AttributeKeyDetails.map((d) => d.Value)).toEqual([
      'RequestId',
      'EventName',
      'ReadOnly',
      'Username',
      'ResourceType',
      'ResourceName',
      'AccessKeyId',
      'EventId',
    ]);
    expect(zh.AttributeKeyDetails[1]).toEqual({ LabelType: 'text', Starter: '', Order: 2, Value: 'EventName', Label: '事件名称' });
    expect(getAttributeKeyAnswer({ WebsiteType: 'en' }).AttributeKeyDetails[1].Label).toBe('Event name');
    expect(Object.keys(zh.AttributeKeyDetails[0]).sort()).toEqual([...sdkInterface('AttributeKeyDetail').keys()].sort());
    expect(paramError(() => getAttributeKeyAnswer({ WebsiteType: 'fr' }))).toEqual({ code: 'InvalidParameterValue', field: 'WebsiteType' });
  });
});

describe('lookUpEventsAction over a real SQLite trail', () => {
  const mac: LinkMac = { mac: async (d) => createHmac('sha256', Buffer.alloc(32, 3)).update(d).digest() };
  let dir: string;
  let log: SqliteAuditLog;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-cloudaudit-'));
    log = new SqliteAuditLog(path.join(dir, 'kms.db'), { linkMac: mac });
    for (let i = 0; i < 12; i++) {
      const tenant = i % 3 === 0 ? '200' : '100';
      log.append({ ...stored({ accountUin: tenant, subAccountUin: tenant, time: T + i * 1000, eventName: i % 2 ? 'Decrypt' : 'ListKeys' }) });
    }
    await log.flush();
  });

  afterAll(async () => {
    await log.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const body = (over: object = {}) => ({ StartTime: Math.floor(T / 1000), EndTime: Math.floor(T / 1000) + 60, ...over });

  test("pages through the caller's own events, newest first; the other tenant's never appear", async () => {
    const seen: string[] = [];
    let token: string | undefined;
    for (;;) {
      const page = await lookUpEventsAction(log, { tenant: '100' }, body({ MaxResults: 3, ...(token ? { NextToken: token } : {}) }));
      for (const e of page.Events) expect(e.AccountID).toBe(100);
      seen.push(...page.Events.map((e) => e.EventTime));
      if (page.ListOver) {
        expect(page.NextToken).toBeUndefined();
        break;
      }
      token = page.NextToken;
    }
    expect(seen).toHaveLength(8);
    expect([...seen].sort().reverse()).toEqual(seen);
    const decrypts = await lookUpEventsAction(log, { tenant: '100' }, body({ LookupAttributes: [{ AttributeKey: 'EventName', AttributeValue: 'Decrypt' }] }));
    expect(decrypts.Events.map((e) => e.EventName)).toEqual(Array(decrypts.Events.length).fill('Decrypt'));
    const reads = await lookUpEventsAction(log, { tenant: '100' }, body({ LookupAttributes: [{ AttributeKey: 'ReadOnly', AttributeValue: 'true' }] }));
    expect(reads.Events).toHaveLength(8);
  });

  test("another tenant's NextToken, a changed one, or junk is InvalidParameterValue naming NextToken", async () => {
    const page = await lookUpEventsAction(log, { tenant: '100' }, body({ MaxResults: 2 }));
    const token = page.NextToken as string;
    const changed = token.slice(0, -2) + (token.endsWith('AA') ? 'BB' : 'AA');
    for (const [tenant, t] of [
      ['200', token],
      ['100', changed],
      ['100', 'garbage'],
    ]) {
      await expect(lookUpEventsAction(log, { tenant }, body({ MaxResults: 2, NextToken: t }))).rejects.toMatchObject({
        code: 'InvalidParameterValue',
        field: 'NextToken',
      });
    }
  });
});
