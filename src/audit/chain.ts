/**
 * The hash chain: event n stores the hash of event n-1, and its own hash is
 * SHA-256(prevHash || canonical(event, seq)) over the UTF-8 bytes of the 64-character hex prevHash
 * followed by the canonical JSON. The head anchor (seq and hash of the newest event) is stored
 * beside the events and moves with every append; verification walks the chain in seq order.
 */
import { createHash } from 'crypto';
import { AuditEvent, StoredAuditEvent, canonical } from './event';

/** The prevHash of event 1. */
export const GENESIS = '0'.repeat(64);

/** Where the chain ends: the newest event's seq and hash. */
export interface ChainHead {
  seq: number;
  hash: string;
}

export interface VerifyProblem {
  seq: number;
  /** The chain's id where there are several; this trail has one chain, so it is never set. */
  chain?: string;
  reason: string;
}

export interface VerifyResult {
  ok: boolean;
  /** Events read and checked. */
  checked: number;
  problems: VerifyProblem[];
}

/** A verify result lists at most this many problems (then one line saying more were found). */
export const MAX_PROBLEMS = 1000;

export function hashEvent(prevHash: string, e: AuditEvent, seq: number): string {
  return createHash('sha256').update(prevHash, 'utf8').update(canonical(e, seq), 'utf8').digest('hex');
}

/** Chains `events` after `head` (undefined: an empty chain). */
export function linkBatch(head: ChainHead | undefined, events: readonly AuditEvent[]): StoredAuditEvent[] {
  let seq = head?.seq ?? 0;
  let prevHash = head?.hash ?? GENESIS;
  return events.map((e) => {
    seq++;
    const hash = hashEvent(prevHash, e, seq);
    const stored: StoredAuditEvent = { ...e, seq, prevHash, hash };
    prevHash = hash;
    return stored;
  });
}

/** The head after `stored` (the last event of a linked batch). */
export function headOf(stored: readonly StoredAuditEvent[]): ChainHead | undefined {
  const last = stored[stored.length - 1];
  return last === undefined ? undefined : { seq: last.seq, hash: last.hash };
}

/** What one storage slot holds: the stored event, or why it cannot be read. */
export interface ChainSlot {
  /** Where the event is stored (its row's seq, its field in Redis). */
  seq: number;
  event: StoredAuditEvent | { unreadable: string };
}

/**
 * Checks slots fed in increasing seq order: gaps (removed events), contents that do not match their
 * hash (changed), links that do not match the previous event (removed, inserted or reordered), events
 * stored at another seq than they were chained at (moved), and at the end the head anchor (newest
 * events removed) and an optional anchor kept outside the store.
 */
export class ChainVerifier {
  private readonly problems: VerifyProblem[] = [];
  private checked = 0;
  private lastSeq = 0;
  /** The previous slot's stored hash; undefined after a gap or an unreadable slot (nothing to link to). */
  private prevHash: string | undefined = GENESIS;
  private anchorSeen = false;

  constructor(private readonly anchor?: ChainHead) {}

  visit(slot: ChainSlot): void {
    const { seq, event } = slot;
    if (seq > this.lastSeq + 1) {
      this.report(this.lastSeq + 1, `${missing(this.lastSeq + 1, seq - 1)} (removed)`);
      this.prevHash = undefined;
    }
    this.lastSeq = seq;
    this.checked++;
    if ('unreadable' in event) {
      this.report(seq, `the stored event cannot be read: ${event.unreadable}`);
      this.prevHash = undefined;
      return;
    }
    this.prevHash = this.checkEvent(seq, event) ? event.hash : undefined;
  }

  /** A problem found by the backend itself (e.g. events stored outside the chain's range). */
  note(problem: VerifyProblem): void {
    this.report(problem.seq, problem.reason);
  }

  /** The result, after checking the end of the chain against the stored head anchor. */
  end(head: ChainHead | undefined): VerifyResult {
    this.checkHead(head);
    if (this.anchor !== undefined && !this.anchorSeen) {
      this.report(this.anchor.seq, `the anchored event ${this.anchor.seq} is missing (removed or truncated)`);
    }
    return { ok: this.problems.length === 0, checked: this.checked, problems: this.problems };
  }

  /**
   * Checks one readable event; true when it matches its hash at this seq (then its hash is what the
   * next event must link to; otherwise the next link is not checked, so a successor is not blamed).
   */
  private checkEvent(seq: number, e: StoredAuditEvent): boolean {
    if (e.seq !== seq) {
      this.report(seq, `the event stored at ${seq} was chained at ${e.seq} (moved or reordered)`);
      if (hashEvent(e.prevHash, e, e.seq) !== e.hash) this.report(seq, 'the event does not match its hash (changed)');
      return false;
    }
    if (hashEvent(e.prevHash, e, seq) !== e.hash) {
      this.report(seq, 'the event does not match its hash (changed, or moved to this seq)');
      return false;
    }
    if (this.prevHash !== undefined && e.prevHash !== this.prevHash) {
      this.report(seq, `prevHash does not match event ${seq - 1} (removed, inserted or reordered)`);
    }
    if (this.anchor !== undefined && seq === this.anchor.seq) {
      this.anchorSeen = true;
      if (e.hash !== this.anchor.hash) this.report(seq, 'the event does not match the anchor kept outside the store');
    }
    return true;
  }

  private checkHead(head: ChainHead | undefined): void {
    if (head === undefined) {
      if (this.lastSeq > 0) this.report(1, 'the head anchor is missing');
      return;
    }
    if (this.lastSeq < head.seq) {
      this.report(this.lastSeq + 1, `${missing(this.lastSeq + 1, head.seq)} (truncated: the head anchor is at ${head.seq})`);
    } else if (this.lastSeq > head.seq) {
      this.report(head.seq + 1, `events ${head.seq + 1}..${this.lastSeq} lie beyond the head anchor (added behind the log's back)`);
    } else if (this.prevHash !== undefined && this.prevHash !== head.hash) {
      this.report(head.seq, 'the newest event does not match the head anchor (changed or replaced)');
    }
  }

  private report(seq: number, reason: string): void {
    if (this.problems.length < MAX_PROBLEMS) this.problems.push({ seq, reason });
    else if (this.problems.length === MAX_PROBLEMS) this.problems.push({ seq, reason: 'more problems found; not listed' });
  }
}

function missing(from: number, to: number): string {
  return from === to ? `event ${from} is missing` : `events ${from}..${to} are missing`;
}
