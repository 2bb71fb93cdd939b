/**
 * The conformance exerciser (test/support/store-exerciser.ts) run on every MetadataStore backend,
 * then what is particular to each.
 */
import { execFileSync } from 'child_process';
import { randomUUID } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import Database from 'better-sqlite3';
import Redis from 'ioredis';
import { NewKeyRecord, StoreConfigError, StoreUnavailableError } from '../../src/store/store';
import { SCHEMA_VERSION, SqliteMetadataStore } from '../../src/store/sqlite/store';
import { RedisMetadataStore } from '../../src/store/redis/store';
import { startRedis } from '../support/redis';
import { anything, exerciseStore, newKey, record, StoreBackend } from '../support/store-exerciser';

const sqliteBackend: StoreBackend = {
  name: 'sqlite',
  async setUp() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-store-'));
    const file = path.join(dir, 'kms.db');
    return {
      open: async () => new SqliteMetadataStore(file),
      corrupt: async (k) => {
        const db = new Database(file);
        try {
          db.pragma('foreign_keys = OFF');
          db.prepare("UPDATE keys SET key_state = 'Archived', alias = 'corrupted', rotation_due = NULL WHERE key_id = ?").run(k.keyId);
          db.prepare('DELETE FROM key_tags WHERE key_id = ?').run(k.keyId);
          const ghost = randomUUID();
          db.prepare("INSERT INTO key_versions VALUES (?, 1, x'00', 1)").run(ghost);
          db.prepare('INSERT INTO usage_counts VALUES (?, 1, 5)').run(ghost);
        } finally {
          db.close();
        }
      },
      tearDown: async () => fs.rmSync(dir, { recursive: true, force: true }),
    };
  },
};

const redisBackend: StoreBackend = {
  name: 'redis',
  async setUp() {
    const server = await startRedis({ persistent: true });
    return {
      open: async () => RedisMetadataStore.open({ port: server.port }),
      corrupt: async (k) => {
        const raw = new Redis({ port: server.port });
        try {
          const idx = `kms:idx:${k.ownerUin}:${k.region}`;
          const ghost = randomUUID();
          await raw
            .multi()
            .zrem(`${idx}:state:${k.keyState}`, k.keyId)
            .zadd(`${idx}:state:Archived`, k.createTime, k.keyId)
            .zrem(idx, k.keyId)
            .zrem(`${idx}:tag:env`, k.keyId)
            .hdel(`kms:alias:${k.ownerUin}:${k.region}`, k.alias)
            .zrem('kms:due:rotation', `${k.keyId}/${k.ownerUin}`)
            .zadd(idx, 1, ghost)
            .hset(`kms:ver:${ghost}`, '1', 'x')
            .hset(`kms:use:${ghost}`, '1', '5')
            .exec();
        } finally {
          raw.disconnect();
        }
      },
      tearDown: async () => server.stop(),
    };
  },
};

for (const backend of [sqliteBackend, redisBackend]) exerciseStore(backend);

