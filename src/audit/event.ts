/**
 * One audit event: who asked for what, from where, on which resource, and how it ended. The fields
 * are fixed: an event is built by copying exactly these fields (never by spreading the caller's
 * object), so nothing else (plaintext, key material, SecretKeys, PINs, request bodies) can reach the
 * trail. There is deliberately no error message field: messages are free text and could one day
 * echo input; the error code says what happened.
 */
import { randomUUID } from 'crypto';
import { isUuid } from '../common/ids';
import { AuditInputError } from './errors';

export interface AuditEvent {
  /** UUID of the event. */
  eventId: string;
  /** When the request was received, unix milliseconds. */
  time: number;
  /** The action (e.g. `Encrypt`), as requested. */
  eventName: string;
  /** The tenant: the root account's uin ('' when the request could not be authenticated). */
  accountUin: string;
  /** The acting uin: the sub-account's, or the root's own (then equal to `accountUin`). */
  subAccountUin: string;
  /** The API key's SecretId (never its SecretKey). */
  secretId: string;
  sourceIp: string;
  region: string;
  requestId: string;
  /** The key id acted on, or `key/*` for actions on no single key. */
  resource: string;
  /** The Tencent error code, '' on success. */
  errorCode: string;
  /** The API the request was for: `kms.tencentcloudapi.com`, `cam.tencentcloudapi.com`, ... (stored by the trail's query layer). */
  eventSource?: string;
}

/** What the request path hands in; `eventId` and `time` are filled in when absent. */
export type NewAuditEvent = Omit<AuditEvent, 'eventId' | 'time'> & Partial<Pick<AuditEvent, 'eventId' | 'time'>>;

/** The chain position of a stored event; see chain.ts. */
export interface ChainLink {
  /** 1, 2, 3, ... without gaps. */
  seq: number;
  /** The previous event's hash (64 hex characters; the genesis value for seq 1). */
  prevHash: string;
  /** SHA-256 of prevHash followed by the canonical serialisation (hex). */
  hash: string;
}

export type StoredAuditEvent = AuditEvent & ChainLink;

/** The text fields, in canonical order (the keyword search reads these). */
export const TEXT_FIELDS = [
  'eventId',
  'eventName',
  'accountUin',
  'subAccountUin',
  'secretId',
  'sourceIp',
  'region',
  'requestId',
  'resource',
  'errorCode',
] as const satisfies ReadonlyArray<keyof AuditEvent>;

/** Every event field, in canonical order. */
export const EVENT_FIELDS = ['eventId', 'time', ...TEXT_FIELDS.slice(1)] as const;

/** Every field of a stored event: exactly these, nothing else. */
export const STORED_FIELDS = ['seq', ...EVENT_FIELDS, 'prevHash', 'hash'] as const;

/** Longer values (e.g. an attacker's 10 KB action name) are cut to this many characters. */
export const MAX_FIELD_CHARS = 256;

/** Event times are unix milliseconds below 10^15 (the year 33658): 15 digits, as the Redis indexes store them. */
export const MAX_TIME = 999_999_999_999_999;

export function isTime(v: number): boolean {
  return Number.isSafeInteger(v) && v >= 0 && v <= MAX_TIME;
}

function clip(value: unknown, field: string): string {
  if (typeof value !== 'string') throw new AuditInputError(`audit field ${field} must be a string`);
  return value.length > MAX_FIELD_CHARS ? value.slice(0, MAX_FIELD_CHARS) : value;
}

/**
 * The event to store: exactly the event fields copied from `e` (anything else on the object is
 * ignored), long text cut to MAX_FIELD_CHARS, id and time filled in. Wrong types are a caller bug.
 */
export function toAuditEvent(e: NewAuditEvent, now: () => number): AuditEvent {
  const eventId = e.eventId ?? randomUUID();
  const time = e.time ?? now();
  if (!isUuid(eventId)) throw new AuditInputError(`eventId must be a UUID, got ${JSON.stringify(String(eventId).slice(0, 40))}`);
  if (!isTime(time)) throw new AuditInputError(`time must be unix milliseconds, got ${time}`);
  const text = (field: (typeof TEXT_FIELDS)[number]): string => clip(e[field], field);
  return {
    eventId,
    time,
    eventName: text('eventName'),
    accountUin: text('accountUin'),
    subAccountUin: text('subAccountUin'),
    secretId: text('secretId'),
    sourceIp: text('sourceIp'),
    region: text('region'),
    requestId: text('requestId'),
    resource: text('resource'),
    errorCode: text('errorCode'),
  };
}

/**
 * The canonical serialisation hashed into the chain: a JSON object with `seq` first and then the
 * event fields in EVENT_FIELDS order (JSON.stringify keeps insertion order), no whitespace.
 */
export function canonical(e: AuditEvent, seq: number): string {
  const ordered: Record<string, string | number> = { seq };
  for (const f of EVENT_FIELDS) ordered[f] = e[f];
  return JSON.stringify(ordered);
}

/** A stored event as one JSON document (STORED_FIELDS order): the Redis value and the export line. */
export function storedJson(e: StoredAuditEvent): string {
  const ordered: Record<string, string | number> = {};
  for (const f of STORED_FIELDS) ordered[f] = e[f];
  return JSON.stringify(ordered);
}

/** Parses a stored JSON document; a string says why it is not a stored event (missing, extra or mistyped fields). */
export function parseStored(text: string): StoredAuditEvent | string {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return 'not a JSON object';
  const fields = doc as Record<string, unknown>;
  const extra = Object.keys(fields).filter((k) => !(STORED_FIELDS as readonly string[]).includes(k));
  if (extra.length > 0) return `unexpected fields ${extra.join(', ')}`;
  for (const f of STORED_FIELDS) {
    const want = f === 'seq' || f === 'time' ? 'number' : 'string';
    if (typeof fields[f] !== want) return `field ${f} is missing or not a ${want}`;
  }
  return fields as unknown as StoredAuditEvent;
}
