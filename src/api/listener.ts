/**
 * The HTTP request listener. `POST /` (every API call) is served straight from node:http: the body is
 * read with a size limit and handed to the pipeline, the answer written in one go. Everything else
 * (/metrics, /healthz, /readyz) goes to the express app. Measured with `npm run bench:api`: the
 * express router plus body-parser cost about a third of an Encrypt's CPU time, which is why the one
 * hot route bypasses them.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Metrics } from './metrics';
import { handleRequest, PipelineDeps } from './pipeline';
import { errorBody } from './response';

export interface ListenerDeps {
  pipeline: PipelineDeps;
  metrics: Metrics;
  maxBodyBytes: number;
  /** Everything that is not `POST /`. */
  fallback: RequestListener;
}

function reply(res: ServerResponse, body: string): void {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Reads the body; resolves undefined (and stops reading) past the limit. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      req.resume();
      resolve(undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        resolve(undefined);
      } else chunks.push(c);
    });
    req.on('end', () => resolve(size > limit ? undefined : Buffer.concat(chunks, size)));
    req.on('error', reject);
  });
}

export function apiListener(deps: ListenerDeps): RequestListener {
  return (req, res) => {
    if (req.method !== 'POST' || (req.url !== '/' && !req.url?.startsWith('/?'))) {
      deps.fallback(req, res);
      return;
    }
    readBody(req, deps.maxBodyBytes).then(
      (body) => {
        if (body === undefined) {
          deps.metrics.requests.inc({ action: 'unknown', code: 'RequestSizeLimitExceeded' });
          reply(res, errorBody('RequestSizeLimitExceeded', `request body is larger than ${deps.maxBodyBytes} bytes`, randomUUID()));
          return undefined;
        }
        return handleRequest(deps.pipeline, { method: 'POST', url: req.url ?? '/', headers: req.headers, body, sourceIp: req.socket.remoteAddress ?? '' }).then((out) => reply(res, out));
      },
      () => reply(res, errorBody('InvalidRequest', 'the request body could not be read', randomUUID())),
    ).catch(() => {
      if (!res.headersSent) reply(res, errorBody('InternalError', 'internal error', randomUUID()));
    });
  };
}