describe('SqliteMetadataStore specifics', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-store-'));
    file = path.join(dir, 'kms.db');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('list, count and due queries are served by indexes, never a table scan', async () => {
    const s = new SqliteMetadataStore(file);
    try {
      const base = { ownerUin: '100', region: 'ap-guangzhou', offset: 0, limit: 10, order: 'asc' as const };
      const plans: Array<[string, string[], RegExp]> = [
        ['list', s.explain({ list: base }), /^SEARCH keys USING INDEX keys_list /],
        ['state', s.explain({ list: { ...base, keyStates: ['Disabled'] } }), /^SEARCH keys USING INDEX keys_state /],
        // several states (ListKeys): filtered inside the time-ordered index, never sorted
        [
          'states',
          s.explain({ list: { ...base, role: 'user', keyStates: ['Enabled', 'Disabled', 'PendingImport'] } }),
          /^SEARCH keys USING INDEX keys_role \(owner_uin=\? AND region=\? AND role=\?\)$/,
        ],
        // ListKeyDetail's default filters: the count is read from the index alone
        ['detail count', s.explain({ listCount: { ...base, role: 'user', keyUsage: 'ENCRYPT_DECRYPT' } }), /^SEARCH keys USING COVERING INDEX keys_usage /],
        [
          'states count',
          s.explain({ listCount: { ...base, role: 'user', keyStates: ['Enabled', 'Disabled', 'PendingImport'] } }),
          /^SEARCH keys USING COVERING INDEX keys_role /,
        ],
        ['role', s.explain({ list: { ...base, role: 'product' } }), /^SEARCH keys USING INDEX keys_role /],
        ['origin', s.explain({ list: { ...base, origin: 'EXTERNAL' } }), /^SEARCH keys USING INDEX keys_origin /],
        ['usage', s.explain({ list: { ...base, keyUsage: 'ENCRYPT_DECRYPT' } }), /^SEARCH keys USING INDEX keys_usage /],
        ['cluster', s.explain({ list: { ...base, hsmClusterId: 'c1' } }), /^SEARCH keys USING INDEX keys_cluster /],
        [
          'tags',
          s.explain({ list: { ...base, tagFilters: [{ key: 'env', values: ['prod', 'dev'] }, { key: 'team' }] } }),
          /^SEARCH t USING COVERING INDEX key_tags_find .*\nSEARCH keys USING INDEX sqlite_autoindex_keys_1 \(key_id=\?\)/,
        ],
        ['search', s.explain({ list: { ...base, searchAlias: 'db' } }), /^SEARCH keys USING INDEX keys_list /],
        ['count', s.explain({ count: { ownerUin: '100', region: 'ap-guangzhou' } }), /^SEARCH keys USING (COVERING )?INDEX keys_quota /],
        ['rotation', s.explain({ due: 'rotation' }), /^SEARCH keys USING INDEX keys_due_rotation /],
        ['deletion', s.explain({ due: 'deletion' }), /^SEARCH keys USING INDEX keys_due_deletion /],
        ['expiry', s.explain({ due: 'expiry' }), /^SEARCH keys USING INDEX keys_due_expiry /],
      ];
      for (const [name, plan, want] of plans) {
        const text = plan.join('\n');
        expect(`${name}: ${text}`).not.toMatch(/\bSCAN\b/);
        expect(text).toMatch(want);
      }
      // one state or one tag value: the page comes in index order, without sorting the matches
      for (const list of [
        { ...base, keyStates: ['Enabled' as const] },
        { ...base, tagFilters: [{ key: 'env', values: ['prod'] }] },
      ]) {
        expect(s.explain({ list }).join('\n')).not.toMatch(/TEMP B-TREE/);
      }
    } finally {
      await s.close();
    }
  });

  test('constraint errors are typed even from a second copy of the module (as jest loads one per test file)', async () => {
    const first = new SqliteMetadataStore(file);
    await first.createKey(newKey({ alias: 'once' }));
    await first.close();
    let Fresh: typeof SqliteMetadataStore | undefined;
    jest.isolateModules(() => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      Fresh = (require('../../src/store/sqlite/store') as { SqliteMetadataStore: typeof SqliteMetadataStore }).SqliteMetadataStore;
    });
    expect(Fresh).not.toBe(SqliteMetadataStore);
    const s = new Fresh!(file);
    try {
      const e: unknown = await s.createKey(newKey({ alias: 'once' })).catch((err: unknown) => err);
      expect((e as Error).name).toBe('AliasExistsError'); // that copy's own class, so compared by name
    } finally {
      await s.close();
    }
  });

  test('refuses a file with a newer schema number, or a pre-release layout', async () => {
    await new SqliteMetadataStore(file).close();
    const raw = new Database(file);
    raw.pragma('user_version = 99');
    raw.close();
    expect(() => new SqliteMetadataStore(file)).toThrow(StoreConfigError);
    const old = path.join(dir, 'old.db');
    const rawOld = new Database(old);
    rawOld.exec('CREATE TABLE keys (key_id TEXT PRIMARY KEY)');
    rawOld.close();
    expect(() => new SqliteMetadataStore(old)).toThrow(StoreConfigError);
  });

  test('a schema 1 file is migrated: its keys stay, the list indexes get the filter columns', async () => {
    const s1 = new SqliteMetadataStore(file);
    const k = newKey({ alias: 'kept' });
    await s1.createKey(k);
    await s1.close();
    const raw = new Database(file);
    raw.exec('DROP INDEX keys_usage; CREATE INDEX keys_usage ON keys (owner_uin, region, key_usage, create_time, key_id); PRAGMA user_version = 1');
    raw.close();
    const s2 = new SqliteMetadataStore(file);
    try {
      expect((await s2.getKey(k.ownerUin, k.keyId))?.alias).toBe('kept');
      const sql = (s2 as unknown as { db: Database.Database }).db.prepare("SELECT sql FROM sqlite_master WHERE name = 'keys_usage'").get() as { sql: string };
      expect(sql.sql).toContain('hsm_cluster_id');
      expect((s2 as unknown as { db: Database.Database }).db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    } finally {
      await s2.close();
    }
  });

  test("a write by another process is reported as {}; this process's own writes by key only", async () => {
    const a = new SqliteMetadataStore(file);
    const b = new SqliteMetadataStore(file);
    const heard = record(b);
    try {
      await heard.until(anything);
      heard.events.length = 0;
      const k = newKey();
      await a.createKey(k);
      expect(heard.events).toEqual([{ keyId: k.keyId }]); // synchronously after the commit, in this process
      const modulePath = path.join(__dirname, '../../src/store/sqlite/store.js');
      execFileSync(process.execPath, [
        '-e',
        `
        const { SqliteMetadataStore } = require(${JSON.stringify(modulePath)});
        const s = new SqliteMetadataStore(${JSON.stringify(file)});
        s.updateKey('100', ${JSON.stringify(k.keyId)}, 1, { description: 'from another process' }).then(() => s.close());
      `,
      ]);
      await heard.until(anything);
      expect(heard.events).toEqual([{ keyId: k.keyId }, {}]);
      expect((await b.getKey('100', k.keyId))?.description).toBe('from another process');
    } finally {
      heard.stop();
      await a.close();
      await b.close();
    }
  });
});

