/**
 * The server's configuration: `<data dir>/kms.yaml` (written by `kmsctl init`), with the HSM
 * clusters in the same file (`clusters:`, see docs/clusters.example.yaml) and a few environment
 * overrides (KMS_PORT, KMS_HOST, KMS_OPS_PORT, KMS_WORKERS). Secrets are never in it: PINs come from env or 0600 files.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { parse } from 'yaml';
import { DEFAULT_REPLAY_ENTRIES } from './api/replay-guard';
import { AUDIT_ARCHIVE_DIR, CONFIG_FILE, SQLITE_FILE } from './common/data-dir';
import { NamedError } from './common/errors';
import { GCM_RANDOM_IV_LIMIT } from './common/gcm';
import { ClusterConfig, parseClusterConfig } from './hsm/config';
import { ConfigError as ClusterConfigError } from './hsm/errors';

/** kms.yaml (or a file or secret it names) cannot be used as written; the message says where. */
export class ServerConfigError extends NamedError {}

/** A secret's source: an environment variable or a file readable by its owner only (never the secret itself). */
export type SecretSource = { env: string } | { file: string };

export interface RedisStoreConfig {
  kind: 'redis';
  host: string;
  port: number;
  allowVolatile: boolean;
  /** ACL user name (not a secret). */
  username?: string;
  password?: SecretSource;
  /** PEM file paths; TLS is on when this is present. */
  tls?: { ca?: string; cert?: string; key?: string; servername?: string };
}

export type StoreConfig = { kind: 'sqlite'; path: string } | RedisStoreConfig;

/** Where audit anchors go: a JSON-lines file, a webhook (JSON POST), or a syslog server over UDP (RFC 5424). */
export type AnchorSinkConfig = { kind: 'file'; path: string } | { kind: 'webhook'; url: string } | { kind: 'syslog'; host: string; port: number };

export interface AuditConfig {
  anchors?: AnchorSinkConfig;
  anchorIntervalSeconds: number;
  /** Events older than this many days are archived to `archiveDir` and removed; none: kept forever. */
  retentionDays?: number;
  archiveDir: string;
}

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
  /** Hosted data keys per account and region; 0 = no limit. */
  maxDataKeysPerRegion: number;
  maxBodyBytes: number;
  /** Per account; `perPrincipal` per SecretId owner (root or sub-account), both must allow a request. */
  rateLimit: { perSecond: number; burst: number; perPrincipal: { perSecond: number; burst: number } };
  connections: ConnectionLimits;
  /** The operations listener (/metrics, /readyz, /healthz). */
  ops: { host: string; port: number };
  /** Replay cache and signed-header demands (docs/security.md §1). */
  tc3: Tc3Config;
  /** Per source address: requests that did not authenticate (docs/security.md §6). */
  preAuthLimit: { perSecond: number; burst: number };
  /** Expensive actions (key-pair generation, RSA decryption, signing) in flight per tenant and serving process; 0 = no cap. */
  expensivePerTenant: number;
  alarms: { log?: string; webhook?: string };
  /** `import.allowPkcs1v15`: offer RSAES_PKCS1_V1_5 import wrapping (default false: Bleichenbacher padding-oracle risk). */
  allowPkcs1v15Import: boolean;
  /** `gcm.maxInvocationsPerVersion`: AES-GCM encryptions per key version (default 2^32, NIST SP 800-38D; never more). */
  gcmMaxInvocationsPerVersion: number;
  audit: AuditConfig;
  /** Requests in flight get this long to finish on shutdown. */
  shutdownGraceMs: number;
  /** Serving processes (1: this process serves; more: a supervisor and that many workers on one port). */
  workers: number;
  clusters: ClusterConfig[];
}

export interface Tc3Config {
  /** Refuse a second use of a signature within its window (default true). */
  replayCache: boolean;
  /** Signatures the cache holds at most (per process, and on the supervisor). */
  replayCacheSize: number;
  /** Headers every signature must cover besides content-type and host. */
  requireSignedHeaders: string[];
}

