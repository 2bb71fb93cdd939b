import { existsSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { parse } from 'yaml';
import { ClusterKind, HsmCluster } from './cluster';
import { ConfigError } from './errors';
import { HsmMember } from './member';
import type { HsmProfile } from './profile';

export type PinSource = { env: string } | { file: string };

export interface MemberConfig {
  id: string;
  profile: string;
  /** Module path; when absent, the first of the profile's moduleHints that exists. */
  module?: string;
  env?: Record<string, string>;
  moduleDir?: string;
  token: string;
  pin: PinSource;
}

export interface PoolConfig {
  maxSessions?: number;
  waitMs?: number;
  handleCacheSize?: number;
  handleTtlSeconds?: number;
}

/** `slowQueue:` of a cluster: slow operations admitted at once, and how many may wait (0: none). */
export interface SlowQueueConfig {
  running?: number;
  queued?: number;
}

export interface ClusterConfig {
  id: string;
  kind: ClusterKind;
  owners: string[];
  pool: PoolConfig;
  slowQueue: SlowQueueConfig;
  members: MemberConfig[];
}

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

function obj(v: unknown, where: string): Record<string, unknown> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(`${where}: expected a mapping`);
  return v as Record<string, unknown>;
}

function str(o: Record<string, unknown>, key: string, where: string, optional = false): string | undefined {
  const v = o[key];
  if (v === undefined && optional) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw new ConfigError(`${where}: "${key}" must be a non-empty string`);
  return v;
}

function positive(o: Record<string, unknown>, key: string, where: string): number | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || (v as number) <= 0) throw new ConfigError(`${where}: "${key}" must be a positive integer`);
  return v as number;
}

function count(o: Record<string, unknown>, key: string, where: string): number | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 100_000) throw new ConfigError(`${where}: "${key}" must be an integer from 0 to 100000`);
  return v as number;
}

function parsePin(v: unknown, where: string, base: string): PinSource {
  if (typeof v === 'string' || typeof v === 'number') {
    throw new ConfigError(`${where}: PINs are never written in configuration; use pin: {env: NAME} or pin: {file: PATH}`);
  }
  const o = obj(v, `${where}.pin`);
  if (o.env !== undefined) return { env: str(o, 'env', `${where}.pin`)! };
  const file = str(o, 'file', `${where}.pin`)!;
  return { file: isAbsolute(file) ? file : resolve(base, file) };
}