describe('RedisMetadataStore specifics', () => {
  /** A private server, a store and a raw client on it, all gone afterwards. */
  async function withRedis(fn: (s: RedisMetadataStore, raw: Redis) => Promise<void>): Promise<void> {
    const server = await startRedis({ persistent: true });
    const s = await RedisMetadataStore.open({ port: server.port });
    const raw = new Redis({ port: server.port });
    try {
      await fn(s, raw);
    } finally {
      raw.disconnect();
      await s.close();
      await server.stop();
    }
  }

  test("a filtered page reads only the page's records, from the index sets", () =>
    withRedis(async (s, raw) => {
      const created: NewKeyRecord[] = [];
      for (let i = 0; i < 40; i++) {
        created.push(newKey({ keyState: i % 2 === 0 ? 'Enabled' : 'Disabled', tags: { n: String(i % 4) } }));
        await s.createKey(created[i]);
      }
      await raw.config('RESETSTAT');
      const page = await s.listKeys({
        ownerUin: '100',
        region: 'ap-guangzhou',
        offset: 3,
        limit: 4,
        order: 'desc',
        keyStates: ['Enabled'],
        tagFilters: [{ key: 'n', values: ['0', '2'] }],
      });
      const stats = await raw.info('commandstats');
      const matching = created
        .filter((k) => k.keyState === 'Enabled')
        .map((k) => k.keyId)
        .reverse();
      expect(page.total).toBe(20);
      expect(page.keys.map((k) => k.keyId)).toEqual(matching.slice(3, 7));
      const calls = (cmd: string): number => Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
      expect(calls('hgetall')).toBe(8); // record and versions of each of the 4
      expect(calls('hget')).toBe(0);
      expect(calls('scan') + calls('hscan')).toBe(0);
      expect(await raw.keys('kms:tmp:*')).toEqual([]);
    }));

  test('after the subscriber connection drops, listeners hear {} once it is back, then keys again', () =>
    withRedis(async (s, raw) => {
      const heard = record(s);
      await heard.until(anything);
      heard.events.length = 0;
      await raw.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      await heard.until(anything);
      const k = newKey();
      await s.createKey(k);
      await heard.until((c) => c.keyId === k.keyId);
      heard.stop();
    }));

  test('while the server cannot be reached, every call fails with StoreUnavailableError (backend-neutral), ping included', async () => {
    const server = await startRedis({ persistent: true });
    const s = await RedisMetadataStore.open({ port: server.port });
    try {
      const k = newKey();
      await s.createKey(k);
      await expect(s.ping()).resolves.toBeUndefined();
      await server.stop();
      await expect(s.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(s.getKey(k.ownerUin, k.keyId)).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(s.createKey(newKey())).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(s.listKeys({ ownerUin: k.ownerUin, region: k.region, offset: 0, limit: 10, order: 'asc' })).rejects.toBeInstanceOf(StoreUnavailableError);
    } finally {
      await s.close();
      await server.stop();
    }
  });

  test('refuses a server with neither AOF nor RDB unless allowVolatile', async () => {
    const server = await startRedis({ persistent: false });
    try {
      await expect(RedisMetadataStore.open({ port: server.port })).rejects.toBeInstanceOf(StoreConfigError);
      const s = await RedisMetadataStore.open({ port: server.port, allowVolatile: true });
      await s.close();
    } finally {
      await server.stop();
    }
  });
});
