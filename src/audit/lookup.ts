/**
 * LookUpEvents: one tenant's events in a time range, newest first, optionally narrowed by one
 * attribute, paged with a NextToken. The plan (which index a backend walks, what is checked on the
 * events it returns) and the paging loop are here, shared by both backends; a backend only scans an
 * index (`AuditBackend.scanTenant`). Every returned event is checked again here against the tenant
 * and the range, so tenant scoping never rests on an index alone. See docs/audit.md "LookUpEvents".
 */
import { AuditBackend, TenantScan } from './backend';
import { DEFAULT_EVENT_SOURCE, StoredAuditEvent, isTime } from './event';
import { AuditInputError } from './errors';
import { LinkMac } from './link-mac';
import { Position } from './query';
import { openToken, sealToken } from './lookup-token';

export const LOOKUP_KEYS = ['RequestId', 'EventName', 'ReadOnly', 'Username', 'ResourceType', 'ResourceName', 'AccessKeyId', 'EventId'] as const;
export type LookupKey = (typeof LOOKUP_KEYS)[number];

export interface LookupAttribute {
  key: LookupKey;
  /** Exact match; Username is the acting uin, ReadOnly 'true' or 'false', ResourceType a product ('kms', 'cam'). */
  value: string;
}

export interface LookupRequest {
  /** The caller's tenant (root account uin); only its events are read. */
  tenant: string;
  /** Inclusive range, unix ms. */
  startTime: number;
  endTime: number;
  attribute?: LookupAttribute;
  /** 1..MAX_LOOKUP_RESULTS */
  maxResults: number;
  /** `nextToken` of the previous page of the same lookup. */
  nextToken?: string;
}

export interface LookupResult {
  /** Newest first: (time, seq) descending. */
  events: StoredAuditEvent[];
  /** Set exactly when `listOver` is false. */
  nextToken?: string;
  /** True: nothing older matches. False: call again with `nextToken` (the next page may be short, even empty). */
  listOver: boolean;
}

export const MAX_LOOKUP_RESULTS = 50;

/** The attributes a backend has an index for, and the stored field each one matches. */
export const INDEXED_ATTRIBUTES = {
  RequestId: 'requestId',
  EventName: 'eventName',
  Username: 'subAccountUin',
  ResourceName: 'resource',
  AccessKeyId: 'secretId',
  EventId: 'eventId',
} as const satisfies Partial<Record<LookupKey, keyof StoredAuditEvent>>;
export type IndexedField = (typeof INDEXED_ATTRIBUTES)[keyof typeof INDEXED_ATTRIBUTES];
export const INDEXED_FIELDS = Object.values(INDEXED_ATTRIBUTES) as IndexedField[];

/** Index entries read per backend call when events are checked here (ReadOnly, ResourceType), and at most per lookup. */
export const SCAN_BATCH = 500;
export const MAX_SCAN = 10_000;

const READ_ONLY_PREFIXES = ['Describe', 'Get', 'List', 'LookUp'];
/** Cryptographic operations that store nothing (GenerateDataKey may store a hosted data key: not read-only). */
const READ_ONLY_OPERATIONS = new Set([
  'Encrypt',
  'Decrypt',
  'ReEncrypt',
  'GenerateRandom',
  'SignByAsymmetricKey',
  'VerifyByAsymmetricKey',
  'AsymmetricRsaDecrypt',
  'AsymmetricSm2Decrypt',
]);

/** Whether an action changes nothing stored: Describe*, Get*, List*, LookUp*, and the operations above. */
export function isReadOnlyEvent(eventName: string): boolean {
  return READ_ONLY_OPERATIONS.has(eventName) || READ_ONLY_PREFIXES.some((p) => eventName.startsWith(p) && /^[A-Z]/.test(eventName.slice(p.length)));
}

/** The product of an event's service: `kms` for `kms.tencentcloudapi.com`. */
export function resourceTypeOf(eventSource: string): string {
  return (eventSource || DEFAULT_EVENT_SOURCE).split('.')[0];
}

