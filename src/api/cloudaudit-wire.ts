/**
 * The Tencent CloudAudit 2019-03-19 wire for the audit trail: LookUpEvents' parameters to a
 * tenant-scoped lookup (src/audit/lookup.ts), stored events to the SDK model's `Event`, and
 * GetAttributeKey's answer. Pure functions; names as in cloudaudit_models.d.ts. Bad input is a
 * ParamError whose message names the field, never its value.
 */
import type { AuditLog } from '../audit/audit-log';
import { AuditInputError, AuditTokenError } from '../audit/errors';
import type { StoredAuditEvent } from '../audit/event';
import { LookupAttribute, LookupKey, LookupRequest, LookupResult, MAX_LOOKUP_RESULTS, isReadOnlyEvent, resourceTypeOf } from '../audit/lookup';
import type { Caller } from '../kms/key-access';
import { Fields, ParamError } from './params';

/** The request fields, for the cloudaudit service's schema table (shape and unknown fields are checked there). */
export const LOOKUP_EVENTS_FIELDS = {
  StartTime: { kind: 'integer', required: true },
  EndTime: { kind: 'integer', required: true },
  LookupAttributes: {
    kind: 'array',
    of: { kind: 'object', fields: { AttributeKey: { kind: 'string', required: true }, AttributeValue: { kind: 'string' } } },
  },
  NextToken: { kind: 'string' },
  MaxResults: { kind: 'integer' },
  Mode: { kind: 'string' },
} as const satisfies Fields;

export const GET_ATTRIBUTE_KEY_FIELDS = { WebsiteType: { kind: 'string' } } as const satisfies Fields;

/** MaxResults when the request has none. */
export const DEFAULT_MAX_RESULTS = 10;
/** The longest AttributeValue and NextToken accepted (longer ones can match nothing stored: fields are cut at 256). */
export const MAX_ATTRIBUTE_VALUE_CHARS = 256;
export const MAX_NEXT_TOKEN_CHARS = 256;
/** The latest StartTime / EndTime, unix seconds (stored times are below 10^15 ms). */
const MAX_SECONDS = 999_999_999_999;

/** LookupAttributes' keys: the audit layer's, and the SDK's names for two of them. */
const WIRE_KEYS: Readonly<Record<string, LookupKey>> = {
  RequestId: 'RequestId',
  EventName: 'EventName',
  ReadOnly: 'ReadOnly',
  ActionType: 'ReadOnly',
  Username: 'Username',
  PrincipalId: 'Username',
  ResourceType: 'ResourceType',
  ResourceName: 'ResourceName',
  AccessKeyId: 'AccessKeyId',
  EventId: 'EventId',
};

const invalid = (field: string, message: string): ParamError => new ParamError('InvalidParameterValue', field, message);

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A field of the body: undefined when absent (or null), else of the JSON type asked for (InvalidParameter otherwise). */
function field<T extends 'string' | 'number'>(body: Record<string, unknown>, name: string, type: T): (T extends 'string' ? string : number) | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== type || (type === 'number' && !Number.isSafeInteger(v))) {
    throw new ParamError('InvalidParameter', name, `${name} must be ${type === 'string' ? 'a string' : 'an integer'}`);
  }
  return v as T extends 'string' ? string : number;
}

function seconds(body: Record<string, unknown>, name: string): number {
  const v = field(body, name, 'number');
  if (v === undefined) throw new ParamError('MissingParameter', name, `${name} is required`);
  if (v < 0 || v > MAX_SECONDS) throw invalid(name, `${name} must be unix seconds, 0..${MAX_SECONDS}`);
  return v;
}

