/**
 * The audit trail as the rest of the KMS sees it: one event per request, appended without waiting,
 * written in group commits, hash-chained, queried and exported. Backends: sqlite-audit-log.ts (the
 * key store's database file) and redis-audit-log.ts (the key store's Redis).
 */
import { ChainHead, VerifyResult } from './chain';
import { NewAuditEvent } from './event';
import { AuditFilter, AuditPage, AuditQuery } from './query';

/** For metrics: events waiting in memory, lost (buffer full, or still unwritten at close), and written. */
export interface AuditCounters {
  pending: number;
  dropped: number;
  written: number;
}

export interface VerifyOptions {
  /** A head kept outside the store (from `head()` earlier): the event at its seq must still have its hash. */
  anchor?: ChainHead;
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
  /** Walks the whole chain and reports every changed, removed, moved or reordered event, and a truncated head. */
  verify(options?: VerifyOptions): Promise<VerifyResult>;
  /** Writes the stored events matching `q` in chain (seq) order, one JSON document and '\n' per call; returns how many. */
  export(write: (line: string) => void, q?: AuditFilter): Promise<number>;
  /** The stored head anchor (newest seq and hash), to keep elsewhere and pass to `verify` later. */
  head(): Promise<ChainHead | undefined>;
  counters(): AuditCounters;
  /** Flushes and releases the store; events that could not be written are counted as dropped (`AuditWriteError`). */
  close(): Promise<void>;
}