interface Plan {
  index?: TenantScan['index'];
  /** What is checked on the events the index returns (beyond tenant and range, always checked). */
  keep: (e: StoredAuditEvent) => boolean;
  /** Events are checked here, so a backend call reads a fixed batch rather than just one page. */
  filtered: boolean;
}

function planOf(a: LookupAttribute | undefined): Plan {
  if (a === undefined) return { keep: () => true, filtered: false };
  if (a.key === 'ReadOnly') {
    const want = a.value === 'true';
    return { keep: (e) => isReadOnlyEvent(e.eventName) === want, filtered: true };
  }
  if (a.key === 'ResourceType') return { keep: (e) => resourceTypeOf(e.eventSource) === a.value, filtered: true };
  const field = INDEXED_ATTRIBUTES[a.key];
  return { index: { field, value: a.value }, keep: (e) => e[field] === a.value, filtered: false };
}

/** Checks a lookup; AuditInputError names what is wrong. */
export function checkLookup(r: LookupRequest): void {
  if (typeof r.tenant !== 'string' || r.tenant === '') throw new AuditInputError('tenant must be a non-empty account uin');
  for (const [name, v] of [
    ['startTime', r.startTime],
    ['endTime', r.endTime],
  ] as const) {
    if (!isTime(v)) throw new AuditInputError(`${name} must be unix milliseconds, got ${v}`);
  }
  if (r.startTime > r.endTime) throw new AuditInputError('startTime must not be after endTime');
  if (!Number.isInteger(r.maxResults) || r.maxResults < 1 || r.maxResults > MAX_LOOKUP_RESULTS) {
    throw new AuditInputError(`maxResults must be an integer in 1..${MAX_LOOKUP_RESULTS}, got ${r.maxResults}`);
  }
  const a = r.attribute;
  if (a === undefined) return;
  if (!(LOOKUP_KEYS as readonly string[]).includes(a.key)) throw new AuditInputError(`attribute key must be one of ${LOOKUP_KEYS.join(', ')}`);
  if (typeof a.value !== 'string') throw new AuditInputError(`the value of attribute ${a.key} must be a string`);
  if (a.key === 'ReadOnly' && a.value !== 'true' && a.value !== 'false') throw new AuditInputError("the value of attribute ReadOnly must be 'true' or 'false'");
}

/** What a token is bound to: the tenant and every filter of the lookup (a token of another lookup is refused). */
export function lookupScope(r: LookupRequest): string {
  return JSON.stringify([r.tenant, r.startTime, r.endTime, r.attribute?.key ?? null, r.attribute?.value ?? null]);
}

const positionOf = (e: StoredAuditEvent): Position => ({ time: e.time, seq: e.seq });

/** One page of a lookup over `backend`; tokens are sealed and opened with `mac` (the HSM's audit-link MAC). */
export async function lookUp(backend: AuditBackend, mac: LinkMac, r: LookupRequest): Promise<LookupResult> {
  checkLookup(r);
  const plan = planOf(r.attribute);
  const scope = lookupScope(r);
  let before = r.nextToken === undefined ? undefined : await openToken(mac, r.nextToken, scope);
  const inScope = (e: StoredAuditEvent): boolean =>
    e.accountUin === r.tenant &&
    e.time >= r.startTime &&
    e.time <= r.endTime &&
    (before === undefined || e.time < before.time || (e.time === before.time && e.seq < before.seq));
  const events: StoredAuditEvent[] = [];
  const more = async (at: Position): Promise<LookupResult> => ({ events, nextToken: await sealToken(mac, at, scope), listOver: false });
  for (let scanned = 0; ;) {
    const limit = plan.filtered ? SCAN_BATCH : r.maxResults - events.length + 1;
    const page = await backend.scanTenant({ tenant: r.tenant, from: r.startTime, to: r.endTime, index: plan.index, before, limit });
    for (const e of page.events) {
      if (!inScope(e) || !plan.keep(e)) continue;
      if (events.length === r.maxResults) return more(positionOf(events[events.length - 1]));
      events.push(e);
    }
    scanned += limit;
    if (page.end || page.last === undefined) return { events, listOver: true };
    before = page.last;
    if (scanned >= MAX_SCAN) return more(before);
  }
}
