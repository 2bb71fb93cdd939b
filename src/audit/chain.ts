/**
 * The chain: event n stores the link of event n-1 (`prevHash`) and its own link (`hash`), computed
 * over the UTF-8 bytes of the 64-character hex prevHash followed by the canonical JSON:
 *   - HMAC links: HMAC-SHA256 inside the HSM (LinkMac), hex. Every event this build writes.
 *   - plain links: SHA-256, what builds before the HMAC chain wrote. Accepted only before the first
 *     HMAC link (the epoch): they verify up to where the HMAC chain starts, and the first HMAC link
 *     fixes them (it MACs the last plain link).
 * The head anchor (seq and link of the newest event) is stored beside the events; a start record
 * (after retention) says where the kept trail begins. Verification walks the chain in seq order.
 */
import { createHash } from 'crypto';
import { AuditEvent, StoredAuditEvent, canonical } from './event';
import { LinkMac } from './link-mac';

/** The prevHash of event 1. */
export const GENESIS = '0'.repeat(64);

/** Where the chain ends: the newest event's seq and link. */
export interface ChainHead {
  seq: number;
  hash: string;
}

/** Where the kept trail begins after retention: the first kept event's seq and prevHash, MACed. */
export interface ChainStart {
  seq: number;
  prevHash: string;
  mac: string;
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
  /** The first HMAC-linked event (the epoch): plain SHA-256 links are accepted only before it. */
  hmacFrom?: number;
  /** The seq verification started at (1, or the first event kept after retention). */
  from?: number;
}

/** A verify result lists at most this many problems (then one line saying more were found). */
export const MAX_PROBLEMS = 1000;

/** The bytes a link is computed over. */
export function linkInput(prevHash: string, e: AuditEvent, seq: number): Buffer {
  return Buffer.from(prevHash + canonical(e, seq), 'utf8');
}

/** The plain SHA-256 link (trails written before the HMAC chain). */
export function hashEvent(prevHash: string, e: AuditEvent, seq: number): string {
  return createHash('sha256')
    .update(linkInput(prevHash, e, seq))
    .digest('hex');
}

export async function macEvent(mac: LinkMac, prevHash: string, e: AuditEvent, seq: number): Promise<string> {
  return (await mac.mac(linkInput(prevHash, e, seq))).toString('hex');
}

/** The bytes a start record's MAC covers (never a link input: those begin with 64 hex digits). */
export function startInput(seq: number, prevHash: string): Buffer {
  return Buffer.from(`kms-audit-start:${seq}:${prevHash}`, 'utf8');
}

export async function makeStart(mac: LinkMac, seq: number, prevHash: string): Promise<ChainStart> {
  return { seq, prevHash, mac: (await mac.mac(startInput(seq, prevHash))).toString('hex') };
}

export async function startIsAuthentic(mac: LinkMac, start: ChainStart): Promise<boolean> {
  return (await mac.mac(startInput(start.seq, start.prevHash))).toString('hex') === start.mac;
}

/**
 * Chains `events` after `head` (undefined: an empty chain) with HMAC links. The links are computed
 * one after the other (each MACs the previous one), one HSM call per event.
 */