/** Parses and validates the `clusters:` document; `base` resolves relative paths. */
export function parseClusterConfig(text: string, base: string): ClusterConfig[] {
  const root = obj(parse(text), 'cluster configuration');
  if (!Array.isArray(root.clusters) || root.clusters.length === 0) throw new ConfigError('cluster configuration: "clusters" must be a non-empty list');
  const seenClusters = new Set<string>();
  const seenMembers = new Set<string>();
  const clusters = root.clusters.map((raw, i): ClusterConfig => {
    const where = `clusters[${i}]`;
    const c = obj(raw, where);
    const id = str(c, 'id', where)!;
    if (!ID.test(id)) throw new ConfigError(`${where}: id "${id}" may hold letters, digits, "_", "." and "-" only`);
    if (seenClusters.has(id)) throw new ConfigError(`${where}: duplicate cluster id ${id}`);
    seenClusters.add(id);
    const kind = str(c, 'kind', where);
    if (kind !== 'shared' && kind !== 'dedicated') throw new ConfigError(`${where}: kind must be shared or dedicated`);
    const owners = c.owners === undefined ? [] : c.owners;
    if (!Array.isArray(owners) || !owners.every((o) => typeof o === 'string' || typeof o === 'number'))
      throw new ConfigError(`${where}: owners must be a list of tenant ids`);
    if (kind === 'dedicated' && owners.length === 0) throw new ConfigError(`${where}: a dedicated cluster needs at least one owner`);
    if (kind === 'shared' && owners.length > 0) throw new ConfigError(`${where}: the shared pool has no owners`);
    const pool = c.pool === undefined ? {} : obj(c.pool, `${where}.pool`);
    const slow = c.slowQueue === undefined ? {} : obj(c.slowQueue, `${where}.slowQueue`);
    if (!Array.isArray(c.members) || c.members.length === 0) throw new ConfigError(`${where}: members must be a non-empty list`);
    const members = c.members.map((rm, j): MemberConfig => {
      const mw = `${where}.members[${j}]`;
      const m = obj(rm, mw);
      const mid = str(m, 'id', mw)!;
      if (!ID.test(mid)) throw new ConfigError(`${mw}: id "${mid}" may hold letters, digits, "_", "." and "-" only`);
      if (seenMembers.has(mid)) throw new ConfigError(`${mw}: duplicate member id ${mid}`);
      seenMembers.add(mid);
      const env = m.env === undefined ? undefined : obj(m.env, `${mw}.env`);
      if (env && !Object.values(env).every((v) => typeof v === 'string')) throw new ConfigError(`${mw}.env: values must be strings`);
      const path = (p: string | undefined) => (p === undefined || isAbsolute(p) ? p : resolve(base, p));
      return {
        id: mid,
        profile: str(m, 'profile', mw)!,
        module: path(str(m, 'module', mw, true)),
        env: env as Record<string, string> | undefined,
        moduleDir: path(str(m, 'moduleDir', mw, true)),
        token: str(m, 'token', mw)!,
        pin: parsePin(m.pin, mw, base),
      };
    });
    return {
      id,
      kind,
      owners: owners.map(String),
      pool: {
        maxSessions: positive(pool, 'maxSessions', where),
        waitMs: positive(pool, 'waitMs', where),
        handleCacheSize: positive(pool, 'handleCacheSize', where),
        handleTtlSeconds: positive(pool, 'handleTtlSeconds', where),
      },
      slowQueue: { running: positive(slow, 'running', `${where}.slowQueue`), queued: count(slow, 'queued', `${where}.slowQueue`) },
      members,
    };
  });
  if (clusters.filter((c) => c.kind === 'shared').length > 1) throw new ConfigError('cluster configuration: at most one shared pool');
  return clusters;
}

/** Reads a PIN from its source; errors name the source, never the PIN. */
export function resolvePin(source: PinSource, env: NodeJS.ProcessEnv = process.env): string {
  if ('env' in source) {
    const v = env[source.env];
    if (!v) throw new ConfigError(`PIN environment variable ${source.env} is not set`);
    return v;
  }
  if (!existsSync(source.file)) throw new ConfigError(`PIN file ${source.file} does not exist`);
  if ((statSync(source.file).mode & 0o077) !== 0) throw new ConfigError(`PIN file ${source.file} must not be readable by group or others (chmod 600)`);
  return readFileSync(source.file, 'utf8').trim();
}

function modulePath(m: MemberConfig, profile: HsmProfile): string {
  if (m.module) return m.module;
  const found = profile.moduleHints.find((p) => existsSync(p));
  if (!found)
    throw new ConfigError(`member ${m.id}: no module path given and none of profile ${profile.name}'s hints exists (${profile.moduleHints.join(', ')})`);
  return found;
}

/** Builds clusters (not yet started) from configuration and the loaded profiles. */
export function buildClusters(config: ClusterConfig[], profiles: ReadonlyMap<string, HsmProfile>, env: NodeJS.ProcessEnv = process.env): HsmCluster[] {
  return config.map((c) => {
    const members = c.members.map((m) => {
      const profile = profiles.get(m.profile);
      if (!profile) throw new ConfigError(`member ${m.id}: unknown profile ${m.profile} (known: ${[...profiles.keys()].join(', ')})`);
      return new HsmMember({
        id: m.id,
        profile,
        module: { path: modulePath(m, profile), env: m.env },
        moduleDir: m.moduleDir,
        tokenLabel: m.token,
        pin: resolvePin(m.pin, env),
        maxSessions: c.pool.maxSessions,
        poolWaitMs: c.pool.waitMs,
        handleCacheSize: c.pool.handleCacheSize,
        handleTtlMs: c.pool.handleTtlSeconds === undefined ? undefined : c.pool.handleTtlSeconds * 1000,
      });
    });
    return new HsmCluster({ id: c.id, kind: c.kind, owners: c.owners, members, slowQueue: c.slowQueue });
  });
}
