/**
 * The HTTP face: `POST /` with the action in X-TC-Action (Tencent Cloud API 3.0), plus /metrics,
 * /healthz and /readyz. Every API answer is HTTP 200 with the Tencent envelope, errors included.
 */
import { randomUUID } from 'node:crypto';
import express, { NextFunction, Request, Response } from 'express';
import type { HsmCluster } from '../hsm/cluster';
import type { Kms } from '../kms/service';
import type { MetadataStore } from '../store/store';
import { toApiError } from './error-codes';
import { HANDLERS } from './handlers';
import type { Metrics } from './metrics';
import { handleRequest, PipelineDeps, refuseUnread } from './pipeline';
import { errorBody } from './response';

export interface AppDeps extends Omit<PipelineDeps, 'handlers'> {
  kms: Kms;
  store: MetadataStore;
  clusters: readonly HsmCluster[];
  metrics: Metrics;
  maxBodyBytes: number;
}

function send(res: Response, body: string): void {
  res.status(200).type('application/json').send(body);
}

export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  const pipeline: PipelineDeps = { ...deps, handlers: HANDLERS };

  app.post('/', express.raw({ type: () => true, limit: deps.maxBodyBytes }), (req, res) => {
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    handleRequest(pipeline, { method: req.method, url: req.originalUrl, headers: req.headers, body, sourceIp: req.socket.remoteAddress ?? '' })
      .then((out) => send(res, out), (e: unknown) => send(res, errorBody('InternalError', `internal error: ${(e as Error).name}`, randomUUID())));
  });

  app.get('/healthz', (_req, res) => res.json({ status: 'alive' }));
  app.get('/readyz', (_req, res) => {
    readiness(deps).then(
      (r) => res.status(r.ready ? 200 : 503).json(r),
      (e: unknown) => res.status(503).json({ ready: false, problems: [(e as Error).message] }),
    );
  });
  app.get('/metrics', (_req, res) => {
    deps.metrics.registry.metrics().then(
      (text) => res.type(deps.metrics.registry.contentType).send(text),
      (e: unknown) => res.status(500).type('text/plain').send(`metrics failed: ${(e as Error).message}`),
    );
  });

  // Body too large, unreadable or undecodable body (a Content-Encoding that is not what it says, or not supported), anything
  // express itself refuses on POST /: still the envelope, and the audit event, log line and metrics of any request. These are
  // the caller's doing (express gives them 4xx statuses): a specific code, never InternalError.
  app.use((err: Error & { type?: string; status?: number }, req: Request, res: Response, next: NextFunction) => {
    if (req.path !== '/' || req.method !== 'POST') return next(err);
    const tooLarge = err.type === 'entity.too.large';
    const code = tooLarge ? 'RequestSizeLimitExceeded' : (err.status ?? 500) < 500 ? 'InvalidParameter' : toApiError(err).code;
    const message = tooLarge ? `request body is larger than ${deps.maxBodyBytes} bytes` : 'the request body could not be read (check Content-Encoding and Content-Length)';
    send(res, refuseUnread(pipeline, { method: req.method, url: req.originalUrl, headers: req.headers, sourceIp: req.socket.remoteAddress ?? '' }, code, message));
  });
  return app;
}

/** How long /readyz waits for the store: a probe must get its answer (503) while a store client is still retrying. */
export const READINESS_STORE_MS = 2_000;

/** Ready: the store answers (in time) and every cluster has at least one healthy member. */
async function readiness(deps: AppDeps): Promise<{ ready: boolean; problems: string[]; clusters: Record<string, string> }> {
  const problems: string[] = [];
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${READINESS_STORE_MS} ms`)), READINESS_STORE_MS);
  });
  await Promise.race([deps.store.countKeys('0', 'kms-internal'), late])
    .catch((e: Error) => problems.push(`store: ${e.message}`))
    .finally(() => clearTimeout(timer));
  const clusters: Record<string, string> = {};
  for (const c of deps.clusters) {
    const h = await c.health();
    clusters[c.id] = h.state;
    if (h.state === 'UNAVAILABLE') problems.push(`cluster ${c.id} has no healthy member`);
  }
  return { ready: problems.length === 0, problems, clusters };
}
