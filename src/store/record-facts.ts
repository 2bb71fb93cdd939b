/**
 * What a key record implies for the data every backend derives from it and indexes (SQLite's
 * columns and tag rows, Redis's index and due sets): computed here once, from the record alone, and
 * only mapped by each backend onto its own columns or set names. The quota rule and the rules of due
 * work live here too, so a backend's SQL or Lua states them from these definitions, never its own.
 */
import { KeyState } from '../common/key-states';
import type { DueKind, KeyOrigin, NewKeyRecord } from './store';

export type KeyRole = 'user' | 'product';

/** `user` when the key's owner is the tenant itself, `product` when a cloud product owns it. */
export function roleOf(owner: string): KeyRole {
  return owner === 'user' ? 'user' : 'product';
}

export const DUE_KINDS: readonly DueKind[] = ['rotation', 'deletion', 'expiry'];

/**
 * The tenant's key quota, per region, counts its keys of role `role` not in state `notState`; it is
 * checked only when the new key has that role too, and refuses when the count has reached the limit.
 */
export const QUOTA_RULE: { readonly role: KeyRole; readonly notState: KeyState } = { role: 'user', notState: 'PendingDelete' };

/** Whether a key with these facts counts towards its tenant's quota. */
export function countsTowardQuota(f: { role: KeyRole; keyState: KeyState }): boolean {
  return f.role === QUOTA_RULE.role && f.keyState !== QUOTA_RULE.notState;
}

/** Whether creating `record` is checked against a limit of `maxKeys` at all (the limit, or undefined). */
export function quotaLimitFor(record: NewKeyRecord, maxKeys: number | undefined): number | undefined {
  return roleOf(record.owner) === QUOTA_RULE.role ? maxKeys : undefined;
}

/** When the key becomes due for each kind of background work (absent: never); see `DueKind`. */
export function dueTimes(r: NewKeyRecord): Partial<Record<DueKind, number>> {
  const due: Partial<Record<DueKind, number>> = {};
  if (r.rotation.enabled && r.rotation.nextRotateTime !== undefined) due.rotation = r.rotation.nextRotateTime;
  if (r.keyState === 'PendingDelete' && r.deletionDate !== undefined) due.deletion = r.deletionDate;
  if (r.validTo !== undefined && r.validTo !== 0 && r.versions.length > 0) due.expiry = r.validTo;
  return due;
}

/** Everything a backend indexes about a key. */
export interface IndexFacts {
  ownerUin: string;
  region: string;
  /** Unique per (ownerUin, region). */
  alias: string;
  keyState: KeyState;
  origin: KeyOrigin;
  keyUsage: string;
  hsmClusterId: string;
  role: KeyRole;
  /** The order of every listing. */
  createTime: number;
  /** (tag key, tag value) pairs. */
  tags: ReadonlyArray<readonly [string, string]>;
  due: Partial<Record<DueKind, number>>;
  /** Counted by the tenant's quota (QUOTA_RULE). */
  quota: boolean;
}

/** The index facts of a record (its versions count only as "has material", for expiry). */
export function indexFacts(r: NewKeyRecord): IndexFacts {
  const role = roleOf(r.owner);
  return {
    ownerUin: r.ownerUin,
    region: r.region,
    alias: r.alias,
    keyState: r.keyState,
    origin: r.origin,
    keyUsage: r.keyUsage,
    hsmClusterId: r.hsmClusterId,
    role,
    createTime: r.createTime,
    tags: Object.entries(r.tags),
    due: dueTimes(r),
    quota: countsTowardQuota({ role, keyState: r.keyState }),
  };
}

/** Listing search: a substring of the alias or of the key id (case-sensitive). */
export function matchesSearch(search: string, alias: string, keyId: string): boolean {
  return alias.includes(search) || keyId.includes(search);
}
