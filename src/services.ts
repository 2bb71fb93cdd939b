/**
 * The composition root: from a ServerConfig, the HSM clusters, the metadata store, the KMS core,
 * IAM (with SecretKeys sealed under the service key), the audit log, the rate limiter and metrics.
 * Used by the server (main.ts) and by kmsctl on the same data directory (or the same Redis).
 */
import { chmodSync, closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import Redis from 'ioredis';
import type { AppDeps } from './api/app';
import { Metrics } from './api/metrics';
import type { Authorizer } from './api/ports';
import type { TrustDeps } from './api/pipeline';
import { FailureAudit, PreAuthLimiter } from './api/pre-auth';
import { MemoryRateLimiter, RateLimiter, RedisRateLimiter } from './api/rate-limit';
import { AnchorSink, fileAnchorSink, syslogAnchorSink, webhookAnchorSink } from './audit/anchors';
import { directoryArchive, readArchives } from './audit/archive';
import { MemoryReplayGuard, RedisReplayGuard, ReplayCache, ReplayGuard } from './api/replay-guard';
import type { AuditLog } from './audit/audit-log';
import { AUDIT_LEASE, AuditJobs } from './audit/jobs';
import type { LinkMac } from './audit/link-mac';
import { RedisAuditLog } from './audit/redis-audit-log';
import { SqliteAuditLog } from './audit/sqlite-audit-log';
import { AnchorSinkConfig, RedisStoreConfig, resolveSecret, ServerConfig } from './config';
import { authoritySeals, clusterAuthenticator, migrateAuthority, sharedMacKey } from './authority';
import { withDeadline } from './common/deadline';
import { buildClusters } from './hsm/config';
import type { HsmCluster, SoPinProvider } from './hsm/cluster';
import { loadProfiles, PROFILE_DIR } from './hsm/profile';
import { authorize, authorizeAnyCreator } from './iam/authorize';
import { parseResource, UNKNOWN_CREATOR } from './iam/resources';
import { Cam } from './iam/cam';
import { IamService } from './iam/iam-service';
import type { IdentityStore } from './iam/identity-store';
import { RedisIdentityStore } from './iam/redis-identity-store';
import { SealedIdentityStore, Tamper } from './iam/sealed-identity-store';
import { SqliteIdentityStore } from './iam/sqlite-identity-store';
import { Alarms, jsonLinesSink, webhookSink } from './kms/alarms';
import { SealedMetadataStore } from './kms/sealed-store';
import type { SealedUnderDomain } from './kms/domain-rotation';
import { Kms } from './kms/service';
import { openRedis, RedisConnectionOptions } from './store/redis-client';
import type { RowAuthenticator } from './store/row-mac';
import { RedisMetadataStore } from './store/redis/store';
import { SqliteMetadataStore } from './store/sqlite/store';
import type { MetadataStore } from './store/store';
import { serviceSealer } from './service-key';

export interface ServicesOptions {
  log: (line: Record<string, unknown>) => void;
  /** Run background jobs (rotation, deletion, alarms); kmsctl does not. Default true. */
  jobs?: boolean;
  nodeId?: string;
  /** Run the domain-key ceremony on every cluster first (kmsctl init), reporting progress. */
  domainCeremony?: (msg: string) => void;
  /** The ceremony locks the domain keys unless false. */
  domainLock?: boolean;
  /** The ceremony's source of Security Officer PINs (where a sending token enforces CKA_WRAP_WITH_TRUSTED). */
  soPin?: SoPinProvider;
  /** Repair derived store data at start-up (default true; workers after the first leave it to the first). */
  repair?: boolean;
  /** Replace the in-process rate limiters of the embedded store (a worker shares its supervisor's buckets). */
  limiters?: Limiters;
  /** Replaces the in-process replay cache of the embedded store (a worker claims on its supervisor's). */
  replay?: ReplayGuard;
}

/** Per account (tenant) and per principal (the SecretId's owner: root or sub-account); a request needs a token of both. */
export interface Limiters {
  limiter: RateLimiter;
  principalLimiter: RateLimiter;
}

export interface Services {
  config: ServerConfig;
  clusters: HsmCluster[];
  store: MetadataStore;
  kms: Kms;
  iam: IamService;
  audit: AuditLog;
  limiter: RateLimiter;
  principalLimiter: RateLimiter;
  metrics: Metrics;
  /** Replay cache, pre-authentication limit, failure aggregates. */
  trust: TrustDeps;
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

/** The purpose label of audit links among the shared cluster's domain MACs. */
export const AUDIT_LINK_PURPOSE = 'audit-link';

/** The audit chain's MAC: HMAC inside the shared cluster's HSMs under its domain MAC key (its generations: rotate-domain). */
export function auditLinkMac(clusters: readonly HsmCluster[]): LinkMac {
  const shared = sharedCluster(clusters);
  return { mac: (data) => shared.mac(AUDIT_LINK_PURPOSE, data), generations: sharedMacKey(shared, AUDIT_LINK_PURPOSE) };
}

/** The audit chain for the shared cluster's rotate-domain walk: the kept trail, its start record and the archive files. */
export function auditSeals(audit: AuditLog, archiveDir: string): SealedUnderDomain {
  return {
    purpose: AUDIT_LINK_PURPOSE,
    what: 'audit links',
    census: async () => audit.census(await readArchives(archiveDir)),
    reseal: async (done, renew) => audit.reseal(await readArchives(archiveDir), done, renew),
  };
}

export function anchorSink(c: AnchorSinkConfig): AnchorSink {
  if (c.kind === 'file') return fileAnchorSink(c.path);
  if (c.kind === 'webhook') return webhookAnchorSink(c.url);
  return syslogAnchorSink(c.host, c.port);
}

type Opened = { store: MetadataStore; identities: IdentityStore; audit: AuditLog; replay?: ReplayGuard; auditJobs?: AuditJobs } & Limiters;

/** The replay guard: none when turned off; else the one given (a worker's), Redis's for several nodes, or this process's. */
async function replayGuard(config: ServerConfig, given: ReplayGuard | undefined, redis: () => Promise<Redis>): Promise<ReplayGuard | undefined> {
  if (!config.tc3.replayCache) return undefined;
  if (given) return given;
  const local = new ReplayCache(config.tc3.replayCacheSize);
  return config.store.kind === 'redis' ? new RedisReplayGuard(await redis(), { local }) : new MemoryReplayGuard(local);
}

/** The Redis connection of the configuration: AUTH secret read from its env variable or 0600 file, TLS files read. */
export function redisConnection(s: RedisStoreConfig, env: NodeJS.ProcessEnv = process.env): RedisConnectionOptions {
  const read = (path: string | undefined): Buffer | undefined => (path === undefined ? undefined : readFileSync(path));
  const tls = s.tls && { ca: read(s.tls.ca), cert: read(s.tls.cert), key: read(s.tls.key), servername: s.tls.servername };
  return {
    host: s.host,
    port: s.port,
    allowVolatile: s.allowVolatile,
    username: s.username,
    password: s.password && resolveSecret(s.password, env),
    tls,
  };
}

async function openStores(config: ServerConfig, linkMac: LinkMac, shared?: Limiters, sharedReplay?: ReplayGuard): Promise<Opened> {
  const rate = { perSecond: config.rateLimit.perSecond, burst: config.rateLimit.burst };
  const perPrincipal = config.rateLimit.perPrincipal;
  const s = config.store;
  if (s.kind === 'sqlite') {
    restrictSqliteFiles(s.path);
    return {
      store: new SqliteMetadataStore(s.path),
      identities: new SqliteIdentityStore(s.path),
      audit: new SqliteAuditLog(s.path, { linkMac }),
      ...(shared ?? { limiter: new MemoryRateLimiter(rate), principalLimiter: new MemoryRateLimiter(perPrincipal) }),
      replay: await replayGuard(config, sharedReplay, () => Promise.reject(new Error('no Redis for the embedded store'))),
    };
  }
  const conn = redisConnection(s);
  const store = await RedisMetadataStore.open(conn);
  let identities: IdentityStore | undefined;
  try {
    identities = await RedisIdentityStore.open(conn);
    const audit = await RedisAuditLog.open({ ...conn, linkMac });
    // the limiters fail open while Redis is away, the replay guard closed; one connection for both limiters (the account limiter owns it and drops it on close)
    // fail-fast clients (redis-client.ts) holding nothing durable: no persistence check
    const redis = await openRedis(conn);
    const principalLimiter = new RedisRateLimiter(redis, perPrincipal, { keyPrefix: 'kms:ratelimit:principal:' });
    return {
      store,
      identities,
      audit,
      limiter: new RedisRateLimiter(redis, rate),
      principalLimiter,
      replay: await replayGuard(config, sharedReplay, () => openRedis(conn)),
    };
  } catch (e) {
    await identities?.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    throw e;
  }
}

function sharedCluster(clusters: readonly HsmCluster[]): HsmCluster {
  const shared = clusters.find((c) => c.kind === 'shared');
  if (!shared) throw new Error('no shared HSM cluster is configured: it holds the MAC key of the authority rows and the audit chain');
  return shared;
}

/** Key ownership and identity rows MACed under the shared cluster's domain key, checked whenever read (see docs/security.md §2). */
function sealStores(raw: Awaited<ReturnType<typeof openStores>>, auth: RowAuthenticator, alarms: Alarms): Awaited<ReturnType<typeof openStores>> {
  return { ...raw, store: new SealedMetadataStore(raw.store, auth, alarms), identities: new SealedIdentityStore(raw.identities, auth, integrityAlarm(alarms)) };
}

/** An identity row that failed its integrity check, as a StoreIntegrity alarm. */
function integrityAlarm(alarms: Alarms): (t: Tamper) => void {
  return (t) => alarms.raise({ kind: 'StoreIntegrity', time: Math.floor(Date.now() / 1000), ownerUin: t.uin, keyId: '', detail: t.detail });
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
  const done = p.then(
    () => 'done' as const,
    (e: Error) => (log({ level: 'warn', msg: `${step}: ${e.message}` }), 'done' as const),
  );
  if ((await withDeadline(done, ms, () => 'late' as const)) === 'late')
    log({ level: 'warn', msg: `${step}: not finished after ${ms} ms; shutting down without it` });
}

function alarmsFor(config: ServerConfig, log: ServicesOptions['log']): Alarms {
  const alarms = new Alarms();
  alarms.onAlarm((a) =>
    log({ level: 'warn', alarm: a.kind, keyId: a.keyId, account: a.ownerUin, action: a.action, deletionDate: a.deletionDate, detail: a.detail }),
  );
  if (config.alarms.log) alarms.onAlarm(jsonLinesSink(config.alarms.log));
  if (config.alarms.webhook) alarms.onAlarm(webhookSink(config.alarms.webhook, (m) => log({ level: 'warn', msg: m })));
  return alarms;
}

/** Domain keys on every member of every cluster (safe to re-run: members that have them are left alone). */
export async function runCeremony(clusters: readonly HsmCluster[], progress: (msg: string) => void, soPin?: SoPinProvider, lock?: boolean): Promise<void> {
  for (const c of clusters) {
    progress(`cluster ${c.id}: domain-key ceremony on ${c.members.length} member(s)`);
    const r = await c.initDomain({ soPin, lock });
    const copied = r.copiedTo.length ? `, copied to ${r.copiedTo.join(', ')}` : '';
    const locked = r.locked.length ? `, locked on ${r.locked.join(', ')}` : '';
    progress(`cluster ${c.id}: domain ${r.domainId}${r.generated ? ' (new)' : ''}${copied}${locked}`);
  }
}

export async function openServices(config: ServerConfig, options: ServicesOptions): Promise<Services> {
  const clusters = buildClusters(config.clusters, loadProfiles(PROFILE_DIR));
  for (const c of clusters) c.start();
  let opened: Awaited<ReturnType<typeof openStores>> | undefined;
  let kms: Kms | undefined;
  try {
    if (options.domainCeremony) await runCeremony(clusters, options.domainCeremony, options.soPin, options.domainLock);
    const raw = await openStores(config, auditLinkMac(clusters), options.limiters, options.replay);
    opened = raw;
    const alarms = alarmsFor(config, options.log);
    const auth = clusterAuthenticator(sharedCluster(clusters));
    if (options.repair !== false)
      await migrateAuthority({ store: raw.store, identities: raw.identities, auth, clusters, regions: config.regions, log: options.log });
    opened = sealStores(raw, auth, alarms);
    const { store, identities } = opened;
    kms = new Kms({
      store,
      clusters,
      deploymentId: config.deploymentId,
      alarms,
      maxKeysPerRegion: config.maxKeysPerRegion,
      maxDataKeysPerRegion: config.maxDataKeysPerRegion,
      nodeId: options.nodeId,
      expensivePerTenant: config.expensivePerTenant,
      allowPkcs1v15Import: config.allowPkcs1v15Import,
      gcmMaxInvocationsPerVersion: config.gcmMaxInvocationsPerVersion,
      onJobError: (m) => options.log({ level: 'warn', msg: `background job: ${m}` }),
      macClusterId: sharedCluster(clusters).id,
      macSealed: [...authoritySeals(raw.store, raw.identities, auth, clusters, integrityAlarm(alarms)), auditSeals(raw.audit, config.audit.archiveDir)],
    });
    // before anything seals: every process (kmsctl too) seals under the generation the store names
    for (const problem of await kms.domainStates.apply()) options.log({ level: 'warn', msg: `domain generation: ${problem}` });
    if (options.jobs !== false) {
      for (const finding of await kms.start({ repair: options.repair !== false })) options.log({ level: 'warn', msg: `start-up: ${finding}` });
      opened.auditJobs = await startAuditJobs(config, opened, kms.nodeId, options.log);
    }
    return compose(
      config,
      options,
      clusters,
      opened,
      kms,
      alarms,
      new IamService({ store: identities, sealer: await serviceSealer(kms), onIntegrity: integrityAlarm(alarms) }),
    );
  } catch (e) {
    // nothing half-open is left behind: the caller gets the error only
    await closeAll(options.log, clusters, opened, kms, 1_000);
    throw e;
  }
}

/** Begins the HMAC chain if the trail has none yet, says where anchors go (or that they go nowhere), starts anchoring and retention. */
async function startAuditJobs(config: ServerConfig, opened: Opened, nodeId: string, log: ServicesOptions['log']): Promise<AuditJobs> {
  const { audit, store } = opened;
  try {
    const epoch = await audit.beginEpoch();
    if (epoch !== undefined)
      log({ level: 'info', msg: `audit: the HMAC-linked chain begins at event ${epoch} (links before it are plain SHA-256 and are fixed by it)` });
  } catch (e) {
    // the HSM or the store is away: the first HMAC link written later begins the chain all the same (the marker only names it)
    log({ level: 'warn', msg: `audit: the HMAC chain could not be checked at start-up: ${(e as Error).message}` });
  }
  const { anchors, anchorIntervalSeconds, retentionDays, archiveDir } = config.audit;
  if (anchors === undefined) {
    log({ level: 'warn', msg: 'audit: no anchor sink configured (audit.anchors): events cut off the end of the trail cannot be detected' });
  } else {
    log({ level: 'info', msg: `audit: anchors go to ${anchors.kind} every ${anchorIntervalSeconds} s` });
  }
  const jobs = new AuditJobs({
    log: audit,
    sink: anchors && anchorSink(anchors),
    intervalMs: anchorIntervalSeconds * 1000,
    retentionDays,
    archive: directoryArchive(archiveDir),
    lease: { acquire: (ttlMs) => store.acquireLease(AUDIT_LEASE, nodeId, ttlMs), release: () => store.releaseLease(AUDIT_LEASE, nodeId) },
    onError: (m) => log({ level: 'warn', msg: `background job: ${m}` }),
    onRetained: (n) => log({ level: 'info', msg: `audit: ${n} events older than ${retentionDays} days archived in ${archiveDir} and removed` }),
  });
  await jobs.runOnce();
  jobs.start();
  return jobs;
}

async function closeAll(
  log: ServicesOptions['log'],
  clusters: readonly HsmCluster[],
  opened: Opened | undefined,
  kms: Kms | undefined,
  budgetMs: number,
  failures?: FailureAudit,
): Promise<void> {
  const deadline = Date.now() + budgetMs;
  if (kms) await bounded('stopping background jobs', kms.close(), deadline, log);
  if (opened) {
    failures?.close();
    if (opened.auditJobs) await bounded('audit anchor', opened.auditJobs.stop(), deadline, log);
    await bounded('audit close', opened.audit.close(), deadline, log);
    if (opened.limiter instanceof RedisRateLimiter) opened.limiter.disconnect();
    if (opened.replay instanceof RedisReplayGuard) opened.replay.disconnect();
    await bounded('identity store close', opened.identities.close(), deadline, log);
    await bounded('key store close', opened.store.close(), deadline, log);
  }
  for (const c of clusters) c.close();
}

function compose(config: ServerConfig, options: ServicesOptions, clusters: HsmCluster[], opened: Opened, kms: Kms, alarms: Alarms, iam: IamService): Services {
  const { store, audit, limiter, principalLimiter } = opened;
  const trust: TrustDeps = {
    tc3: { requiredSignedHeaders: config.tc3.requireSignedHeaders },
    replay: opened.replay,
    preAuth: new PreAuthLimiter(config.preAuthLimit),
    failures: new FailureAudit((e) => audit.append(e)),
  };
  const metrics = new Metrics({ clusters, alarms, keysByState: () => store.countByState(), audit: () => audit.counters() });
  const authz: Authorizer = {
    check: async (principal, request) => {
      const policies = principal.kind === 'root' ? [] : await iam.policiesFor(principal);
      let creators: string[] | undefined;
      for (const resource of request.resources) {
        const access = { action: request.action, resource, context: request.context };
        if (principal.kind !== 'root' && parseResource(resource)?.creatorUin === UNKNOWN_CREATOR) {
          creators ??= [principal.tenantUin, ...(await iam.listUsers(principal.tenantUin)).map((u) => u.uin)];
        }
        const d = creators ? authorizeAnyCreator(principal, access, policies, creators) : authorize(principal, access, policies);
        if (!d.allowed) return d;
      }
      return { allowed: true, reason: 'allowed' };
    },
  };
  const cam = new Cam(iam);
  let closing: Promise<void> | undefined;
  return {
    config,
    clusters,
    store,
    kms,
    iam,
    audit,
    limiter,
    principalLimiter,
    metrics,
    trust,
    apiDeps: () => ({
      kms,
      store,
      clusters,
      metrics,
      authz,
      limiter,
      principalLimiter,
      trust,
      maxBodyBytes: config.maxBodyBytes,
      regions: config.regions,
      deploymentId: config.deploymentId,
      authn: { resolve: (secretId) => iam.resolve(secretId) },
      cam,
      audit: { append: (e) => audit.append(e) },
      trail: { lookUpEvents: (r) => audit.lookUpEvents(r) },
    }),
    close: () => (closing ??= closeAll(options.log, clusters, opened, kms, CLOSE_BUDGET_MS, trust.failures)),
  };
}
