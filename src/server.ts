/**
 * One serving process: opens the store, HSM clusters, IAM and audit (services.ts) and serves the
 * API on the configured address; closing drains requests in flight. main.ts runs one of these, or a
 * supervisor with several (workers/supervisor.ts, workers/worker.ts).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer as createHttpServer, IncomingMessage, RequestListener, Server, ServerOptions, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import type { SecureContextOptions, TlsOptions } from 'node:tls';
import { createListener, createOpsApp } from './api/app';
import { DEV_CREDENTIALS } from './common/data-dir';
import { ConnectionLimits, isLoopback, ServerConfig, ServerConfigError } from './config';
import { openServices, Services, ServicesOptions } from './services';

export interface RunningServer {
  url: string;
  port: number;
  services: Services;
  /** The Node HTTP(S) server (to observe connections and requests; closing goes through close()). */
  http: Server;
  /** The operations listener (/metrics, /readyz, /healthz); absent in a worker that does not serve it. */
  ops?: { url: string; port: number; http: Server };
  /** Stops accepting, lets requests in flight finish (up to the grace period), closes everything. */
  close(): Promise<void>;
}

function listenGuard(config: ServerConfig): void {
  if (!config.tls && !isLoopback(config.listen.host) && !config.allowInsecure) {
    throw new Error(`refusing to listen on ${config.listen.host} without TLS: configure tls.cert and tls.key, or set allowInsecure: true`);
  }
  if (!isLoopback(config.ops.host) && !config.allowInsecure) {
    throw new Error(
      `refusing to serve the operations listener (plain HTTP, no authentication) on ${config.ops.host}: keep ops.host on loopback, or set allowInsecure: true`,
    );
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

/** TLS 1.2 and 1.3 only; for 1.2, ECDHE key exchange with AEAD ciphers only (TLS 1.3 suites are all of that kind). */
export const TLS_CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
].join(':');

/** The certificate and key, the key file checked like PIN files: owner-only. */
export function tlsOptions(tls: { cert: string; key: string }): TlsOptions & SecureContextOptions {
  if (!existsSync(tls.key)) throw new ServerConfigError(`TLS key file ${tls.key} does not exist`);
  if ((statSync(tls.key).mode & 0o077) !== 0) throw new ServerConfigError(`TLS key file ${tls.key} must not be readable by group or others (chmod 600)`);
  return { cert: readFileSync(tls.cert), key: readFileSync(tls.key), minVersion: 'TLSv1.2', ciphers: TLS_CIPHERS, honorCipherOrder: true };
}

/** How often Node looks for connections past their header or request timeout (its default, 30 s, would add that much to each). */
const CONNECTION_CHECK_MS = 1_000;

function httpOptions(limits: ConnectionLimits): ServerOptions {
  return { headersTimeout: limits.headersTimeoutMs, requestTimeout: limits.requestTimeoutMs, connectionsCheckingInterval: CONNECTION_CHECK_MS };
}

/** At most `limits.max` connections (Node closes the rest at accept) and `limits.perIp` from one address. */
function boundConnections(server: Server, limits: ConnectionLimits): void {
  server.maxConnections = limits.max;
  server.keepAliveTimeout = limits.idleTimeoutMs;
  const perIp = new Map<string, number>();
  server.prependListener('connection', (socket: Socket) => {
    const ip = socket.remoteAddress ?? '';
    const open = (perIp.get(ip) ?? 0) + 1;
    if (open > limits.perIp) {
      socket.destroy();
      return;
    }
    perIp.set(ip, open);
    socket.once('close', () => {
      const left = (perIp.get(ip) ?? 1) - 1;
      if (left > 0) perIp.set(ip, left);
      else perIp.delete(ip);
    });
  });
}

function apiServer(config: ServerConfig, tls: TlsOptions | undefined, app: RequestListener): Server {
  // a TLS handshake gets as long as headers do (Node's default is 120 s)
  const server = tls
    ? createHttpsServer({ ...httpOptions(config.connections), ...tls, handshakeTimeout: config.connections.headersTimeoutMs }, app)
    : createHttpServer(httpOptions(config.connections), app);
  boundConnections(server, config.connections);
  return server;
}

/** Connections to the operations listener (scrapers and probes: a few). */
const OPS_CONNECTIONS: ConnectionLimits = { headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, idleTimeoutMs: 5_000, max: 64, perIp: 64 };

function listen(server: Server, port: number, host: string, exclusive: boolean): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, exclusive }, () => (server.off('error', reject), resolve()));
  });
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
    msg:
      `development root credentials are in ${file}: tencentcloud.kms.v20190118.Client({ credential: { secretId, secretKey } from that file, ` +
      `region: '${config.regions[0]}', profile: { httpProfile: { endpoint: '${endpoint}', protocol: '${protocol}' } } })`,
    credentialsFile: file,
    endpoint,
    protocol,
    region: config.regions[0],
  };
}

