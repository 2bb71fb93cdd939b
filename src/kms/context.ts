import type { GcmBudget } from './gcm-budget';
import type { ExpensiveWork } from './expensive-work';
import type { KeyAccess } from './key-access';
import type { UsageCounter } from './usage-counter';

export interface KmsConfig {
  /** 16 bytes naming this deployment inside every ciphertext; blobs of another deployment are refused. */
  deploymentId: Buffer;
  /** User keys per account and region (not PendingDelete); 0 means no limit. */
  maxKeysPerRegion: number;
  /** Hosted data keys per account and region (any state); 0 means no limit. */
  maxDataKeysPerRegion: number;
  /** Days before deletion during which a daily alarm fires. */
  deletionAlarmDays: number;
  /** Offer RSAES_PKCS1_V1_5 import wrapping (a padding-oracle risk: off unless the operator allows it). */
  allowPkcs1v15Import: boolean;
  /** AES-GCM encryptions per key version (random IVs); refused beyond it for versions that cannot rotate. */
  gcmMaxInvocationsPerVersion: number;
}

export const DEFAULT_MAX_KEYS_PER_REGION = 200;

/** What every group of actions works with. */
export interface KmsContext {
  access: KeyAccess;
  config: KmsConfig;
  usage: UsageCounter;
  /** Exact use limit of versions that cannot rotate. */
  gcm: GcmBudget;
  /** The per-tenant cap on expensive actions in flight. */
  expensive: ExpensiveWork;
}
