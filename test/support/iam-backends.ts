/**
 * The identity-store backings the integration tests run on: SQLite on a temporary file, Redis on a
 * private redis-server. Each can open any number of handles, give a raw view of everything stored
 * (to search for secrets, to tamper), and describe itself to a child process.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import Database from 'better-sqlite3';
import Redis from 'ioredis';
import type { IdentityStore } from '../../src/iam/identity-store';
import { RedisIdentityStore } from '../../src/iam/redis-identity-store';
import { SqliteIdentityStore } from '../../src/iam/sqlite-identity-store';
import { startRedis } from './redis';

/** What a child process needs to open a store on the same backing. */
export type BackingSpec = { kind: 'sqlite'; file: string } | { kind: 'redis'; port: number };

export interface IdentityBacking {
  spec: BackingSpec;
  open(): Promise<IdentityStore>;
  /** Every byte the backing holds on disk and in its values, after making it write everything out. */
  rawBytes(): Promise<Buffer>;
  /** Sets a field of an API key record behind the store's back (ownerUin, or the sealed secret). */
  tamperKey(secretId: string, field: 'ownerUin' | 'sealed', value: string | Buffer): Promise<void>;
  tearDown(): Promise<void>;
}

export interface IdentityBackend {
  name: string;
  setUp(): Promise<IdentityBacking>;
}

export function openSpec(spec: BackingSpec): Promise<IdentityStore> {
  return spec.kind === 'sqlite' ? Promise.resolve(new SqliteIdentityStore(spec.file)) : RedisIdentityStore.open({ port: spec.port });
}

function readFiles(dir: string): Buffer[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? readFiles(p) : [fs.readFileSync(p)];
  });
}

export const sqliteIdentityBackend: IdentityBackend = {
  name: 'sqlite',
  async setUp() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-iam-'));
    const file = path.join(dir, 'kms.db');
    const spec: BackingSpec = { kind: 'sqlite', file };
    const raw = <T>(fn: (db: Database.Database) => T): T => {
      const db = new Database(file);
      try {
        return fn(db);
      } finally {
        db.close();
      }
    };
    return {
      spec,
      open: () => openSpec(spec),
      rawBytes: async () => Buffer.concat(readFiles(dir)),
      tamperKey: async (secretId, field, value) =>
        raw((db) => {
          const column = field === 'ownerUin' ? 'owner_uin' : 'sealed';
          db.prepare(`UPDATE iam_api_keys SET ${column} = ? WHERE secret_id = ?`).run(value, secretId);
        }),
      tearDown: async () => fs.rmSync(dir, { recursive: true, force: true }),
    };
  },
};

async function dumpValues(redis: Redis): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const batch of redis.scanStream({ count: 500 })) {
    for (const key of batch as string[]) {
      const type = await redis.type(key);
      out.push(Buffer.from(key));
      if (type === 'string') out.push((await redis.getBuffer(key)) ?? Buffer.alloc(0));
      if (type === 'hash') for (const [k, v] of Object.entries(await redis.hgetallBuffer(key))) out.push(Buffer.from(k), v);
      if (type === 'set') out.push(...(await redis.smembersBuffer(key)));
      if (type === 'zset') out.push(...(await redis.zrangeBuffer(key, '0', '-1')));
    }
  }
  return out;
}

export const redisIdentityBackend: IdentityBackend = {
  name: 'redis',
  async setUp() {
    const server = await startRedis({ persistent: true });
    const spec: BackingSpec = { kind: 'redis', port: server.port };
    const raw = async <T>(fn: (redis: Redis) => Promise<T>): Promise<T> => {
      const redis = new Redis({ port: server.port });
      try {
        return await fn(redis);
      } finally {
        redis.disconnect();
      }
    };
    return {
      spec,
      open: () => openSpec(spec),
      rawBytes: () =>
        raw(async (redis) => {
          await redis.save();
          const [, dir] = await redis.config('GET', 'dir');
          return Buffer.concat([...(await dumpValues(redis)), ...readFiles(dir)]);
        }),
      tamperKey: (secretId, field, value) =>
        raw(async (redis) => {
          await redis.hset(`kms:iam:key:${secretId}`, field, typeof value === 'string' ? value : value.toString('base64'));
        }),
      tearDown: () => server.stop(),
    };
  },
};

export const IDENTITY_BACKENDS: IdentityBackend[] = [sqliteIdentityBackend, redisIdentityBackend];