export interface StartOptions {
  /** Passed to openServices (a worker process brings its rate limiter, skips the start-up repair). */
  services?: Omit<ServicesOptions, 'log'>;
  /** What /metrics answers; default this process's registry. */
  scrape?: () => Promise<string>;
  /** Log the "listening" line and the SDK hint (default true; a worker leaves that to its supervisor). */
  announce?: boolean;
  /** Serve the operations listener (default true; of several workers, only worker 0 does, on a port of its own). */
  ops?: boolean;
}

function urlOf(config: ServerConfig, port: number): string {
  return `${config.tls ? 'https' : 'http'}://${bracketed(config.listen.host)}:${port}`;
}

export function opsUrlOf(config: ServerConfig, port: number): string {
  return `http://${bracketed(config.ops.host)}:${port}`;
}

/** The "listening" and "operations" lines (and the SDK hint when development credentials exist). */
export function announce(
  config: ServerConfig,
  port: number,
  log: (line: Record<string, unknown>) => void,
  extra: Record<string, unknown> = {},
  opsPort?: number,
): string {
  const url = urlOf(config, port);
  log({
    level: 'info',
    msg: `KMS listening on ${url}`,
    dataDir: config.dataDir,
    regions: config.regions,
    clusters: config.clusters.map((c) => c.id),
    ...extra,
  });
  if (opsPort !== undefined) log({ level: 'info', msg: `KMS operations on ${opsUrlOf(config, opsPort)}`, paths: ['/metrics', '/readyz', '/healthz'] });
  const hint = devCredentialsHint(config, port);
  if (hint) log(hint);
  return url;
}

export async function startServer(
  config: ServerConfig,
  log: (line: Record<string, unknown>) => void = (l) => process.stdout.write(JSON.stringify(l) + '\n'),
  options: StartOptions = {},
): Promise<RunningServer> {
  listenGuard(config);
  const tls = config.tls ? tlsOptions(config.tls) : undefined;
  const services = await openServices(config, { ...options.services, log });
  for (const c of services.clusters) for (const warning of c.warnings) log({ level: 'warn', cluster: c.id, msg: warning });
  const deps = { ...services.apiDeps(), log: { write: log }, scrape: options.scrape };
  const server = apiServer(config, tls, createListener(deps));
  const ops = options.ops === false ? undefined : createHttpServer(httpOptions(OPS_CONNECTIONS), createOpsApp(deps));
  try {
    await listen(server, config.listen.port, config.listen.host, false);
    if (ops) {
      boundConnections(ops, OPS_CONNECTIONS);
      // exclusive: in a worker, a port of its own rather than one shared through the supervisor
      await listen(ops, config.ops.port, config.ops.host, true);
    }
  } catch (e) {
    if (server.listening) server.close();
    await services.close().catch(() => undefined);
    throw e;
  }
  const beginClosing = drainOnClose(server);
  const port = (server.address() as AddressInfo).port;
  const opsPort = ops ? (ops.address() as AddressInfo).port : undefined;
  const url = options.announce === false ? urlOf(config, port) : announce(config, port, log, {}, opsPort);
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      beginClosing();
      ops?.close();
      ops?.closeAllConnections();
      const drained = new Promise<void>((resolve) => server.close(() => resolve()));
      const timer = setTimeout(() => server.closeAllConnections(), config.shutdownGraceMs);
      await drained;
      clearTimeout(timer);
      await services.close();
    })();
    return closing;
  };
  const opsInfo = ops && opsPort !== undefined ? { url: opsUrlOf(config, opsPort), port: opsPort, http: ops } : undefined;
  return { url, port, services, http: server, ops: opsInfo, close };
}
