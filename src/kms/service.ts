import { randomUUID } from 'node:crypto';
import type { HsmCluster } from '../hsm/cluster';
import type { MetadataStore } from '../store/store';
import { Alarms } from './alarms';
import { Asymmetric } from './asymmetric';
import { Clock, systemClock } from '../common/clock';
import { GCM_RANDOM_IV_LIMIT } from '../common/gcm';
import { ClusterDirectory } from './cluster-directory';
import { DEFAULT_MAX_KEYS_PER_REGION, KmsConfig, KmsContext } from './context';
import { DataKeys, DEFAULT_MAX_DATA_KEYS_PER_REGION } from './data-keys';
import { DueWork } from './deletion';
import { DomainRotation, SealedUnderDomain } from './domain-rotation';
import { DomainStates } from './domain-state';
import { Envelope } from './envelope';
import { GcmBudget } from './gcm-budget';
import { ExpensiveWork } from './expensive-work';
import { BackgroundJobs } from './jobs';
import { KeyAccess } from './key-access';
import { KeyCache } from './key-cache';
import { KeyImport } from './key-import';
import { Lifecycle } from './lifecycle';
import { Rotation } from './rotation';
import { rotationThreshold, UsageCounter } from './usage-counter';

export interface KmsOptions {
  store: MetadataStore;
  clusters: readonly HsmCluster[];
  /** 16 bytes; must be the same on every node of a deployment and never change. */
  deploymentId: Buffer;
  clock?: Clock;
  alarms?: Alarms;
  /** User keys per account and region; default 200 (the Tencent limit); 0 means no limit. */
  maxKeysPerRegion?: number;
  /** Hosted data keys per account and region; default 1000; 0 means no limit. */
  maxDataKeysPerRegion?: number;
  deletionAlarmDays?: number;
  /** Offer RSAES_PKCS1_V1_5 import wrapping (default false: a padding-oracle risk). */
  allowPkcs1v15Import?: boolean;
  /** AES-GCM encryptions per key version; default 2^32 (NIST). Versions that cannot rotate stop there; the others rotate at a quarter. */
  gcmMaxInvocationsPerVersion?: number;
  /** A name for this node in leases; default a random id. */
  nodeId?: string;
  jobIntervalMs?: number;
  keyCacheTtlMs?: number;
  /** Expensive actions (key-pair generation, RSA decryption, signing) in flight per tenant in this process; default 4, 0 = no cap. */
  expensivePerTenant?: number;
  onJobError?: (message: string) => void;
  /** The cluster whose domain MAC key MACs the audit chain and authority rows: it rotates its domain only with `macSealed` covering them. */
  macClusterId?: string;
  /** What that key seals besides key material, re-sealed by its rotation (authority rows, the audit chain). */
  macSealed?: readonly SealedUnderDomain[];
}

/** The KMS core: every action of the Tencent API, grouped by concept, over one store and the HSM clusters. */
export class Kms {
  readonly lifecycle: Lifecycle;
  readonly envelope: Envelope;
  readonly dataKeys: DataKeys;
  readonly asymmetric: Asymmetric;
  readonly keyImport: KeyImport;
  readonly rotation: Rotation;
  readonly due: DueWork;
  readonly jobs: BackgroundJobs;
  readonly alarms: Alarms;
  readonly clusters: ClusterDirectory;
  readonly store: MetadataStore;
  readonly nodeId: string;
  /** User keys per account and region (0: no limit). */
  readonly maxKeysPerRegion: number;
  readonly expensive: ExpensiveWork;
  /** Which domain generation each cluster seals under (from the store). */
  readonly domainStates: DomainStates;
  readonly domainRotation: DomainRotation;
  private readonly unwatch: () => void;
  private readonly cache: KeyCache;

  constructor(o: KmsOptions) {
    if (o.deploymentId.length !== 16) throw new RangeError('deploymentId must be 16 bytes');
    this.store = o.store;
    this.clusters = new ClusterDirectory(o.clusters);
    this.alarms = o.alarms ?? new Alarms();
    this.nodeId = o.nodeId ?? randomUUID();
    this.cache = new KeyCache(o.keyCacheTtlMs ?? 30_000, 100_000, (_keyId, materials) => {
      for (const m of materials) this.clusters.get(m.binding.clusterId)?.forget(m);
    });
    const config: KmsConfig = {
      deploymentId: Buffer.from(o.deploymentId),
      maxKeysPerRegion: o.maxKeysPerRegion ?? DEFAULT_MAX_KEYS_PER_REGION,
      maxDataKeysPerRegion: o.maxDataKeysPerRegion ?? DEFAULT_MAX_DATA_KEYS_PER_REGION,
      deletionAlarmDays: o.deletionAlarmDays ?? 3,
      allowPkcs1v15Import: o.allowPkcs1v15Import === true,
      gcmMaxInvocationsPerVersion: o.gcmMaxInvocationsPerVersion ?? GCM_RANDOM_IV_LIMIT,
    };
    this.maxKeysPerRegion = config.maxKeysPerRegion;
    const access = new KeyAccess({ store: o.store, clusters: this.clusters, clock: o.clock ?? systemClock, alarms: this.alarms, cache: this.cache });
    this.expensive = new ExpensiveWork(o.expensivePerTenant);
    const limit = config.gcmMaxInvocationsPerVersion;
    const reserve = async (ref: string, n: number) => (await o.store.addUsage(new Map([[ref, n]]))).get(ref);
    const gcm = new GcmBudget(limit, reserve, this.alarms, access.clock);
    const ctx: KmsContext = { access, config, usage: new UsageCounter(rotationThreshold(limit)), gcm, expensive: this.expensive };
    this.lifecycle = new Lifecycle(ctx);
    this.envelope = new Envelope(ctx);
    this.dataKeys = new DataKeys(ctx, this.envelope);
    this.asymmetric = new Asymmetric(ctx);
    this.keyImport = new KeyImport(ctx);
    this.rotation = new Rotation(ctx);
    this.due = new DueWork(ctx, this.nodeId);
    this.domainStates = new DomainStates(o.store, o.clusters);
    this.domainRotation = new DomainRotation(o.store, o.clusters, this.nodeId, o.macClusterId, o.macSealed);
    this.jobs = new BackgroundJobs(
      ctx,
      this.rotation,
      this.due,
      this.nodeId,
      o.jobIntervalMs,
      o.onJobError,
      {
        states: this.domainStates,
        rotation: this.domainRotation,
        clusters: o.clusters.map((c) => c.id),
      },
      this.dataKeys,
    );
    this.unwatch = o.store.watch((change) => {
      if (change.keyId === undefined) this.cache.invalidate();
      else void this.cache.refresh(change.keyId, (owner) => o.store.getKey(owner, change.keyId!));
    });
  }

  /**
   * Start-up: repairs derived store data a crash may have left inconsistent (unless another process
   * does that), then runs one round of due work (deletions and expiries whose date passed while no
   * node ran). Returns what was found.
   */
  async start(options: { repair?: boolean } = {}): Promise<string[]> {
    const findings = options.repair === false ? [] : await this.store.repair();
    const report = await this.jobs.runOnce();
    findings.push(...report.errors.map((e) => `background job: ${e}`));
    this.jobs.start();
    return findings;
  }

  async close(): Promise<void> {
    this.unwatch();
    await this.jobs.stop();
  }
}
