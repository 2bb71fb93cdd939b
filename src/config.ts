/**
 * The server's configuration: `<data dir>/kms.yaml` (written by `kmsctl init`), with the HSM
 * clusters in the same file (`clusters:`, see docs/clusters.example.yaml) and a few environment
 * overrides (KMS_PORT, KMS_HOST, KMS_WORKERS). Secrets are never in it: PINs come from env or 0600 files.
 */
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { parse } from 'yaml';
import { ClusterConfig, parseClusterConfig } from './hsm/config';
import { ConfigError } from './hsm/errors';

export type StoreConfig =
  | { kind: 'sqlite'; path: string }
  | { kind: 'redis'; host: string; port: number; allowVolatile: boolean };

export interface ServerConfig {
  dataDir: string;
  listen: { host: string; port: number };
  tls?: { cert: string; key: string };
  /** Listen on a non-loopback address without TLS (refused unless true). */
  allowInsecure: boolean;
  store: StoreConfig;
  /** 32 hex characters; the same on every node, never changed. */
  deploymentId: Buffer;
  regions: string[];
  maxKeysPerRegion: number;
  maxBodyBytes: number;
  rateLimit: { perSecond: number; burst: number };
  /** Expensive actions (key-pair generation, RSA decryption, signing) in flight per tenant and serving process; 0 = no cap. */
  expensivePerTenant: number;
  alarms: { log?: string; webhook?: string };
  /** Requests in flight get this long to finish on shutdown. */
  shutdownGraceMs: number;
  /** Serving processes (1: this process serves; more: a supervisor and that many workers on one port). */
  workers: number;
  clusters: ClusterConfig[];
}

export const CONFIG_FILE = 'kms.yaml';

type Doc = Record<string, unknown>;

function section(doc: Doc, key: string): Doc {
  const v = doc[key];
  if (v === undefined) return {};
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(`${CONFIG_FILE}: "${key}" must be a mapping`);
  return v as Doc;
}

function int(doc: Doc, key: string, fallback: number, min: number, max: number, where = CONFIG_FILE): number {
  const v = doc[key] ?? fallback;
  if (!Number.isInteger(v) || (v as number) < min || (v as number) > max) throw new ConfigError(`${where}: "${key}" must be an integer from ${min} to ${max}`);
  return v as number;
}

function text(doc: Doc, key: string, fallback?: string, where = CONFIG_FILE): string {
  const v = doc[key] ?? fallback;
  if (typeof v !== 'string' || v === '') throw new ConfigError(`${where}: "${key}" must be a non-empty string`);
  return v;
}

function optionalText(doc: Doc, key: string, where: string): string | undefined {
  return doc[key] === undefined ? undefined : text(doc, key, undefined, where);
}

function parseStore(doc: Doc, dataDir: string): StoreConfig {
  const s = section(doc, 'store');
  const kind = s.kind ?? 'sqlite';
  if (kind === 'sqlite') {
    const path = text(s, 'path', 'kms.db', 'store');
    return { kind, path: isAbsolute(path) ? path : join(dataDir, path) };
  }
  if (kind !== 'redis') throw new ConfigError(`store.kind must be sqlite or redis, not ${JSON.stringify(kind)}`);
  if (s.password !== undefined) throw new ConfigError('store.password: Redis authentication is not supported yet; protect the Redis by network (bind, firewall)');
  return {
    kind,
    host: text(s, 'host', '127.0.0.1', 'store'),
    port: int(s, 'port', 6379, 1, 65535, 'store'),
    allowVolatile: s.allowVolatile === true,
  };
}

export const MAX_WORKERS = 256;

/** `workers`: a count, or "auto" (one per CPU the process may use); KMS_WORKERS overrides. */
function parseWorkers(doc: Doc, env: NodeJS.ProcessEnv): number {
  const raw = env.KMS_WORKERS ?? doc.workers ?? 1;
  if (raw === 'auto') return Math.min(MAX_WORKERS, availableParallelism());
  const n = typeof raw === 'string' && /^[0-9]+$/.test(raw) ? Number(raw) : raw;
  if (!Number.isInteger(n) || (n as number) < 1 || (n as number) > MAX_WORKERS) {
    throw new ConfigError(`${CONFIG_FILE}: "workers" must be "auto" or an integer from 1 to ${MAX_WORKERS}, got ${JSON.stringify(raw)}`);
  }
  return n as number;
}

/** Parses kms.yaml; `env` may override the port (KMS_PORT), host (KMS_HOST) and worker count (KMS_WORKERS). */
export function parseServerConfig(source: string, dataDir: string, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const doc = parse(source) as unknown;
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`${CONFIG_FILE}: expected a mapping`);
  const d = doc as Doc;
  const listen = section(d, 'listen');
  const port = env.KMS_PORT !== undefined ? Number(env.KMS_PORT) : (listen.port ?? 8080);
  if (!Number.isInteger(port) || (port as number) < 0 || (port as number) > 65535) throw new ConfigError(`port must be 0..65535, got ${String(env.KMS_PORT ?? listen.port)}`);
  const tls = section(d, 'tls');
  const deployment = text(d, 'deploymentId');
  if (!/^[0-9a-f]{32}$/.test(deployment)) throw new ConfigError(`${CONFIG_FILE}: deploymentId must be 32 lowercase hex characters`);
  const regions = d.regions ?? ['ap-guangzhou'];
  if (!Array.isArray(regions) || regions.length === 0 || !regions.every((r) => typeof r === 'string' && /^[a-z0-9-]{1,64}$/.test(r))) {
    throw new ConfigError(`${CONFIG_FILE}: regions must be a non-empty list of region names`);
  }
  const rate = section(d, 'rateLimit');
  const alarms = section(d, 'alarms');
  const limits = section(d, 'limits');
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(dataDir, p));
  return {
    dataDir,
    listen: { host: env.KMS_HOST ?? text(listen, 'host', '127.0.0.1', 'listen'), port: port as number },
    tls: tls.cert === undefined && tls.key === undefined ? undefined : { cert: abs(text(tls, 'cert', undefined, 'tls')), key: abs(text(tls, 'key', undefined, 'tls')) },
    allowInsecure: d.allowInsecure === true,
    store: parseStore(d, dataDir),
    deploymentId: Buffer.from(deployment, 'hex'),
    regions: regions as string[],
    maxKeysPerRegion: int(d, 'maxKeysPerRegion', 200, 0, 10_000_000),
    maxBodyBytes: int(d, 'maxBodyBytes', 256 * 1024, 1024, 10 * 1024 * 1024),
    rateLimit: { perSecond: int(rate, 'perSecond', 1000, 1, 1_000_000, 'rateLimit'), burst: int(rate, 'burst', 2000, 1, 10_000_000, 'rateLimit') },
    expensivePerTenant: int(limits, 'expensivePerTenant', 4, 0, 10_000, 'limits'),
    alarms: { log: optionalText(alarms, 'log', 'alarms') && abs(text(alarms, 'log', undefined, 'alarms')), webhook: optionalText(alarms, 'webhook', 'alarms') },
    shutdownGraceMs: int(d, 'shutdownGraceMs', 10_000, 0, 600_000),
    workers: parseWorkers(d, env),
    clusters: parseClusterConfig(source, dataDir),
  };
}

export function loadServerConfig(dataDir: string, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const file = join(dataDir, CONFIG_FILE);
  if (!existsSync(file)) throw new ConfigError(`${file} does not exist: run "npx kmsctl init --data-dir ${dataDir}" (or "make run") first`);
  return parseServerConfig(readFileSync(file, 'utf8'), resolve(dataDir), env);
}

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
