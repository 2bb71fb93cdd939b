/**
 * One conformance suite for both audit backends, on real storage: SQLite on a temporary file, Redis
 * on a private redis-server, the links MACed inside a real SoftHSM2 token (the shared cluster's
 * domain MAC key). Tampering is done with a raw client behind the log's back.
 */
import { randomUUID } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import Database from 'better-sqlite3';
import Redis from 'ioredis';
import { AuditLog, RetainedRange } from '../../src/audit/audit-log';
import { ChainedAuditLog, EPOCH_EVENT } from '../../src/audit/chained-audit-log';
import { AuditChainError, AuditConfigError, AuditInputError, AuditTokenError, AuditWriteError } from '../../src/audit/errors';
import { ChainHead, GENESIS, hashEvent } from '../../src/audit/chain';
import { DEFAULT_EVENT_SOURCE, MAX_FIELD_CHARS, NewAuditEvent, STORED_FIELDS, StoredAuditEvent, storedJson } from '../../src/audit/event';
import { LookupAttribute, LookupRequest, isReadOnlyEvent } from '../../src/audit/lookup';
import { AuditFilter, AuditQuery, matches } from '../../src/audit/query';
import { RedisAuditLog, RedisAuditOptions } from '../../src/audit/redis-audit-log';
import { SqliteAuditLog, SqliteAuditOptions } from '../../src/audit/sqlite-audit-log';
import { SqliteMetadataStore } from '../../src/store/sqlite/store';
import { HsmCluster } from '../../src/hsm/cluster';
import { LinkMac } from '../../src/audit/link-mac';
import { RedisServer, startRedis } from '../support/redis';
import { TokenLab } from '../support/tokens';

const tokens = new TokenLab();
const hsm = new HsmCluster({ id: 'cls-audit', kind: 'shared', owners: [], members: tokens.softhsm('audit', ['audit-a']) });
const linkMac: LinkMac = { mac: (data) => hsm.mac('audit-link', data) };

beforeAll(async () => {
  hsm.start();
  await hsm.initDomain();
}, 60_000);

afterAll(() => {
  hsm.close();
  tokens.cleanup();
});

type Options = Omit<SqliteAuditOptions & RedisAuditOptions, 'port'>;

/** One backing (file or server) and raw access to it. */
interface Backing {
  open(options?: Options): Promise<ChainedAuditLog>;
  /** Sets a field of the stored event at `seq` (a STORED_FIELDS name). */
  setField(seq: number, field: string, value: string | number): Promise<void>;
  remove(seq: number): Promise<void>;
  /** Exchanges the places of the events at `a` and `b`. */
  swap(a: number, b: number): Promise<void>;
  /** Moves the head anchor back to the event at `seq`, as if the events after it had never been written. */
  rewindHead(seq: number): Promise<void>;
  /** Replaces every stored event and the head anchor by `events` (the last one is the new head), as an attacker with the store would. */
  replaceAll(events: readonly StoredAuditEvent[]): Promise<void>;
  /** Writes a start record (where the kept trail begins) behind the log's back. */
  setStart(seq: number, prevHash: string, mac: string): Promise<void>;
  /** Every stored event as the store holds it, with its field names (SQLite columns in camelCase). */
  storedEvents(): Promise<Array<Record<string, unknown>>>;
  /** Everything the backing holds, as text (SQLite: the database and WAL files' bytes). */
  dump(): Promise<string>;
  /** Makes writes fail until `restoreWrites`. */
  breakWrites(): Promise<void>;
  restoreWrites(): Promise<void>;
  tearDown(): Promise<void>;
}

interface Backend {
  name: string;
  setUp(): Promise<Backing>;
}

const camel = (column: string): string => column.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
const snake = (field: string): string => field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

function withDb<T>(file: string, fn: (db: Database.Database) => T): T {
  const db = new Database(file);
  try {
    for (const t of ['events', 'heads']) for (const op of ['update', 'delete']) db.exec(`DROP TRIGGER IF EXISTS audit_${t}_no_${op}`);
    return fn(db);
  } finally {
    db.close();
  }
}

const sqliteBackend: Backend = {
  name: 'sqlite',
  async setUp() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-audit-'));
    const file = path.join(dir, 'kms.db');
    let blocker: Database.Database | undefined;
    return {
      open: async (options = {}) => new SqliteAuditLog(file, { busyTimeoutMs: 20, linkMac, ...options }),
      setField: async (seq, field, value) => {
        withDb(file, (db) => db.prepare(`UPDATE audit_events SET ${snake(field)} = ? WHERE seq = ?`).run(value, seq));
      },
      remove: async (seq) => {
        withDb(file, (db) => db.prepare('DELETE FROM audit_events WHERE seq = ?').run(seq));
      },
      swap: async (a, b) =>
        withDb(file, (db) =>
          db.transaction(() => {
            const move = db.prepare('UPDATE audit_events SET seq = ? WHERE seq = ?');
            move.run(-1, a);
            move.run(a, b);
            move.run(b, -1);
          })(),
        ),
      rewindHead: async (seq) =>
        withDb(file, (db) => {
          db.prepare('DELETE FROM audit_heads WHERE seq > ?').run(seq);
          db.prepare('INSERT OR IGNORE INTO audit_heads (seq, hash) SELECT seq, hash FROM audit_events WHERE seq = ?').run(seq);
        }),
      replaceAll: async (events) =>
        withDb(file, (db) =>
          db.transaction(() => {
            db.exec('DELETE FROM audit_events; DELETE FROM audit_heads');
            const insert = db.prepare(
              `INSERT INTO audit_events (${STORED_FIELDS.map(snake).join(', ')}) VALUES (${STORED_FIELDS.map((f) => `@${f}`).join(', ')})`,
            );
            for (const e of events) insert.run(e);
            const last = events[events.length - 1];
            db.prepare('INSERT INTO audit_heads (seq, hash) VALUES (?, ?)').run(last.seq, last.hash);
          })(),
        ),
      setStart: async (seq, prevHash, mac) => {
        withDb(file, (db) => db.prepare('INSERT INTO audit_starts (seq, prev_hash, mac) VALUES (?, ?, ?)').run(seq, prevHash, mac));
      },
      storedEvents: async () =>
        withDb(file, (db) =>
          (db.prepare('SELECT * FROM audit_events ORDER BY seq').all() as Array<Record<string, unknown>>).map((row) =>
            Object.fromEntries(Object.entries(row).map(([k, v]) => [camel(k), v])),
          ),
        ),
      dump: async () =>
        fs
          .readdirSync(dir)
          .map((f) => fs.readFileSync(path.join(dir, f)).toString('latin1'))
          .join('\n'),
      breakWrites: async () => {
        blocker = new Database(file);
        blocker.exec('BEGIN IMMEDIATE');
      },
      restoreWrites: async () => {
        blocker?.exec('ROLLBACK');
        blocker?.close();
      },
      tearDown: async () => fs.rmSync(dir, { recursive: true, force: true }),
    };
  },
};

