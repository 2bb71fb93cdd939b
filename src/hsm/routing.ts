import { ClusterUnavailableError, HsmError, MemberUnavailableError } from './errors';
import type { HsmMember } from './member';
import type { ClusterHealthMonitor } from './member-health';

/**
 * Which member serves an operation, and the one retry. Round-robin over ACTIVE members, else
 * DEGRADED ones, never UNAVAILABLE (the states the health monitor sets), among those holding the
 * record's generation; an operation that meets a failure of the member (device or session level,
 * the request itself being fine) runs once more on another. Every failure is reported to the monitor.
 */
export class MemberRouter {
  private next = 0;
  private reread: Promise<void> | undefined;
  private rereadAt = 0;

  constructor(
    private readonly clusterId: string,
    private readonly members: readonly HsmMember[],
    private readonly monitor: ClusterHealthMonitor,
    /** Reads every reachable member's generations again. */
    private readonly refreshGenerations: () => Promise<void>,
  ) {}

  /**
   * Round-robin over ACTIVE members, else DEGRADED ones, never UNAVAILABLE, holding generation
   * `generation` (hex; else the current one) and `also` if given; allocation-free (hot path).
   */
  private pick(exclude?: HsmMember, generation?: string, also?: string): HsmMember {
    const n = this.members.length;
    let fallback: HsmMember | undefined;
    for (let i = 0; i < n; i++) {
      this.next = (this.next + 1) % n;
      const m = this.members[this.next];
      // eligible: holds the record's generation (or, without one, the current domain keys, as monitor.state asks) and `also`
      if (m === exclude || !(generation !== undefined ? m.generations.has(generation) : m.domain) || (also !== undefined && !m.generations.has(also))) continue;
      const state = m.state;
      if (state === 'ACTIVE') return m;
      if (state === 'DEGRADED') fallback ??= m;
    }
    if (fallback) return fallback;
    throw new ClusterUnavailableError(this.clusterId);
  }

  /** `op` on `m`, a synchronous throw as a rejection. */
  private attempt<T>(m: HsmMember, op: (m: HsmMember) => Promise<T>): Promise<T> {
    try {
      return op(m);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Runs `op` on a healthy member holding `generation` (a record's; else the current one) and
   * `also`; when the failure is the member's, once more on another member.
   */
  run<T>(op: (m: HsmMember) => Promise<T>, generation?: Buffer, also?: Buffer): Promise<T> {
    const g = generation?.toString('hex');
    const a = also?.toString('hex');
    const unknown = (id: string | undefined) => id !== undefined && !this.members.some((m) => m.generations.has(id));
    // a generation made by another process (kmsctl cluster rotate-domain) since the tokens were read: read them again, once
    if (unknown(g) || unknown(a)) return this.rereadSometimes().then(() => this.runOnce(op, g, a));
    return this.runOnce(op, g, a);
  }

  /** At most one re-read a second, shared: records naming a generation nobody holds cannot make the tokens busy. */
  private rereadSometimes(): Promise<void> {
    const now = Date.now();
    if (!this.reread || now - this.rereadAt >= 1_000) {
      this.rereadAt = now;
      this.reread = this.refreshGenerations();
    }
    return this.reread;
  }

  private runOnce<T>(op: (m: HsmMember) => Promise<T>, generation?: string, also?: string): Promise<T> {
    let first: HsmMember;
    try {
      first = this.pick(undefined, generation, also);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.attempt(first, op).catch((e: unknown) => {
      this.monitor.failed(first, e);
      const members = e instanceof MemberUnavailableError || (e instanceof HsmError && (e.errorClass === 'device' || e.errorClass === 'session'));
      if (!members) throw e;
      let second: HsmMember;
      try {
        second = this.pick(first, generation, also);
      } catch {
        throw e;
      }
      return this.attempt(second, op).catch((again: unknown) => {
        this.monitor.failed(second, again);
        throw again;
      });
    });
  }
}
