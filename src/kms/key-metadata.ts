import type { KeyOrigin, KeyRecord, Tombstone } from '../store/store';
import type { KeyState } from './key-state';
import { keyUsageOfCode } from '../common/key-usages';
import { KeyUsage, usageOf } from './key-usage';

/** What the core says about a key; everything is derived from the stored record. Times are Unix seconds. */
export interface KeyDescription {
  keyId: string;
  alias: string;
  description: string;
  createTime: number;
  keyState: KeyState;
  keyUsage: KeyUsage;
  origin: KeyOrigin;
  /** "user", or the cloud product that made the key for itself. */
  owner: string;
  /** The account the key belongs to, and the (sub-)account that created it. */
  accountUin: string;
  creatorUin: string;
  region: string;
  /** The cluster as the API shows it: empty for the shared pool. */
  hsmClusterId: string;
  rotationEnabled: boolean;
  rotateDays: number;
  /** Undefined when rotation is off. */
  nextRotateTime: number | undefined;
  lastRotateTime: number | undefined;
  deletionDate: number | undefined;
  /** When imported material expires; undefined for KMS-made material and material that never expires. */
  validTo: number | undefined;
}

/** `reportedClusterId` turns the stored cluster id into what the API shows (empty for the shared pool). */
export function describeRecord(r: KeyRecord, reportedClusterId: (id: string) => string): KeyDescription {
  return {
    keyId: r.keyId,
    alias: r.alias,
    description: r.description,
    createTime: r.createTime,
    keyState: r.keyState,
    keyUsage: usageOf(r),
    origin: r.origin,
    owner: r.owner,
    accountUin: r.ownerUin,
    creatorUin: r.creatorUin,
    region: r.region,
    hsmClusterId: reportedClusterId(r.hsmClusterId),
    rotationEnabled: r.rotation.enabled,
    rotateDays: r.rotation.rotateDays,
    nextRotateTime: r.rotation.enabled ? r.rotation.nextRotateTime : undefined,
    lastRotateTime: r.rotation.lastRotateTime,
    deletionDate: r.deletionDate || undefined,
    validTo: (r.origin === 'EXTERNAL' && r.validTo) || undefined,
  };
}

/** What a deleted key still says about itself (audit, support). */
export function describeTombstone(t: Tombstone): string {
  return `key ${t.keyId} (alias ${JSON.stringify(t.alias)}, ${keyUsageOfCode(t.keyUsage) ?? t.keyUsage}, ${t.origin}) was deleted at ${new Date(t.deletedAt * 1000).toISOString()}`;
}
