/**
 * Embedded backend: better-sqlite3 in WAL mode. Every write is one IMMEDIATE transaction, so several
 * handles and processes may share the file. Writes that create or destroy key material (createKey,
 * addVersion, deleteKey, updateKey with versions) commit with `synchronous=FULL`; other writes use
 * NORMAL (durable in WAL except for the last commits on power loss, never corrupt).
 *
 * The record's JSON document is the truth; the columns beside it (alias, state, origin, usage,
 * cluster, role, due times) and the tag rows are derived from it in the same transaction, indexed,
 * and re-derived by `repair()` if they ever disagree. Listing, counting and due-key queries go
 * through those indexes: their cost is the matching rows, never the table. The one exception is the
 * alias/key-id substring search, which reads the tenant's own rows of the (owner, region, create
 * time) index: a substring has no index.
 *
 * Change notifications: a write through any handle in this process reaches the listeners of every
 * handle on the same file right after its commit ({keyId}). Writes by other processes are found by
 * polling `PRAGMA data_version` every 250 ms while there are listeners and reported as {} (anything
 * may have changed); a change counter in the file tells them apart from this process's own writes.
 * A new listener hears {} once (right away: watching here is live at once), as on every backend.
 *
 * `PRAGMA user_version` holds the schema number; a file with a newer number is refused.
 */
import Database from 'better-sqlite3';
import * as fs from 'fs';
import * as path from 'path';
import {
  AliasExistsError, ClusterKeysPage, ClusterState, ClusterStateConflictError, ConflictError, CreateLimits, DueKind, KeyChange, KeyNotFoundError, KeyPatch, KeyRecord, KeyRef,
  KeyVersion, ListKeysQuery, ListKeysResult, MetadataStore, NewKeyRecord, QuotaExceededError, StoreConfigError,
  StoreInputError, Tombstone, applyPatch, checkClusterState, checkClusterWalk, checkDueQuery, checkLease, checkNewRecord, checkQuery, decodeDoc, dueTimes,
  emitChange, encodeDoc, parseUsageBatch, roleOf, tombstoneOf, withVersion,
  emptyStateCounts,
} from './store';
import type { KeyState } from '../kms/key-state';

/** Bumped with every change of the layout below; a file with a newer number is refused. */
export const SCHEMA_VERSION = 2;

/**
 * What turns schema n-1 into n before SCHEMA runs. 2: the list indexes carry every filter column
 * after (create_time, key_id), so a filtered count or a deep page is read from the index alone
 * (with 100,000 keys, ListKeyDetail went from 58 ms to a few: docs/benchmarks.md).
 */
const MIGRATIONS: Record<number, string> = {
  2: ['keys_list', 'keys_state', 'keys_origin', 'keys_usage', 'keys_cluster', 'keys_role'].map((i) => `DROP INDEX IF EXISTS ${i};`).join('\n'),
};

