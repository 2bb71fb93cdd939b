/**
 * Audit queries: filters, their checks, the in-memory match (the reference both backends agree
 * with), and the paging cursor. Results are ordered by (time, seq); a cursor is the position of the
 * last event a page looked at, and the next page starts strictly after it.
 */
import { AuditEvent, StoredAuditEvent, TEXT_FIELDS, isTime } from './event';
import { AuditInputError } from './errors';

export interface AuditFilter {
  /** Events at or after this time (unix ms). */
  from?: number;
  /** Events at or before this time (unix ms). */
  to?: number;
  eventName?: string;
  accountUin?: string;
  resource?: string;
  /** A case-sensitive substring of any text field; '' matches everything. */
  keyword?: string;
}

export interface AuditQuery extends AuditFilter {
  /** 1..MAX_QUERY_LIMIT */
  limit: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
}

export interface AuditPage {
  events: StoredAuditEvent[];
  /**
   * Set when there may be more: pass it as `cursor`. A page may hold fewer than `limit` events (even
   * none) and still have a cursor; only its absence means the end.
   */
  nextCursor?: string;
}

/** A position in (time, seq) order. */
export interface Position {
  time: number;
  seq: number;
}

export const MAX_QUERY_LIMIT = 1000;

const CURSOR = /^(\d{1,15})-(\d{1,16})$/;

export function encodeCursor(p: Position): string {
  return `${p.time}-${p.seq}`;
}

export function decodeCursor(cursor: string): Position {
  const m = CURSOR.exec(cursor);
  if (m === null) throw new AuditInputError('cursor was not made by this audit log');
  return { time: Number(m[1]), seq: Number(m[2]) };
}

function checkTime(name: string, v: number | undefined): void {
  if (v !== undefined && !isTime(v)) throw new AuditInputError(`${name} must be unix milliseconds, got ${v}`);
}

export function checkFilter(f: AuditFilter): void {
  checkTime('from', f.from);
  checkTime('to', f.to);
  for (const k of ['eventName', 'accountUin', 'resource', 'keyword'] as const) {
    if (f[k] !== undefined && typeof f[k] !== 'string') throw new AuditInputError(`${k} must be a string`);
  }
}

/** Checks a query; returns its decoded cursor, if any. */
export function checkQuery(q: AuditQuery): Position | undefined {
  checkFilter(q);
  if (!Number.isInteger(q.limit) || q.limit < 1 || q.limit > MAX_QUERY_LIMIT) {
    throw new AuditInputError(`limit must be an integer in 1..${MAX_QUERY_LIMIT}, got ${q.limit}`);
  }
  return q.cursor === undefined ? undefined : decodeCursor(q.cursor);
}

export function matchesKeyword(e: AuditEvent, keyword: string | undefined): boolean {
  return keyword === undefined || keyword === '' || TEXT_FIELDS.some((f) => e[f].includes(keyword));
}

/** Whether `e` passes every filter of `f`. */
export function matches(e: AuditEvent, f: AuditFilter): boolean {
  return (
    (f.from === undefined || e.time >= f.from) &&
    (f.to === undefined || e.time <= f.to) &&
    (f.eventName === undefined || e.eventName === f.eventName) &&
    (f.accountUin === undefined || e.accountUin === f.accountUin) &&
    (f.resource === undefined || e.resource === f.resource) &&
    matchesKeyword(e, f.keyword)
  );
}
