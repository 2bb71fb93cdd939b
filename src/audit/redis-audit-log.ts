/**
 * The audit trail in Redis (ioredis, Redis >= 7), normally the key store's own server. Layout:
 *   kms:audit:head                  hash: seq, hash of the newest event (the head anchor)
 *   kms:audit:events                hash: seq -> the stored event as JSON (STORED_FIELDS order)
 *   kms:audit:ix:time               sorted set (all scores 0, ordered by member): "{time}:{seq}"
 *   kms:audit:ix:name:{eventName}   the same, per event name; also ix:account:{accountUin} and
 *   kms:audit:ix:resource:{resource}  ix:resource:{resource} (values URI-encoded in key names)
 * Members are zero-padded (15-digit time, 16-digit seq), so lexicographic order is (time, seq)
 * order and every index answers a time range and a cursor with one ZRANGE BYLEX.
 *
 *   kms:audit:start                 hash: seq, prevHash, mac: where the kept trail begins (after retention)
 *
 * LookUpEvents (lookup.ts): the tenant's time index is ix:account:{accountUin}; for each indexed
 * attribute one sorted set per tenant and field, kms:audit:tx:{accountUin}:{field}, whose members
 * are "{value}:{time}:{seq}" (value URI-encoded, so it holds no ':' or ';'): one value's entries
 * are a contiguous (time, seq)-ordered run, read newest first with one ZRANGE BYLEX REV.
 *   kms:audit:tx-built              set once the tx sets cover every event (built at open for an older trail)
 *
 * One chain for all nodes: an append is one Lua script that compares the head the client chained
 * its batch after with the stored head and, only if they agree, writes the events, their index
 * entries and the new head. The links come from the HSM through the client; when another node moved
 * the head meanwhile, the script returns the new head and the client links the batch again
 * (optimistic concurrency, in chained-audit-log.ts). The script never overwrites a stored event, and
 * it recognises a batch it already wrote (a retry after a lost reply) by its first event id.
 */
import Redis from 'ioredis';
import { closeRedis, openRedis, RedisConnectionOptions } from '../store/redis-client';
import { ChainHead, ChainSlot, ChainStart, headOf } from './chain';
import { SealKind } from './chain-seals';
import { AuditLogOptions, ChainedAuditLog } from './chained-audit-log';
import { commitOptions } from './group-commit';
import { AuditChainError, AuditConfigError, AuditWriteError } from './errors';
import { MAX_TIME, StoredAuditEvent, parseStored, storedJson } from './event';
import { INDEXED_FIELDS } from './lookup';
import { AppendOutcome, AuditBackend, ChainPage, ChainSnapshot, ScanPage, TenantScan } from './backend';
import { AuditPage, AuditQuery, Position, encodeCursor, matches } from './query';

export interface RedisAuditOptions extends AuditLogOptions, RedisConnectionOptions {}

const PREFIX = 'kms:audit:';
const HEAD = `${PREFIX}head`;
const START = `${PREFIX}start`;
const EVENTS = `${PREFIX}events`;
/** Seals by `kind:seq` (chain-seals.ts). */
const SEALS = `${PREFIX}seals`;
const TIME_INDEX = `${PREFIX}ix:time`;
const enc = encodeURIComponent;
const INDEX = {
  eventName: (v: string) => `${PREFIX}ix:name:${enc(v)}`,
  accountUin: (v: string) => `${PREFIX}ix:account:${enc(v)}`,
  resource: (v: string) => `${PREFIX}ix:resource:${enc(v)}`,
};
const INDEXED = ['eventName', 'accountUin', 'resource'] as const;
/** A tenant's LookUpEvents set of one field. */
const tenantIndex = (tenant: string, field: string): string => `${PREFIX}tx:${enc(tenant)}:${field}`;
const TX_BUILT = `${PREFIX}tx-built`;

/** Index entries a query reads per round trip, and at most per call (then it returns a cursor). */
const SCAN_BATCH = 500;
const MAX_SCAN = 10_000;

const member = (p: Position): string => `${String(p.time).padStart(15, '0')}:${String(p.seq).padStart(16, '0')}`;
const positionOf = (m: string): Position => ({ time: Number(m.slice(0, 15)), seq: Number(m.slice(16)) });
/** A member's position; it ends in the (time, seq) member, whatever value precedes it. */
const tailPosition = (m: string): Position => positionOf(m.slice(-32));

/** Every index set an event is in, and its member there: the query indexes, then the tenant's lookup sets. */
function indexEntries(e: StoredAuditEvent): Array<[key: string, member: string]> {
  const m = member(e);
  return [
    [TIME_INDEX, m],
    ...INDEXED.map((f): [string, string] => [INDEX[f](e[f]), m]),
    ...INDEXED_FIELDS.map((f): [string, string] => [tenantIndex(e.accountUin, f), `${enc(e[f])}:${m}`]),
  ];
}
const ENTRIES_PER_EVENT = 4 + INDEXED_FIELDS.length;

