import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { HsmCluster } from '../hsm/cluster';
import type { Alarms } from '../kms/alarms';

const STATE_VALUE = { ACTIVE: 2, DEGRADED: 1, UNAVAILABLE: 0 } as const;

export interface MetricsSources {
  clusters: readonly HsmCluster[];
  alarms: Alarms;
  /** Keys per state across the store (sampled at scrape time). */
  keysByState?: () => Promise<Record<string, number>>;
  audit?: () => { pending: number; dropped: number; written: number };
}

/**
 * Everything /metrics shows: requests, latencies, HSM operations, sessions, health, keys, alarms.
 * With several workers the supervisor aggregates their registries: counters, histograms and
 * session gauges add up, and so do the slow queues' depth, running count and limit (each serving
 * process has its own queue per cluster); health is the worst any worker sees; key counts (one store) the largest.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'action' | 'code'>;
  readonly latency: Histogram<'action'>;
  readonly hsmLatency: Histogram<'cluster' | 'member' | 'operation' | 'outcome'>;

  constructor(sources: MetricsSources) {
    collectDefaultMetrics({ register: this.registry, prefix: 'kms_process_' });
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'kms_requests_total',
      help: 'API requests by action and result code (Success or the error code)',
      labelNames: ['action', 'code'],
      registers,
    });
    this.latency = new Histogram({
      name: 'kms_request_duration_seconds',
      help: 'API request latency by action',
      labelNames: ['action'],
      registers,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    });
    this.hsmLatency = new Histogram({
      name: 'kms_hsm_operation_duration_seconds',
      help: 'HSM operation latency by cluster, member and operation',
      labelNames: ['cluster', 'member', 'operation', 'outcome'],
      registers,
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1],
    });
    const alarms = new Counter({ name: 'kms_alarms_total', help: 'Alarms raised by kind', labelNames: ['kind'], registers });
    sources.alarms.onAlarm((a) => alarms.inc({ kind: a.kind }));
    for (const c of sources.clusters) {
      for (const m of c.members) {
        m.onOperation = (e) =>
          this.hsmLatency.observe({ cluster: c.id, member: e.member, operation: e.operation, outcome: e.ok ? 'ok' : 'error' }, e.ms / 1000);
      }
    }
    this.gauges(sources, registers);
  }

  private gauges(sources: MetricsSources, registers: Registry[]): void {
    const each = (fn: (c: HsmCluster, m: HsmCluster['members'][number]) => number) =>
      function (this: Gauge<'cluster' | 'member'>) {
        for (const c of sources.clusters) for (const m of c.members) this.set({ cluster: c.id, member: m.id }, fn(c, m));
      };
    new Gauge({
      name: 'kms_hsm_sessions_open',
      help: 'Open PKCS#11 sessions per member',
      labelNames: ['cluster', 'member'],
      registers,
      collect: each((_c, m) => m.sessions.open),
    });
    new Gauge({
      name: 'kms_hsm_sessions_busy',
      help: 'Sessions in use per member',
      labelNames: ['cluster', 'member'],
      registers,
      collect: each((_c, m) => m.sessions.busy),
    });
    new Gauge({
      name: 'kms_hsm_session_waiters',
      help: 'Callers waiting for a session per member',
      labelNames: ['cluster', 'member'],
      registers,
      collect: each((_c, m) => m.sessions.waiting),
    });
    new Gauge({
      name: 'kms_hsm_cached_handles',
      help: 'Unwrapped key handles cached per member',
      labelNames: ['cluster', 'member'],
      registers,
      collect: each((_c, m) => m.cachedHandles),
    });
    const perCluster = (fn: (c: HsmCluster) => number) =>
      function (this: Gauge<'cluster'>) {
        for (const c of sources.clusters) this.set({ cluster: c.id }, fn(c));
      };
    new Gauge({
      name: 'kms_hsm_slow_queue_depth',
      help: "Slow HSM operations (key-pair generation, private-key RSA/EC) waiting in the cluster's queue",
      labelNames: ['cluster'],
      registers,
      collect: perCluster((c) => c.slow.queued),
    });
    new Gauge({
      name: 'kms_hsm_slow_running',
      help: 'Slow HSM operations admitted and running per cluster',
      labelNames: ['cluster'],
      registers,
      collect: perCluster((c) => c.slow.running),
    });
    new Gauge({
      name: 'kms_hsm_slow_queue_limit',
      help: 'Slow HSM operations that may wait per cluster (one more is refused)',
      labelNames: ['cluster'],
      registers,
      collect: perCluster((c) => c.slow.limits.queued),
    });
    new Counter({
      name: 'kms_hsm_slow_refused_total',
      help: "Slow HSM operations refused because the cluster's queue was full (RequestLimitExceeded)",
      labelNames: ['cluster'],
      registers,
      collect() {
        this.reset();
        for (const c of sources.clusters) this.inc({ cluster: c.id }, c.slow.refused);
      },
    });
    new Gauge({
      name: 'kms_hsm_member_health',
      help: 'Member health: 2 ACTIVE, 1 DEGRADED, 0 UNAVAILABLE',
      labelNames: ['cluster', 'member'],
      registers,
      aggregator: 'min',
      async collect() {
        for (const c of sources.clusters) {
          const h = await c.health();
          for (const m of h.members) this.set({ cluster: c.id, member: m.id }, STATE_VALUE[m.state]);
        }
      },
    });
    new Gauge({
      name: 'kms_hsm_cluster_health',
      help: 'Cluster health: 2 ACTIVE, 1 DEGRADED, 0 UNAVAILABLE',
      labelNames: ['cluster'],
      registers,
      aggregator: 'min',
      async collect() {
        for (const c of sources.clusters) this.set({ cluster: c.id }, STATE_VALUE[(await c.health()).state]);
      },
    });
    if (sources.keysByState) {
      const keys = sources.keysByState;
      new Gauge({
        name: 'kms_keys',
        help: 'Customer master keys by state',
        labelNames: ['state'],
        registers,
        aggregator: 'max',
        async collect() {
          // a store that cannot answer must not take the whole scrape down: the series go away until it answers
          const counts = await keys().catch(() => undefined);
          this.reset();
          for (const [state, n] of Object.entries(counts ?? {})) this.set({ state }, n);
        },
      });
    }
    if (sources.audit) {
      const audit = sources.audit;
      new Gauge({
        name: 'kms_audit_events_pending',
        help: 'Audit events buffered, not yet written',
        registers,
        collect() {
          this.set(audit().pending);
        },
      });
      new Gauge({
        name: 'kms_audit_events_dropped',
        help: 'Audit events dropped because the store was unavailable',
        registers,
        collect() {
          this.set(audit().dropped);
        },
      });
    }
  }
}
