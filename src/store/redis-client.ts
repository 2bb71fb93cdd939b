/**
 * The one way this service opens a Redis client (key store, identity store, audit log, rate
 * limiters, replay guard): Redis 7 or later, and, for a client whose data must survive a restart,
 * persistence (AOF or RDB) unless the caller accepts volatility; the refusal names what would be lost.
 *
 * While the server is unreachable the connection fails fast instead of queueing: a command issued
 * while disconnected is refused at once (no offline queue), a command in flight when the connection
 * dropped is failed after one reconnection attempt, and a command the server does not answer within
 * REDIS_COMMAND_TIMEOUT_MS fails. Reconnection goes on in the background every REDIS_RECONNECT_MAX_MS
 * at most, so service resumes within about a second of the server's return. `isRedisUnavailable`
 * recognises these failures; the stores built on Redis throw them as `StoreUnavailableError`.
 */
import Redis, { ChainableCommander, RedisOptions } from 'ioredis';
import { withDeadline } from '../common/deadline';
import { StoreConfigError, StoreUnavailableError } from './errors';

/** TLS to Redis: PEM bytes (the CA that signed the server's certificate; a client certificate and key if the server asks for one). */
export interface RedisTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** The name the server's certificate must carry (default: the host). */
  servername?: string;
}

export interface RedisConnectionOptions {
  host?: string;
  port: number;
  /** An ACL user (Redis 6+); without it, AUTH with the password alone (requirepass). */
  username?: string;
  password?: string;
  tls?: RedisTls;
  /** Accept a server without AOF or RDB persistence (tests, caches); default false. */
  allowVolatile?: boolean;
}

/**
 * Where and how to reach Redis: host, port, AUTH and TLS. Every Redis client the service opens
 * (key store, identity store, audit log, rate limiter) is built from these, so none goes without.
 */
export function redisClientOptions(o: RedisConnectionOptions): RedisOptions {
  const tls = o.tls && {
    ...(o.tls.ca ? { ca: o.tls.ca } : {}),
    ...(o.tls.cert ? { cert: o.tls.cert } : {}),
    ...(o.tls.key ? { key: o.tls.key } : {}),
    servername: o.tls.servername ?? o.host ?? '127.0.0.1',
  };
  return {
    host: o.host ?? '127.0.0.1',
    port: o.port,
    ...(o.username !== undefined ? { username: o.username } : {}),
    ...(o.password !== undefined ? { password: o.password } : {}),
    ...(tls ? { tls } : {}),
  };
}

/** A command without an answer after this long fails (a hung or partitioned server). */
export const REDIS_COMMAND_TIMEOUT_MS = 3_000;
/** Longest wait between reconnection attempts. */
export const REDIS_RECONNECT_MAX_MS = 1_000;

/** The fail-fast options of a store connection (see the file comment). */
function failFastOptions(): Pick<RedisOptions, 'enableOfflineQueue' | 'maxRetriesPerRequest' | 'commandTimeout' | 'retryStrategy'> {
  return {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    retryStrategy: (attempt: number) => Math.min(50 * 2 ** (attempt - 1), REDIS_RECONNECT_MAX_MS),
  };
}

const UNAVAILABLE_MESSAGES = [
  /^Connection is closed\.?$/,
  /^Stream isn't writeable/,
  /^Command timed out/,
  /^LOADING /,
  /^Reached the max retries per request limit/,
];
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

/** True for the failures of a Redis client whose server cannot be reached right now (as opposed to a refused or wrong command). */
export function isRedisUnavailable(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  if (e.name === 'MaxRetriesPerRequestError') return true;
  const code = (e as NodeJS.ErrnoException).code;
  if (code !== undefined && UNAVAILABLE_CODES.has(code)) return true;
  return UNAVAILABLE_MESSAGES.some((m) => m.test(e.message));
}

/** What a client is for. */
export interface RedisPurpose {
  /** What it keeps that a restart without persistence would lose (named in the refusal); absent: nothing durable, no persistence check. */
  keeps?: string;
  /** The error a refusal is raised as (default `StoreConfigError`), so each store raises its own class. */
  refuse?: (message: string) => Error;
}

/** Opens a fail-fast client (see the file comment) and checks the server's version and, if `purpose.keeps` something, its persistence. */
export async function openRedis(options: RedisConnectionOptions, purpose: RedisPurpose = {}): Promise<Redis> {
  const fail = purpose.refuse ?? ((m: string) => new StoreConfigError(m));
  const redis = new Redis({ ...redisClientOptions(options), lazyConnect: true, ...failFastOptions() });
  // ioredis reconnects by itself; without a listener an outage would surface as unhandled 'error' events
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    const version = /redis_version:(\d+)/.exec(await redis.info('server'))?.[1];
    if (version !== undefined && Number(version) < 7) throw fail(`Redis ${version} is too old; 7.0 or later is required`);
    if (purpose.keeps !== undefined && !options.allowVolatile) {
      const [, aof] = await redis.config('GET', 'appendonly');
      const [, save] = await redis.config('GET', 'save');
      if (aof !== 'yes' && (save ?? '').trim() === '') {
        throw fail(
          `Redis at ${options.host ?? '127.0.0.1'}:${options.port} has neither AOF nor RDB persistence; ${purpose.keeps} would be lost on restart (set allowVolatile to accept that)`,
        );
      }
    }
  } catch (e) {
    redis.disconnect();
    throw e;
  }
  return redis;
}

/** An unreachable server's failure as `StoreUnavailableError`; any other error unchanged. */
export function asStoreUnavailable(e: unknown): unknown {
  return isRedisUnavailable(e) ? new StoreUnavailableError((e as Error).message, { cause: e }) : e;
}

/**
 * `store` with every promise its methods return failing with `StoreUnavailableError` where Redis
 * could not be reached: the one place a Redis-backed store turns client failures into the
 * backend-neutral error.
 */
export function reportingUnavailable<T extends object>(store: T): T {
  return new Proxy(store, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]): unknown => {
        const result: unknown = value.apply(target, args);
        return result instanceof Promise ? result.catch((e: unknown) => Promise.reject(asStoreUnavailable(e))) : result;
      };
    },
  });
}

/** The replies of a MULTI, failing on the first command that failed. */
export async function execAll<T>(multi: ChainableCommander): Promise<T[]> {
  const replies = await multi.exec();
  if (replies === null) throw new Error('Redis transaction aborted');
  return replies.map(([err, value]) => {
    if (err) throw err;
    return value as T;
  });
}

/** How long a clean QUIT may take before the connection is dropped. */
export const REDIS_QUIT_MS = 1_000;

/**
 * Ends a client: QUIT when Redis answers, else (away, or no answer in time) drop the connection, so
 * no reconnect timer is left behind to keep the process alive after a shutdown during an outage.
 */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === 'end') return;
  if (redis.status !== 'ready') {
    redis.disconnect();
    return;
  }
  const quit = redis.quit().then(
    () => 'done' as const,
    () => 'late' as const,
  );
  if ((await withDeadline(quit, REDIS_QUIT_MS, () => 'late' as const)) === 'late') redis.disconnect();
}
