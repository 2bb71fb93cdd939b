/**
 * The HTTP face: `POST /` with the action in X-TC-Action (Tencent Cloud API 3.0) and /healthz on
 * the API listener; /metrics, /readyz and /healthz on the operations listener (loopback by default:
 * what the service runs on and how busy it is are the operator's, not every client's). Every API
 * answer is HTTP 200 with the Tencent envelope, errors included.
 */
import type { RequestListener } from 'node:http';
import express from 'express';
import type { HsmCluster } from '../hsm/cluster';
import type { Kms } from '../kms/service';
import type { MetadataStore } from '../store/store';
import { withDeadline } from '../common/deadline';
import { apiListener } from './listener';
import type { Metrics } from './metrics';
import type { PipelineDeps } from './pipeline';

export interface AppDeps extends PipelineDeps {
  kms: Kms;
  store: MetadataStore;
  clusters: readonly HsmCluster[];
  metrics: Metrics;
  maxBodyBytes: number;
  /** What /metrics answers; default this process's registry (a worker asks its supervisor for every worker's). */
  scrape?: () => Promise<string>;
}

function bareApp(): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.get('/healthz', (_req, res) => res.json({ status: 'alive' }));
  return app;
}

/** The operations app: /healthz, /readyz, /metrics (and express's 404 for anything else). */
export function createOpsApp(deps: AppDeps): express.Express {
  const app = bareApp();
  app.get('/readyz', (_req, res) => {
    readiness(deps).then(
      (r) => res.status(r.ready ? 200 : 503).json(r),
      (e: unknown) => res.status(503).json({ ready: false, problems: [(e as Error).message] }),
    );
  });
  app.get('/metrics', (_req, res) => {
    (deps.scrape ?? (() => deps.metrics.registry.metrics()))().then(
      (text) => res.type(deps.metrics.registry.contentType).send(text),
      (e: unknown) =>
        res
          .status(500)
          .type('text/plain')
          .send(`metrics failed: ${(e as Error).message}`),
    );
  });
  return app;
}

/** What the API's HTTP(S) server runs: `POST /` (the API) straight from node:http, /healthz (alive, nothing more) through express. */
export function createListener(deps: AppDeps): RequestListener {
  return apiListener({ pipeline: deps, maxBodyBytes: deps.maxBodyBytes, fallback: bareApp() });
}

/** How long /readyz waits for the store: a probe must get its answer (503) while a store client is still retrying. */
export const READINESS_STORE_MS = 2_000;

/** Ready: the store answers (in time) and every cluster has at least one healthy member. */
async function readiness(deps: AppDeps): Promise<{ ready: boolean; problems: string[]; clusters: Record<string, string> }> {
  const problems: string[] = [];
  const late = (): never => {
    throw new Error(`no answer within ${READINESS_STORE_MS} ms`);
  };
  await withDeadline(deps.store.ping(), READINESS_STORE_MS, late).catch((e: Error) => problems.push(`store: ${e.message}`));
  const clusters: Record<string, string> = {};
  for (const c of deps.clusters) {
    const h = await c.health();
    clusters[c.id] = h.state;
    if (h.state === 'UNAVAILABLE') problems.push(`cluster ${c.id} has no healthy member`);
  }
  return { ready: problems.length === 0, problems, clusters };
}