// KEYS: 1 head, 2 events, then the index sets of each event (ARGV[7] of them per event, indexEntries order).
// ARGV: 1 expected head seq ('0': empty), 2 expected head hash ('' when empty), 3 first new seq,
//       4 '"eventId":"<first event id>"', 5 new head seq, 6 new head hash, 7 sets per event,
//       then per event: seq, JSON, its member in each of its sets.
const APPEND = `
local h = redis.call('HMGET', KEYS[1], 'seq', 'hash')
local seq, hash = h[1] or '0', h[2] or ''
if seq ~= ARGV[1] or hash ~= ARGV[2] then
  local first = redis.call('HGET', KEYS[2], ARGV[3])
  if first and string.find(first, ARGV[4], 1, true) then return {'DONE'} end
  return {'MOVED', seq, hash}
end
local k = tonumber(ARGV[7])
for i = 8, #ARGV, k + 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then return {'OCCUPIED', ARGV[i]} end
end
local n = 0
for i = 8, #ARGV, k + 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  for j = 1, k do redis.call('ZADD', KEYS[2 + n * k + j], 0, ARGV[i + 1 + j]) end
  n = n + 1
end
redis.call('HSET', KEYS[1], 'seq', ARGV[5], 'hash', ARGV[6])
return {'OK'}`;

// KEYS: 1 start, 2 head, 3 events, then the index sets of each removed event (ARGV[4] per event).
// ARGV: 1 new start seq, 2 its prevHash, 3 its MAC, 4 sets per event, then per removed event: seq, its member in each set.
const RETAIN = `
local current = tonumber(redis.call('HGET', KEYS[1], 'seq') or '1')
local head = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
local start = tonumber(ARGV[1])
local k = tonumber(ARGV[4])
if start <= current or start > head then return {'REFUSED', tostring(current), tostring(head)} end
for i = 5, #ARGV, k + 1 do
  local seq = tonumber(ARGV[i])
  if seq < current or seq >= start then return {'REFUSED', tostring(current), tostring(head)} end
end
local n = 0
for i = 5, #ARGV, k + 1 do
  redis.call('HDEL', KEYS[3], ARGV[i])
  for j = 1, k do redis.call('ZREM', KEYS[3 + n * k + j], ARGV[i + j]) end
  n = n + 1
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'prevHash', ARGV[2], 'mac', ARGV[3])
return {'OK'}`;

function parseStart(seq: string | null, prevHash: string | null, mac: string | null): ChainStart | undefined {
  if (seq === null && prevHash === null && mac === null) return undefined;
  return { seq: Number(seq), prevHash: prevHash ?? '', mac: mac ?? '' };
}

/** The head anchor from its stored fields; AuditChainError when it is there but malformed. */
function parseHead(seq: string | null, hash: string | null): ChainHead | undefined {
  if (seq === null && hash === null) return undefined;
  const n = Number(seq);
  if (!Number.isSafeInteger(n) || n < 1 || !/^[0-9a-f]{64}$/.test(hash ?? '')) {
    throw new AuditChainError('the audit head anchor is malformed (run verify)');
  }
  return { seq: n, hash: hash as string };
}

function appendArgs(expected: ChainHead | undefined, stored: readonly StoredAuditEvent[]): { keys: string[]; args: string[] } {
  const keys = [HEAD, EVENTS];
  const next = headOf(stored) as ChainHead;
  const args = [
    String(expected?.seq ?? 0),
    expected?.hash ?? '',
    String(stored[0].seq),
    `"eventId":"${stored[0].eventId}"`,
    String(next.seq),
    next.hash,
    String(ENTRIES_PER_EVENT),
  ];
  for (const e of stored) {
    const entries = indexEntries(e);
    keys.push(...entries.map(([k]) => k));
    args.push(String(e.seq), storedJson(e), ...entries.map(([, m]) => m));
  }
  return { keys, args };
}

/** The BYLEX bounds of a lookup's scan, newest first: from the token's position (or the range's end) down to the range's start. */
function scanBounds(scan: TenantScan): { key: string; max: string; min: string } {
  const prefix = scan.index === undefined ? '' : `${enc(scan.index.value)}:`;
  const key = scan.index === undefined ? INDEX.accountUin(scan.tenant) : tenantIndex(scan.tenant, scan.index.field);
  const min = `[${prefix}${String(scan.from).padStart(15, '0')}:`;
  if (scan.before !== undefined && scan.before.time <= scan.to) return { key, max: `(${prefix}${member(scan.before)}`, min };
  if (scan.to < MAX_TIME) return { key, max: `(${prefix}${String(scan.to + 1).padStart(15, '0')}:`, min };
  return { key, max: prefix === '' ? '+' : `(${prefix.slice(0, -1)};`, min };
}

