/**
 * The AuditLog over any backend: appends go through the group committer and are linked through the
 * HSM (LinkMac) after the head the log last saw, then written only if that head is still the stored
 * one (optimistic: another writer moved it, so the batch is linked again). Verification and export
 * walk the chain in seq order from one snapshot of it; retention archives and removes a prefix.
 */
import { AuditCounters, AuditLog, RetainedRange, VerifyOptions } from './audit-log';
import { AuditBackend, ChainSnapshot } from './backend';
import {
  ChainHead,
  ChainSlot,
  ChainStart,
  ChainVerifier,
  GENESIS,
  VerifyProblem,
  VerifyResult,
  checkLinks,
  headOf,
  LinkCheck,
  hashEvent,
  linkBatch,
  makeStart,
  startInput,
} from './chain';
import { archiveSealedUnder, archiveSealInput, linkUnder, sealInput, sealOf, startUnder } from './chain-seals';
import { AuditChainError, AuditConfigError, AuditWriteError } from './errors';
import { AuditEvent, NewAuditEvent, StoredAuditEvent, storedJson, toAuditEvent } from './event';
import { ExportHeader, exportHeader, parseExport } from './export-file';
import { GroupCommitOptions, GroupCommitter } from './group-commit';
import { LinkMac } from './link-mac';
import { LookupRequest, LookupResult, lookUp } from './lookup';
import { AuditFilter, AuditPage, AuditQuery, checkFilter, checkQuery, matches } from './query';

export interface AuditLogOptions extends GroupCommitOptions {
  /** Time of events appended without one; default Date.now. */
  now?: () => number;
  /** The HSM's MAC for the links. Without it the log can query, export and read heads, not append or verify. */
  linkMac?: LinkMac;
}

/** The census's label for an archive file whose links verify but that no rotation has sealed yet. */
const UNSEALED_ARCHIVE = 'unsealed-archive';

/** Seqs read per round trip when walking the chain. */
const CHAIN_PAGE = 1000;
/** Link attempts of one batch while other writers keep moving the head. */
const MAX_ATTEMPTS = 50;

/** The event that marks where this build began HMAC-linking a trail (see beginEpoch). */
export const EPOCH_EVENT = { eventName: 'AuditChainEpoch', resource: 'audit/hmac-sha256' } as const;

export class ChainedAuditLog implements AuditLog {
  private readonly committer: GroupCommitter;
  private readonly now: () => number;
  private readonly linkMac: LinkMac | undefined;
  /** The head this log last saw; a wrong guess costs one more linking of the batch (the store answers with the real one). */
  private knownHead: ChainHead | undefined;

  protected constructor(
    private readonly backend: AuditBackend,
    options: AuditLogOptions = {},
  ) {
    this.committer = new GroupCommitter((batch) => this.write(batch), options);
    this.now = options.now ?? Date.now;
    this.linkMac = options.linkMac;
  }

  append(e: NewAuditEvent): void {
    if (this.linkMac === undefined) throw new AuditConfigError('this audit log has no link MAC: it cannot append');
    this.committer.add(toAuditEvent(e, this.now));
  }

  flush(): Promise<void> {
    return this.committer.flush();
  }

  async query(q: AuditQuery): Promise<AuditPage> {
    const after = checkQuery(q);
    return this.backend.query(q, after);
  }

  /** One page of a tenant's events, newest first (lookup.ts); the NextToken is MACed through the HSM. */
  lookUpEvents(r: LookupRequest): Promise<LookupResult> {
    return lookUp(this.backend, this.mac(), r);
  }

  async beginEpoch(): Promise<number | undefined> {
    const mac = this.mac();
    const head = await this.backend.head();
    if (head !== undefined) {
      const [slot] = (await this.backend.readChain(head.seq - 1, head.seq, 1)).slots;
      const e = slot?.event;
      const seal = (await this.backend.readSeals('link', head.seq, head.seq)).get(head.seq);
      if (e !== undefined && !('unreadable' in e) && (await linkUnder(mac, e, seal)) !== undefined) return undefined;
    }
    const before = this.committer.counters().written;
    this.append({ ...EPOCH_EVENT, accountUin: '', subAccountUin: '', secretId: '', sourceIp: '', region: '', requestId: '', errorCode: '' });
    await this.flush();
    return this.committer.counters().written > before ? (await this.backend.head())?.seq : undefined;
  }

