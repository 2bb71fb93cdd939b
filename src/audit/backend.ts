/**
 * What a storage backend of the audit trail provides. Everything above it (buffering, chaining
 * through the HSM, verification, export, retention) is shared in chained-audit-log.ts.
 */
import { ChainHead, ChainSlot, ChainStart } from './chain';
import { SealKind } from './chain-seals';
import { StoredAuditEvent } from './event';
import type { IndexedField } from './lookup';
import { AuditPage, AuditQuery, Position } from './query';

/** One walk of a tenant's index, newest first (LookUpEvents; the plan is lookup.ts's). */
export interface TenantScan {
  tenant: string;
  /** Inclusive range, unix ms. */
  from: number;
  to: number;
  /** Walk the index of this field's value; else the tenant's time index. */
  index?: { field: IndexedField; value: string };
  /** Strictly before this position in (time, seq) order. */
  before?: Position;
  /** Index entries to read at most. */
  limit: number;
}

export interface ScanPage {
  /** The events of the entries read, (time, seq) descending; entries whose event is missing or unreadable are left out. */
  events: StoredAuditEvent[];
  /** The position of the last entry read (the next scan starts before it). */
  last?: Position;
  /** Fewer than `limit` entries were left: nothing older in the index. */
  end: boolean;
}

/** The chain as it stood at one moment, read atomically. */
export interface ChainSnapshot {
  head: ChainHead | undefined;
  /** The start record (after retention), not yet checked. */
  start: ChainStart | undefined;
  /** The highest seq to read: the head's (and, where the store can say so cheaply, any stored beyond it). */
  upTo: number;
  /** How many events are stored in all (more than the slots in start..upTo means events outside the chain). */
  stored: number;
}

export interface ChainPage {
  /** The stored slots in (after, last], in seq order; missing seqs are simply absent. */
  slots: ChainSlot[];
  /** The highest seq this page covers (the next page starts after it). */
  last: number;
}

/** How a conditional append ended: written, found written already (a retry after a lost reply), or the head had moved. */
export type AppendOutcome = { kind: 'written' } | { kind: 'done' } | { kind: 'moved'; head: ChainHead | undefined };

export interface AuditBackend {
  /**
   * Writes `stored` (linked after `expected`) and the new head atomically, only if the stored head is
   * still `expected`. AuditChainError when events are stored beyond the head (never overwritten).
   */
  appendAfter(expected: ChainHead | undefined, stored: readonly StoredAuditEvent[]): Promise<AppendOutcome>;
  scanTenant(scan: TenantScan): Promise<ScanPage>;
  /** One page of a checked query, starting strictly after `after`. */
  query(q: AuditQuery, after: Position | undefined): Promise<AuditPage>;
  head(): Promise<ChainHead | undefined>;
  snapshot(): Promise<ChainSnapshot>;
  /** Up to `limit` seqs of the chain after `after`, never beyond `upTo`. */
  readChain(after: number, upTo: number, limit: number): Promise<ChainPage>;
  /**
   * Retention: writes `start` as the new start record and removes the events below it, atomically;
   * refused (AuditChainError) unless `start` is above the current start and at or below the head.
   */
  removeBefore(start: ChainStart, removed: readonly StoredAuditEvent[]): Promise<void>;
  /** The seals (`generation:hex`, chain-seals.ts) of kind `kind` for seqs from..to. */
  readSeals(kind: SealKind, from: number, to: number): Promise<Map<number, string>>;
  /** Stores seals, each replacing the one of its kind and seq (a later rotation's). */
  writeSeals(kind: SealKind, seals: ReadonlyMap<number, string>): Promise<void>;
  close(): Promise<void>;
}