/** One LookupAttribute to the audit layer's attribute; Username 'root' is the tenant's own uin. */
function attributeFromWire(v: unknown, tenant: string): LookupAttribute {
  const path = 'LookupAttributes.0';
  if (!isRecord(v)) throw new ParamError('InvalidParameter', path, `${path} must be an object`);
  const key = field(v, 'AttributeKey', 'string');
  const value = field(v, 'AttributeValue', 'string');
  if (key === undefined) throw new ParamError('MissingParameter', `${path}.AttributeKey`, `${path}.AttributeKey is required`);
  if (value === undefined) throw new ParamError('MissingParameter', `${path}.AttributeValue`, `${path}.AttributeValue is required`);
  const mapped = Object.prototype.hasOwnProperty.call(WIRE_KEYS, key) ? WIRE_KEYS[key] : undefined;
  if (mapped === undefined) throw invalid(`${path}.AttributeKey`, `${path}.AttributeKey must be one of ${Object.keys(WIRE_KEYS).join(', ')}`);
  if (value.length > MAX_ATTRIBUTE_VALUE_CHARS)
    throw invalid(`${path}.AttributeValue`, `${path}.AttributeValue must be at most ${MAX_ATTRIBUTE_VALUE_CHARS} characters`);
  if (mapped === 'ReadOnly') return { key: mapped, value: readOnlyValue(key, value, `${path}.AttributeValue`) };
  if (mapped === 'Username' && value === 'root') return { key: mapped, value: tenant };
  return { key: mapped, value };
}

/** ReadOnly takes 'true' / 'false'; ActionType (the SDK's name) 'Read' / 'Write'. */
function readOnlyValue(key: string, value: string, path: string): string {
  const values: Record<string, string> = key === 'ActionType' ? { Read: 'true', Write: 'false' } : { true: 'true', false: 'false' };
  const mapped = Object.prototype.hasOwnProperty.call(values, value) ? values[value] : undefined;
  if (mapped === undefined) throw invalid(path, `${path} must be ${Object.keys(values).join(' or ')} for ${key}`);
  return mapped;
}

/**
 * LookUpEvents' parameters (the parsed JSON body) to the caller's lookup. StartTime and EndTime
 * are unix seconds, both included (EndTime to its last millisecond); at most one LookupAttribute.
 */
export function lookUpEventsRequest(body: unknown, tenant: string): LookupRequest {
  if (!isRecord(body)) throw new ParamError('InvalidParameter', undefined, 'the request body must be a JSON object');
  const startTime = seconds(body, 'StartTime');
  const endTime = seconds(body, 'EndTime');
  if (startTime > endTime) throw invalid('StartTime', 'StartTime must not be after EndTime');
  const maxResults = field(body, 'MaxResults', 'number') ?? DEFAULT_MAX_RESULTS;
  if (maxResults < 1 || maxResults > MAX_LOOKUP_RESULTS) throw invalid('MaxResults', `MaxResults must be 1..${MAX_LOOKUP_RESULTS}`);
  const mode = field(body, 'Mode', 'string');
  if (mode !== undefined && mode !== 'standard' && mode !== 'quick') throw invalid('Mode', 'Mode must be standard or quick');
  const nextToken = field(body, 'NextToken', 'string');
  if (nextToken !== undefined && (nextToken.length === 0 || nextToken.length > MAX_NEXT_TOKEN_CHARS)) {
    throw invalid('NextToken', 'NextToken is not a token of this service');
  }
  const attributes = body.LookupAttributes ?? [];
  if (!Array.isArray(attributes)) throw new ParamError('InvalidParameter', 'LookupAttributes', 'LookupAttributes must be an array');
  if (attributes.length > 1) throw invalid('LookupAttributes', 'LookupAttributes must have at most one element here');
  const r: LookupRequest = { tenant, startTime: startTime * 1000, endTime: endTime * 1000 + 999, maxResults };
  if (attributes.length === 1) r.attribute = attributeFromWire(attributes[0], tenant);
  if (nextToken !== undefined) r.nextToken = nextToken;
  return r;
}

/** The SDK model's Event (every field this trail can fill). */
export interface WireEvent {
  EventId: string;
  Username: string;
  EventTime: string;
  CloudAuditEvent: string;
  ErrorCode: number;
  EventName: string;
  SecretId: string;
  EventSource: string;
  RequestID: string;
  ResourceRegion: string;
  AccountID: number;
  SourceIPAddress: string;
  Resources: { ResourceType: string; ResourceName: string };
  EventRegion: string;
}

const uinNumber = (uin: string): number => (/^\d{1,15}$/.test(uin) ? Number(uin) : 0);
const isRoot = (e: StoredAuditEvent): boolean => e.subAccountUin === e.accountUin;

/**
 * The event's details as CloudAudit's JSON document: only fields of the stored event, which by
 * construction holds no secret, plaintext or key material (event.ts); no request parameters.
 */
