import type { KeyRecord, Tombstone } from '../store/store';

/** KeyMetadata as the Tencent API reports it; everything is derived from the stored record. */
export interface KeyMetadata {
  KeyId: string;
  Alias: string;
  CreateTime: number;
  Description: string;
  KeyState: string;
  KeyUsage: string;
  /** 2: FIPS-family algorithms (4 would be the SM family, which no HSM here offers). */
  Type: number;
  CreatorUin: number;
  KeyRotationEnabled: boolean;
  Owner: string;
  NextRotateTime: number;
  DeletionDate: number;
  Origin: string;
  ValidTo: number;
  ResourceId: string;
  HsmClusterId: string;
  RotateDays: number;
  LastRotateTime: number;
  IsSyncReplica: number;
  SourceRegion: string;
  SyncStatus: number;
  AccountUin: number;
  CreatorUinString: string;
}

/** `reportedClusterId` turns the stored cluster id into what the API shows (empty for the shared pool). */
export function toKeyMetadata(r: KeyRecord, reportedClusterId: (id: string) => string): KeyMetadata {
  return {
    KeyId: r.keyId,
    Alias: r.alias,
    CreateTime: r.createTime,
    Description: r.description,
    KeyState: r.keyState,
    KeyUsage: r.keyUsage,
    Type: 2,
    CreatorUin: Number(r.creatorUin),
    KeyRotationEnabled: r.rotation.enabled,
    Owner: r.owner,
    NextRotateTime: r.rotation.enabled ? (r.rotation.nextRotateTime ?? 0) : 0,
    DeletionDate: r.deletionDate ?? 0,
    Origin: r.origin,
    ValidTo: r.origin === 'EXTERNAL' ? (r.validTo ?? 0) : 0,
    ResourceId: `creatorUin/${r.creatorUin}/${r.keyId}`,
    HsmClusterId: reportedClusterId(r.hsmClusterId),
    RotateDays: r.rotation.rotateDays,
    LastRotateTime: r.rotation.lastRotateTime ?? 0,
    IsSyncReplica: 0,
    SourceRegion: r.region,
    SyncStatus: 0,
    AccountUin: Number(r.ownerUin),
    CreatorUinString: r.creatorUin,
  };
}

/** What a deleted key still says about itself (audit, support). */
export function describeTombstone(t: Tombstone): string {
  return `key ${t.keyId} (alias ${JSON.stringify(t.alias)}, ${t.keyUsage}, ${t.origin}) was deleted at ${new Date(t.deletedAt * 1000).toISOString()}`;
}