const SCHEMA = `
CREATE TABLE IF NOT EXISTS keys (
  key_id         TEXT PRIMARY KEY,
  owner_uin      TEXT NOT NULL,
  region         TEXT NOT NULL,
  alias          TEXT NOT NULL,
  key_state      TEXT NOT NULL,
  origin         TEXT NOT NULL,
  key_usage      TEXT NOT NULL,
  hsm_cluster_id TEXT NOT NULL,
  role           TEXT NOT NULL,
  create_time    INTEGER NOT NULL,
  rotation_due   INTEGER,
  deletion_due   INTEGER,
  expiry_due     INTEGER,
  revision       INTEGER NOT NULL,
  doc            TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS keys_alias ON keys (owner_uin, region, alias);
CREATE INDEX IF NOT EXISTS keys_list ON keys (owner_uin, region, create_time, key_id, role, key_usage, key_state, origin, hsm_cluster_id);
CREATE INDEX IF NOT EXISTS keys_state ON keys (owner_uin, region, key_state, create_time, key_id, role, key_usage, origin, hsm_cluster_id);
CREATE INDEX IF NOT EXISTS keys_origin ON keys (owner_uin, region, origin, create_time, key_id, role, key_usage, key_state, hsm_cluster_id);
CREATE INDEX IF NOT EXISTS keys_usage ON keys (owner_uin, region, key_usage, create_time, key_id, role, key_state, origin, hsm_cluster_id);
CREATE INDEX IF NOT EXISTS keys_cluster ON keys (owner_uin, region, hsm_cluster_id, create_time, key_id, role, key_usage, key_state, origin);
CREATE INDEX IF NOT EXISTS keys_role ON keys (owner_uin, region, role, create_time, key_id, key_usage, key_state, origin, hsm_cluster_id);
CREATE INDEX IF NOT EXISTS keys_walk ON keys (hsm_cluster_id, key_id, owner_uin);
CREATE INDEX IF NOT EXISTS keys_quota ON keys (owner_uin, region) WHERE role = 'user' AND key_state <> 'PendingDelete';
CREATE INDEX IF NOT EXISTS keys_due_rotation ON keys (rotation_due, key_id) WHERE rotation_due IS NOT NULL;
CREATE INDEX IF NOT EXISTS keys_due_deletion ON keys (deletion_due, key_id) WHERE deletion_due IS NOT NULL;
CREATE INDEX IF NOT EXISTS keys_due_expiry ON keys (expiry_due, key_id) WHERE expiry_due IS NOT NULL;
CREATE TABLE IF NOT EXISTS key_tags (
  key_id    TEXT NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
  owner_uin TEXT NOT NULL,
  region    TEXT NOT NULL,
  tag_key   TEXT NOT NULL,
  tag_value TEXT NOT NULL,
  create_time INTEGER NOT NULL,
  PRIMARY KEY (key_id, tag_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS key_tags_find ON key_tags (owner_uin, region, tag_key, tag_value, create_time, key_id);
CREATE TABLE IF NOT EXISTS key_versions (
  key_id      TEXT NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
  version     INTEGER NOT NULL,
  material    BLOB NOT NULL,
  create_time INTEGER NOT NULL,
  PRIMARY KEY (key_id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage_counts (
  key_id  TEXT NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
  version INTEGER NOT NULL,
  count   INTEGER NOT NULL,
  PRIMARY KEY (key_id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tombstones (
  key_id    TEXT PRIMARY KEY,
  owner_uin TEXT NOT NULL,
  doc       TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
  name       TEXT PRIMARY KEY,
  holder     TEXT NOT NULL,
  expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cluster_states (
  cluster_id TEXT PRIMARY KEY,
  revision   INTEGER NOT NULL,
  doc        TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
  id  INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO changes (id, seq) VALUES (1, 0);
`;

const POLL_MS = 250;

interface KeyRow { key_id: string; revision: number; doc: string }
interface VersionRow { key_id: string; version: number; material: Buffer; create_time: number }
type SqlParam = string | number | null;
type Listener = (change: KeyChange) => void;

/** The indexed columns derived from a record's document (and its version count). */
interface Derived {
  alias: string;
  key_state: string;
  origin: string;
  key_usage: string;
  hsm_cluster_id: string;
  role: string;
  create_time: number;
  rotation_due: number | null;
  deletion_due: number | null;
  expiry_due: number | null;
}
const DERIVED_COLUMNS = [
  'alias', 'key_state', 'origin', 'key_usage', 'hsm_cluster_id', 'role', 'create_time', 'rotation_due', 'deletion_due', 'expiry_due',
] as const;

function derive(r: NewKeyRecord): Derived {
  const due = dueTimes(r);
  return {
    alias: r.alias, key_state: r.keyState, origin: r.origin, key_usage: r.keyUsage, hsm_cluster_id: r.hsmClusterId,
    role: roleOf(r.owner), create_time: r.createTime,
    rotation_due: due.rotation ?? null, deletion_due: due.deletion ?? null, expiry_due: due.expiry ?? null,
  };
}

const DUE_COLUMN: Record<DueKind, string> = { rotation: 'rotation_due', deletion: 'deletion_due', expiry: 'expiry_due' };

function dueSql(kind: DueKind): string {
  const col = DUE_COLUMN[kind];
  return `SELECT owner_uin, key_id FROM keys WHERE ${col} <= ? ORDER BY ${col}, key_id LIMIT ?`;
}

