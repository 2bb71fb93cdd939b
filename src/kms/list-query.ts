import type { ListKeysQuery, TagFilter } from '../store/store';
import { InvalidParameterError, quoted } from './errors';
import { isKeyUsage, keyUsageOrDefault } from './key-usage';
import type { KeyState } from './key-state';

/** ListKeys / ListKeyDetail parameters (already type-checked by the API layer). */
export interface ListParams {
  Offset?: number;
  Limit?: number;
  /** 0 user-created (default), 1 created by cloud products. */
  Role?: number;
  /** By CreateTime: 0 descending (default), 1 ascending. */
  OrderType?: number;
  /** 0 all, 1 Enabled, 2 Disabled, 3 PendingDelete, 4 PendingImport, 5 Archived. */
  KeyState?: number;
  SearchKeyAlias?: string;
  /** TENCENT_KMS | EXTERNAL | ALL; unset means both. */
  Origin?: string;
  /** ALL or a KeyUsage; empty means ENCRYPT_DECRYPT only. */
  KeyUsage?: string;
  TagFilters?: Array<{ TagKey: string; TagValue?: string[] }>;
}

/**
 * Every tag filter is one more condition of the store's query (SQLite refuses expressions deeper than 1000 terms, and more than
 * 32766 parameters): a key has at most 50 tags, so more filters only repeat tag keys; 100 values per filter is generous.
 */
export const MAX_TAG_FILTERS = 50;
export const MAX_TAG_FILTER_VALUES = 100;

const STATE_CODES: Record<number, KeyState | undefined> = { 0: undefined, 1: 'Enabled', 2: 'Disabled', 3: 'PendingDelete', 4: 'PendingImport', 5: 'Archived' };
/** ListKeys shows only these states. */
export const LIST_KEYS_STATES: KeyState[] = ['Enabled', 'Disabled', 'PendingImport'];

function intIn(name: string, v: number | undefined, fallback: number, min: number, max: number): number {
  if (v === undefined) return fallback;
  if (!Number.isInteger(v) || v < min || v > max) throw new InvalidParameterError(`${name} must be an integer from ${min} to ${max}`);
  return v;
}

function base(tenant: string, region: string, p: ListParams): ListKeysQuery {
  const role = intIn('Role', p.Role, 0, 0, 1);
  return {
    ownerUin: tenant,
    region,
    offset: intIn('Offset', p.Offset, 0, 0, Number.MAX_SAFE_INTEGER),
    limit: intIn('Limit', p.Limit, 10, 1, 200),
    order: 'desc',
    role: role === 0 ? 'user' : 'product',
  };
}

/** ListKeys: paging, role and cluster only; Enabled, Disabled and PendingImport keys. Oldest first. */
export function listKeysQuery(tenant: string, region: string, p: ListParams, clusterId: string | undefined): ListKeysQuery {
  return { ...base(tenant, region, p), order: 'asc', keyStates: LIST_KEYS_STATES, hsmClusterId: clusterId };
}

export function listKeyDetailQuery(tenant: string, region: string, p: ListParams, clusterId: string | undefined): ListKeysQuery {
  const q = base(tenant, region, p);
  q.order = intIn('OrderType', p.OrderType, 0, 0, 1) === 1 ? 'asc' : 'desc';
  const stateCode = intIn('KeyState', p.KeyState, 0, 0, 5);
  const state = STATE_CODES[stateCode];
  if (state) q.keyStates = [state];
  if (p.SearchKeyAlias) q.searchAlias = p.SearchKeyAlias;
  if (p.Origin !== undefined && p.Origin !== '' && p.Origin !== 'ALL') {
    if (p.Origin !== 'TENCENT_KMS' && p.Origin !== 'EXTERNAL') throw new InvalidParameterError('Origin must be TENCENT_KMS, EXTERNAL or ALL');
    q.origin = p.Origin;
  }
  const usage = keyUsageOrDefault(p.KeyUsage);
  if (usage !== 'ALL') {
    if (!isKeyUsage(usage)) throw new InvalidParameterError(`KeyUsage ${quoted(usage)} is not a key usage (or ALL)`);
    q.keyUsage = usage;
  }
  if (p.TagFilters && p.TagFilters.length > MAX_TAG_FILTERS) throw new InvalidParameterError(`TagFilters must have at most ${MAX_TAG_FILTERS} filters`);
  if (p.TagFilters?.some((f) => (f.TagValue?.length ?? 0) > MAX_TAG_FILTER_VALUES))
    throw new InvalidParameterError(`each TagFilter must have at most ${MAX_TAG_FILTER_VALUES} values`);
  if (p.TagFilters && p.TagFilters.length > 0) q.tagFilters = p.TagFilters.map((f): TagFilter => ({ key: f.TagKey, values: f.TagValue ?? [] }));
  if (clusterId !== undefined) q.hsmClusterId = clusterId;
  return q;
}
