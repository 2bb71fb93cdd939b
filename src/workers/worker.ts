/**
 * A worker process (workers: N > 1): serves the API on the port its supervisor shares out, as one
 * process would, except that its rate-limit usage and /metrics go through the supervisor
 * (supervisor.ts), its log lines carry `worker`, and it stops when the supervisor says so or goes away.
 * Worker 0 also serves the operations listener, on a port of its own; its /metrics is every worker's.
 */
import { AggregatorRegistry } from 'prom-client';
import { LineLog, PIPE_BUF } from '../api/request-log';
import { CacheAnswer, ReplayCache, SharedReplayGuard } from '../api/replay-guard';
import { Grant, SharedRateLimiter } from '../api/shared-rate-limit';
import type { ServerConfig } from '../config';
import { startServer } from '../server';
import type { RateLimitConfig } from '../api/rate-limit';
import { isMessage, RateScope, ToSupervisor, ToWorker } from './messages';
import { PendingReplies } from './pending-replies';

/** How long a worker waits for the supervisor's aggregated metrics (prom-client gives up on a silent worker after 5 s). */
const SCRAPE_TIMEOUT_MS = 6_000;

function send(message: ToSupervisor): void {
  if (process.connected) process.send?.(message);
}

/** How long a worker keeps a rate-limit question open (the limiter itself stops waiting after ASK_TIMEOUT_MS). */
const RATE_ANSWER_MS = 10_000;
/** A replay claim the supervisor has not answered in this time is refused (fail closed). */
const REPLAY_ANSWER_MS = 1_000;

type ReplayAnswers = CacheAnswer[];

export async function runWorker(config: ServerConfig, index: number): Promise<void> {
  // straight to the shared stdout, in writes a pipe keeps whole (not through the supervisor: IPC would serialise every line again)
  const lines = new LineLog((chunk) => process.stdout.write(chunk), PIPE_BUF);
  const log = (line: Record<string, unknown>): void => lines.line({ ...line, worker: index });
  // answers prom-client's aggregation requests from the supervisor (this registry is set once services are open)
  AggregatorRegistry.setRegistries([]);
  new AggregatorRegistry();
  const grants = new PendingReplies<Grant>('rate-limit grant', RATE_ANSWER_MS);
  const shared = (scope: RateScope, rate: RateLimitConfig): SharedRateLimiter =>
    new SharedRateLimiter(rate, {
      workers: config.workers,
      ask: (uin, want) => grants.ask((id) => send({ kind: 'kms:rate-ask', id, scope, uin, want })),
      settle: (unused) => send({ kind: 'kms:rate-settle', scope, unused }),
    });
  const limiters =
    config.store.kind === 'sqlite'
      ? { limiter: shared('account', config.rateLimit), principalLimiter: shared('principal', config.rateLimit.perPrincipal) }
      : undefined;
  const claims = new PendingReplies<ReplayAnswers>('replay check', REPLAY_ANSWER_MS);
  const replay =
    config.store.kind === 'sqlite' && config.tc3.replayCache
      ? new SharedReplayGuard({
          ask: (batch) => claims.ask((id) => send({ kind: 'kms:replay-claim', id, claims: batch })),
          local: new ReplayCache(config.tc3.replayCacheSize),
        })
      : undefined;
  const metrics = new PendingReplies<string>('aggregated metrics', SCRAPE_TIMEOUT_MS);
  const scrape = (): Promise<string> => metrics.ask((id) => send({ kind: 'kms:metrics', id }));
  const server = await startServer(config, log, { services: { limiters, replay, repair: index === 0 }, scrape, announce: false, ops: index === 0 });
  AggregatorRegistry.setRegistries([server.services.metrics.registry]);

  let stopping = false;
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    log({ level: 'info', msg: `${why}: draining requests and shutting down` });
    limiters?.limiter.close();
    limiters?.principalLimiter.close();
    const exit = (code: number) => () => (lines.flush(), process.exit(code));
    server.close().then(exit(0), exit(1));
  };
  process.on('message', (m: unknown) => {
    if (isMessage<ToWorker, 'kms:rate-grant'>(m, 'kms:rate-grant')) grants.answer(m.id, { value: { granted: m.granted, waitMs: m.waitMs } });
    else if (isMessage<ToWorker, 'kms:replay-answer'>(m, 'kms:replay-answer')) claims.answer(m.id, { value: m.answers });
    else if (isMessage<ToWorker, 'kms:metrics'>(m, 'kms:metrics'))
      metrics.answer(m.id, m.text !== undefined ? { value: m.text } : { error: m.error ?? 'metrics aggregation failed' });
    else if (isMessage<ToWorker, 'kms:shutdown'>(m, 'kms:shutdown')) stop('supervisor');
  });
  // the supervisor died (kill -9): nobody restarts or aggregates any more, so this worker ends too
  process.on('disconnect', () => stop('supervisor gone'));
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => stop(signal));
  send({ kind: 'kms:ready', worker: index, pid: process.pid, port: server.port, opsPort: server.ops?.port });
}
