/**
 * Opening a Redis connection for a store that keeps state in it (key metadata, identities):
 * Redis 7 or later, and persistence (AOF or RDB) unless the caller accepts volatility. Each
 * store names what would be lost, so the refusal says it.
 */
import Redis from 'ioredis';

export interface RedisConnectionOptions {
  host?: string;
  port: number;
  password?: string;
  /** Accept a server without AOF or RDB persistence (tests, caches); default false. */
  allowVolatile?: boolean;
}

/** A refusal is thrown as `fail(message)` so each store raises its own error class. */
export async function openPersistentRedis(options: RedisConnectionOptions, lost: string, fail: (message: string) => Error): Promise<Redis> {
  const redis = new Redis({ host: options.host ?? '127.0.0.1', port: options.port, password: options.password, lazyConnect: true, maxRetriesPerRequest: 3 });
  await redis.connect();
  try {
    const version = /redis_version:(\d+)/.exec(await redis.info('server'))?.[1];
    if (version !== undefined && Number(version) < 7) throw fail(`Redis ${version} is too old; 7.0 or later is required`);
    if (!options.allowVolatile) {
      const [, aof] = (await redis.config('GET', 'appendonly')) as string[];
      const [, save] = (await redis.config('GET', 'save')) as string[];
      if (aof !== 'yes' && (save ?? '').trim() === '') {
        throw fail(`Redis at ${options.host ?? '127.0.0.1'}:${options.port} has neither AOF nor RDB persistence; ${lost} would be lost on restart (set allowVolatile to accept that)`);
      }
    }
  } catch (e) {
    redis.disconnect();
    throw e;
  }
  return redis;
}