  async verify(options: VerifyOptions = {}): Promise<VerifyResult> {
    const kept = await this.verifyKept(options);
    if (options.archive === undefined) return kept;
    const archived = await this.verifyArchive(options.archive, kept.from ?? 1);
    const problems = [...archived.problems, ...kept.problems];
    return { ok: problems.length === 0, checked: archived.checked + kept.checked, problems, hmacFrom: archived.hmacFrom ?? kept.hmacFrom, from: 1 };
  }

  /** Every archive file on its own, and their joins: from seq 1, each where the previous ended, the last where the kept trail begins. */
  private async verifyArchive(texts: readonly string[], keptFrom: number): Promise<VerifyResult> {
    const files = texts.map((text) => ({ text, header: parseExport(text).header })).sort((a, b) => a.header.from - b.header.from);
    const problems: VerifyProblem[] = [];
    let checked = 0;
    let hmacFrom: number | undefined;
    let end = { to: 0, last: GENESIS };
    for (const { text, header } of files) {
      if (header.from !== end.to + 1 || header.start.prevHash !== end.last) {
        problems.push({
          seq: end.to + 1,
          reason: `the archive file of events ${header.from}..${header.to} does not continue where the one before ends (${end.to}): files missing or replaced`,
        });
      }
      const r = await this.verifyExport(text);
      problems.push(...r.problems);
      checked += r.checked;
      hmacFrom ??= r.hmacFrom;
      end = { to: header.to, last: header.last };
    }
    if (keptFrom !== end.to + 1) problems.push({ seq: end.to + 1, reason: `the archive ends at ${end.to} but the kept trail begins at ${keptFrom}` });
    return { ok: problems.length === 0, checked, problems, hmacFrom };
  }

  private async verifyKept(options: VerifyOptions): Promise<VerifyResult> {
    const mac = this.mac();
    const snapshot = await this.backend.snapshot();
    const { start, problem } = await this.checkedStart(snapshot);
    const anchors = [...(options.anchors ?? []), ...(options.anchor ? [options.anchor] : [])];
    const verifier = new ChainVerifier({ anchors, start, requireMac: true });
    if (problem !== undefined) verifier.note(problem);
    const from = start?.seq ?? 1;
    let seen = 0;
    await this.walk(from - 1, snapshot.upTo, async (slots) => {
      const checks = await this.checkSealed(slots, mac);
      for (const slot of slots) {
        seen++;
        verifier.visit(slot, checks.get(slot.seq));
      }
    });
    if (snapshot.stored > seen) {
      verifier.note({ seq: snapshot.upTo + 1, reason: `${snapshot.stored - seen} stored events lie outside the chain ${from}..${snapshot.upTo}` });
    }
    return verifier.end(snapshot.head);
  }

  async verifyExport(text: string): Promise<VerifyResult> {
    const mac = this.mac();
    const file = parseExport(text);
    const verifier = new ChainVerifier({ start: file.header.start });
    // an archive sealed by a domain rotation: its text is as it was when its links were checked under their generation
    const sealed =
      (await archiveSealedUnder(mac, text, (await this.backend.readSeals('archive', file.header.from, file.header.from)).get(file.header.from))) !== undefined;
    if (!sealed && file.header.start.seq > 1 && (await startUnder(mac, { ...file.header.start, mac: file.header.start.mac ?? '' })) === undefined) {
      verifier.note({ seq: file.header.start.seq, reason: "the export's start link does not match its MAC (not where the trail was cut)" });
    }
    for (const p of file.problems) verifier.note(p);
    const checks = await checkLinks(file.slots, mac, async (e) => sealed || (await linkUnder(mac, e)) !== undefined);
    for (const slot of file.slots) verifier.visit(slot, checks.get(slot.seq));
    return verifier.end({ seq: file.header.to, hash: file.header.last });
  }

