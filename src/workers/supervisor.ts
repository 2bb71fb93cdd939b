/**
 * `workers: N` (N > 1): this process forks N workers that share the listening port (node:cluster,
 * connections dealt round-robin) and serves nothing itself. It starts worker 0 first (it repairs
 * the store at start-up), then the others; restarts a worker that dies (with backoff); keeps the
 * rate-limit ledger of the embedded store; aggregates /metrics across workers (worker 0 serves the
 * operations listener); and on close tells
 * every worker to drain, waiting for them within a bound. Workers write their own log lines.
 */
import cluster, { Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import { ReplayCache } from '../api/replay-guard';
import { RateLedger } from '../api/shared-rate-limit';
import type { ServerConfig } from '../config';
import { announce, opsUrlOf } from '../server';
import { CLOSE_BUDGET_MS } from '../services';
import { isMessage, ToSupervisor, ToWorker } from './messages';

type Log = (line: Record<string, unknown>) => void;

export interface Supervisor {
  url: string;
  port: number;
  /** Worker 0's operations listener (/metrics of every worker, worker 0's /readyz). */
  opsPort?: number;
  close(): Promise<void>;
}

/** Restart delay: 0.5 s, doubled for each death within a minute of the previous start, at most 30 s. */
export function restartDelay(previousDelayMs: number | undefined, ranForMs: number): number {
  if (previousDelayMs === undefined || ranForMs > 60_000) return 500;
  return Math.min(30_000, previousDelayMs * 2);
}

interface Slot {
  worker?: Worker;
  startedAt: number;
  delayMs?: number;
  timer?: NodeJS.Timeout;
}

function reply(worker: Worker, message: ToWorker): void {
  if (worker.isConnected()) worker.send(message);
}

export async function supervise(config: ServerConfig, log: Log): Promise<Supervisor> {
  const slots = new Map<number, Slot>();
  const ledgers =
    config.store.kind === 'sqlite' ? { account: new RateLedger(config.rateLimit), principal: new RateLedger(config.rateLimit.perPrincipal) } : undefined;
  // the workers' one replay cache (with Redis, each worker claims in Redis)
  const replays = config.store.kind === 'sqlite' && config.tc3.replayCache ? new ReplayCache(config.tc3.replayCacheSize) : undefined;
  const aggregator = new AggregatorRegistry();
  let closing = false;
  /** Start-up is over: from now on a worker that dies is restarted (during start-up, it fails the start). */
  let serving = false;
  /** Workers starting: settled by their ready message (the port) or by their exit. */
  const starting = new Map<number, { resolve: (port: number) => void; reject: (e: Error) => void }>();
  let opsPort: number | undefined;

  const onMessage = (worker: Worker, m: unknown): void => {
    if (isMessage<ToSupervisor, 'kms:rate-ask'>(m, 'kms:rate-ask')) {
      const grant = ledgers ? ledgers[m.scope].grant(worker.id, m.uin, m.want) : { granted: m.want, waitMs: 0 };
      reply(worker, { kind: 'kms:rate-grant', id: m.id, ...grant });
    } else if (isMessage<ToSupervisor, 'kms:replay-claim'>(m, 'kms:replay-claim')) {
      const answers = m.claims.map((c) => (replays ? replays.claim(c) : ('full' as const)));
      reply(worker, { kind: 'kms:replay-answer', id: m.id, answers });
    } else if (isMessage<ToSupervisor, 'kms:rate-settle'>(m, 'kms:rate-settle')) {
      ledgers?.[m.scope].settle(worker.id, m.unused);
    } else if (isMessage<ToSupervisor, 'kms:metrics'>(m, 'kms:metrics')) {
      aggregator.clusterMetrics().then(
        (text) => reply(worker, { kind: 'kms:metrics', id: m.id, text }),
        (e: Error) => reply(worker, { kind: 'kms:metrics', id: m.id, error: e.message }),
      );
    } else if (isMessage<ToSupervisor, 'kms:ready'>(m, 'kms:ready')) {
      log({ level: 'info', msg: `worker ${m.worker} ready (pid ${m.pid})`, worker: m.worker, pid: m.pid });
      if (m.opsPort !== undefined) {
        if (serving && m.opsPort !== opsPort) log({ level: 'info', msg: `KMS operations on ${opsUrlOf(config, m.opsPort)}`, worker: m.worker });
        opsPort = m.opsPort;
      }
      starting.get(m.worker)?.resolve(m.port);
      starting.delete(m.worker);
    }
  };
  cluster.on('message', onMessage);

  const fork = (index: number): Promise<number> => {
    const slot = slots.get(index) ?? { startedAt: 0 };
    slots.set(index, slot);
    slot.startedAt = Date.now();
    slot.timer = undefined;
    const worker = cluster.fork({ KMS_WORKER_INDEX: String(index) });
    slot.worker = worker;
    const started = new Promise<number>((resolve, reject) => starting.set(index, { resolve, reject }));
    worker.once('exit', (code, signal) => {
      slot.worker = undefined;
      ledgers?.account.forget(worker.id);
      ledgers?.principal.forget(worker.id);
      const how = signal ?? `code ${code}`;
      starting.get(index)?.reject(new Error(`worker ${index} exited during start-up (${how})`));
      starting.delete(index);
      if (closing || !serving) return;
      const ranFor = Date.now() - slot.startedAt;
      slot.delayMs = restartDelay(slot.delayMs, ranFor);
      log({
        level: 'error',
        msg: `worker ${index} (pid ${worker.process.pid}) exited (${how}) after ${ranFor} ms; restarting in ${slot.delayMs} ms`,
        worker: index,
      });
      slot.timer = setTimeout(() => {
        fork(index).catch((e: Error) => log({ level: 'error', msg: e.message, worker: index }));
      }, slot.delayMs);
    });
    return started;
  };

  const close = async (): Promise<void> => {
    closing = true;
    const bound = config.shutdownGraceMs + CLOSE_BUDGET_MS + 5_000;
    const alive: Promise<void>[] = [];
    for (const s of slots.values()) {
      if (s.timer) clearTimeout(s.timer);
      const w = s.worker;
      if (!w || w.isDead()) continue;
      alive.push(
        new Promise<void>((resolve) => {
          const kill = setTimeout(() => w.process.kill('SIGKILL'), bound);
          w.once('exit', () => (clearTimeout(kill), resolve()));
        }),
      );
      reply(w, { kind: 'kms:shutdown' });
    }
    await Promise.all(alive);
    cluster.off('message', onMessage);
  };

  let port: number;
  try {
    port = await fork(0);
    const rest = await Promise.all(Array.from({ length: config.workers - 1 }, (_, i) => fork(i + 1)));
    if (rest.some((p) => p !== port)) throw new Error(`workers listen on different ports (${[port, ...rest].join(', ')})`);
  } catch (e) {
    await close();
    throw e;
  }
  serving = true;
  const url = announce(config, port, log, { workers: config.workers }, opsPort);
  return { url, port, opsPort, close };
}
