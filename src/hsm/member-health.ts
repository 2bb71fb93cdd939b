import { HsmError, PoolExhaustedError } from './errors';
import type { WrappedMaterial } from './material';
import type { HsmMember, MemberState } from './member';

/** What a probe works on: a canary key (a GCM round trip), or the domain MAC key (an HMAC) where the cluster has no AES-256. */
export type Canary = WrappedMaterial | 'domain-mac';

export interface HealthPolicy {
  /** Session- or device-level errors since the last good probe that make an ACTIVE member DEGRADED. */
  degradedErrors: number;
  /** A probe slower than this makes the member DEGRADED until a probe within it. */
  degradedLatencyMs: number;
  /** How long a probe result stands before health() probes again. */
  probeCacheMs: number;
  /** Background probes this often (0: only when health() asks). */
  probeIntervalMs: number;
}

export const DEFAULT_HEALTH_POLICY: HealthPolicy = { degradedErrors: 3, degradedLatencyMs: 250, probeCacheMs: 5_000, probeIntervalMs: 5_000 };

interface Probe {
  at: number;
  ms?: number;
  error?: string;
}

/**
 * The one place that decides a member's health. The state lives on the member (`member.state`) and
 * routing and health reports read only that (through `state()`); this module sets it
 * (`member.grade()`, and `fail()` for UNAVAILABLE):
 * - a device-level error, or a failed probe, makes it UNAVAILABLE and starts recovery (`fail()`:
 *   re-initialise with backoff until `connect()` makes it ACTIVE again);
 * - `degradedErrors` session- or device-level errors since the last good probe (the member's
 *   `recentErrors`; pool exhaustion is load, not ill health, and is not counted) make it DEGRADED;
 * - a probe slower than `degradedLatencyMs`, or one that found every session busy, makes it DEGRADED;
 * - a good probe within the latency bound makes a DEGRADED member ACTIVE and clears its errors.
 * A member without domain keys is never routed to and reported UNAVAILABLE.
 */
export class ClusterHealthMonitor {
  private readonly probes = new Map<HsmMember, Probe>();
  private round: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private probing = false;

  constructor(
    private readonly members: readonly HsmMember[],
    readonly policy: HealthPolicy,
    /** The canary key the probes use; undefined when none could be made. */
    private readonly canary: () => Promise<Canary | undefined>,
  ) {}

  /** What routing and health reports use: the member's state, UNAVAILABLE without domain keys. */
  state(m: HsmMember): MemberState {
    return m.domain ? m.state : 'UNAVAILABLE';
  }

  /** After an operation failed on `m`: device-level → UNAVAILABLE; enough errors → DEGRADED. */
  failed(m: HsmMember, e: unknown): void {
    if (!(e instanceof HsmError) || e instanceof PoolExhaustedError) return;
    if (e.errorClass === 'device') {
      if (m.state !== 'UNAVAILABLE') m.fail(e.message);
    } else if (e.errorClass === 'session' && m.state === 'ACTIVE' && m.recentErrors >= this.policy.degradedErrors) {
      m.grade('DEGRADED');
    }
  }

  /** Starts background probes (unref'd: they never keep the process alive). */
  start(): void {
    if (this.probing || this.policy.probeIntervalMs <= 0) return;
    this.probing = true;
    const tick = (): void => {
      if (!this.probing) return;
      this.timer = setTimeout(() => void this.probeAll().finally(tick), this.policy.probeIntervalMs);
      this.timer.unref();
    };
    tick();
  }

  /** Stops the background probes (a round in flight finishes; none follows). */
  stop(): void {
    this.probing = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Probes every member whose result is older than the cache time (one round at a time). */
  fresh(): Promise<void> {
    const now = Date.now();
    const stale = this.members.some((m) => {
      const p = this.probes.get(m);
      return !p || now - p.at >= this.policy.probeCacheMs;
    });
    return stale ? this.probeAll() : Promise.resolve();
  }

  /** Forgets every probe result: the next fresh() probes again. */
  invalidate(): void {
    this.probes.clear();
  }

  lastProbe(m: HsmMember): Probe | undefined {
    return this.probes.get(m);
  }

  /** Why the member is in its state, for /readyz and kmsctl. */
  detail(m: HsmMember): string {
    const state = this.state(m);
    if (state === 'UNAVAILABLE') return m.domain ? m.lastError : (m.domainProblem ?? 'no domain keys: run cluster add-member');
    const p = this.probes.get(m);
    if (p?.error) return p.error;
    if (state === 'ACTIVE') return 'ok';
    const slow = p?.ms !== undefined && p.ms > this.policy.degradedLatencyMs;
    return slow
      ? `probe ${p.ms!.toFixed(1)} ms (over ${this.policy.degradedLatencyMs} ms)`
      : `${m.recentErrors} session or device errors since the last good probe`;
  }

  private probeAll(): Promise<void> {
    this.round ??= this.probeRound().finally(() => (this.round = undefined));
    return this.round;
  }

  private async probeRound(): Promise<void> {
    const usable = this.members.filter((m) => this.state(m) !== 'UNAVAILABLE');
    const canary = usable.length > 0 ? await this.canary() : undefined;
    for (const m of this.members) {
      const at = Date.now();
      if (this.state(m) === 'UNAVAILABLE') this.probes.set(m, { at });
      else if (!canary) this.probes.set(m, { at, error: 'no canary key could be made' });
      else await this.probe(m, canary, at);
    }
  }

  /** Timed here, around the whole call: what a caller would wait. */
  private async probe(m: HsmMember, canary: Canary, at: number): Promise<void> {
    const started = process.hrtime.bigint();
    try {
      await m.probe(canary === 'domain-mac' ? undefined : canary);
    } catch (e) {
      if (e instanceof PoolExhaustedError) {
        // busy, not broken: re-initialising would abort the work that keeps it busy
        this.probes.set(m, { at, error: `health probe found every session busy: ${e.message}` });
        if (m.state === 'ACTIVE') m.grade('DEGRADED');
        return;
      }
      this.probes.set(m, { at });
      m.fail(`health probe failed: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    this.probes.set(m, { at, ms });
    if (m.state === 'UNAVAILABLE') return;
    m.recentErrors = 0;
    m.grade(ms > this.policy.degradedLatencyMs ? 'DEGRADED' : 'ACTIVE');
  }
}
