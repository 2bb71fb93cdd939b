/**
 * The composition root: from a ServerConfig, the HSM clusters, the metadata store, the KMS core,
 * IAM (with SecretKeys sealed under the service key), the audit log, the rate limiter and metrics.
 * Used by the server (main.ts) and by kmsctl on the same data directory (or the same Redis).
 */
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

async function openStores(config: ServerConfig): Promise<{ store: MetadataStore; identities: IdentityStore; audit: AuditLog; limiter: RateLimiter }> {
  const rate = { perSecond: config.rateLimit.perSecond, burst: config.rateLimit.burst };
  const s = config.store;
  if (s.kind === 'sqlite') {
    return {
      store: new SqliteMetadataStore(s.path),
      identities: new SqliteIdentityStore(s.path),
      audit: new SqliteAuditLog(s.path),
      limiter: new MemoryRateLimiter(rate),
    };
  }
  const conn = { host: s.host, port: s.port, allowVolatile: s.allowVolatile };
  return {
    store: await RedisMetadataStore.open(conn),
    identities: await RedisIdentityStore.open(conn),
    audit: await RedisAuditLog.open(conn),
    limiter: new RedisRateLimiter(new Redis({ host: s.host, port: s.port, enableOfflineQueue: false, maxRetriesPerRequest: 1 }), rate),
  };
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
  if (options.domainCeremony) await runCeremony(clusters, options.domainCeremony);
  const { store, identities, audit, limiter } = await openStores(config);
  const alarms = alarmsFor(config, options.log);
  const kms = new Kms({
    store, clusters, deploymentId: config.deploymentId, alarms, maxKeysPerRegion: config.maxKeysPerRegion, nodeId: options.nodeId,
    onJobError: (m) => options.log({ level: 'warn', msg: `background job: ${m}` }),
  });
  if (options.jobs !== false) {
    for (const finding of await kms.start()) options.log({ level: 'warn', msg: `start-up: ${finding}` });
  }
  const iam = new IamService({ store: identities, sealer: await serviceSealer(kms) });
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
  return {
    config, clusters, store, kms, iam, audit, limiter, metrics,
    apiDeps: () => ({
      kms, store, clusters, metrics, authz, limiter, maxBodyBytes: config.maxBodyBytes, regions: config.regions, deploymentId: config.deploymentId,
      authn: { resolve: (secretId) => iam.resolve(secretId) },
      audit: { append: (e) => audit.append(e) },
    }),
    close: async () => {
      await kms.close();
      await audit.close().catch((e: Error) => options.log({ level: 'warn', msg: `audit close: ${e.message}` }));
      if (limiter instanceof RedisRateLimiter) limiter.disconnect();
      await identities.close();
      await store.close();
      for (const c of clusters) c.close();
    },
  };
}