export function cloudAuditEventJson(e: StoredAuditEvent): string {
  return JSON.stringify({
    eventVersion: 2,
    eventId: e.eventId,
    eventTime: new Date(e.time).toISOString(),
    eventName: e.eventName,
    eventSource: e.eventSource,
    eventRegion: e.region,
    readOnly: isReadOnlyEvent(e.eventName),
    userIdentity: {
      type: isRoot(e) ? 'root' : 'CAMUser',
      accountId: e.accountUin,
      principalId: e.subAccountUin,
      secretId: e.secretId,
    },
    sourceIPAddress: e.sourceIp,
    requestID: e.requestId,
    resources: { resourceType: resourceTypeOf(e.eventSource), resourceName: e.resource },
    errorCode: e.errorCode === '' ? 0 : 1,
    apiErrorCode: e.errorCode,
  });
}

/** A stored event as the SDK's Event. ErrorCode is 0 on success and 1 on any error (the Tencent code is in CloudAuditEvent). */
export function eventToWire(e: StoredAuditEvent): WireEvent {
  return {
    EventId: e.eventId,
    Username: isRoot(e) ? 'root' : e.subAccountUin,
    EventTime: String(Math.floor(e.time / 1000)),
    CloudAuditEvent: cloudAuditEventJson(e),
    ErrorCode: e.errorCode === '' ? 0 : 1,
    EventName: e.eventName,
    SecretId: e.secretId,
    EventSource: e.eventSource,
    RequestID: e.requestId,
    ResourceRegion: e.region,
    AccountID: uinNumber(e.accountUin),
    SourceIPAddress: e.sourceIp,
    Resources: { ResourceType: resourceTypeOf(e.eventSource), ResourceName: e.resource },
    EventRegion: e.region,
  };
}

export interface LookUpEventsAnswer {
  Events: WireEvent[];
  ListOver: boolean;
  NextToken?: string;
}

export function lookUpEventsAnswer(r: LookupResult): LookUpEventsAnswer {
  const answer: LookUpEventsAnswer = { Events: r.events.map(eventToWire), ListOver: r.listOver };
  if (r.nextToken !== undefined) answer.NextToken = r.nextToken;
  return answer;
}

/**
 * The whole LookUpEvents action for a handler: the caller's own events only (its tenant), bad
 * parameters and foreign NextTokens as InvalidParameterValue.
 */
export async function lookUpEventsAction(audit: Pick<AuditLog, 'lookUpEvents'>, caller: Pick<Caller, 'tenant'>, body: unknown): Promise<LookUpEventsAnswer> {
  const request = lookUpEventsRequest(body, caller.tenant);
  try {
    return lookUpEventsAnswer(await audit.lookUpEvents(request));
  } catch (e) {
    if (e instanceof AuditTokenError) throw invalid('NextToken', e.message);
    if (e instanceof AuditInputError) throw invalid('LookupAttributes', e.message);
    throw e;
  }
}

export interface AttributeKeyDetail {
  LabelType: string;
  Starter: string;
  Order: number;
  Value: string;
  Label: string;
}

const ATTRIBUTE_LABELS: ReadonlyArray<[LookupKey, string, string]> = [
  ['RequestId', '请求 ID', 'Request ID'],
  ['EventName', '事件名称', 'Event name'],
  ['ReadOnly', '只读', 'Read-only'],
  ['Username', '用户名', 'Username'],
  ['ResourceType', '资源类型', 'Resource type'],
  ['ResourceName', '资源名称', 'Resource name'],
  ['AccessKeyId', '密钥 ID', 'Access key ID'],
  ['EventId', '事件 ID', 'Event ID'],
];

/** GetAttributeKey: the lookup attributes served, labelled in Chinese (WebsiteType zh, the default) or English (en). */
export function getAttributeKeyAnswer(body: unknown): { AttributeKeyDetails: AttributeKeyDetail[] } {
  const site = isRecord(body) ? field(body, 'WebsiteType', 'string') : undefined;
  if (site !== undefined && site !== 'zh' && site !== 'en') throw invalid('WebsiteType', 'WebsiteType must be zh or en');
  return {
    AttributeKeyDetails: ATTRIBUTE_LABELS.map(([Value, zh, en], i) => ({
      LabelType: Value === 'ReadOnly' ? 'select' : 'text',
      Starter: '',
      Order: i + 1,
      Value,
      Label: site === 'en' ? en : zh,
    })),
  };
}
