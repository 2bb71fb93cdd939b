/**
 * Listing on Redis: the sets named by the filters are intersected (ZINTERSTORE, with ZUNIONSTORE
 * for "any of" filters) into short-lived keys inside one MULTI, ZCARD gives the total and ZRANGE the
 * page; only the page's records are read (by the store). The cost is that of the intersection
 * (bounded by the smallest set named) plus the page, never the tenant's other keys. Exception: the
 * alias/key-id substring search HSCANs the tenant's alias hash (aliases and ids only, no records),
 * so it costs the tenant's key count in that region; a substring has no index.
 */
import Redis, { ChainableCommander } from 'ioredis';
import { matchesSearch } from '../record-facts';
import { execAll } from '../redis-client';
import type { ListKeysQuery } from '../store';
import { aliasName, idxName, termName, TERM, tmpName } from './keys';

/** The total of the query's matches and the key ids of its page, in order. */
export async function listPage(redis: Redis, q: ListKeysQuery): Promise<{ total: number; ids: string[] }> {
  let search: string[] | undefined;
  if ((q.searchAlias ?? '') !== '') {
    search = await searchAliases(redis, q.ownerUin, q.region, q.searchAlias as string);
    if (search.length === 0) return { total: 0, ids: [] };
  }
  const multi = redis.multi();
  const temps: string[] = [];
  const inputs = filterGroups(q).map((group) => (group.length === 1 ? group[0] : union(multi, group, temps)));
  if (search !== undefined) {
    const t = tmpName();
    temps.push(t);
    multi.zadd(t, ...search.flatMap((id) => ['-inf', id]));
    inputs.push(t);
  }
  if (inputs.length === 0 || search !== undefined) inputs.unshift(idxName(q.ownerUin, q.region));
  const result = inputs.length === 1 ? inputs[0] : intersect(multi, inputs, temps);
  const stop = String(q.offset + q.limit - 1);
  multi.zcard(result);
  if (q.order === 'asc') multi.zrange(result, q.offset, stop);
  else multi.zrange(result, q.offset, stop, 'REV');
  if (temps.length > 0) multi.del(...temps);
  const replies = await execAll<unknown>(multi);
  const [total, ids] = replies.slice(replies.length - (temps.length > 0 ? 3 : 2)) as [number, string[]];
  return { total, ids };
}

/** All (field, value) pairs of a hash, or (member, score) pairs of a sorted set, read in chunks. */
export async function scanPairs(redis: Redis, cmd: 'hscan' | 'zscan', key: string): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = [];
  let cursor = '0';
  do {
    const [next, flat] = await redis[cmd](key, cursor, 'COUNT', 1000);
    for (let i = 0; i < flat.length; i += 2) out.push([flat[i], flat[i + 1]]);
    cursor = next;
  } while (cursor !== '0');
  return out;
}

/** Key ids of the tenant whose alias or id contains `search`: an HSCAN of the alias hash. */
async function searchAliases(redis: Redis, ownerUin: string, region: string, search: string): Promise<string[]> {
  const pairs = await scanPairs(redis, 'hscan', aliasName(ownerUin, region));
  return pairs.filter(([alias, keyId]) => matchesSearch(search, alias, keyId)).map(([, keyId]) => keyId);
}

/** The index sets to intersect for a query, each a list of sets of which any may match. */
function filterGroups(q: ListKeysQuery): string[][] {
  const t = (term: string): string => termName(q.ownerUin, q.region, term);
  const groups: string[][] = [];
  if ((q.keyStates ?? []).length > 0) groups.push([...new Set(q.keyStates)].map((s) => t(TERM.state(s))));
  if (q.role !== undefined) groups.push([t(TERM.role(q.role))]);
  if (q.origin !== undefined) groups.push([t(TERM.origin(q.origin))]);
  if (q.keyUsage !== undefined) groups.push([t(TERM.usage(q.keyUsage))]);
  if (q.hsmClusterId !== undefined) groups.push([t(TERM.cluster(q.hsmClusterId))]);
  for (const f of q.tagFilters ?? []) {
    const values = [...new Set(f.values ?? [])];
    groups.push(values.length === 0 ? [t(TERM.tag(f.key))] : values.map((v) => t(TERM.tagValue(f.key, v))));
  }
  return groups;
}

/** Queues a union of `sets` into a new temporary key; scores stay the create time. */
function union(multi: ChainableCommander, sets: string[], temps: string[]): string {
  const t = tmpName();
  temps.push(t);
  multi.zunionstore(t, sets.length, ...sets, 'AGGREGATE', 'MAX');
  return t;
}

/** Queues an intersection; AGGREGATE MAX keeps the create time (the search set is scored -inf). */
function intersect(multi: ChainableCommander, sets: string[], temps: string[]): string {
  const t = tmpName();
  temps.push(t);
  multi.zinterstore(t, sets.length, ...sets, 'AGGREGATE', 'MAX');
  return t;
}
