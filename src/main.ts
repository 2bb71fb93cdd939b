/**
 * The server process: `node dist/src/main.js [--data-dir DIR]` (what `make run` starts).
 * Loads <data dir>/kms.yaml, opens the store, HSM clusters, IAM and audit, and serves the API.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createApp } from './api/app';
import { isLoopback, loadServerConfig, ServerConfig } from './config';
import { openServices, Services } from './services';

export interface RunningServer {
  url: string;
  port: number;
  services: Services;
  /** Stops accepting, lets requests in flight finish (up to the grace period), closes everything. */
  close(): Promise<void>;
}

function listenGuard(config: ServerConfig): void {
  if (!config.tls && !isLoopback(config.listen.host) && !config.allowInsecure) {
    throw new Error(`refusing to listen on ${config.listen.host} without TLS: configure tls.cert and tls.key, or set allowInsecure: true`);
  }
}

export async function startServer(config: ServerConfig, log: (line: Record<string, unknown>) => void = (l) => process.stdout.write(JSON.stringify(l) + '\n')): Promise<RunningServer> {
  listenGuard(config);
  const services = await openServices(config, { log });
  const app = createApp({ ...services.apiDeps(), log: { write: log } });
  const server: Server = config.tls
    ? createHttpsServer({ cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) }, app)
    : createHttpServer(app);
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port, config.listen.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `${config.tls ? 'https' : 'http'}://${config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host}:${port}`;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const drained = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), config.shutdownGraceMs);
      await drained;
      clearTimeout(timer);
      await services.close();
    })();
    return closing;
  };
  return { url, port, services, close };
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const dataDir = argValue('--data-dir') ?? process.env.KMS_DATA_DIR ?? './var';
  const config = loadServerConfig(dataDir);
  const server = await startServer(config);
  process.stdout.write(JSON.stringify({ level: 'info', msg: `KMS listening on ${server.url}`, dataDir: config.dataDir, regions: config.regions, clusters: config.clusters.map((c) => c.id) }) + '\n');
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.stdout.write(JSON.stringify({ level: 'info', msg: `${signal}: draining requests and shutting down` }) + '\n');
      server.close().then(() => process.exit(0), () => process.exit(1));
    });
  }
}

if (require.main === module) {
  main().catch((e: Error) => {
    process.stderr.write(`kms: ${e.message}\n`);
    process.exit(1);
  });
}
