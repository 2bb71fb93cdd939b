/**
 * Redis's side of repair: every record's index facts (SCAN of kms:key:*) become the entries it
 * implies (index set memberships, its alias field, due entries); every index set, alias hash and
 * due set is read (SCAN, then ZSCAN / HSCAN) into the entries found, grouped by the key they name,
 * with the version and count hashes of keys that no longer exist. The shared planner
 * (repair-plan.ts) says what to remove and write; each fix is applied only if its key's record is
 * still at the revision it was judged by (REPAIR_FIX), so nodes writing meanwhile are never undone.
 */
import Redis from 'ioredis';
import { DUE_KINDS, indexFacts } from '../record-facts';
import { decodeDoc, KeyDoc } from '../record';
import { describeStep, Entries, EntryValue, planRepair, removalsFirst, RepairStep } from '../repair-plan';
import { execAll } from '../redis-client';
import type { KeyVersion } from '../store';
import { aliasName, dueMember, dueName, KEY_PREFIX, keyName, memberships, parseDueMember, verName } from './keys';
import { scanPairs } from './list-query';
import { REPAIR_FIX } from './scripts';

/** An entry: a member of a sorted set (value: its score), a field of the alias hash (value: the key id), or a whole hash. */
type Entry = ['zset', string, string] | ['alias', string, string] | ['hash', string, ''];
const entry = (e: Entry): string => JSON.stringify(e);

interface Judged {
  rev: string;
  want: Entries;
}

export async function repairRedis(redis: Redis): Promise<string[]> {
  const findings: string[] = [];
  const records = new Map<string, Judged>();
  const unreadable = new Set<string>();
  for (const name of await scan(redis, `${KEY_PREFIX}*`, 'hash')) {
    const keyId = name.slice(KEY_PREFIX.length);
    const judged = await judge(redis, keyId);
    if (judged === 'gone') continue;
    if (judged === undefined) {
      unreadable.add(keyId);
      findings.push(`key ${keyId}: unreadable record; its index entries are left as they are`);
    } else records.set(keyId, judged);
  }
  const found = await foundEntries(redis, records);
  const planned: Array<{ keyId: string; step: RepairStep }> = [];
  for (const keyId of new Set([...records.keys(), ...found.keys()])) {
    if (unreadable.has(keyId)) continue;
    for (const step of planRepair(records.get(keyId)?.want, found.get(keyId) ?? new Map())) planned.push({ keyId, step });
  }
  for (const { keyId, step } of removalsFirst(planned)) {
    const [kind, target, member] = JSON.parse(step.entry) as Entry;
    const rev = records.get(keyId)?.rev ?? '';
    if ((await redis.eval(REPAIR_FIX, 2, keyName(keyId), target, rev, ...fixArgs(kind, member, step))) === 1) {
      findings.push(
        describeStep(
          keyId,
          step,
          kind === 'alias' ? `alias ${JSON.stringify(member)} in ${target}` : kind === 'zset' ? `${target} (member ${member})` : target,
        ),
      );
    }
  }
  return findings;
}

function fixArgs(kind: Entry[0], member: string, step: RepairStep): Array<string | number> {
  const want = step.kind === 'write' ? String(step.want) : '';
  if (kind === 'zset') return step.kind === 'write' ? ['zadd', want, member] : ['zrem', member];
  if (kind === 'alias') return step.kind === 'write' ? ['hset', member, want] : ['hdel', member];
  return ['del'];
}

/** The record's revision and the entries it implies; 'gone' when deleted meanwhile, undefined when unreadable. */
async function judge(redis: Redis, keyId: string): Promise<Judged | 'gone' | undefined> {
  const [hash, versions] = await execAll<unknown>(redis.multi().hgetall(keyName(keyId)).hlen(verName(keyId)));
  const { doc, rev } = hash as Record<string, string>;
  if (doc === undefined && rev === undefined) return 'gone';
  let record: KeyDoc;
  try {
    record = decodeDoc(doc);
  } catch {
    return undefined;
  }
  if (rev === undefined || record.keyId !== keyId) return undefined;
  const facts = indexFacts({ ...record, versions: new Array<KeyVersion>(versions as number) });
  const want = new Map<string, EntryValue>([[entry(['alias', aliasName(facts.ownerUin, facts.region), facts.alias]), keyId]]);
  for (const set of memberships(facts)) want.set(entry(['zset', set, keyId]), facts.createTime);
  const member = dueMember({ keyId, ownerUin: facts.ownerUin });
  for (const kind of DUE_KINDS) {
    const at = facts.due[kind];
    if (at !== undefined) want.set(entry(['zset', dueName(kind), member]), at);
  }
  return { rev, want };
}

/** Every index, alias and due entry, by the key it names; and the version and count hashes of keys without a record. */
async function foundEntries(redis: Redis, records: ReadonlyMap<string, Judged>): Promise<Map<string, Map<string, EntryValue>>> {
  const found = new Map<string, Map<string, EntryValue>>();
  const add = (keyId: string, e: Entry, value: EntryValue): void => {
    const entries = found.get(keyId) ?? new Map<string, EntryValue>();
    entries.set(entry(e), value);
    found.set(keyId, entries);
  };
  for (const set of await scan(redis, 'kms:idx:*', 'zset')) {
    for (const [keyId, score] of await scanPairs(redis, 'zscan', set)) add(keyId, ['zset', set, keyId], Number(score));
  }
  for (const hash of await scan(redis, 'kms:alias:*', 'hash')) {
    for (const [alias, keyId] of await scanPairs(redis, 'hscan', hash)) add(keyId, ['alias', hash, alias], keyId);
  }
  for (const kind of DUE_KINDS) {
    for (const [member, score] of await scanPairs(redis, 'zscan', dueName(kind)))
      add(parseDueMember(member).keyId, ['zset', dueName(kind), member], Number(score));
  }
  for (const prefix of ['kms:ver:', 'kms:use:']) {
    for (const name of await scan(redis, `${prefix}*`, 'hash')) {
      const keyId = name.slice(prefix.length);
      if (!records.has(keyId)) add(keyId, ['hash', name, ''], '');
    }
  }
  return found;
}

async function scan(redis: Redis, pattern: string, type: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, names] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000, 'TYPE', type);
    out.push(...names);
    cursor = next;
  } while (cursor !== '0');
  return out;
}
