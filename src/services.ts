/**
 * The composition root: from a ServerConfig, the HSM clusters, the metadata store, the KMS core,
 * IAM (with SecretKeys sealed under the service key), the audit log, the rate limiter and metrics.
 * Used by the server (main.ts) and by kmsctl on the same data directory (or the same Redis).
 */
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import { join } from 'node:path';
import Redis from 'ioredis';
import type { AppDeps } from './api/app';
import { Metrics } from './api/metrics';
import type { Authorizer } from './api/ports';
import { MemoryRateLimiter, RateLimiter, RedisRateLimiter } from './api/rate-limit';
import type { AuditLog } from './audit/audit-log';
import { RedisAuditLog } from './audit/redis-audit-log';
import { SqliteAuditLog } from './audit/sqlite-audit-log';
import type { ServerConfig } from './config';
import { withDeadline } from './deadline';
import { buildClusters } from './hsm/config';
import type { HsmCluster } from './hsm/cluster';
import { loadProfiles } from './hsm/profile';
import { authorize } from './iam/authorize';
import { IamService } from './iam/iam-service';
import type { IdentityStore } from './iam/identity-store';
import { RedisIdentityStore } from './iam/redis-identity-store';
import { SqliteIdentityStore } from './iam/sqlite-identity-store';
import { Alarms, jsonLinesSink, webhookSink } from './kms/alarms';
import { Kms } from './kms/service';
import { RedisMetadataStore } from './store/redis-store';
import { SqliteMetadataStore } from './store/sqlite-store';
import type { MetadataStore } from './store/store';
import { serviceSealer } from './service-key';

export const PROFILES_DIR = join(__dirname, '..', '..', 'hsm-profiles');

export interface ServicesOptions {
  log: (line: Record<string, unknown>) => void;
  /** Run background jobs (rotation, deletion, alarms); kmsctl does not. Default true. */
  jobs?: boolean;
  nodeId?: string;
  /** Run the domain-key ceremony on every cluster first (kmsctl init), reporting progress. */
  domainCeremony?: (msg: string) => void;
  /** Repair derived store data at start-up (default true; workers after the first leave it to the first). */
  repair?: boolean;
  /** Replaces the in-process rate limiter of the embedded store (a worker shares its supervisor's buckets). */
  limiter?: RateLimiter;
}

export interface Services {
  config: ServerConfig;
  clusters: HsmCluster[];
  store: MetadataStore;
  kms: Kms;
  iam: IamService;
  audit: AuditLog;
  limiter: RateLimiter;
  metrics: Metrics;
  /** What the HTTP app needs (without its request log). */
  apiDeps(): Omit<AppDeps, 'log'>;
  close(): Promise<void>;
}

/**
 * The SQLite database holds key metadata, sealed SecretKeys and the audit trail: owner-only, whatever
 * the umask. A new database file is created 0600 before SQLite opens it (SQLite gives its -wal and
 * -shm files the database file's mode); files of an existing installation are tightened.
 */
export function restrictSqliteFiles(path: string): void {
  if (!existsSync(path)) closeSync(openSync(path, 'a', 0o600));
  for (const file of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) {
    if (existsSync(file)) chmodSync(file, 0o600);
  }
}