const redisBackend: Backend = {
  name: 'redis',
  async setUp() {
    const server = await startRedis({ persistent: true });
    const raw = new Redis({ port: server.port });
    const EVENTS = 'kms:audit:events';
    const readEvent = async (seq: number): Promise<Record<string, unknown>> =>
      JSON.parse((await raw.hget(EVENTS, String(seq))) ?? 'null') as Record<string, unknown>;
    return {
      open: async (options = {}) => RedisAuditLog.open({ port: server.port, linkMac, ...options }),
      setField: async (seq, field, value) => {
        await raw.hset(EVENTS, String(seq), JSON.stringify({ ...(await readEvent(seq)), [field]: value }));
      },
      remove: async (seq) => {
        await raw.hdel(EVENTS, String(seq));
      },
      swap: async (a, b) => {
        const [x, y] = await raw.hmget(EVENTS, String(a), String(b));
        await raw.hset(EVENTS, String(a), y ?? '', String(b), x ?? '');
      },
      rewindHead: async (seq) => {
        await raw.hset('kms:audit:head', 'seq', String(seq), 'hash', String((await readEvent(seq)).hash));
      },
      replaceAll: async (events) => {
        await raw.del(EVENTS, 'kms:audit:head');
        for (const e of events) await raw.hset(EVENTS, String(e.seq), storedJson(e));
        const last = events[events.length - 1];
        await raw.hset('kms:audit:head', 'seq', String(last.seq), 'hash', last.hash);
      },
      setStart: async (seq, prevHash, mac) => {
        await raw.hset('kms:audit:start', 'seq', String(seq), 'prevHash', prevHash, 'mac', mac);
      },
      storedEvents: async () => {
        const all = await raw.hgetall(EVENTS);
        return Object.keys(all)
          .sort((a, b) => Number(a) - Number(b))
          .map((k) => JSON.parse(all[k]) as Record<string, unknown>);
      },
      dump: async () => {
        const out: string[] = [];
        for (const key of await raw.keys('*')) {
          const type = await raw.type(key);
          const value = type === 'hash' ? await raw.hgetall(key) : type === 'zset' ? await raw.zrange(key, '0', '-1') : await raw.get(key);
          out.push(key, JSON.stringify(value));
        }
        return out.join('\n');
      },
      breakWrites: async () => {
        await raw.config('SET', 'maxmemory', '1');
      },
      restoreWrites: async () => {
        await raw.config('SET', 'maxmemory', '0');
      },
      tearDown: async () => {
        raw.disconnect();
        await server.stop();
      },
    };
  },
};

const T0 = 1_700_000_000_000;
const ACTIONS = ['Encrypt', 'Decrypt', 'CreateKey', 'ListKey'];
const ACCOUNTS = ['100', '200', '300'];
const KEYS = [randomUUID(), randomUUID(), 'key/*'];

/** The i-th event of the data set: times with ties and out of append order, every filter value used. */
function sample(i: number): NewAuditEvent {
  return {
    time: T0 + ((i * 7) % 13) * 1000,
    eventName: ACTIONS[i % ACTIONS.length],
    accountUin: ACCOUNTS[i % ACCOUNTS.length],
    subAccountUin: i % 2 === 0 ? ACCOUNTS[i % ACCOUNTS.length] : `${ACCOUNTS[i % ACCOUNTS.length]}0${i % 5}`,
    secretId: `AKID${i % 4}`,
    sourceIp: `10.0.${i % 3}.${i}`,
    region: i % 5 === 0 ? 'ap-shanghai' : 'ap-guangzhou',
    requestId: randomUUID(),
    resource: KEYS[i % KEYS.length],
    errorCode: i % 6 === 0 ? 'ResourceUnavailable.CmkDisabled' : '',
  };
}

/** The oracle: the stored events matching `f`, in (time, seq) order. */
function expected(all: StoredAuditEvent[], f: AuditFilter): string[] {
  return all
    .filter((e) => matches(e, f))
    .sort((a, b) => a.time - b.time || a.seq - b.seq)
    .map((e) => e.eventId);
}

async function allPages(log: AuditLog, q: AuditQuery): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await log.query({ ...q, cursor });
    expect(page.events.length).toBeLessThanOrEqual(q.limit);
    ids.push(...page.events.map((e) => e.eventId));
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return ids;
}

async function exported(log: AuditLog, f?: AuditFilter): Promise<StoredAuditEvent[]> {
  const lines: string[] = [];
  const n = await log.export((l) => lines.push(l), f);
  expect(lines).toHaveLength(n);
  for (const l of lines) expect(l.endsWith('\n')).toBe(true);
  return lines.map((l) => JSON.parse(l) as StoredAuditEvent);
}

/** The i-th event of the lookup data set: sample(i), every fourth one from CAM. */
const lookupSample = (i: number): NewAuditEvent => ({ ...sample(i), ...(i % 4 === 3 ? { eventSource: 'cam.tencentcloudapi.com' } : {}) });

const ATTRIBUTE_FIELD = {
  RequestId: 'requestId',
  EventName: 'eventName',
  Username: 'subAccountUin',
  ResourceName: 'resource',
  AccessKeyId: 'secretId',
  EventId: 'eventId',
} as const;

/** The oracle of a lookup: the tenant's stored events in range matching the attribute, newest first. */
function expectedLookup(all: StoredAuditEvent[], r: Omit<LookupRequest, 'maxResults'>): string[] {
  const a = r.attribute;
  const keep = (e: StoredAuditEvent): boolean => {
    if (a === undefined) return true;
    if (a.key === 'ReadOnly') return String(isReadOnlyEvent(e.eventName)) === a.value;
    if (a.key === 'ResourceType') return e.eventSource.split('.')[0] === a.value;
    return e[ATTRIBUTE_FIELD[a.key]] === a.value;
  };
  return all
    .filter((e) => e.accountUin === r.tenant && e.time >= r.startTime && e.time <= r.endTime && keep(e))
    .sort((x, y) => y.time - x.time || y.seq - x.seq)
    .map((e) => e.eventId);
}