  async export(write: (line: string) => unknown, q: AuditFilter = {}): Promise<number> {
    checkFilter(q);
    const snapshot = await this.backend.snapshot();
    let n = 0;
    await this.walk((snapshot.start?.seq ?? 1) - 1, snapshot.upTo, async (slots) => {
      for (const { event } of slots) {
        if ('unreadable' in event || !matches(event, q)) continue;
        const waiting = write(`${storedJson(event)}\n`);
        if (waiting instanceof Promise) await waiting;
        n++;
      }
    });
    return n;
  }

  async retainOlderThan(cutoff: number, archive: (range: RetainedRange) => Promise<void>, max = 10_000): Promise<number> {
    const mac = this.mac();
    const snapshot = await this.backend.snapshot();
    const { start, problem } = await this.checkedStart(snapshot);
    if (problem !== undefined) throw new AuditChainError(`retention refused: ${problem.reason} (run verify)`);
    const from = start?.seq ?? 1;
    const removed = await this.prefixOlderThan(from, cutoff, Math.min(max, (snapshot.head?.seq ?? 0) - from));
    if (removed.length === 0) return 0;
    const last = removed[removed.length - 1];
    const header: ExportHeader = exportHeader(start ?? { seq: 1, prevHash: GENESIS }, last);
    await archive({ from, to: last.seq, text: [JSON.stringify(header), ...removed.map(storedJson)].join('\n') + '\n' });
    await this.backend.removeBefore(await makeStart(mac, last.seq + 1, last.hash), removed);
    return removed.length;
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

  /** Links (and seals) per generation over the kept trail, its start record and `archives`; links that verify under none are not counted. */
  async census(archives: readonly string[] = []): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    await this.eachUnsealed(archives, async (g) => void counts.set(g, (counts.get(g) ?? 0) + 1));
    return counts;
  }

  /**
   * Seals under the current generation every link of the kept trail, the start record and each of
   * `archives` (export texts) that verifies only under another held one (checked inside the HSM
   * first); what is under the current one, or verifies under none, is left as it is. `done(n)`
   * after each page written. The number sealed.
   */
  async reseal(archives: readonly string[], done: (n: number) => void, afterPage: () => Promise<void> = async () => undefined): Promise<number> {
    const gens = this.mac().generations;
    if (!gens) throw new AuditConfigError('this audit log has no key generations: there is nothing to re-seal under');
    let n = 0;
    await this.eachUnsealed(
      archives,
      async (g, seal) => {
        if (g === gens.current()) return;
        await seal();
        n++;
      },
      async (written) => {
        if (written > 0) done(written);
        await afterPage();
      },
    );
    return n;
  }

  /**
   * Every authenticated item with the generation it verifies under; `seal()` stores its seal under the
   * current one (written per page, then `page(count)`).
   */
  private async eachUnsealed(
    archives: readonly string[],
    visit: (generation: string, seal: () => Promise<void>) => Promise<void>,
    page: (written: number) => Promise<void> = async () => undefined,
  ): Promise<void> {
    const mac = this.mac();
    const snapshot = await this.backend.snapshot();
    const flush = async (kind: 'link' | 'start' | 'archive', pending: Map<number, string>) => {
      await this.backend.writeSeals(kind, pending);
      await page(pending.size);
    };
    if (snapshot.start) {
      const start = snapshot.start;
      const pending = new Map<number, string>();
      const g = await startUnder(mac, start, (await this.backend.readSeals('start', start.seq, start.seq)).get(start.seq));
      if (g !== undefined) await visit(g, async () => void pending.set(start.seq, await sealOf(mac, startInput(start.seq, start.prevHash))));
      await flush('start', pending);
    }
    await this.walk((snapshot.start?.seq ?? 1) - 1, snapshot.upTo, async (slots) => {
      if (slots.length === 0) return;
      const seals = await this.backend.readSeals('link', slots[0].seq, slots[slots.length - 1].seq);
      const pending = new Map<number, string>();
      for (const { seq, event: e } of slots) {
        if ('unreadable' in e || e.seq !== seq || hashEvent(e.prevHash, e, e.seq) === e.hash) continue;
        const g = await linkUnder(mac, e, seals.get(seq));
        if (g !== undefined) await visit(g, async () => void pending.set(seq, await sealOf(mac, sealInput(e.prevHash, e, e.seq, e.hash))));
      }
      await flush('link', pending);
    });
    for (const text of archives) {
      const from = parseExport(text).header.from;
      const sealedUnder = await archiveSealedUnder(mac, text, (await this.backend.readSeals('archive', from, from)).get(from));
      // an archive that fails its own check is not sealed (it stays as unverifiable as it was)
      if (sealedUnder === undefined && !(await this.verifyExport(text)).ok) continue;
      const pending = new Map<number, string>();
      await visit(sealedUnder ?? UNSEALED_ARCHIVE, async () => void pending.set(from, await sealOf(mac, archiveSealInput(text))));
      await flush('archive', pending);
    }
  }

