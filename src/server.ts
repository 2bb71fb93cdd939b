/**
 * One serving process: opens the store, HSM clusters, IAM and audit (services.ts) and serves the
 * API on the configured address; closing drains requests in flight. main.ts runs one of these, or a
 * supervisor with several (workers.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createListener } from './api/app';
import { DEV_CREDENTIALS } from './cli/dev-init';
import { isLoopback, ServerConfig } from './config';
import { openServices, Services, ServicesOptions } from './services';

export interface RunningServer {
  url: string;
  port: number;
  services: Services;
  /** The Node HTTP(S) server (to observe connections and requests; closing goes through close()). */
  http: Server;
  /** Stops accepting, lets requests in flight finish (up to the grace period), closes everything. */
  close(): Promise<void>;
}

function listenGuard(config: ServerConfig): void {
  if (!config.tls && !isLoopback(config.listen.host) && !config.allowInsecure) {
    throw new Error(`refusing to listen on ${config.listen.host} without TLS: configure tls.cert and tls.key, or set allowInsecure: true`);
  }
}

/**
 * Keep-alive connections during a shutdown: a response sent once closing has begun carries
 * `Connection: close` (the socket ends after it), and a connection left idle is closed at once, so
 * the server stops as soon as the requests in flight are answered instead of waiting for clients to
 * hang up. Connections that have not sent their first request yet are left alone: their request is
 * answered (with `Connection: close`), and the grace period bounds those that never send one.
 */
function drainOnClose(server: Server): () => void {
  let closing = false;
  const unanswered = new Set<ServerResponse>();
  server.prependListener('request', (_req: IncomingMessage, res: ServerResponse) => {
    if (closing) res.setHeader('Connection', 'close');
    unanswered.add(res);
    res.once('close', () => {
      unanswered.delete(res);
      if (closing) server.closeIdleConnections();
    });
  });
  return () => {
    closing = true;
    for (const res of unanswered) if (!res.headersSent) res.setHeader('Connection', 'close');
  };
}

function bracketed(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** Where a client on this machine reaches the server (an unspecified address is reached on loopback). */
function localEndpoint(config: ServerConfig, port: number): string {
  const host = config.listen.host === '0.0.0.0' ? '127.0.0.1' : config.listen.host === '::' ? '::1' : config.listen.host;
  return `${bracketed(host)}:${port}`;
}

/** How to point the SDK at this server with the development credentials (never the SecretKey itself). */
export function devCredentialsHint(config: ServerConfig, port: number): Record<string, unknown> | undefined {
  const file = join(config.dataDir, DEV_CREDENTIALS);
  if (!existsSync(file)) return undefined;
  const endpoint = localEndpoint(config, port);
  const protocol = config.tls ? 'https://' : 'http://';
  return {
    level: 'info',
    msg: `development root credentials are in ${file}: tencentcloud.kms.v20190118.Client({ credential: { secretId, secretKey } from that file, region: '${config.regions[0]}', profile: { httpProfile: { endpoint: '${endpoint}', protocol: '${protocol}' } } })`,
    credentialsFile: file, endpoint, protocol, region: config.regions[0],
  };
}

export interface StartOptions {
  /** Passed to openServices (a worker process brings its rate limiter, skips the start-up repair). */
  services?: Omit<ServicesOptions, 'log'>;
  /** What /metrics answers; default this process's registry. */
  scrape?: () => Promise<string>;
  /** Log the "listening" line and the SDK hint (default true; a worker leaves that to its supervisor). */
  announce?: boolean;
}

function urlOf(config: ServerConfig, port: number): string {
  return `${config.tls ? 'https' : 'http'}://${bracketed(config.listen.host)}:${port}`;
}

/** The "listening" line (and the SDK hint when development credentials exist). */
export function announce(config: ServerConfig, port: number, log: (line: Record<string, unknown>) => void, extra: Record<string, unknown> = {}): string {
  const url = urlOf(config, port);
  log({ level: 'info', msg: `KMS listening on ${url}`, dataDir: config.dataDir, regions: config.regions, clusters: config.clusters.map((c) => c.id), ...extra });
  const hint = devCredentialsHint(config, port);
  if (hint) log(hint);
  return url;
}

export async function startServer(
  config: ServerConfig, log: (line: Record<string, unknown>) => void = (l) => process.stdout.write(JSON.stringify(l) + '\n'), options: StartOptions = {},
): Promise<RunningServer> {
  listenGuard(config);
  const services = await openServices(config, { ...options.services, log });
  let server: Server;
  try {
    const app = createListener({ ...services.apiDeps(), log: { write: log }, scrape: options.scrape });
    server = config.tls
      ? createHttpsServer({ cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) }, app)
      : createHttpServer(app);
    server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.listen.port, config.listen.host, () => resolve());
    });
  } catch (e) {
    await services.close().catch(() => undefined);
    throw e;
  }
  const beginClosing = drainOnClose(server);
  const port = (server.address() as AddressInfo).port;
  const url = options.announce === false ? urlOf(config, port) : announce(config, port, log);
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      beginClosing();
      const drained = new Promise<void>((resolve) => server.close(() => resolve()));
      const timer = setTimeout(() => server.closeAllConnections(), config.shutdownGraceMs);
      await drained;
      clearTimeout(timer);
      await services.close();
    })();
    return closing;
  };
  return { url, port, services, http: server, close };
}