const COUNT_SQL = `SELECT count(*) AS n FROM keys INDEXED BY keys_quota
  WHERE owner_uin = ? AND region = ? AND role = 'user' AND key_state <> 'PendingDelete'`;

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
    [(q.keyStates ?? []).length === 1, 'keys_state'], [q.hsmClusterId !== undefined, 'keys_cluster'],
    [q.keyUsage !== undefined, 'keys_usage'], [q.origin !== undefined, 'keys_origin'], [q.role !== undefined, 'keys_role'],
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
  for (const [column, value] of [['role', q.role], ['origin', q.origin], ['key_usage', q.keyUsage], ['hsm_cluster_id', q.hsmClusterId]]) {
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

function listSql(q: ListKeysQuery): { count: string; page: string; params: SqlParam[] } {
  const { from, order, params: fromParams } = listFrom(q);
  const { clause, params } = listWhere(q);
  const dir = q.order === 'desc' ? 'DESC' : 'ASC';
  const orderBy = order.split(', ').map((c) => `${c} ${dir}`).join(', ');
  return {
    count: `SELECT count(*) AS n FROM ${from} WHERE ${clause}`,
    page: `SELECT keys.key_id, keys.revision, keys.doc FROM ${from} WHERE ${clause} ORDER BY ${orderBy} LIMIT ? OFFSET ?`,
    params: [...fromParams, ...params],
  };
}

/** What `explain` can show the plan of. */
export type ExplainTarget = { list: ListKeysQuery } | { listCount: ListKeysQuery } | { count: { ownerUin: string; region: string } } | { due: DueKind };

/**
 * The extended result code of a SQLite error. Not `instanceof Database.SqliteError`: the native addon
 * keeps the error class of the first copy of better-sqlite3 loaded in the process, and a second copy
 * (jest loads one per test file; bundlers may too) has a different class.
 */
function sqliteCode(e: unknown): string | undefined {
  const { name, code } = (typeof e === 'object' && e !== null ? e : {}) as { name?: unknown; code?: unknown };
  return name === 'SqliteError' && typeof code === 'string' ? code : undefined;
}

/**
 * Process-wide state of one database file: the listeners of every handle on it, and the change
 * numbers this process committed, so a handle's poller can tell other processes' writes from ours.
 */
class FileHub {
  private static readonly byFile = new Map<string, FileHub>();
  readonly listeners = new Set<Listener>();
  /** poller -> the last change number it has accounted for */
  private readonly pollers = new Map<object, number>();
  private readonly localSeqs = new Set<number>();
  private handles = 0;

  private constructor(private readonly file: string) {}

  static attach(file: string): FileHub {
    const hub = FileHub.byFile.get(file) ?? new FileHub(file);
    FileHub.byFile.set(file, hub);
    hub.handles++;
    return hub;
  }

  detach(): void {
    if (--this.handles === 0) FileHub.byFile.delete(this.file);
  }

  committed(keyId: string, seq: number): void {
    if (this.pollers.size > 0) this.localSeqs.add(seq);
    emitChange(this.listeners, { keyId });
  }

  startPoller(poller: object, seq: number): void {
    this.pollers.set(poller, seq);
  }

  stopPoller(poller: object): void {
    this.pollers.delete(poller);
    this.prune();
  }

  /** Moves `poller` on to change `seq`; true when a change since its last call was not made by this process. */
  advance(poller: object, seq: number): boolean {
    const last = this.pollers.get(poller) ?? seq;
    let local = 0;
    for (const s of this.localSeqs) if (s > last && s <= seq) local++;
    this.pollers.set(poller, seq);
    this.prune();
    return seq - last > local;
  }

  private prune(): void {
    const oldest = Math.min(...this.pollers.values());
    for (const s of this.localSeqs) if (this.pollers.size === 0 || s <= oldest) this.localSeqs.delete(s);
  }
}

function hubKey(file: string): string {
  if (file === '' || file === ':memory:') return `memory:${Math.random()}`;
  try {
    return fs.realpathSync(file);
  } catch {
    return path.resolve(file);
  }
}

export interface SqliteStoreOptions {
  /** SQLite busy timeout when another process holds the write lock; default 5000 ms. */
  busyTimeoutMs?: number;
}

export class SqliteMetadataStore implements MetadataStore {
  private readonly db: Database.Database;
  private readonly hub: FileHub;
  private readonly statements = new Map<string, Database.Statement>();
  private readonly listeners = new Set<Listener>();
  private poller: { timer: NodeJS.Timeout; dataVersion: number } | undefined;

  constructor(file: string, options: SqliteStoreOptions = {}) {
    this.db = new Database(file);
    try {
      this.init(options);
    } catch (e) {
      this.db.close();
      throw e;
    }
    this.hub = FileHub.attach(hubKey(file));
  }

  async createKey(record: NewKeyRecord, limits: CreateLimits = {}): Promise<KeyRecord> {
    checkNewRecord(record);
    const stored: KeyRecord = { ...record, revision: 1 };
    try {
      this.change(true, record.keyId, () => {
        this.checkQuota(record, limits);
        this.insertKey(stored);
        this.writeTags(stored);
        for (const v of record.versions) this.insertVersion(record.keyId, v);
      });
    } catch (e) {
      if (sqliteCode(e) === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new ConflictError(record.keyId, 'key id already exists');
      throw aliasError(e, record);
    }
    return copy(stored);
  }

  async countKeys(ownerUin: string, region: string): Promise<number> {
    return (this.stmt(COUNT_SQL).get(ownerUin, region) as { n: number }).n;
  }

  async countByState(): Promise<Record<KeyState, number>> {
    const counts = emptyStateCounts();
    for (const row of this.stmt('SELECT key_state AS s, count(*) AS n FROM keys GROUP BY key_state').all() as Array<{ s: KeyState; n: number }>) counts[row.s] = row.n;
    return counts;
  }

  async getKey(ownerUin: string, keyId: string): Promise<KeyRecord | undefined> {
    return this.db.transaction(() => this.read(ownerUin, keyId))();
  }

  async updateKey(ownerUin: string, keyId: string, expectedRevision: number, patch: KeyPatch): Promise<KeyRecord> {
    let next: KeyRecord | undefined;
    try {
      this.change(patch.versions !== undefined, keyId, () => {
        const current = this.mustRead(ownerUin, keyId);
        if (current.revision !== expectedRevision) {
          throw new ConflictError(keyId, `expected revision ${expectedRevision}, found ${current.revision}`);
        }
        next = applyPatch(current, patch);
        this.save(next, expectedRevision, patch);
      });
    } catch (e) {
      throw next === undefined ? e : aliasError(e, next);
    }
    return copy(next as KeyRecord);
  }

  async addVersion(ownerUin: string, keyId: string, version: KeyVersion, patch: KeyPatch = {}): Promise<KeyRecord> {
    let next: KeyRecord | undefined;
    try {
      this.change(true, keyId, () => {
        const current = this.mustRead(ownerUin, keyId);
        next = withVersion(current, version, patch);
        this.save(next, current.revision, patch);
        this.insertVersion(keyId, version);
      });
    } catch (e) {
      throw next === undefined ? e : aliasError(e, next);
    }
    return copy(next as KeyRecord);
  }

  async deleteKey(ownerUin: string, keyId: string, deletedAt: number): Promise<boolean> {
    if (!Number.isFinite(deletedAt)) throw new StoreInputError(`deletedAt must be a number, got ${deletedAt}`);
    return this.change(true, keyId, () => {
      const current = this.read(ownerUin, keyId);
      if (current === undefined) return false;
      // Versions, tags and counts go by ON DELETE CASCADE; deleted explicitly too, so nothing depends on the pragma.
      for (const table of ['key_versions', 'key_tags', 'usage_counts', 'keys']) {
        this.stmt(`DELETE FROM ${table} WHERE key_id = ?`).run(keyId);
      }
      this.stmt('INSERT OR REPLACE INTO tombstones (key_id, owner_uin, doc) VALUES (?, ?, ?)')
        .run(keyId, ownerUin, JSON.stringify(tombstoneOf(current, deletedAt)));
      return true;
    });
  }

  async getTombstone(ownerUin: string, keyId: string): Promise<Tombstone | undefined> {
    const row = this.stmt('SELECT doc FROM tombstones WHERE key_id = ? AND owner_uin = ?').get(keyId, ownerUin) as { doc: string } | undefined;
    return row === undefined ? undefined : (JSON.parse(row.doc) as Tombstone);
  }

  async listKeys(q: ListKeysQuery): Promise<ListKeysResult> {
    checkQuery(q);
    const sql = listSql(q);
    return this.db.transaction((): ListKeysResult => {
      const { n } = this.stmt(sql.count).get(...sql.params) as { n: number };
      const rows = this.stmt(sql.page).all(...sql.params, q.limit, q.offset) as KeyRow[];
      const versions = this.versionsOf(rows.map((r) => r.key_id));
      return { total: n, keys: rows.map((r) => toRecord(r, versions.get(r.key_id) ?? [])) };
    })();
  }

  async dueKeys(kind: DueKind, before: number, limit: number): Promise<KeyRef[]> {
    checkDueQuery(kind, before, limit);
    const rows = this.stmt(dueSql(kind)).all(before, limit) as Array<{ owner_uin: string; key_id: string }>;
    return rows.map((r) => ({ ownerUin: r.owner_uin, keyId: r.key_id }));
  }

  async addUsage(batch: ReadonlyMap<string, number>): Promise<Map<string, number>> {
    const entries = parseUsageBatch(batch);
    const totals = new Map<string, number>();
    if (entries.length === 0) return totals;
    this.write(false, () => {
      const exists = this.stmt('SELECT 1 FROM keys WHERE key_id = ?');
      const add = this.stmt(
        `INSERT INTO usage_counts (key_id, version, count) VALUES (?, ?, ?)
         ON CONFLICT (key_id, version) DO UPDATE SET count = count + excluded.count RETURNING count`,
      );
      for (const e of entries) {
        if (exists.get(e.keyId) === undefined) continue;
        totals.set(e.ref, (add.get(e.keyId, e.version, e.count) as { count: number }).count);
      }
    });
    return totals;
  }

  watch(listener: (change: KeyChange) => void): () => void {
    const entry: Listener = (change) => listener(change);
    this.listeners.add(entry);
    this.hub.listeners.add(entry);
    if (this.poller === undefined && this.db.open) this.startPolling();
    queueMicrotask(() => { if (this.listeners.has(entry)) emitChange([entry], {}); });
    return () => {
      this.listeners.delete(entry);
      this.hub.listeners.delete(entry);
      if (this.listeners.size === 0) this.stopPolling();
    };
  }

  async acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    checkLease(name, holder, ttlMs);
    return this.write(false, () => {
      const now = Date.now();
      const row = this.stmt('SELECT holder, expires_ms FROM leases WHERE name = ?').get(name) as
        { holder: string; expires_ms: number } | undefined;
      if (row !== undefined && row.holder !== holder && row.expires_ms > now) return false;
      this.stmt(
        `INSERT INTO leases (name, holder, expires_ms) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms`,
      ).run(name, holder, now + ttlMs);
      return true;
    });
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    checkLease(name, holder);
    this.write(false, () => this.stmt('DELETE FROM leases WHERE name = ? AND holder = ?').run(name, holder));
  }

  async clusterKeys(clusterId: string, cursor: string, limit: number): Promise<ClusterKeysPage> {
    checkClusterWalk(clusterId, cursor, limit);
    const rows = this.stmt('SELECT owner_uin, key_id FROM keys WHERE hsm_cluster_id = ? AND key_id > ? ORDER BY key_id LIMIT ?').all(clusterId, cursor, limit) as Array<{ owner_uin: string; key_id: string }>;
    const keys = rows.map((r) => ({ ownerUin: r.owner_uin, keyId: r.key_id }));
    return { keys, cursor: rows.length < limit ? undefined : rows[rows.length - 1].key_id };
  }

  async getClusterState(clusterId: string): Promise<ClusterState | undefined> {
    checkClusterState(clusterId, 0);
    return this.stmt('SELECT doc, revision FROM cluster_states WHERE cluster_id = ?').get(clusterId) as ClusterState | undefined;
  }

  async putClusterState(clusterId: string, expectedRevision: number, doc: string): Promise<number> {
    checkClusterState(clusterId, expectedRevision, doc);
    return this.write(true, () => {
      const row = this.stmt('SELECT revision FROM cluster_states WHERE cluster_id = ?').get(clusterId) as { revision: number } | undefined;
      const found = row?.revision ?? 0;
      if (found !== expectedRevision) throw new ClusterStateConflictError(clusterId, expectedRevision, found);
      this.stmt('INSERT INTO cluster_states (cluster_id, revision, doc) VALUES (?, ?, ?) ON CONFLICT (cluster_id) DO UPDATE SET revision = excluded.revision, doc = excluded.doc')
        .run(clusterId, found + 1, doc);
      return found + 1;
    });
  }

  async repair(): Promise<string[]> {
    const findings: string[] = [];
    for (const row of this.db.pragma('quick_check') as Array<{ quick_check: string }>) {
      if (row.quick_check !== 'ok') findings.push(`quick_check: ${row.quick_check}`);
    }
    this.write(false, () => {
      findings.push(...this.removeOrphans());
      // a page at a time: with 100,000 keys, reading them all at once held ~200 MB until the next collection
      for (let after = '', rows: Array<KeyRow & Derived> = []; ; after = rows[rows.length - 1].key_id) {
        rows = this.stmt('SELECT * FROM keys WHERE key_id > ? ORDER BY key_id LIMIT 500').all(after) as Array<KeyRow & Derived>;
        if (rows.length === 0) break;
        const versions = this.versionsOf(rows.map((r) => r.key_id));
        for (const row of rows) findings.push(...this.rederive(row, versions.get(row.key_id) ?? []));
      }
    });
    return findings;
  }

  async close(): Promise<void> {
    if (!this.db.open) return;
    this.stopPolling();
    for (const l of this.listeners) this.hub.listeners.delete(l);
    this.listeners.clear();
    this.hub.detach();
    this.db.close();
  }

  /** The query plan of a list, count or due query; for tests that check indexes are used. */
  explain(target: ExplainTarget): string[] {
    let sql: string;
    let params: SqlParam[];
    if ('list' in target) {
      const s = listSql(target.list);
      [sql, params] = [s.page, [...s.params, target.list.limit, target.list.offset]];
    } else if ('listCount' in target) {
      const c = listSql(target.listCount);
      [sql, params] = [c.count, c.params];
    } else if ('count' in target) {
      [sql, params] = [COUNT_SQL, [target.count.ownerUin, target.count.region]];
    } else {
      [sql, params] = [dueSql(target.due), [0, 10]];
    }
    const rows = this.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as Array<{ detail: string }>;
    return rows.map((r) => r.detail);
  }

  private init(options: SqliteStoreOptions): void {
    this.db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.transaction(() => {
      const version = this.db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new StoreConfigError(`database schema ${version} is newer than this build's (${SCHEMA_VERSION}); upgrade the KMS`);
      }
      const keysTable = this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'keys'").get();
      if (version === 0 && keysTable !== undefined) {
        throw new StoreConfigError('database has a pre-release layout without a schema number; it cannot be opened');
      }
      for (let v = Math.max(version, 1) + 1; keysTable !== undefined && v <= SCHEMA_VERSION; v++) this.db.exec(MIGRATIONS[v] ?? '');
      this.db.exec(SCHEMA);
      this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    }).immediate();
  }

  private stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (s === undefined) {
      // list queries vary with their filters: keep the cache bounded
      if (this.statements.size >= 500) this.statements.clear();
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  private write<T>(durable: boolean, fn: () => T): T {
    if (!durable) return this.db.transaction(fn).immediate();
    this.db.pragma('synchronous = FULL');
    try {
      return this.db.transaction(fn).immediate();
    } finally {
      this.db.pragma('synchronous = NORMAL');
    }
  }

  /** A write that changes key `keyId` (unless `fn` returns false): counted, then announced after the commit. */
  private change<T>(durable: boolean, keyId: string, fn: () => T): T {
    let seq: number | undefined;
    const result = this.write(durable, () => {
      const r = fn();
      if (r !== false) seq = (this.stmt('UPDATE changes SET seq = seq + 1 WHERE id = 1 RETURNING seq').get() as { seq: number }).seq;
      return r;
    });
    if (seq !== undefined) this.hub.committed(keyId, seq);
    return result;
  }

  private startPolling(): void {
    this.hub.startPoller(this, this.changeSeq());
    const timer = setInterval(() => this.poll(), POLL_MS);
    timer.unref();
    this.poller = { timer, dataVersion: this.dataVersion() };
  }

  private stopPolling(): void {
    if (this.poller === undefined) return;
    clearInterval(this.poller.timer);
    this.poller = undefined;
    this.hub.stopPoller(this);
  }

  private poll(): void {
    if (this.poller === undefined || !this.db.open) return;
    try {
      const dataVersion = this.dataVersion();
      if (dataVersion === this.poller.dataVersion) return;
      this.poller.dataVersion = dataVersion;
      if (this.hub.advance(this, this.changeSeq())) emitChange(this.listeners, {});
    } catch {
      // a busy or closing database: the next tick tries again
    }
  }

  private dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  private changeSeq(): number {
    return (this.stmt('SELECT seq FROM changes WHERE id = 1').get() as { seq: number }).seq;
  }

  private checkQuota(record: NewKeyRecord, limits: CreateLimits): void {
    if (limits.maxKeys === undefined || roleOf(record.owner) !== 'user') return;
    const { n } = this.stmt(COUNT_SQL).get(record.ownerUin, record.region) as { n: number };
    if (n >= limits.maxKeys) throw new QuotaExceededError(record.ownerUin, record.region, limits.maxKeys);
  }

  private read(ownerUin: string, keyId: string): KeyRecord | undefined {
    const row = this.stmt('SELECT key_id, revision, doc FROM keys WHERE key_id = ? AND owner_uin = ?')
      .get(keyId, ownerUin) as KeyRow | undefined;
    if (row === undefined) return undefined;
    return toRecord(row, this.versionsOf([keyId]).get(keyId) ?? []);
  }

  private mustRead(ownerUin: string, keyId: string): KeyRecord {
    const current = this.read(ownerUin, keyId);
    if (current === undefined) throw new KeyNotFoundError(keyId);
    return current;
  }

  private versionsOf(keyIds: string[]): Map<string, KeyVersion[]> {
    const out = new Map<string, KeyVersion[]>();
    if (keyIds.length === 0) return out;
    const rows = this.stmt(
      `SELECT key_id, version, material, create_time FROM key_versions
       WHERE key_id IN (${keyIds.map(() => '?').join(', ')}) ORDER BY key_id, version`,
    ).all(...keyIds) as VersionRow[];
    for (const r of rows) {
      const list = out.get(r.key_id) ?? [];
      list.push({ version: r.version, material: r.material, createTime: r.create_time });
      out.set(r.key_id, list);
    }
    return out;
  }

  private insertKey(r: KeyRecord): void {
    this.stmt(
      `INSERT INTO keys (key_id, owner_uin, region, revision, doc, ${DERIVED_COLUMNS.join(', ')})
       VALUES (@key_id, @owner_uin, @region, @revision, @doc, ${DERIVED_COLUMNS.map((c) => `@${c}`).join(', ')})`,
    ).run({ key_id: r.keyId, owner_uin: r.ownerUin, region: r.region, revision: r.revision, doc: encodeDoc(r), ...derive(r) });
  }

  /** Writes `next` over the row at `expectedRevision`, with its tags and versions if `patch` replaces them. */
  private save(next: KeyRecord, expectedRevision: number, patch: KeyPatch): void {
    const result = this.stmt(
      `UPDATE keys SET revision = @revision, doc = @doc, ${DERIVED_COLUMNS.map((c) => `${c} = @${c}`).join(', ')}
       WHERE key_id = @key_id AND revision = @expected`,
    ).run({ key_id: next.keyId, expected: expectedRevision, revision: next.revision, doc: encodeDoc(next), ...derive(next) });
    if (result.changes !== 1) throw new ConflictError(next.keyId, `revision ${expectedRevision} is gone`);
    if (patch.tags !== undefined) this.writeTags(next);
    if (patch.versions !== undefined) {
      this.stmt('DELETE FROM key_versions WHERE key_id = ?').run(next.keyId);
      for (const v of patch.versions) this.insertVersion(next.keyId, v);
    }
  }

  private writeTags(r: KeyRecord): void {
    this.stmt('DELETE FROM key_tags WHERE key_id = ?').run(r.keyId);
    const insert = this.stmt('INSERT INTO key_tags (key_id, owner_uin, region, tag_key, tag_value, create_time) VALUES (?, ?, ?, ?, ?, ?)');
    for (const [k, v] of Object.entries(r.tags)) insert.run(r.keyId, r.ownerUin, r.region, k, v, r.createTime);
  }

  private insertVersion(keyId: string, v: KeyVersion): void {
    this.stmt('INSERT INTO key_versions (key_id, version, material, create_time) VALUES (?, ?, ?, ?)')
      .run(keyId, v.version, v.material, v.createTime);
  }

  private removeOrphans(): string[] {
    const findings: string[] = [];
    for (const table of ['key_versions', 'key_tags', 'usage_counts']) {
      const { changes } = this.stmt(`DELETE FROM ${table} WHERE key_id NOT IN (SELECT key_id FROM keys)`).run();
      if (changes > 0) findings.push(`${table}: removed ${changes} row(s) of keys that no longer exist`);
    }
    return findings;
  }

  /** Re-derives one key's columns and tag rows from its document; says what disagreed. */
  private rederive(row: KeyRow & Derived, versions: KeyVersion[]): string[] {
    let record: KeyRecord;
    try {
      record = toRecord(row, versions);
    } catch (e) {
      return [`key ${row.key_id}: unreadable document (${(e as Error).message}); left as is`];
    }
    const want = derive(record);
    const wrong = DERIVED_COLUMNS.filter((c) => row[c] !== want[c]);
    const findings = wrong.map((c) => `key ${row.key_id}: ${c} was ${JSON.stringify(row[c])}, re-derived ${JSON.stringify(want[c])}`);
    try {
      if (wrong.length > 0) this.save(record, record.revision, {});
      if (!this.tagsAgree(record)) {
        this.writeTags(record);
        findings.push(`key ${row.key_id}: tag rows disagreed with the record; rewritten`);
      }
    } catch (e) {
      findings.push(`key ${row.key_id}: could not repair (${(e as Error).message})`);
    }
    return findings;
  }

  private tagsAgree(r: KeyRecord): boolean {
    const rows = this.stmt('SELECT owner_uin, region, tag_key, tag_value, create_time FROM key_tags WHERE key_id = ?').all(r.keyId) as
      Array<{ owner_uin: string; region: string; tag_key: string; tag_value: string; create_time: number }>;
    const tags = Object.entries(r.tags);
    return rows.length === tags.length && rows.every((t) =>
      t.owner_uin === r.ownerUin && t.region === r.region && t.create_time === r.createTime && r.tags[t.tag_key] === t.tag_value);
  }
}

/** An alias uniqueness violation as `AliasExistsError`; anything else unchanged. */
function aliasError(e: unknown, r: NewKeyRecord): unknown {
  return sqliteCode(e) === 'SQLITE_CONSTRAINT_UNIQUE' ? new AliasExistsError(r.ownerUin, r.region, r.alias) : e;
}

function toRecord(row: KeyRow, versions: KeyVersion[]): KeyRecord {
  return { ...decodeDoc(row.doc), revision: row.revision, versions };
}

function copy(r: KeyRecord): KeyRecord {
  return {
    ...r,
    tags: { ...r.tags },
    rotation: { ...r.rotation },
    versions: r.versions.map((v) => ({ ...v, material: Buffer.from(v.material) })),
  };
}
