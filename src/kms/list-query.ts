import type { KeyOrigin, ListKeysQuery, TagFilter } from '../store/store';
import { about, InvalidParameterError, quoted } from './errors';
import type { KeyState } from './key-state';
import { isKeyUsage, KeyUsage, storedUsage } from './key-usage';

/** Which keys a list shows and how: protocol-neutral (each protocol maps its own list parameters onto it in src/api). */
export interface ListRequest {
  /** Keys to skip; default 0. */
  offset?: number;
  /** Keys per page, 1 to 200; default 10. */
  limit?: number;
  /** `user` (default): keys users made; `product`: keys cloud products made for themselves. */
  role?: 'user' | 'product';
  /** By creation time (the detailed list only; the plain list is oldest first): default newest first. */
  order?: 'asc' | 'desc';
  /** Only keys in this state; absent: every state (the detailed list only). */
  keyState?: KeyState;
  /** A substring of the alias or of the key id. */
  searchAlias?: string;
  /** Absent: both origins. */
  origin?: KeyOrigin;
  /** Absent: every usage. */
  keyUsage?: KeyUsage;
  tagFilters?: readonly TagFilter[];
  /** A dedicated cluster of the caller's (empty: the shared pool's keys). */
  hsmClusterId?: string;
}

/**
 * Every tag filter is one more condition of the store's query (SQLite refuses expressions deeper than 1000 terms, and more than
 * 32766 parameters): a key has at most 50 tags, so more filters only repeat tag keys; 100 values per filter is generous.
 */
export const MAX_TAG_FILTERS = 50;
export const MAX_TAG_FILTER_VALUES = 100;

/** The plain list shows only these states. */
export const LIST_KEYS_STATES: KeyState[] = ['Enabled', 'Disabled', 'PendingImport'];

function intIn(name: 'offset' | 'limit', v: number | undefined, fallback: number, min: number, max: number): number {
  if (v === undefined) return fallback;
  if (!Number.isInteger(v) || v < min || v > max) throw new InvalidParameterError(`${name} must be an integer from ${min} to ${max}`, about(name));
  return v;
}

function base(tenant: string, region: string, p: ListRequest): ListKeysQuery {
  return {
    ownerUin: tenant,
    region,
    offset: intIn('offset', p.offset, 0, 0, Number.MAX_SAFE_INTEGER),
    limit: intIn('limit', p.limit, 10, 1, 200),
    order: 'desc',
    role: p.role ?? 'user',
  };
}

/** The plain list: paging, role and cluster only; Enabled, Disabled and PendingImport keys. Oldest first. */
export function listKeysQuery(tenant: string, region: string, p: ListRequest, clusterId: string | undefined): ListKeysQuery {
  return { ...base(tenant, region, p), order: 'asc', keyStates: LIST_KEYS_STATES, hsmClusterId: clusterId };
}

function tagFilters(filters: readonly TagFilter[]): TagFilter[] {
  if (filters.length > MAX_TAG_FILTERS) throw new InvalidParameterError(`tagFilters must have at most ${MAX_TAG_FILTERS} filters`, about('tagFilters'));
  if (filters.some((f) => (f.values?.length ?? 0) > MAX_TAG_FILTER_VALUES))
    throw new InvalidParameterError(`each tag filter must have at most ${MAX_TAG_FILTER_VALUES} values`);
  return filters.map((f) => ({ key: f.key, values: [...(f.values ?? [])] }));
}

/** The detailed list: the plain list's filters and state, alias, origin, usage, tags; newest first unless asked otherwise. */
export function listKeyDetailQuery(tenant: string, region: string, p: ListRequest, clusterId: string | undefined): ListKeysQuery {
  const q = base(tenant, region, p);
  q.order = p.order ?? 'desc';
  if (p.keyState !== undefined) q.keyStates = [p.keyState];
  if (p.searchAlias) q.searchAlias = p.searchAlias;
  if (p.origin !== undefined) q.origin = p.origin;
  if (p.keyUsage !== undefined) {
    if (!isKeyUsage(p.keyUsage)) throw new InvalidParameterError(`keyUsage ${quoted(String(p.keyUsage))} is not a key usage`, about('keyUsage'));
    q.keyUsage = storedUsage(p.keyUsage);
  }
  if (p.tagFilters && p.tagFilters.length > 0) q.tagFilters = tagFilters(p.tagFilters);
  if (clusterId !== undefined) q.hsmClusterId = clusterId;
  return q;
}
