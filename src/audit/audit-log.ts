/**
 * The audit trail as the rest of the KMS sees it: one event per request, appended without waiting,
 * written in group commits, hash-chained, queried and exported. Backends: sqlite-audit-log.ts (the
 * key store's database file) and redis-audit-log.ts (the key store's Redis).
 */
import { ChainHead, VerifyResult } from './chain';
import { NewAuditEvent } from './event';
import { LookupRequest, LookupResult } from './lookup';
import { AuditFilter, AuditPage, AuditQuery } from './query';

/** For metrics: events waiting in memory, lost (buffer full, or still unwritten at close), and written. */
export interface AuditCounters {
  pending: number;
  dropped: number;
  written: number;
}

export interface VerifyOptions {
  /** A head kept outside the store (from `head()` earlier): the event at its seq must still have its link. */
  anchor?: ChainHead;
  /** More of them (an anchor sink's file); those below the kept trail's start are covered by the archive. */
  anchors?: readonly ChainHead[];
  /**
   * The texts of retention's export files: each is verified, they must join one another from seq 1,
   * and the last must end where the kept trail begins.
   */
  archive?: readonly string[];
}

/** What retention removed: the archived range and the export file that keeps it verifiable. */
export interface RetainedRange {
  from: number;
  to: number;
  /** The export file: a header line (start link and last link), then one stored event per line. */
  text: string;
}

export interface AuditLog {
  /**
   * Buffers the event and returns at once; it is written with the next group commit. Never throws
   * for the store's sake: when writes fail, events wait (bounded) and are retried; past the bound they
   * are counted as dropped. Throws `AuditInputError` only for a malformed event (a caller bug).
   */
  append(e: NewAuditEvent): void;
  /** Writes everything appended before the call; `AuditWriteError` if a write fails (the events stay buffered). */
  flush(): Promise<void>;
  /** Events matching `q` in (time, seq) order, one page at a time. */
  query(q: AuditQuery): Promise<AuditPage>;
  /**
   * CloudAudit's LookUpEvents: one page of the tenant's events in a time range, newest first,
   * optionally narrowed by one attribute. `AuditInputError` for a bad request, `AuditTokenError`
   * (one) for a NextToken not issued for this same lookup; needs the link MAC (tokens are MACed).
   */
  lookUpEvents(r: LookupRequest): Promise<LookupResult>;
  /**
   * Walks the whole kept chain, checking every link through the HSM, and reports every changed,
   * removed, moved or reordered event, plain links after the HMAC epoch, and a truncated head.
   */
  verify(options?: VerifyOptions): Promise<VerifyResult>;
  /** Verifies an export file written by retention on its own (its links through the HSM, its start link's MAC). */
  verifyExport(text: string): Promise<VerifyResult>;
  /**
   * Unless the newest event is HMAC-linked already, appends the epoch marker event (the first HMAC
   * link, which fixes every plain link before it); returns its seq when it wrote one.
   */
  beginEpoch(): Promise<number | undefined>;
  /**
   * Retention: hands the oldest events older than `cutoff` (unix ms; at most `max`, never the newest
   * event) to `archive`, then records the new start and removes them; returns how many.
   */
  retainOlderThan(cutoff: number, archive: (range: RetainedRange) => Promise<void>, max?: number): Promise<number>;
  /**
   * Writes the stored events matching `q` in chain (seq) order, one JSON document and '\n' per call;
   * a promise returned by `write` is awaited (backpressure). Returns how many.
   */
  export(write: (line: string) => unknown, q?: AuditFilter): Promise<number>;
  /** The stored head anchor (newest seq and hash), to keep elsewhere and pass to `verify` later. */
  head(): Promise<ChainHead | undefined>;
  /** Links, the start record and `archives` (export texts) per key generation they verify under (a domain rotation's census; chain-seals.ts). */
  census(archives?: readonly string[]): Promise<Map<string, number>>;
  /** Seals under the current key generation what verifies only under another held one; `done(n)` per page written. */
  reseal(archives: readonly string[], done: (n: number) => void, afterPage?: () => Promise<void>): Promise<number>;
  counters(): AuditCounters;
  /** Flushes and releases the store; events that could not be written are counted as dropped (`AuditWriteError`). */
  close(): Promise<void>;
}