/** Every page of a lookup; each page within maxResults, a token exactly when the list is not over. */
async function lookUpAll(log: AuditLog, r: LookupRequest): Promise<string[]> {
  const ids: string[] = [];
  let nextToken: string | undefined;
  for (let pages = 0; pages < 1000; pages++) {
    const page = await log.lookUpEvents({ ...r, nextToken });
    expect(page.events.length).toBeLessThanOrEqual(r.maxResults);
    expect(page.listOver).toBe(page.nextToken === undefined);
    ids.push(...page.events.map((e) => e.eventId));
    if (page.listOver) return ids;
    nextToken = page.nextToken;
  }
  throw new Error('the lookup did not end');
}

async function appendAll(log: AuditLog, events: NewAuditEvent[]): Promise<void> {
  for (const e of events) log.append(e);
  await log.flush();
}

describe.each([sqliteBackend, redisBackend])('audit log on $name', (backend) => {
  let backing: Backing;
  const open: AuditLog[] = [];
  const openLog = async (options?: Options): Promise<ChainedAuditLog> => {
    const log = await backing.open(options);
    open.push(log);
    return log;
  };

  beforeEach(async () => {
    backing = await backend.setUp();
  });

  afterEach(async () => {
    for (const log of open.splice(0)) await log.close().catch(() => undefined);
    await backing.tearDown();
  });

  test('appended events are chained 1..n and read back field for field', async () => {
    const log = await openLog();
    const input = Array.from({ length: 30 }, (_, i) => sample(i));
    await appendAll(log, input);
    expect(log.counters()).toEqual({ pending: 0, dropped: 0, written: 30 });
    const all = await exported(log);
    expect(all.map((e) => e.seq)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    all.forEach((e, i) => expect(e).toMatchObject(input[i]));
    expect(await log.head()).toEqual({ seq: 30, hash: all[29].hash });
    expect(await log.verify()).toMatchObject({ ok: true, checked: 30, problems: [] });
  });

  test('queries filter by time range, event name, account, resource and keyword, in (time, seq) order', async () => {
    const log = await openLog();
    await appendAll(
      log,
      Array.from({ length: 60 }, (_, i) => sample(i)),
    );
    const all = await exported(log);
    const filters: AuditFilter[] = [
      {},
      { from: T0 + 3000 },
      { to: T0 + 5000 },
      { from: T0 + 2000, to: T0 + 2000 },
      { eventName: 'Decrypt' },
      { accountUin: '200' },
      { resource: KEYS[0] },
      { resource: 'key/*', eventName: 'ListKey' },
      { accountUin: '100', resource: KEYS[1], from: T0 + 4000 },
      { keyword: 'CmkDisabled' },
      { keyword: '10.0.2.' },
      { keyword: 'ap-shanghai', accountUin: '300' },
      { keyword: '2000' },
      { eventName: 'Nope' },
    ];
    for (const f of filters) {
      const want = expected(all, f);
      const page = await log.query({ ...f, limit: 1000 });
      expect({ f, ids: page.events.map((e) => e.eventId) }).toEqual({ f, ids: want });
      expect(page.nextCursor).toBeUndefined();
    }
  });

  test('cursor paging returns every match once, in order', async () => {
    const log = await openLog();
    await appendAll(
      log,
      Array.from({ length: 60 }, (_, i) => sample(i)),
    );
    const all = await exported(log);
    for (const f of [{}, { eventName: 'Encrypt' }, { accountUin: '100', from: T0 + 1000, to: T0 + 9000 }, { keyword: 'AKID1' }]) {
      for (const limit of [1, 7, 15]) expect({ f, limit, ids: await allPages(log, { ...f, limit }) }).toEqual({ f, limit, ids: expected(all, f) });
    }
  });

  describe('LookUpEvents', () => {
    const range = { startTime: T0, endTime: T0 + 60_000 };

    test("returns the tenant's events newest first, for every attribute, range and page size, and only the tenant's", async () => {
      const log = await openLog();
      await appendAll(
        log,
        Array.from({ length: 90 }, (_, i) => lookupSample(i)),
      );
      const all = await exported(log);
      const some = all.find((e) => e.accountUin === '200' && e.subAccountUin !== '200') as StoredAuditEvent;
      const attributes: Array<LookupAttribute | undefined> = [
        undefined,
        { key: 'EventName', value: 'Decrypt' },
        { key: 'EventName', value: 'Nope' },
        { key: 'ReadOnly', value: 'true' },
        { key: 'ReadOnly', value: 'false' },
        { key: 'Username', value: some.subAccountUin },
        { key: 'Username', value: '200' },
        { key: 'ResourceType', value: 'cam' },
        { key: 'ResourceType', value: 'kms' },
        { key: 'ResourceName', value: KEYS[0] },
        { key: 'ResourceName', value: 'key/*' },
        { key: 'AccessKeyId', value: 'AKID1' },
        { key: 'RequestId', value: some.requestId },
        { key: 'EventId', value: some.eventId },
      ];
      const ranges = [range, { startTime: T0 + 3000, endTime: T0 + 7000 }, { startTime: T0 + 5000, endTime: T0 + 5000 }];
      let compared = 0;
      for (const tenant of ['100', '200']) {
        for (const attribute of attributes) {
          for (const r of ranges) {
            const q = { tenant, ...r, attribute };
            const want = expectedLookup(all, q);
            compared += want.length;
            for (const maxResults of [1, 7, 50])
              expect({ q, maxResults, ids: await lookUpAll(log, { ...q, maxResults }) }).toEqual({ q, maxResults, ids: want });
          }
        }
      }
      expect(compared).toBeGreaterThan(100);
      // another tenant's event by its ids: nothing
      for (const attribute of [
        { key: 'EventId', value: some.eventId },
        { key: 'RequestId', value: some.requestId },
      ] as const) {
        expect(await log.lookUpEvents({ tenant: '100', ...range, attribute, maxResults: 50 })).toEqual({ events: [], listOver: true });
      }
      expect(await log.lookUpEvents({ tenant: '999', ...range, maxResults: 50 })).toEqual({ events: [], listOver: true });
    });

    test('events keep their eventSource; those appended without one are kms', async () => {
      const log = await openLog();
      await appendAll(log, [lookupSample(3), lookupSample(4)]);
      const stored = await backing.storedEvents();
      expect(stored.map((e) => e.eventSource)).toEqual(['cam.tencentcloudapi.com', DEFAULT_EVENT_SOURCE]);
      const { events } = await log.lookUpEvents({ tenant: '100', ...range, maxResults: 50, attribute: { key: 'ResourceType', value: 'cam' } });
      expect(events.map((e) => e.eventSource)).toEqual(['cam.tencentcloudapi.com']);
      expect(await log.verify()).toMatchObject({ ok: true, checked: 2 });
      await backing.setField(1, 'eventSource', DEFAULT_EVENT_SOURCE);
      expect((await log.verify()).problems).toEqual([{ seq: 1, reason: expect.stringContaining('does not match its link') }]);
    });

    test('attributes checked on the events themselves (ReadOnly) page correctly over more than one scan batch', async () => {
      const log = await openLog({ maxBatch: 200 });
      const input = Array.from({ length: 1300 }, (_, i) => ({ ...lookupSample(i), accountUin: '100', eventName: i % 10 === 0 ? 'ListKeys' : 'CreateKey' }));
      await appendAll(log, input);
      const all = await exported(log);
      for (const value of ['true', 'false']) {
        const q = { tenant: '100', ...range, attribute: { key: 'ReadOnly', value } as const };
        expect(await lookUpAll(log, { ...q, maxResults: 50 })).toEqual(expectedLookup(all, q));
      }
    });

    test('a NextToken changed, made up, or of another tenant or lookup is refused; bad requests are refused', async () => {
      const log = await openLog();
      await appendAll(
        log,
        Array.from({ length: 30 }, (_, i) => ({ ...lookupSample(i), accountUin: i % 2 === 0 ? '100' : '200' })),
      );
      const first = await log.lookUpEvents({ tenant: '100', ...range, maxResults: 3 });
      expect(first.listOver).toBe(false);
      const token = first.nextToken as string;
      const page = (over: Partial<LookupRequest>) => log.lookUpEvents({ tenant: '100', ...range, maxResults: 3, nextToken: token, ...over });
      expect((await page({})).events).toHaveLength(3);
      await expect(page({ tenant: '200' })).rejects.toThrow(AuditTokenError);
      await expect(page({ attribute: { key: 'EventName', value: 'Encrypt' } })).rejects.toThrow(AuditTokenError);
      await expect(page({ endTime: range.endTime - 1 })).rejects.toThrow(AuditTokenError);
      const raw = Buffer.from(token, 'base64url').toString('latin1');
      const forged = Buffer.from(raw.replace(/^v1\.\d+\./, `v1.${T0 + 60_000}.`), 'latin1').toString('base64url');
      await expect(page({ nextToken: forged })).rejects.toThrow(/changed or made up/);
      await expect(page({ nextToken: 'AAAA' })).rejects.toThrow(AuditTokenError);
      await expect(log.lookUpEvents({ tenant: '', ...range, maxResults: 3 })).rejects.toThrow(AuditInputError);
      await expect(log.lookUpEvents({ tenant: '100', ...range, maxResults: 51 })).rejects.toThrow(AuditInputError);
      await expect(log.lookUpEvents({ tenant: '100', startTime: 5, endTime: 4, maxResults: 3 })).rejects.toThrow(AuditInputError);
    });

    test('retention takes the removed events out of every lookup', async () => {
      const log = await openLog();
      await appendAll(
        log,
        Array.from({ length: 20 }, (_, i) => ({ ...lookupSample(i), time: T0 + i * 1000 })),
      );
      await log.retainOlderThan(T0 + 10_000, async () => undefined);
      const kept = await exported(log);
      expect(kept).toHaveLength(10);
      for (const attribute of [undefined, { key: 'EventName', value: 'Encrypt' } as const, { key: 'ReadOnly', value: 'false' } as const]) {
        const q = { tenant: '100', ...range, attribute };
        expect(await lookUpAll(log, { ...q, maxResults: 2 })).toEqual(expectedLookup(kept, q));
      }
    });
  });

  test('bad limits, foreign cursors and bad options are refused', async () => {
    await expect(backing.open({ maxBatch: 0 })).rejects.toThrow(AuditInputError);
    await expect(backing.open({ retryMinMs: 50, retryMaxMs: 10 })).rejects.toThrow(AuditInputError);
    const log = await openLog();
    await expect(log.query({ limit: 0 })).rejects.toThrow(AuditInputError);
    await expect(log.query({ limit: 1001 })).rejects.toThrow(AuditInputError);
    await expect(log.query({ limit: 10, cursor: 'not-a-cursor' })).rejects.toThrow(AuditInputError);
  });

  test('export writes JSON lines in chain order with exactly the stored fields; a filter narrows it', async () => {
    const log = await openLog();
    await appendAll(
      log,
      Array.from({ length: 25 }, (_, i) => sample(i)),
    );
    const all = await exported(log);
    expect(all.map((e) => e.seq)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    for (const e of all) expect(Object.keys(e)).toEqual([...STORED_FIELDS]);
    const decrypts = await exported(log, { eventName: 'Decrypt', from: T0 + 2000 });
    expect(decrypts.map((e) => e.eventId)).toEqual(all.filter((e) => e.eventName === 'Decrypt' && e.time >= T0 + 2000).map((e) => e.eventId));
  });

  test('a stored event holds exactly the allowed fields, and nothing else passed in reaches the store', async () => {
    const log = await openLog();
    const secrets = { secretKey: 'SECRETKEY-9f2c', plaintext: 'PLAINTEXT-77ab', keyMaterial: 'MATERIAL-4e1d', pin: 'PIN-31337' };
    log.append({ ...sample(1), ...secrets });
    log.append({ ...sample(2), eventName: 'E'.repeat(MAX_FIELD_CHARS * 4) });
    await log.flush();
    const stored = await backing.storedEvents();
    expect(stored).toHaveLength(2);
    for (const e of stored) expect(Object.keys(e).sort()).toEqual([...STORED_FIELDS].sort());
    expect(stored[1].eventName).toBe('E'.repeat(MAX_FIELD_CHARS));
    const dump = await backing.dump();
    expect(dump).toContain(String(stored[0].eventId));
    for (const s of Object.values(secrets)) expect(dump).not.toContain(s);
  });

  test('verify reports a changed field at its seq', async () => {
    const log = await openLog();
    await appendAll(
      log,
      Array.from({ length: 10 }, (_, i) => sample(i)),
    );
    await backing.setField(4, 'errorCode', 'Tampered');
    await backing.setField(7, 'accountUin', '999');
    const r = await log.verify();
    expect(r.ok).toBe(false);
    expect(r.checked).toBe(10);
    expect(r.problems.map((p) => p.seq)).toEqual([4, 7]);
    expect(r.problems[0].reason).toMatch(/changed/);
  });

  test('verify reports a removed event', async () => {
    const log = await openLog();
    await appendAll(
      log,
      Array.from({ length: 10 }, (_, i) => sample(i)),
    );
    await backing.remove(5);
    const r = await log.verify();
    expect(r).toMatchObject({ ok: false, checked: 9, problems: [{ seq: 5, reason: 'event 5 is missing (removed)' }] });
  });

  test('verify reports two events swapped', async () => {
    const log = await openLog();
    await appendAll(
      log,
      Array.from({ length: 10 }, (_, i) => sample(i)),
    );
    await backing.swap(3, 8);
    const r = await log.verify();
    expect(r.ok).toBe(false);
    expect([...new Set(r.problems.map((p) => p.seq))]).toEqual([3, 8]);
  });

  test('verify reports removed newest events against the head anchor; an anchor kept outside catches a consistent truncation', async () => {
    const log = await openLog();
    await appendAll(
      log,
      Array.from({ length: 10 }, (_, i) => sample(i)),
    );
    const kept = await log.head();
    for (const seq of [9, 10]) await backing.remove(seq);
    expect((await log.verify()).problems).toEqual([{ seq: 9, reason: expect.stringContaining('truncated') }]);
    await backing.rewindHead(8);
    expect(await log.verify()).toMatchObject({ ok: true, checked: 8, problems: [] });
    expect((await log.verify({ anchor: kept })).problems).toEqual([{ seq: 10, reason: expect.stringContaining('anchored event 10 is missing') }]);
  });

  /**
   * The events renumbered 1..n and relinked with plain SHA-256 from the `from`-th on (those before it
   * keep their links), as anyone with the store and the documented formula can.
   */
  const relinkWithSha256 = (events: readonly StoredAuditEvent[], from = 1): StoredAuditEvent[] => {
    let prevHash = from > 1 ? events[from - 2].hash : GENESIS;
    return events.map((e, i) => {
      if (i + 1 < from) return e;
      const hash = hashEvent(prevHash, e, i + 1);
      const forged = { ...e, seq: i + 1, prevHash, hash };
      prevHash = hash;
      return forged;
    });
  };

  test('a consistent rewrite with plain SHA-256 (an event removed, later links and the head recomputed) is reported', async () => {
    const log = await openLog();
    await appendAll(
      log,
      Array.from({ length: 10 }, (_, i) => sample(i)),
    );
    const stored = (await backing.storedEvents()) as unknown as StoredAuditEvent[];
    await backing.replaceAll(
      relinkWithSha256(
        stored.filter((e) => e.seq !== 5),
        5,
      ),
    );
    const r = await log.verify();
    expect(r.ok).toBe(false);
    expect(r.problems[0]).toEqual({ seq: 5, reason: expect.stringContaining('plain SHA-256 link after the HMAC chain began at 1') });
    await backing.replaceAll(relinkWithSha256(stored.filter((e) => e.seq !== 5)));
    expect((await log.verify()).problems).toEqual([{ seq: 1, reason: expect.stringContaining('no event is HMAC-linked') }]);
  });

  test('a consistent rewrite with plain SHA-256 (an event changed, later links and the head recomputed) is reported', async () => {
    const log = await openLog();
    await appendAll(
      log,
      Array.from({ length: 10 }, (_, i) => sample(i)),
    );
    const stored = (await backing.storedEvents()) as unknown as StoredAuditEvent[];
    await backing.replaceAll(
      relinkWithSha256(
        stored.map((e) => (e.seq === 4 ? { ...e, errorCode: '', accountUin: '999' } : e)),
        4,
      ),
    );
    const r = await log.verify();
    expect(r.ok).toBe(false);
    expect(r.problems[0].seq).toBe(4);
  });

  test('a trail of plain SHA-256 links (an older build) keeps verifying; the epoch marker begins the HMAC chain and fixes the links before it', async () => {
    const log = await openLog();
    await appendAll(
      log,
      Array.from({ length: 6 }, (_, i) => sample(i)),
    );
    const old = relinkWithSha256((await backing.storedEvents()) as unknown as StoredAuditEvent[]);
    await backing.replaceAll(old);
    const fresh = await openLog();
    expect((await fresh.verify()).problems).toEqual([{ seq: 1, reason: expect.stringContaining('no event is HMAC-linked') }]);
    expect(await fresh.beginEpoch()).toBe(7);
    expect(await fresh.beginEpoch()).toBeUndefined();
    await appendAll(fresh, [sample(7), sample(8)]);
    expect(await fresh.verify()).toMatchObject({ ok: true, checked: 9, problems: [], hmacFrom: 7 });
    const [marker] = (await fresh.query({ eventName: EPOCH_EVENT.eventName, limit: 10 })).events;
    expect(marker).toMatchObject({ seq: 7, resource: EPOCH_EVENT.resource, prevHash: old[5].hash });
    // rewriting the old part with plain SHA-256 changes its last link, which the first HMAC link fixed
    const stored = (await backing.storedEvents()) as unknown as StoredAuditEvent[];
    const forged = relinkWithSha256(stored.slice(0, 6).filter((e) => e.seq !== 3));
    await backing.replaceAll([...forged, ...stored.slice(6).map((e, i) => ({ ...e, seq: 6 + i }))]);
    const r = await fresh.verify();
    expect(r.ok).toBe(false);
  });

  test("a log without the HSM's link MAC reads and exports, and refuses to append or verify", async () => {
    const log = await openLog();
    await appendAll(log, [sample(0), sample(1)]);
    const reader = await openLog({ linkMac: undefined });
    expect((await reader.query({ limit: 10 })).events).toHaveLength(2);
    expect(() => reader.append(sample(2))).toThrow(AuditConfigError);
    await expect(reader.verify()).rejects.toThrow(AuditConfigError);
  });

  describe('retention', () => {
    const dated = (n: number): NewAuditEvent[] => Array.from({ length: n }, (_, i) => ({ ...sample(i), time: T0 + i * 1000 }));
    const archived: RetainedRange[] = [];
    const archive = async (r: RetainedRange): Promise<void> => {
      archived.push(r);
    };
    beforeEach(() => archived.splice(0));

    test('archives the events older than the cutoff, removes them, and the kept trail verifies from its start', async () => {
      const log = await openLog();
      await appendAll(log, dated(20));
      const anchorBefore = await log.head();
      expect(await log.retainOlderThan(T0 + 8_000, archive)).toBe(8);
      expect(await log.retainOlderThan(T0 + 8_000, archive)).toBe(0);
      expect(archived.map((a) => [a.from, a.to])).toEqual([[1, 8]]);
      expect((await backing.storedEvents()).map((e) => e.seq)).toEqual(Array.from({ length: 12 }, (_, i) => i + 9));
      const r = await log.verify({ anchors: [{ seq: 3, hash: 'f'.repeat(64) }, anchorBefore as ChainHead] });
      expect(r).toMatchObject({ ok: true, checked: 12, problems: [], from: 9 });
      expect(await log.export(() => undefined)).toBe(12);
      expect(await log.verifyExport(archived[0].text)).toMatchObject({ ok: true, checked: 8, problems: [] });
      // a second run continues where the first ended; its file starts with the first's last link
      await log.retainOlderThan(T0 + 12_000, archive);
      expect(archived.map((a) => [a.from, a.to])).toEqual([
        [1, 8],
        [9, 12],
      ]);
      const header = (t: string) => JSON.parse(t.split('\n')[0]) as { start: { prevHash: string }; last: string };
      expect(header(archived[1].text).start.prevHash).toBe(header(archived[0].text).last);
      expect(await log.verifyExport(archived[1].text)).toMatchObject({ ok: true, checked: 4 });
      expect(await log.verify()).toMatchObject({ ok: true, checked: 8, from: 13 });
      // with the archive, from seq 1: every file, their joins, and the kept trail after the last
      expect(await log.verify({ archive: archived.map((a) => a.text).reverse() })).toMatchObject({ ok: true, checked: 20, from: 1, problems: [] });
      expect((await log.verify({ archive: [archived[1].text] })).problems).toEqual([
        { seq: 1, reason: expect.stringContaining('does not continue where the one before ends (0)') },
      ]);
      expect((await log.verify({ archive: [archived[0].text] })).problems).toEqual([
        { seq: 9, reason: 'the archive ends at 8 but the kept trail begins at 13' },
      ]);
    });

    test('never removes the newest event, and retention stops at the first event that is not old', async () => {
      const log = await openLog();
      await appendAll(log, [...dated(3), { ...sample(9), time: T0 + 100_000 }, ...dated(2)]);
      expect(await log.retainOlderThan(T0 + 50_000, archive)).toBe(3);
      expect(await log.retainOlderThan(T0 + 10_000_000, archive)).toBe(2);
      expect(await log.verify()).toMatchObject({ ok: true, checked: 1, from: 6 });
    });

    test('an export file changed, cut or with a forged start link does not verify', async () => {
      const log = await openLog();
      await appendAll(log, dated(12));
      await log.retainOlderThan(T0 + 4_000, archive);
      await log.retainOlderThan(T0 + 8_000, archive);
      const lines = archived[1].text.trim().split('\n');
      const changed = [lines[0], lines[1].replace('"errorCode":"', '"errorCode":"X'), ...lines.slice(2)].join('\n');
      expect((await log.verifyExport(changed)).problems[0].reason).toMatch(/changed/);
      expect((await log.verifyExport(lines.slice(0, -1).join('\n'))).problems[0].reason).toMatch(/truncated/);
      const header = JSON.parse(lines[0]) as { start: { prevHash: string } };
      const forged = JSON.stringify({ ...header, start: { ...header.start, prevHash: 'a'.repeat(64) } });
      const r = await log.verifyExport([forged, ...lines.slice(1)].join('\n'));
      expect(r.problems.map((p) => p.reason).join('\n')).toMatch(/start link does not match its MAC/);
    });

    test("a start record written behind the log's back (to hide more events) is reported, and the events before it as missing", async () => {
      const log = await openLog();
      await appendAll(log, dated(10));
      await log.retainOlderThan(T0 + 3_000, archive);
      const stored = (await backing.storedEvents()) as unknown as StoredAuditEvent[];
      await backing.setStart(7, stored.find((e) => e.seq === 7)?.prevHash as string, 'b'.repeat(64));
      const r = await log.verify();
      expect(r.ok).toBe(false);
      expect(r.problems).toContainEqual({ seq: 7, reason: expect.stringContaining('start record does not match its MAC') });
      expect(r.problems).toContainEqual({ seq: 1, reason: 'events 1..3 are missing (removed)' });
    });
  });

  test('events beyond the head anchor are reported and never overwritten by later appends', async () => {
    const log = await openLog();
    await appendAll(
      log,
      Array.from({ length: 6 }, (_, i) => sample(i)),
    );
    await backing.rewindHead(4);
    const r = await log.verify();
    expect(r.ok).toBe(false);
    expect(r.problems[0].seq).toBe(5);
    const fresh = await openLog();
    fresh.append(sample(7));
    const failure = await fresh.flush().catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(AuditWriteError);
    expect((failure as AuditWriteError).cause).toBeInstanceOf(AuditChainError);
    expect((await backing.storedEvents()).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  test('two writer handles appending concurrently extend one chain', async () => {
    const a = await openLog({ maxBatch: 16 });
    const b = await openLog({ maxBatch: 16 });
    const ids: string[] = [];
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 100; i++) {
        const e = { ...sample(i), eventId: randomUUID() };
        ids.push(e.eventId);
        (i % 2 === 0 ? a : b).append(e);
      }
      await Promise.all([a.flush(), b.flush()]);
      // Alternating single appends: each handle's idea of the head is stale every time.
      for (const log of [a, b, a, b]) {
        const e = { ...sample(round), eventId: randomUUID() };
        ids.push(e.eventId);
        log.append(e);
        await log.flush();
      }
    }
    const all = await exported(a);
    expect(all.map((e) => e.seq)).toEqual(Array.from({ length: ids.length }, (_, i) => i + 1));
    expect(all.map((e) => e.eventId).sort()).toEqual([...ids].sort());
    expect(await b.verify()).toMatchObject({ ok: true, checked: ids.length, problems: [] });
    expect(a.counters().written + b.counters().written).toBe(ids.length);
  });

  test('group commits write on their own, without flush', async () => {
    const log = await openLog({ maxBatch: 50, intervalMs: 5 });
    for (let i = 0; i < 120; i++) log.append(sample(i));
    while (log.counters().written < 120) await new Promise((r) => setTimeout(r, 5));
    expect(log.counters()).toEqual({ pending: 0, dropped: 0, written: 120 });
    expect((await log.verify()).checked).toBe(120);
  });

  test('while the store refuses writes, events wait in a bounded buffer, the excess is dropped, and a retry writes the rest', async () => {
    const log = await openLog({ maxPending: 3, intervalMs: 1, retryMinMs: 1, retryMaxMs: 2 });
    await appendAll(log, [sample(0)]);
    await backing.breakWrites();
    for (let i = 1; i <= 5; i++) log.append(sample(i));
    await expect(log.flush()).rejects.toThrow(AuditWriteError);
    expect(log.counters()).toEqual({ pending: 3, dropped: 2, written: 1 });
    await backing.restoreWrites();
    while (log.counters().written < 4) await new Promise((r) => setTimeout(r, 5));
    await log.flush();
    expect(log.counters()).toEqual({ pending: 0, dropped: 2, written: 4 });
    expect(await log.verify()).toMatchObject({ ok: true, checked: 4, problems: [] });
  });

  test('close flushes; a closed log counts further appends as dropped; a new handle sees everything', async () => {
    const log = await backing.open();
    for (let i = 0; i < 5; i++) log.append(sample(i));
    await log.close();
    log.append(sample(9));
    expect(log.counters()).toEqual({ pending: 0, dropped: 1, written: 5 });
    const again = await openLog();
    expect((await again.query({ limit: 10 })).events).toHaveLength(5);
  });

  test('close with the store refusing writes reports the unwritten events as dropped', async () => {
    const log = await backing.open({ retryMinMs: 1 });
    await backing.breakWrites();
    log.append(sample(0));
    await expect(log.close()).rejects.toThrow(AuditWriteError);
    expect(log.counters()).toEqual({ pending: 0, dropped: 1, written: 0 });
    await backing.restoreWrites();
  });
});

describe('audit log on sqlite, specifics', () => {
  let dir: string;
  let file: string;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-audit-'));
    file = path.join(dir, 'kms.db');
  });

  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test("shares the key store's database file, whichever opens it first", async () => {
    const first = new SqliteAuditLog(file, { linkMac });
    await first.close();
    const store = new SqliteMetadataStore(file);
    const log = new SqliteAuditLog(file, { linkMac });
    try {
      log.append(sample(0));
      await log.flush();
      expect(await store.countKeys('100', 'ap-guangzhou')).toBe(0);
      expect((await log.verify()).checked).toBe(1);
    } finally {
      await log.close();
      await store.close();
    }
  });

  test('triggers refuse UPDATE and DELETE on the events and heads', async () => {
    const log = new SqliteAuditLog(file, { linkMac });
    log.append(sample(0));
    await log.close();
    const db = new Database(file);
    try {
      expect(() => db.prepare("UPDATE audit_events SET region = 'x'").run()).toThrow(/append-only/);
      expect(() => db.prepare('DELETE FROM audit_events').run()).toThrow(/append-only/);
      expect(() => db.prepare('DELETE FROM audit_heads').run()).toThrow(/append-only/);
    } finally {
      db.close();
    }
  });

  test('filtered queries are driven by their index', async () => {
    const log = new SqliteAuditLog(file, { linkMac });
    try {
      const plan = (q: AuditQuery): string => log.explain(q).join(' | ');
      expect(plan({ limit: 10, from: T0 })).toMatch(/USING INDEX audit_events_time/);
      expect(plan({ limit: 10, eventName: 'Encrypt' })).toMatch(/USING INDEX audit_events_name \(event_name=\?/);
      expect(plan({ limit: 10, accountUin: '100', eventName: 'Encrypt' })).toMatch(/USING INDEX audit_events_account \(account_uin=\?/);
      expect(plan({ limit: 10, resource: 'k', accountUin: '100', keyword: 'x' })).toMatch(/USING INDEX audit_events_resource \(resource=\?/);
      for (const q of [{ limit: 10 }, { limit: 10, eventName: 'Encrypt', from: T0 }]) expect(plan(q)).not.toMatch(/TEMP B-TREE/);
    } finally {
      await log.close();
    }
  });
  test("LookUpEvents scans are driven by the tenant's index of the attribute, walked backwards without sorting", async () => {
    const log = new SqliteAuditLog(file, { linkMac });
    try {
      const scan = { tenant: '100', from: T0, to: T0 + 1000, limit: 51 };
      const plan = (over: object): string => log.explain({ ...scan, ...over }).join(' | ');
      expect(plan({})).toMatch(/USING INDEX audit_events_account \(account_uin=\? AND time>\? AND time<\?\)/);
      for (const [field, column] of [
        ['eventName', 'event_name'],
        ['subAccountUin', 'sub_account_uin'],
        ['resource', 'resource'],
        ['secretId', 'secret_id'],
        ['requestId', 'request_id'],
        ['eventId', 'event_id'],
      ]) {
        expect(plan({ index: { field, value: 'x' } })).toMatch(new RegExp(`USING INDEX audit_lookup_${column} \\(account_uin=\\? AND ${column}=\\?`));
        expect(plan({ index: { field, value: 'x' }, before: { time: T0 + 5, seq: 9 } })).toMatch(
          new RegExp(`USING INDEX audit_lookup_${column} \\(account_uin=\\? AND ${column}=\\? AND time>\\? AND time<\\?\\)`),
        );
      }
      for (const over of [{}, { index: { field: 'eventName', value: 'x' } }, { before: { time: T0, seq: 3 } }]) expect(plan(over)).not.toMatch(/TEMP B-TREE/);
    } finally {
      await log.close();
    }
  });

  test('a schema-2 file (no event_source, no lookup indexes) is upgraded at open; its events still verify and are looked up as kms', async () => {
    const old = new SqliteAuditLog(file, { linkMac });
    for (let i = 0; i < 6; i++) old.append({ ...sample(i), accountUin: '100' });
    await old.close();
    const db = new Database(file);
    try {
      for (const { name } of db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'audit_lookup_%'").all() as Array<{
        name: string;
      }>) {
        db.exec(`DROP INDEX ${name}`);
      }
      db.exec("ALTER TABLE audit_events DROP COLUMN event_source; UPDATE audit_meta SET value = 2 WHERE name = 'schema'");
    } finally {
      db.close();
    }
    const log = new SqliteAuditLog(file, { linkMac });
    try {
      expect(await log.verify()).toMatchObject({ ok: true, checked: 6, problems: [] });
      const { events } = await log.lookUpEvents({
        tenant: '100',
        startTime: T0,
        endTime: T0 + 60_000,
        maxResults: 50,
        attribute: { key: 'EventName', value: 'Encrypt' },
      });
      expect(events.length).toBeGreaterThan(0);
      for (const e of events) expect(e.eventSource).toBe(DEFAULT_EVENT_SOURCE);
      log.append({ ...sample(7), eventSource: 'cam.tencentcloudapi.com' });
      await log.flush();
      expect(await log.verify()).toMatchObject({ ok: true, checked: 7, problems: [] });
    } finally {
      await log.close();
    }
    const check = new Database(file);
    try {
      expect(check.prepare("SELECT value FROM audit_meta WHERE name = 'schema'").get()).toEqual({ value: 3 });
    } finally {
      check.close();
    }
  });
});

describe('audit log on redis, specifics', () => {
  let server: RedisServer;
  let raw: Redis;

  beforeEach(async () => {
    server = await startRedis({ persistent: false });
    raw = new Redis({ port: server.port });
  });

  afterEach(async () => {
    raw.disconnect();
    await server.stop();
  });

  test('refuses a server with neither AOF nor RDB unless allowVolatile: the trail would be lost on restart', async () => {
    await expect(RedisAuditLog.open({ port: server.port, linkMac })).rejects.toBeInstanceOf(AuditConfigError);
    const log = await RedisAuditLog.open({ port: server.port, linkMac, allowVolatile: true });
    await log.close();
  });

  test('every key it writes is under kms:audit:', async () => {
    const log = await RedisAuditLog.open({ port: server.port, linkMac, allowVolatile: true });
    for (let i = 0; i < 12; i++) log.append(sample(i));
    await log.close();
    const keys = await raw.keys('*');
    expect(keys.length).toBeGreaterThan(3);
    for (const k of keys) expect(k.startsWith('kms:audit:')).toBe(true);
  });

  test('a batch sent again after its reply was lost is recognised by its first event id, not written twice', async () => {
    const first = await RedisAuditLog.open({ port: server.port, linkMac, allowVolatile: true });
    const again = await RedisAuditLog.open({ port: server.port, linkMac, allowVolatile: true });
    try {
      const e = { ...sample(0), eventId: randomUUID() };
      first.append(e);
      first.append(sample(1));
      await first.flush();
      // `again` has never seen the head, as a node whose reply got lost has not: the script finds the batch stored.
      again.append(e);
      await again.flush();
      expect(await raw.hlen('kms:audit:events')).toBe(2);
      expect(await again.verify()).toMatchObject({ ok: true, checked: 2, problems: [] });
    } finally {
      await first.close();
      await again.close();
    }
  });

  test("a stored event with a field added behind the log's back is reported", async () => {
    const log = await RedisAuditLog.open({ port: server.port, linkMac, allowVolatile: true });
    try {
      log.append(sample(0));
      await log.flush();
      const doc = JSON.parse((await raw.hget('kms:audit:events', '1')) ?? '{}') as Record<string, unknown>;
      await raw.hset('kms:audit:events', '1', JSON.stringify({ ...doc, plaintext: 'x' }));
      expect((await log.verify()).problems).toEqual([{ seq: 1, reason: 'the stored event cannot be read: unexpected fields plaintext' }]);
    } finally {
      await log.close();
    }
  });
  test('a trail of an older build (stored documents without eventSource, no lookup sets) gets its lookup sets at open and still verifies', async () => {
    const first = await RedisAuditLog.open({ port: server.port, linkMac, allowVolatile: true });
    for (let i = 0; i < 8; i++) first.append({ ...sample(i), accountUin: '100' });
    await first.close();
    for (const [seq, doc] of Object.entries(await raw.hgetall('kms:audit:events'))) {
      const { eventSource, ...legacy } = JSON.parse(doc) as Record<string, unknown>;
      expect(eventSource).toBe(DEFAULT_EVENT_SOURCE);
      await raw.hset('kms:audit:events', seq, JSON.stringify(legacy));
    }
    const lookupKeys = [...(await raw.keys('kms:audit:tx:*')), 'kms:audit:tx-built'];
    expect(lookupKeys.length).toBeGreaterThan(1);
    await raw.del(...lookupKeys);
    const log = await RedisAuditLog.open({ port: server.port, linkMac, allowVolatile: true });
    try {
      expect(await raw.exists('kms:audit:tx-built')).toBe(1);
      expect(await log.verify()).toMatchObject({ ok: true, checked: 8, problems: [] });
      const all = await log.lookUpEvents({ tenant: '100', startTime: T0, endTime: T0 + 60_000, maxResults: 50 });
      expect(all.events).toHaveLength(8);
      const decrypts = await log.lookUpEvents({
        tenant: '100',
        startTime: T0,
        endTime: T0 + 60_000,
        maxResults: 50,
        attribute: { key: 'EventName', value: 'Decrypt' },
      });
      expect(decrypts.events.map((e) => e.seq).sort((a, b) => a - b)).toEqual([2, 6]);
      for (const e of all.events) expect(e.eventSource).toBe(DEFAULT_EVENT_SOURCE);
    } finally {
      await log.close();
    }
  });
});