/** Connection bounds of the API listener (docs/security.md §7). */
export interface ConnectionLimits {
  /** A request's headers must be complete this long after the connection (or the previous request) began. */
  headersTimeoutMs: number;
  /** A whole request (headers and body) must arrive within this. */
  requestTimeoutMs: number;
  /** A keep-alive connection idle for this long is closed. */
  idleTimeoutMs: number;
  /** Open connections at once; over it a new one is closed at accept. */
  max: number;
  /** Open connections from one source address. */
  perIp: number;
}

/** `requireSignedHeaders: true` means these (what the SDKs leave unsigned and the server acts on). */
export const BOUND_HEADERS = ['x-tc-action', 'x-tc-region', 'x-tc-timestamp'];

/** File descriptors kept for everything but client connections (store, HSM modules, logs, ops listener). */
export const RESERVED_FDS = 256;

/** The soft open-file limit of this process (Linux /proc); undefined where it cannot be read or is unlimited. */
export function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** `connections.max: auto` (the default): the open-file limit less RESERVED_FDS (at least 64), 10,000 where the limit is unknown. */
export function autoMaxConnections(limit = openFileLimit()): number {
  return limit === undefined ? 10_000 : Math.max(64, Math.min(100_000, limit - RESERVED_FDS));
}

function parseConnections(doc: Doc): ConnectionLimits {
  const c = section(doc, 'connections');
  const where = 'connections';
  const headers = int(c, 'headersTimeoutMs', 10_000, 100, 600_000, where);
  return {
    headersTimeoutMs: headers,
    requestTimeoutMs: int(c, 'requestTimeoutMs', Math.max(30_000, headers), headers, 3_600_000, where),
    idleTimeoutMs: int(c, 'idleTimeoutMs', 5_000, 100, 600_000, where),
    max: c.max === undefined || c.max === 'auto' ? autoMaxConnections() : int(c, 'max', 0, 1, 1_000_000, where),
    perIp: int(c, 'perIp', 256, 1, 1_000_000, where),
  };
}

/** `ops.host` (loopback by default) and `ops.port` (KMS_OPS_PORT; default the API port + 1, or any free port when the API port is 0). */
function parseOps(doc: Doc, apiPort: number, env: NodeJS.ProcessEnv): { host: string; port: number } {
  const o = section(doc, 'ops');
  const fallback = apiPort === 0 ? 0 : apiPort + 1;
  const port = env.KMS_OPS_PORT !== undefined ? Number(env.KMS_OPS_PORT) : (o.port ?? fallback);
  if (!Number.isInteger(port) || (port as number) < 0 || (port as number) > 65535)
    throw new ServerConfigError(`ops.port must be 0..65535, got ${String(env.KMS_OPS_PORT ?? o.port)}`);
  return { host: text(o, 'host', '127.0.0.1', 'ops'), port: port as number };
}

function parseRate(doc: Doc): ServerConfig['rateLimit'] {
  const rate = section(doc, 'rateLimit');
  const where = 'rateLimit';
  const perSecond = int(rate, 'perSecond', 1000, 1, 1_000_000, where);
  const burst = int(rate, 'burst', 2000, 1, 10_000_000, where);
  const p = section(rate, 'perPrincipal');
  const perPrincipal = {
    perSecond: int(p, 'perSecond', perSecond, 1, 1_000_000, 'rateLimit.perPrincipal'),
    burst: int(p, 'burst', burst, 1, 10_000_000, 'rateLimit.perPrincipal'),
  };
  return { perSecond, burst, perPrincipal };
}

type Doc = Record<string, unknown>;

function section(doc: Doc, key: string): Doc {
  const v = doc[key];
  if (v === undefined) return {};
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ServerConfigError(`${CONFIG_FILE}: "${key}" must be a mapping`);
  return v as Doc;
}