/** The lowest index member a query reads: after the cursor, at or after `from`, whichever is later. */
function lowerBound(q: AuditQuery, after: Position | undefined): string {
  if (after !== undefined && (q.from === undefined || after.time >= q.from)) return `(${member(after)}`;
  return q.from === undefined ? '-' : `[${String(q.from).padStart(15, '0')}:`;
}

function upperBound(q: AuditQuery): string {
  return q.to === undefined || q.to >= MAX_TIME ? '+' : `(${String(q.to + 1).padStart(15, '0')}:`;
}

class RedisAuditBackend implements AuditBackend {
  constructor(readonly redis: Redis) {}

  async appendAfter(expected: ChainHead | undefined, stored: readonly StoredAuditEvent[]): Promise<AppendOutcome> {
    const { keys, args } = appendArgs(expected, stored);
    const reply = (await this.redis.eval(APPEND, keys.length, ...keys, ...args)) as string[];
    if (reply[0] === 'OK') return { kind: 'written' };
    if (reply[0] === 'DONE') return { kind: 'done' };
    if (reply[0] === 'OCCUPIED') {
      throw new AuditChainError(`audit event ${reply[1]} is stored beyond the head anchor; refusing to overwrite it (run verify)`);
    }
    return { kind: 'moved', head: parseHead(reply[1] === '0' ? null : reply[1], reply[2] === '' ? null : reply[2]) };
  }

  async removeBefore(start: ChainStart, removed: readonly StoredAuditEvent[]): Promise<void> {
    const keys = [START, HEAD, EVENTS];
    const args = [String(start.seq), start.prevHash, start.mac, String(ENTRIES_PER_EVENT)];
    for (const e of removed) {
      const entries = indexEntries(e);
      keys.push(...entries.map(([k]) => k));
      args.push(String(e.seq), ...entries.map(([, m]) => m));
    }
    const reply = (await this.redis.eval(RETAIN, keys.length, ...keys, ...args)) as string[];
    if (reply[0] !== 'OK') throw new AuditChainError(`retention refused: a start at ${start.seq} is not within ${reply[1]}..${reply[2]}`);
  }

  async scanTenant(scan: TenantScan): Promise<ScanPage> {
    const { key, max, min } = scanBounds(scan);
    const members = await this.redis.zrange(key, max, min, 'BYLEX', 'REV', 'LIMIT', 0, scan.limit);
    const positions = members.map(tailPosition);
    const docs = positions.length > 0 ? await this.redis.hmget(EVENTS, ...positions.map((p) => String(p.seq))) : [];
    const events: StoredAuditEvent[] = [];
    docs.forEach((doc, i) => {
      const e = parseStored(doc ?? '');
      if (typeof e !== 'string' && e.seq === positions[i].seq) events.push(e);
    });
    return { events, last: positions[positions.length - 1], end: members.length < scan.limit };
  }

  /**
   * A trail written before the lookup sets (an older build) gets them once: every stored event's
   * entries are added (ZADD: what appends write meanwhile is simply there already), then TX_BUILT is set.
   */
  async buildLookupSets(): Promise<void> {
    if ((await this.redis.exists(TX_BUILT)) === 1) return;
    for await (const pairs of this.redis.hscanStream(EVENTS, { count: 1000 })) {
      const batch = this.redis.pipeline();
      const values = (pairs as string[]).filter((_, i) => i % 2 === 1);
      for (const v of values) {
        const e = parseStored(v);
        if (typeof e !== 'string') for (const [k, m] of indexEntries(e).slice(1 + INDEXED.length)) batch.zadd(k, 0, m);
      }
      await batch.exec();
    }
    await this.redis.set(TX_BUILT, '1');
  }

  async query(q: AuditQuery, after: Position | undefined): Promise<AuditPage> {
    const set = await this.drivingSet(q);
    const events: StoredAuditEvent[] = [];
    let min = lowerBound(q, after);
    for (let scanned = 0; ;) {
      const members = await this.redis.zrange(set, min, upperBound(q), 'BYLEX', 'LIMIT', 0, SCAN_BATCH);
      const docs = members.length > 0 ? await this.redis.hmget(EVENTS, ...members.map((m) => String(positionOf(m).seq))) : [];
      for (let i = 0; i < members.length; i++) {
        const e = parseStored(docs[i] ?? '');
        if (typeof e === 'string' || e.seq !== positionOf(members[i]).seq || !matches(e, q)) continue;
        events.push(e);
        if (events.length === q.limit) return { events, nextCursor: encodeCursor(e) };
      }
      scanned += members.length;
      if (members.length < SCAN_BATCH) return { events };
      const last = members[members.length - 1];
      if (scanned >= MAX_SCAN) return { events, nextCursor: encodeCursor(positionOf(last)) };
      min = `(${last}`;
    }
  }