  /** Link checks that take seals and the generations still held. */
  private async checkSealed(slots: readonly ChainSlot[], mac: LinkMac): Promise<Map<number, LinkCheck>> {
    const seals = slots.length === 0 ? new Map<number, string>() : await this.backend.readSeals('link', slots[0].seq, slots[slots.length - 1].seq);
    return checkLinks(slots, mac, async (e) => (await linkUnder(mac, e, seals.get(e.seq))) !== undefined);
  }

  private mac(): LinkMac {
    if (this.linkMac === undefined) throw new AuditConfigError('this audit log has no link MAC: links are checked through the HSM');
    return this.linkMac;
  }

  /** Links the batch after the head this log last saw and writes it if that head is still stored; else again after the real one. */
  private async write(batch: readonly AuditEvent[]): Promise<void> {
    const mac = this.mac();
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const stored = await linkBatch(this.knownHead, batch, mac);
      const outcome = await this.backend.appendAfter(this.knownHead, stored);
      if (outcome.kind === 'written') this.knownHead = headOf(stored);
      if (outcome.kind !== 'moved') return;
      this.knownHead = outcome.head;
    }
    throw new AuditWriteError(`the audit chain head kept moving (${MAX_ATTEMPTS} attempts)`);
  }

  /** The stored start record if it is authentic; otherwise a problem, and the walk starts at 1 (the removed events show). */
  private async checkedStart(s: ChainSnapshot): Promise<{ start?: ChainStart; problem?: VerifyProblem }> {
    if (s.start === undefined) return {};
    const seal = (await this.backend.readSeals('start', s.start.seq, s.start.seq)).get(s.start.seq);
    if ((await startUnder(this.mac(), s.start, seal)) !== undefined) return { start: s.start };
    return { problem: { seq: s.start.seq, reason: 'the start record does not match its MAC (not written by retention)' } };
  }

  /** The events from `from` on, in seq order without gaps, older than `cutoff`, at most `max`. */
  private async prefixOlderThan(from: number, cutoff: number, max: number): Promise<StoredAuditEvent[]> {
    const out: StoredAuditEvent[] = [];
    for (let after = from - 1; out.length < max;) {
      const page = await this.backend.readChain(after, from - 1 + max, Math.min(CHAIN_PAGE, max - out.length));
      for (const { seq, event } of page.slots) {
        if (seq !== from + out.length || 'unreadable' in event || event.time >= cutoff) return out;
        out.push(event);
      }
      if (page.slots.length === 0 || page.last <= after) return out;
      after = page.last;
    }
    return out;
  }

  private async walk(after: number, upTo: number, visit: (slots: ChainSlot[]) => Promise<void>): Promise<void> {
    while (after < upTo) {
      const page = await this.backend.readChain(after, upTo, CHAIN_PAGE);
      await visit(page.slots);
      after = page.last;
    }
  }
}
