/**
 * The Redis layout, with tenant, region, tag keys and values URI-encoded in names:
 *   kms:key:{keyId}             hash: doc (JSON record without versions), rev
 *   kms:ver:{keyId}             hash: version number -> 8-byte big-endian create time + material
 *   kms:use:{keyId}             hash: version number -> encryption count
 *   kms:tomb:{keyId}            string: the tombstone (JSON) of a deleted key
 *   kms:alias:{owner}:{region}  hash: alias -> keyId (uniqueness; the search reads it)
 *   kms:idx:{owner}:{region}    sorted set: every keyId of the tenant in the region, by create time
 *   kms:idx:{owner}:{region}:{term}  sorted sets by create time, one per filter value:
 *       state:{S}, usage:{U}, origin:{O}, cluster:{C}, role:{user|product}, tag:{k}, tagv:{k}={v}
 *   kms:due:{rotation|deletion|expiry}  sorted sets of "{keyId}/{owner}" by due time (all tenants)
 *   kms:lease:{name}            string: holder, with a TTL
 *   kms:cluster:{id}            hash: doc (the cluster's state document), rev
 * and how a record's index facts map onto those names.
 */
import { randomUUID } from 'crypto';
import { IndexFacts, QUOTA_RULE } from '../record-facts';
import type { DueKind, KeyRef } from '../store';

export const CHANNEL = 'kms:changes';
const enc = encodeURIComponent;
export const KEY_PREFIX = 'kms:key:';
export const keyName = (keyId: string): string => `${KEY_PREFIX}${keyId}`;
export const verName = (keyId: string): string => `kms:ver:${keyId}`;
export const useName = (keyId: string): string => `kms:use:${keyId}`;
export const tombName = (keyId: string): string => `kms:tomb:${keyId}`;
export const aliasName = (owner: string, region: string): string => `kms:alias:${enc(owner)}:${enc(region)}`;
export const idxName = (owner: string, region: string): string => `kms:idx:${enc(owner)}:${enc(region)}`;
export const termName = (owner: string, region: string, term: string): string => `${idxName(owner, region)}:${term}`;
export const dueName = (kind: DueKind): string => `kms:due:${kind}`;
export const dueMember = (r: KeyRef): string => `${r.keyId}/${r.ownerUin}`;
export const leaseName = (name: string): string => `kms:lease:${enc(name)}`;
export const clusterName = (id: string): string => `kms:cluster:${enc(id)}`;
export const tmpName = (): string => `kms:tmp:${randomUUID()}`;

export function parseDueMember(member: string): KeyRef {
  const slash = member.indexOf('/');
  return { keyId: member.slice(0, slash), ownerUin: member.slice(slash + 1) };
}

/** Index terms, shared by the writers (memberships) and the listing (filters). */
export const TERM = {
  state: (s: string) => `state:${enc(s)}`,
  usage: (u: string) => `usage:${enc(u)}`,
  origin: (o: string) => `origin:${enc(o)}`,
  cluster: (c: string) => `cluster:${enc(c)}`,
  role: (r: string) => `role:${r}`,
  tag: (k: string) => `tag:${enc(k)}`,
  tagValue: (k: string, v: string) => `tagv:${enc(k)}=${enc(v)}`,
};

/** Every index set a key with these facts belongs to (the tenant's listing set first). */
export function memberships(f: IndexFacts): string[] {
  const terms = [
    TERM.state(f.keyState),
    TERM.usage(f.keyUsage),
    TERM.origin(f.origin),
    TERM.cluster(f.hsmClusterId),
    TERM.role(f.role),
    ...f.tags.flatMap(([k, v]) => [TERM.tag(k), TERM.tagValue(k, v)]),
  ];
  return [idxName(f.ownerUin, f.region), ...terms.map((t) => termName(f.ownerUin, f.region, t))];
}

/** The quota rule as sets: the tenant's keys counted are those of `counted` not also in `excluded`. */
export function quotaSets(owner: string, region: string): { counted: string; excluded: string } {
  return { counted: termName(owner, region, TERM.role(QUOTA_RULE.role)), excluded: termName(owner, region, TERM.state(QUOTA_RULE.notState)) };
}