  async head(): Promise<ChainHead | undefined> {
    const [seq, hash] = await this.redis.hmget(HEAD, 'seq', 'hash');
    return parseHead(seq, hash);
  }

  async snapshot(): Promise<ChainSnapshot> {
    const replies = await this.redis.multi().hmget(HEAD, 'seq', 'hash').hlen(EVENTS).hmget(START, 'seq', 'prevHash', 'mac').exec();
    if (replies === null || replies.some(([err]) => err !== null)) throw new AuditWriteError('reading the audit chain head failed');
    const [seq, hash] = replies[0][1] as Array<string | null>;
    const stored = replies[1][1] as number;
    const [startSeq, prevHash, mac] = replies[2][1] as Array<string | null>;
    const head = parseHead(seq, hash);
    const start = parseStart(startSeq, prevHash, mac);
    const inChain = (head?.seq ?? 0) - (start?.seq ?? 1) + 1;
    const upTo = stored > inChain ? Math.max(head?.seq ?? 0, await this.highestSeq()) : (head?.seq ?? 0);
    return { head, start, upTo, stored };
  }

  async readSeals(kind: SealKind, from: number, to: number): Promise<Map<number, string>> {
    const out = new Map<number, string>();
    for (let lo = from; lo <= to; lo += 1000) {
      const seqs = Array.from({ length: Math.min(1000, to - lo + 1) }, (_, i) => lo + i);
      const seals = await this.redis.hmget(SEALS, ...seqs.map((q) => `${kind}:${q}`));
      seqs.forEach((q, i) => {
        const seal = seals[i];
        if (seal !== null) out.set(q, seal);
      });
    }
    return out;
  }

  async writeSeals(kind: SealKind, seals: ReadonlyMap<number, string>): Promise<void> {
    if (seals.size === 0) return;
    await this.redis.hset(SEALS, Object.fromEntries([...seals].map(([q, seal]) => [`${kind}:${q}`, seal])));
  }

  async readChain(after: number, upTo: number, limit: number): Promise<ChainPage> {
    const last = Math.min(after + limit, upTo);
    const seqs = Array.from({ length: last - after }, (_, i) => after + 1 + i);
    const docs = await this.redis.hmget(EVENTS, ...seqs.map(String));
    const slots: ChainSlot[] = [];
    seqs.forEach((seq, i) => {
      const doc = docs[i];
      if (doc === null) return;
      const event = parseStored(doc);
      slots.push({ seq, event: typeof event === 'string' ? { unreadable: event } : event });
    });
    return { slots, last };
  }

  async close(): Promise<void> {
    await closeRedis(this.redis);
  }

  /** The set a query walks: the smallest index named by its filters, else the time index. */
  private async drivingSet(q: AuditQuery): Promise<string> {
    const named = INDEXED.flatMap((f) => {
      const v = q[f];
      return v === undefined ? [] : [INDEX[f](v)];
    });
    if (named.length <= 1) return named[0] ?? TIME_INDEX;
    const sizes = await Promise.all(named.map((k) => this.redis.zcard(k)));
    return named[sizes.indexOf(Math.min(...sizes))];
  }

  /** The highest numeric field of the events hash (read only when more events are stored than the head says). */
  private async highestSeq(): Promise<number> {
    let top = 0;
    for await (const pairs of this.redis.hscanStream(EVENTS, { count: 1000 })) {
      const fields = (pairs as string[]).filter((_, i) => i % 2 === 0);
      for (const f of fields) if (/^\d+$/.test(f)) top = Math.max(top, Number(f));
    }
    return top;
  }
}

/** The audit trail on a Redis server (typically the key store's). */
export class RedisAuditLog extends ChainedAuditLog {
  private constructor(backend: RedisAuditBackend, options: RedisAuditOptions) {
    super(backend, options);
  }

  static async open(options: RedisAuditOptions): Promise<RedisAuditLog> {
    commitOptions(options);
    const redis = await openRedis(options, { keeps: 'the audit trail', refuse: (m) => new AuditConfigError(m) });
    const backend = new RedisAuditBackend(redis);
    try {
      await backend.buildLookupSets();
    } catch (e) {
      await backend.close();
      throw e;
    }
    return new RedisAuditLog(backend, options);
  }
}