function int(doc: Doc, key: string, fallback: number, min: number, max: number, where = CONFIG_FILE): number {
  const v = doc[key] ?? fallback;
  if (!Number.isInteger(v) || (v as number) < min || (v as number) > max)
    throw new ServerConfigError(`${where}: "${key}" must be an integer from ${min} to ${max}`);
  return v as number;
}

function text(doc: Doc, key: string, fallback?: string, where = CONFIG_FILE): string {
  const v = doc[key] ?? fallback;
  if (typeof v !== 'string' || v === '') throw new ServerConfigError(`${where}: "${key}" must be a non-empty string`);
  return v;
}

function flag(doc: Doc, key: string, where: string): boolean {
  const v = doc[key] ?? false;
  if (typeof v !== 'boolean') throw new ServerConfigError(`${where}: "${key}" must be true or false`);
  return v;
}

function optionalText(doc: Doc, key: string, where: string): string | undefined {
  return doc[key] === undefined ? undefined : text(doc, key, undefined, where);
}

function parseStore(doc: Doc, dataDir: string): StoreConfig {
  const s = section(doc, 'store');
  const kind = s.kind ?? 'sqlite';
  if (kind === 'sqlite') {
    const path = text(s, 'path', SQLITE_FILE, 'store');
    return { kind, path: isAbsolute(path) ? path : join(dataDir, path) };
  }
  if (kind !== 'redis') throw new ServerConfigError(`store.kind must be sqlite or redis, not ${JSON.stringify(kind)}`);
  return {
    kind,
    host: text(s, 'host', '127.0.0.1', 'store'),
    port: int(s, 'port', 6379, 1, 65535, 'store'),
    allowVolatile: s.allowVolatile === true,
    ...(s.username !== undefined ? { username: text(s, 'username', undefined, 'store') } : {}),
    ...(s.password !== undefined ? { password: secretSource(s.password, 'store.password', dataDir) } : {}),
    ...(s.tls !== undefined ? { tls: parseRedisTls(s.tls, dataDir) } : {}),
  };
}