async function openStores(config: ServerConfig, shared?: RateLimiter): Promise<{ store: MetadataStore; identities: IdentityStore; audit: AuditLog; limiter: RateLimiter }> {
  const rate = { perSecond: config.rateLimit.perSecond, burst: config.rateLimit.burst };
  const s = config.store;
  if (s.kind === 'sqlite') {
    restrictSqliteFiles(s.path);
    return {
      store: new SqliteMetadataStore(s.path),
      identities: new SqliteIdentityStore(s.path),
      audit: new SqliteAuditLog(s.path),
      limiter: shared ?? new MemoryRateLimiter(rate),
    };
  }
  const conn = { host: s.host, port: s.port, allowVolatile: s.allowVolatile };
  const store = await RedisMetadataStore.open(conn);
  let identities: IdentityStore | undefined;
  try {
    identities = await RedisIdentityStore.open(conn);
    const audit = await RedisAuditLog.open(conn);
    // the limiter fails open while Redis is away; ioredis reconnects by itself (no unhandled 'error' events)
    const redis = new Redis({ host: s.host, port: s.port, enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
    return { store, identities, audit, limiter: new RedisRateLimiter(redis, rate) };
  } catch (e) {
    await identities?.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    throw e;
  }
}

/** How long closing the stores may take in all (background jobs, audit flush, stores) before shutdown moves on. */
export const CLOSE_BUDGET_MS = 5_000;

/**
 * Waits for a closing step until `deadline` (at least a moment). A store that cannot be reached
 * (Redis gone) makes its client retry; shutdown then goes on without the step, and closing the
 * stores after it ends what was left behind where the store client allows that.
 */
async function bounded(step: string, p: Promise<unknown>, deadline: number, log: ServicesOptions['log']): Promise<void> {
  const ms = Math.max(250, deadline - Date.now());
  const done = p.then(() => 'done' as const, (e: Error) => (log({ level: 'warn', msg: `${step}: ${e.message}` }), 'done' as const));
  if ((await withDeadline(done, ms, () => 'late' as const)) === 'late') log({ level: 'warn', msg: `${step}: not finished after ${ms} ms; shutting down without it` });
}

function alarmsFor(config: ServerConfig, log: ServicesOptions['log']): Alarms {
  const alarms = new Alarms();
  alarms.onAlarm((a) => log({ level: 'warn', alarm: a.kind, keyId: a.keyId, account: a.ownerUin, action: a.action, deletionDate: a.deletionDate, detail: a.detail }));
  if (config.alarms.log) alarms.onAlarm(jsonLinesSink(config.alarms.log));
  if (config.alarms.webhook) alarms.onAlarm(webhookSink(config.alarms.webhook, (m) => log({ level: 'warn', msg: m })));
  return alarms;
}

/** Domain keys on every member of every cluster (safe to re-run: members that have them are left alone). */
export async function runCeremony(clusters: readonly HsmCluster[], progress: (msg: string) => void): Promise<void> {
  for (const c of clusters) {
    progress(`cluster ${c.id}: domain-key ceremony on ${c.members.length} member(s)`);
    const r = await c.initDomain();
    progress(`cluster ${c.id}: domain ${r.domainId}${r.generated ? ' (new)' : ''}${r.copiedTo.length ? `, copied to ${r.copiedTo.join(', ')}` : ''}`);
  }
}

export async function openServices(config: ServerConfig, options: ServicesOptions): Promise<Services> {
  const clusters = buildClusters(config.clusters, loadProfiles(PROFILES_DIR));
  for (const c of clusters) c.start();
  let opened: Awaited<ReturnType<typeof openStores>> | undefined;
  let kms: Kms | undefined;
  try {
    if (options.domainCeremony) await runCeremony(clusters, options.domainCeremony);
    opened = await openStores(config, options.limiter);
    const { store, identities } = opened;
    const alarms = alarmsFor(config, options.log);
    kms = new Kms({
      store, clusters, deploymentId: config.deploymentId, alarms, maxKeysPerRegion: config.maxKeysPerRegion, nodeId: options.nodeId, expensivePerTenant: config.expensivePerTenant,
      onJobError: (m) => options.log({ level: 'warn', msg: `background job: ${m}` }),
    });
    if (options.jobs !== false) {
      for (const finding of await kms.start({ repair: options.repair !== false })) options.log({ level: 'warn', msg: `start-up: ${finding}` });
    }
    return compose(config, options, clusters, opened, kms, alarms, new IamService({ store: identities, sealer: await serviceSealer(kms) }));
  } catch (e) {
    // nothing half-open is left behind: the caller gets the error only
    await closeAll(options.log, clusters, opened, kms, 1_000);
    throw e;
  }
}

async function closeAll(log: ServicesOptions['log'], clusters: readonly HsmCluster[], opened: Awaited<ReturnType<typeof openStores>> | undefined, kms: Kms | undefined, budgetMs: number): Promise<void> {
  const deadline = Date.now() + budgetMs;
  if (kms) await bounded('stopping background jobs', kms.close(), deadline, log);
  if (opened) {
    await bounded('audit close', opened.audit.close(), deadline, log);
    if (opened.limiter instanceof RedisRateLimiter) opened.limiter.disconnect();
    await bounded('identity store close', opened.identities.close(), deadline, log);
    await bounded('key store close', opened.store.close(), deadline, log);
  }
  for (const c of clusters) c.close();
}

function compose(
  config: ServerConfig, options: ServicesOptions, clusters: HsmCluster[], opened: Awaited<ReturnType<typeof openStores>>, kms: Kms, alarms: Alarms, iam: IamService,
): Services {
  const { store, audit, limiter } = opened;
  const metrics = new Metrics({ clusters, alarms, keysByState: () => store.countByState(), audit: () => audit.counters() });
  const authz: Authorizer = {
    check: async (principal, request) => {
      const policies = principal.kind === 'root' ? [] : await iam.policiesFor(principal);
      for (const resource of request.resources) {
        const d = authorize(principal, { action: request.action, resource, context: request.context }, policies);
        if (!d.allowed) return d;
      }
      return { allowed: true, reason: 'allowed' };
    },
  };
  let closing: Promise<void> | undefined;
  return {
    config, clusters, store, kms, iam, audit, limiter, metrics,
    apiDeps: () => ({
      kms, store, clusters, metrics, authz, limiter, maxBodyBytes: config.maxBodyBytes, regions: config.regions, deploymentId: config.deploymentId,
      authn: { resolve: (secretId) => iam.resolve(secretId) },
      audit: { append: (e) => audit.append(e) },
    }),
    close: () => (closing ??= closeAll(options.log, clusters, opened, kms, CLOSE_BUDGET_MS)),
  };
}
