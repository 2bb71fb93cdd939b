/**
 * The HTTP request listener. `POST /` (every API call) is served straight from node:http: the body is
 * read with a size limit (decoded if gzip or deflate, the limit applying to the decoded size) and
 * handed to the pipeline, the answer written in one go. Everything else (/metrics, /healthz,
 * /readyz, and whatever is not served) goes to the express app. Measured with `npm run bench:api`:
 * the express router, body-parser and res.send cost about a third of an Encrypt's CPU time, which is
 * why the one hot route bypasses them (docs/benchmarks.md).
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { inflate, gunzip, InputType, ZlibOptions } from 'node:zlib';
import { handleRequest, PipelineDeps, RawRequest, refuseUnread } from './pipeline';

export interface ListenerDeps {
  pipeline: PipelineDeps;
  maxBodyBytes: number;
  /** Everything that is not `POST /`. */
  fallback: RequestListener;
}

/** Why a body could not be read: the code and message of its envelope; `close`: the rest of the body is not read, the connection ends after the answer. */
class UnreadableBody extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly close = false,
  ) {
    super(message);
  }
}

// a Map, not an object: a Content-Encoding named like an Object.prototype member must not find a function
const DECODERS = new Map<string, (buf: InputType, options: ZlibOptions, cb: (err: Error | null, out: Buffer) => void) => void>([
  ['gzip', gunzip],
  ['deflate', inflate],
]);

/**
 * The answer; with `close`, `Connection: close`: node:http then ends the socket once the answer is
 * written instead of reading the rest of the body to reach a next request.
 */
function reply(res: ServerResponse, body: string, close = false): void {
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    ...(close ? { connection: 'close' } : {}),
  });
  res.end(body);
}

function tooLarge(limit: number): UnreadableBody {
  return new UnreadableBody('RequestSizeLimitExceeded', `request body is larger than ${limit} bytes`, true);
}

/** Reads the raw body; refuses as soon as it (or its declared length) passes the limit, reading no further. */
function readRaw(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers['content-length'] ?? 0) > limit) {
      reject(tooLarge(limit));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size <= limit) chunks.push(c);
      else {
        req.off('data', onData);
        req.pause();
        reject(tooLarge(limit));
      }
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks, size)));
    req.on('error', () => reject(new UnreadableBody('InvalidParameter', 'the request body could not be read')));
  });
}

/** Identity, gzip or deflate; the decoded body is held to the same limit (no compression bombs). */
function decode(raw: Buffer, encoding: string | undefined, limit: number): Promise<Buffer> {
  const name = (encoding ?? 'identity').trim().toLowerCase();
  if (name === 'identity' || name === '') return Promise.resolve(raw);
  const decoder = DECODERS.get(name);
  if (!decoder)
    return Promise.reject(
      new UnreadableBody('InvalidParameter', `Content-Encoding ${JSON.stringify(name.slice(0, 32))} is not supported (identity, gzip, deflate)`),
    );
  return new Promise((resolve, reject) => {
    decoder(raw, { maxOutputLength: limit }, (err, out) => {
      if (!err) resolve(out);
      else if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') reject(tooLarge(limit));
      else reject(new UnreadableBody('InvalidParameter', `the request body is not valid ${name} data`));
    });
  });
}

export function apiListener(deps: ListenerDeps): RequestListener {
  return (req, res) => {
    if (req.method !== 'POST' || (req.url !== '/' && !req.url?.startsWith('/?'))) {
      deps.fallback(req, res);
      return;
    }
    const head: Omit<RawRequest, 'body'> = { method: 'POST', url: req.url, headers: req.headers, sourceIp: req.socket.remoteAddress ?? '' };
    let close = false;
    readRaw(req, deps.maxBodyBytes)
      .then((raw) => decode(raw, req.headers['content-encoding'], deps.maxBodyBytes))
      .then(
        (body) => handleRequest(deps.pipeline, { ...head, body }),
        (e: unknown) => {
          const why = e instanceof UnreadableBody ? e : new UnreadableBody('InvalidParameter', 'the request body could not be read');
          close = why.close;
          return refuseUnread(deps.pipeline, head, why.code, why.message);
        },
      )
      .then(
        (out) => reply(res, out, close),
        () => reply(res, refuseUnread(deps.pipeline, head, 'InternalError', 'internal error')),
      );
  };
}