function parseAnchors(a: Doc, abs: (p: string) => string): AnchorSinkConfig | undefined {
  const kinds = ['file', 'webhook', 'syslog'].filter((k) => a[k] !== undefined);
  if (kinds.length > 1) throw new ServerConfigError('audit.anchors: one of file, webhook or syslog');
  if (a.file !== undefined) return { kind: 'file', path: abs(text(a, 'file', undefined, 'audit.anchors')) };
  if (a.webhook !== undefined) {
    const url = text(a, 'webhook', undefined, 'audit.anchors');
    if (!/^https?:\/\//.test(url)) throw new ServerConfigError('audit.anchors.webhook must be an http(s) URL');
    return { kind: 'webhook', url };
  }
  if (a.syslog !== undefined) {
    const s = section(a, 'syslog');
    return { kind: 'syslog', host: text(s, 'host', '127.0.0.1', 'audit.anchors.syslog'), port: int(s, 'port', 514, 1, 65535, 'audit.anchors.syslog') };
  }
  return undefined;
}

function parseAudit(d: Doc, abs: (p: string) => string): AuditConfig {
  const a = section(d, 'audit');
  return {
    anchors: a.anchors === undefined ? undefined : parseAnchors(section(a, 'anchors'), abs),
    anchorIntervalSeconds: int(a, 'anchorIntervalSeconds', 60, 1, 86_400, 'audit'),
    retentionDays: a.retentionDays === undefined ? undefined : int(a, 'retentionDays', 0, 1, 36_500, 'audit'),
    archiveDir: abs(text(a, 'archiveDir', AUDIT_ARCHIVE_DIR, 'audit')),
  };
}

function parseRequiredHeaders(raw: unknown): string[] {
  if (raw === undefined || raw === false) return [];
  if (raw === true) return [...BOUND_HEADERS];
  if (!Array.isArray(raw) || !raw.every((h) => typeof h === 'string' && /^[A-Za-z0-9-]{1,64}$/.test(h))) {
    throw new ServerConfigError(`${CONFIG_FILE}: "tc3.requireSignedHeaders" must be true, false or a list of header names`);
  }
  return [...new Set(raw.map((h: string) => h.toLowerCase()))].sort();
}

function parseTc3(doc: Doc): Tc3Config {
  const t = section(doc, 'tc3');
  if (t.replayCache !== undefined && typeof t.replayCache !== 'boolean') throw new ServerConfigError(`${CONFIG_FILE}: "tc3.replayCache" must be true or false`);
  return {
    replayCache: t.replayCache !== false,
    replayCacheSize: int(t, 'replayCacheSize', DEFAULT_REPLAY_ENTRIES, 1_000, 100_000_000, 'tc3'),
    requireSignedHeaders: parseRequiredHeaders(t.requireSignedHeaders),
  };
}

/** `{env: NAME}` or `{file: PATH}`; a secret written inline is refused (the PIN rule). */
function secretSource(v: unknown, where: string, dataDir: string): SecretSource {
  if (!v || typeof v !== 'object' || Array.isArray(v))
    throw new ServerConfigError(`${where}: secrets are never written in configuration; use {env: NAME} or {file: PATH} (mode 0600)`);
  const o = v as Doc;
  if (o.env !== undefined) return { env: text(o, 'env', undefined, where) };
  const file = text(o, 'file', undefined, where);
  return { file: isAbsolute(file) ? file : join(dataDir, file) };
}

function parseRedisTls(v: unknown, dataDir: string): NonNullable<RedisStoreConfig['tls']> {
  if (v === true) return {};
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ServerConfigError('store.tls must be true or a mapping of ca, cert, key, servername');
  const o = v as Doc;
  const path = (key: string): Record<string, string> => {
    const p = optionalText(o, key, 'store.tls');
    return p === undefined ? {} : { [key]: isAbsolute(p) ? p : join(dataDir, p) };
  };
  const servername = optionalText(o, 'servername', 'store.tls');
  return { ...path('ca'), ...path('cert'), ...path('key'), ...(servername ? { servername } : {}) };
}

/** Reads a secret from its source; errors name the source, never the secret. A file must not be readable by group or others. */
export function resolveSecret(source: SecretSource, env: NodeJS.ProcessEnv = process.env): string {
  if ('env' in source) {
    const v = env[source.env];
    if (!v) throw new ServerConfigError(`environment variable ${source.env} is not set`);
    return v;
  }
  if (!existsSync(source.file)) throw new ServerConfigError(`secret file ${source.file} does not exist`);
  if ((statSync(source.file).mode & 0o077) !== 0) throw new ServerConfigError(`secret file ${source.file} must not be readable by group or others (chmod 600)`);
  return readFileSync(source.file, 'utf8').trim();
}

export const MAX_WORKERS = 256;

/** `workers`: a count, or "auto" (one per CPU the process may use); KMS_WORKERS overrides. */
function parseWorkers(doc: Doc, env: NodeJS.ProcessEnv): number {
  const raw = env.KMS_WORKERS ?? doc.workers ?? 1;
  if (raw === 'auto') return Math.min(MAX_WORKERS, availableParallelism());
  const n = typeof raw === 'string' && /^[0-9]+$/.test(raw) ? Number(raw) : raw;
  if (!Number.isInteger(n) || (n as number) < 1 || (n as number) > MAX_WORKERS) {
    throw new ServerConfigError(`${CONFIG_FILE}: "workers" must be "auto" or an integer from 1 to ${MAX_WORKERS}, got ${JSON.stringify(raw)}`);
  }
  return n as number;
}

/** Parses kms.yaml; `env` may override the port (KMS_PORT), host (KMS_HOST) and worker count (KMS_WORKERS). */
export function parseServerConfig(source: string, dataDir: string, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const doc = parse(source) as unknown;
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new ServerConfigError(`${CONFIG_FILE}: expected a mapping`);
  const d = doc as Doc;
  const listen = section(d, 'listen');
  const port = env.KMS_PORT !== undefined ? Number(env.KMS_PORT) : (listen.port ?? 8080);
  if (!Number.isInteger(port) || (port as number) < 0 || (port as number) > 65535)
    throw new ServerConfigError(`port must be 0..65535, got ${String(env.KMS_PORT ?? listen.port)}`);
  const tls = section(d, 'tls');
  const deployment = text(d, 'deploymentId');
  if (!/^[0-9a-f]{32}$/.test(deployment)) throw new ServerConfigError(`${CONFIG_FILE}: deploymentId must be 32 lowercase hex characters`);
  const regions = d.regions ?? ['ap-guangzhou'];
  if (!Array.isArray(regions) || regions.length === 0 || !regions.every((r) => typeof r === 'string' && /^[a-z0-9-]{1,64}$/.test(r))) {
    throw new ServerConfigError(`${CONFIG_FILE}: regions must be a non-empty list of region names`);
  }
  const preAuth = section(d, 'preAuthLimit');
  const alarms = section(d, 'alarms');
  const imports = section(d, 'import');
  const gcm = section(d, 'gcm');
  const limits = section(d, 'limits');
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(dataDir, p));
  return {
    dataDir,
    listen: { host: env.KMS_HOST ?? text(listen, 'host', '127.0.0.1', 'listen'), port: port as number },
    tls:
      tls.cert === undefined && tls.key === undefined
        ? undefined
        : { cert: abs(text(tls, 'cert', undefined, 'tls')), key: abs(text(tls, 'key', undefined, 'tls')) },
    allowInsecure: d.allowInsecure === true,
    store: parseStore(d, dataDir),
    deploymentId: Buffer.from(deployment, 'hex'),
    regions: regions as string[],
    maxKeysPerRegion: int(d, 'maxKeysPerRegion', 200, 0, 10_000_000),
    maxDataKeysPerRegion: int(d, 'maxDataKeysPerRegion', 1000, 0, 100_000),
    maxBodyBytes: int(d, 'maxBodyBytes', 256 * 1024, 1024, 10 * 1024 * 1024),
    rateLimit: parseRate(d),
    tc3: parseTc3(d),
    preAuthLimit: { perSecond: int(preAuth, 'perSecond', 50, 1, 1_000_000, 'preAuthLimit'), burst: int(preAuth, 'burst', 500, 1, 10_000_000, 'preAuthLimit') },
    connections: parseConnections(d),
    ops: parseOps(d, port as number, env),
    expensivePerTenant: int(limits, 'expensivePerTenant', 4, 0, 10_000, 'limits'),
    alarms: { log: optionalText(alarms, 'log', 'alarms') && abs(text(alarms, 'log', undefined, 'alarms')), webhook: optionalText(alarms, 'webhook', 'alarms') },
    allowPkcs1v15Import: flag(imports, 'allowPkcs1v15', 'import'),
    gcmMaxInvocationsPerVersion: int(gcm, 'maxInvocationsPerVersion', GCM_RANDOM_IV_LIMIT, 1, GCM_RANDOM_IV_LIMIT, 'gcm'),
    audit: parseAudit(d, abs),
    shutdownGraceMs: int(d, 'shutdownGraceMs', 10_000, 0, 600_000),
    workers: parseWorkers(d, env),
    clusters: parseClusters(source, dataDir),
  };
}

/** The clusters section, its faults reported as this file's like every other (the HSM layer's error kept as the cause). */
function parseClusters(source: string, dataDir: string): ClusterConfig[] {
  try {
    return parseClusterConfig(source, dataDir);
  } catch (e) {
    if (e instanceof ClusterConfigError) throw new ServerConfigError(e.message, { cause: e });
    throw e;
  }
}

export function loadServerConfig(dataDir: string, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const file = join(dataDir, CONFIG_FILE);
  if (!existsSync(file)) throw new ServerConfigError(`${file} does not exist: run "npx kmsctl init --data-dir ${dataDir}" (or "make run") first`);
  return parseServerConfig(readFileSync(file, 'utf8'), resolve(dataDir), env);
}

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
