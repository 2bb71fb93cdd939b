/**
 * The AuditLog over any backend: appends go through the group committer, verification and export
 * walk the chain in seq order from one snapshot of it.
 */
import { AuditCounters, AuditLog, VerifyOptions } from './audit-log';
import { AuditBackend } from './backend';
import { ChainHead, ChainSlot, ChainVerifier, VerifyResult } from './chain';
import { NewAuditEvent, storedJson, toAuditEvent } from './event';
import { GroupCommitOptions, GroupCommitter } from './group-commit';
import { AuditFilter, AuditPage, AuditQuery, checkFilter, checkQuery, matches } from './query';

export interface AuditLogOptions extends GroupCommitOptions {
  /** Time of events appended without one; default Date.now. */
  now?: () => number;
}

/** Seqs read per round trip when walking the chain. */
const CHAIN_PAGE = 1000;

export class ChainedAuditLog implements AuditLog {
  private readonly committer: GroupCommitter;
  private readonly now: () => number;

  protected constructor(private readonly backend: AuditBackend, options: AuditLogOptions = {}) {
    this.committer = new GroupCommitter((batch) => backend.append(batch), options);
    this.now = options.now ?? Date.now;
  }

  append(e: NewAuditEvent): void {
    this.committer.add(toAuditEvent(e, this.now));
  }

  flush(): Promise<void> {
    return this.committer.flush();
  }

  async query(q: AuditQuery): Promise<AuditPage> {
    const after = checkQuery(q);
    return this.backend.query(q, after);
  }

  async verify(options: VerifyOptions = {}): Promise<VerifyResult> {
    const snapshot = await this.backend.snapshot();
    const verifier = new ChainVerifier(options.anchor);
    let seen = 0;
    await this.walk(snapshot.upTo, (slot) => {
      seen++;
      verifier.visit(slot);
    });
    if (snapshot.stored > seen) {
      verifier.note({ seq: snapshot.upTo + 1, reason: `${snapshot.stored - seen} stored events lie outside the chain 1..${snapshot.upTo}` });
    }
    return verifier.end(snapshot.head);
  }

  async export(write: (line: string) => void, q: AuditFilter = {}): Promise<number> {
    checkFilter(q);
    const { upTo } = await this.backend.snapshot();
    let n = 0;
    await this.walk(upTo, ({ event }) => {
      if ('unreadable' in event || !matches(event, q)) return;
      write(`${storedJson(event)}\n`);
      n++;
    });
    return n;
  }

  head(): Promise<ChainHead | undefined> {
    return this.backend.head();
  }

  counters(): AuditCounters {
    return this.committer.counters();
  }

  async close(): Promise<void> {
    try {
      await this.committer.close();
    } finally {
      await this.backend.close();
    }
  }

  private async walk(upTo: number, visit: (slot: ChainSlot) => void): Promise<void> {
    for (let after = 0; after < upTo;) {
      const page = await this.backend.readChain(after, upTo, CHAIN_PAGE);
      page.slots.forEach(visit);
      after = page.last;
    }
  }
}
