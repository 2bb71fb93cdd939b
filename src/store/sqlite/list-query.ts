/**
 * SQL of the list, count and due queries. A list is driven by its first filter that has an index,
 * so its cost is the matching rows, never the table; the one exception is the alias/key-id
 * substring search, which reads the tenant's own rows of the (owner, region, create time) index.
 */
import { DUE_COLUMN } from './schema';
import type { DueKind, ListKeysQuery } from '../store';

export type SqlParam = string | number | null;

/** What `explain` can show the plan of. */
export type ExplainTarget = { list: ListKeysQuery } | { listCount: ListKeysQuery } | { count: { ownerUin: string; region: string } } | { due: DueKind };

export function dueSql(kind: DueKind): string {
  const col = DUE_COLUMN[kind];
  return `SELECT owner_uin, key_id FROM keys WHERE ${col} <= ? ORDER BY ${col}, key_id LIMIT ?`;
}

/**
 * The FROM clause of a list query: its first filter with an index drives it (a tag filter, else the
 * states, cluster, usage, origin, role), so SQLite walks the matching keys, not the tenant's (left
 * to itself, it prefers the create-time index to avoid a sort, and reads every key of the tenant).
 */
function listFrom(q: ListKeysQuery): { from: string; order: string; params: SqlParam[] } {
  const tag = q.tagFilters?.[0];
  if (tag !== undefined) {
    const values = tag.values ?? [];
    const inValues = values.length > 0 ? ` AND t.tag_value IN (${values.map(() => '?').join(', ')})` : '';
    return {
      from: `key_tags AS t CROSS JOIN keys ON keys.key_id = t.key_id AND t.owner_uin = ? AND t.region = ? AND t.tag_key = ?${inValues}`,
      order: 't.create_time, t.key_id',
      params: [q.ownerUin, q.region, tag.key, ...values],
    };
  }
  // several states (ListKeys asks for three) would need a sort of every match: the time-ordered index filters them instead
  const driving: Array<[boolean, string]> = [
    [(q.keyStates ?? []).length === 1, 'keys_state'],
    [q.hsmClusterId !== undefined, 'keys_cluster'],
    [q.keyUsage !== undefined, 'keys_usage'],
    [q.origin !== undefined, 'keys_origin'],
    [q.role !== undefined, 'keys_role'],
  ];
  const index = driving.find(([used]) => used)?.[1] ?? 'keys_list';
  return { from: `keys INDEXED BY ${index}`, order: 'keys.create_time, keys.key_id', params: [] };
}

/** The WHERE clause of a list query. */
function listWhere(q: ListKeysQuery): { clause: string; params: SqlParam[] } {
  const where = ['keys.owner_uin = ?', 'keys.region = ?'];
  const params: SqlParam[] = [q.ownerUin, q.region];
  const anyOf = (column: string, values: readonly string[]): void => {
    if (values.length === 0) return;
    where.push(`keys.${column} IN (${values.map(() => '?').join(', ')})`);
    params.push(...values);
  };
  anyOf('key_state', q.keyStates ?? []);
  for (const [column, value] of [
    ['role', q.role],
    ['origin', q.origin],
    ['key_usage', q.keyUsage],
    ['hsm_cluster_id', q.hsmClusterId],
  ]) {
    if (value !== undefined) anyOf(column as string, [value]);
  }
  if (q.searchAlias !== undefined && q.searchAlias !== '') {
    where.push('(instr(keys.alias, ?) > 0 OR instr(keys.key_id, ?) > 0)');
    params.push(q.searchAlias, q.searchAlias);
  }
  for (const f of (q.tagFilters ?? []).slice(1)) {
    const values = f.values ?? [];
    const inValues = values.length > 0 ? ` AND tag_value IN (${values.map(() => '?').join(', ')})` : '';
    where.push(`keys.key_id IN (SELECT key_id FROM key_tags WHERE owner_uin = ? AND region = ? AND tag_key = ?${inValues})`);
    params.push(q.ownerUin, q.region, f.key, ...values);
  }
  return { clause: where.join(' AND '), params };
}

export function listSql(q: ListKeysQuery): { count: string; page: string; params: SqlParam[] } {
  const { from, order, params: fromParams } = listFrom(q);
  const { clause, params } = listWhere(q);
  const dir = q.order === 'desc' ? 'DESC' : 'ASC';
  const orderBy = order
    .split(', ')
    .map((c) => `${c} ${dir}`)
    .join(', ');
  return {
    count: `SELECT count(*) AS n FROM ${from} WHERE ${clause}`,
    page: `SELECT keys.key_id, keys.revision, keys.doc FROM ${from} WHERE ${clause} ORDER BY ${orderBy} LIMIT ? OFFSET ?`,
    params: [...fromParams, ...params],
  };
}
