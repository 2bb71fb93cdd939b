/**
 * What a storage backend of the audit trail provides. Everything above it (buffering, chaining
 * rules, verification, export) is shared in chained-audit-log.ts.
 */
import { ChainHead, ChainSlot } from './chain';
import { AuditEvent } from './event';
import { AuditPage, AuditQuery, Position } from './query';

/** The chain as it stood at one moment, read atomically. */
export interface ChainSnapshot {
  head: ChainHead | undefined;
  /** The highest seq to read: the head's (and, where the store can say so cheaply, any stored beyond it). */
  upTo: number;
  /** How many events are stored in all (more than the slots in 1..upTo means events outside the chain). */
  stored: number;
}

export interface ChainPage {
  /** The stored slots in (after, last], in seq order; missing seqs are simply absent. */
  slots: ChainSlot[];
  /** The highest seq this page covers (the next page starts after it). */
  last: number;
}

export interface AuditBackend {
  /** Chains `batch` after the stored head and writes events and the new head atomically. */
  append(batch: readonly AuditEvent[]): Promise<void>;
  /** One page of a checked query, starting strictly after `after`. */
  query(q: AuditQuery, after: Position | undefined): Promise<AuditPage>;
  head(): Promise<ChainHead | undefined>;
  snapshot(): Promise<ChainSnapshot>;
  /** Up to `limit` seqs of the chain after `after`, never beyond `upTo`. */
  readChain(after: number, upTo: number, limit: number): Promise<ChainPage>;
  close(): Promise<void>;
}