export async function linkBatch(head: ChainHead | undefined, events: readonly AuditEvent[], mac: LinkMac): Promise<StoredAuditEvent[]> {
  let seq = head?.seq ?? 0;
  let prevHash = head?.hash ?? GENESIS;
  const stored: StoredAuditEvent[] = [];
  for (const e of events) {
    seq++;
    const hash = await macEvent(mac, prevHash, e, seq);
    stored.push({ ...e, seq, prevHash, hash });
    prevHash = hash;
  }
  return stored;
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

/** Whether a stored event's link is right, recomputed from its own prevHash, contents and seq. */
export interface LinkCheck {
  /** It is the plain SHA-256 link. */
  plain: boolean;
  /** It is the HMAC link (asked of the HSM only when it is not the plain one). */
  mac: boolean;
}

/**
 * Recomputes the links of `slots` (readable events only), through the HSM where the plain link does
 * not match; `authentic` decides an HMAC link (default: under the current key; the log's also takes
 * the retiring generation and seals, chain-seals.ts).
 */
export async function checkLinks(
  slots: readonly ChainSlot[],
  mac: LinkMac,
  authentic: (e: StoredAuditEvent) => Promise<boolean> = async (e) => (await macEvent(mac, e.prevHash, e, e.seq)) === e.hash,
): Promise<Map<number, LinkCheck>> {
  const checks = new Map<number, LinkCheck>();
  for (const { seq, event: e } of slots) {
    if ('unreadable' in e) continue;
    const plain = hashEvent(e.prevHash, e, e.seq) === e.hash;
    checks.set(seq, { plain, mac: !plain && (await authentic(e)) });
  }
  return checks;
}

export interface VerifierOptions {
  /** Anchors kept outside the store: the event at each seq must still have that link. */
  anchors?: readonly ChainHead[];
  /** Where the kept trail begins (an authentic start record); default seq 1 after the genesis value. */
  start?: { seq: number; prevHash: string };
  /** A non-empty trail without any HMAC link is a problem (the store's trail: yes; an old export: no). */
  requireMac?: boolean;
}

/**
 * Checks slots fed in increasing seq order: gaps (removed events), contents that do not match their
 * link (changed), plain links after the HMAC epoch began (rewritten without the HSM), links that do
 * not match the previous event (removed, inserted or reordered), events stored at another seq than
 * they were chained at (moved), and at the end the head anchor (newest events removed) and the
 * anchors kept outside the store.
 */
export class ChainVerifier {
  private readonly problems: VerifyProblem[] = [];
  private readonly anchors = new Map<number, string>();
  private readonly from: number;
  private checked = 0;
  private lastSeq: number;
  /** The previous slot's stored link; undefined after a gap or an unreadable slot (nothing to link to). */
  private prevHash: string | undefined;
  private hmacFrom: number | undefined;
  /** A plain link was found right (before any HMAC link). */
  private plainSeen = false;

  constructor(private readonly options: VerifierOptions = {}) {
    this.from = options.start?.seq ?? 1;
    this.lastSeq = this.from - 1;
    this.prevHash = options.start?.prevHash ?? GENESIS;
    for (const a of options.anchors ?? []) if (a.seq >= this.from) this.anchors.set(a.seq, a.hash);
  }

  visit(slot: ChainSlot, check: LinkCheck | undefined): void {
    const { seq, event } = slot;
    if (seq < this.from) return;
    if (seq > this.lastSeq + 1) {
      this.report(this.lastSeq + 1, `${missing(this.lastSeq + 1, seq - 1)} (removed)`);
      this.prevHash = undefined;
    }
    this.lastSeq = seq;
    this.checked++;
    if ('unreadable' in event || check === undefined) {
      this.report(seq, `the stored event cannot be read: ${'unreadable' in event ? event.unreadable : 'no link check'}`);
      this.prevHash = undefined;
      return;
    }
    this.prevHash = this.checkEvent(seq, event, check) ? event.hash : undefined;
  }

  /** A problem found by the backend itself (e.g. events stored outside the chain's range). */
  note(problem: VerifyProblem): void {
    this.report(problem.seq, problem.reason);
  }

  /** The result, after checking the end of the chain against the stored head anchor. */
  end(head: ChainHead | undefined): VerifyResult {
    this.checkHead(head);
    for (const seq of this.anchors.keys()) this.report(seq, `the anchored event ${seq} is missing (removed or truncated)`);
    if (this.options.requireMac && this.plainSeen && this.hmacFrom === undefined) {
      this.report(
        this.from,
        'no event is HMAC-linked: plain SHA-256 links can be rewritten by anyone with the store (the server begins the HMAC chain at start-up)',
      );
    }
    return { ok: this.problems.length === 0, checked: this.checked, problems: this.problems, hmacFrom: this.hmacFrom, from: this.from };
  }

  /**
   * Checks one readable event; true when its link is right at this seq (then it is what the next
   * event must link to; otherwise the next link is not checked, so a successor is not blamed).
   */
  private checkEvent(seq: number, e: StoredAuditEvent, check: LinkCheck): boolean {
    if (e.seq !== seq) {
      this.report(seq, `the event stored at ${seq} was chained at ${e.seq} (moved or reordered)`);
      if (!check.plain && !check.mac) this.report(seq, 'the event does not match its link (changed)');
      return false;
    }
    if (!this.linkIsRight(seq, check)) return false;
    if (this.prevHash !== undefined && e.prevHash !== this.prevHash) {
      this.report(seq, `prevHash does not match event ${seq - 1} (removed, inserted or reordered)`);
    }
    const anchored = this.anchors.get(seq);
    if (anchored !== undefined) {
      this.anchors.delete(seq);
      if (e.hash !== anchored) this.report(seq, 'the event does not match the anchor kept outside the store');
    }
    return true;
  }

  private linkIsRight(seq: number, check: LinkCheck): boolean {
    if (check.mac) {
      this.hmacFrom ??= seq;
      return true;
    }
    if (!check.plain) {
      this.report(seq, 'the event does not match its link (changed, or moved to this seq)');
      return false;
    }
    if (this.hmacFrom !== undefined) {
      this.report(seq, `plain SHA-256 link after the HMAC chain began at ${this.hmacFrom} (rewritten without the HSM)`);
      return false;
    }
    this.plainSeen = true;
    return true;
  }

  private checkHead(head: ChainHead | undefined): void {
    if (head === undefined) {
      if (this.lastSeq >= this.from) this.report(this.from, 'the head anchor is missing');
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
