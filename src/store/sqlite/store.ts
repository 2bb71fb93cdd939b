/**
 * Embedded backend: better-sqlite3 in WAL mode. Every write is one IMMEDIATE transaction, so several
 * handles and processes may share the file. Writes that create or destroy key material (createKey,
 * addVersion, deleteKey, updateKey with versions) commit with `synchronous=FULL`; other writes use
 * NORMAL (durable in WAL except for the last commits on power loss, never corrupt).
 *
 * The record's JSON document is the truth; the columns beside it and the tag rows are its index
 * facts (record-facts.ts) mapped onto columns (schema.ts), written in the same transaction and
 * re-derived by `repair()` (repair.ts) if they ever disagree. Listing, counting and due-key queries
 * go through those indexes (list-query.ts); change notification is changes.ts.
 */
import Database from 'better-sqlite3';
import {
  AliasExistsError,
  ClusterKeysPage,
  ClusterState,
  ClusterStateConflictError,
  ConflictError,
  CreateLimits,
  DataKeyLimits,
  DataKeyPatch,
  DataKeyRecord,
  DataKeyRef,
  DueKind,
  KeyChange,
  KeyNotFoundError,
  KeyPatch,
  KeyRecord,
  KeyRef,
  KeyVersion,
  ListDataKeysQuery,
  ListDataKeysResult,
  ListKeysQuery,
  ListKeysResult,
  MetadataStore,
  NewDataKeyRecord,
  NewKeyRecord,
  QuotaExceededError,
  StoreInputError,
  Tombstone,
} from '../store';
import {
  applyPatch,
  checkClusterState,
  checkClusterWalk,
  checkDueQuery,
  checkLease,
  checkNewRecord,
  checkQuery,
  emptyStateCounts,
  encodeDoc,
  parseUsageBatch,
  tombstoneOf,
  withVersion,
} from '../record';
import { indexFacts, quotaLimitFor } from '../record-facts';
import type { KeyState } from '../../common/key-states';
import { ChangeFeed } from './changes';
import { SqliteDataKeys } from './data-keys';
import { dueSql, ExplainTarget, listSql, SqlParam } from './list-query';
import { KeyRow, RepairAccess, rederiveAll, removeOrphans, toRecord } from './repair';
import { columnsOf, DERIVED_COLUMNS, openSchema, QUOTA_COUNT_SQL } from './schema';

export { SCHEMA_VERSION } from './schema';
export type { ExplainTarget } from './list-query';

interface VersionRow {
  key_id: string;
  version: number;
  material: Buffer;
  create_time: number;
}

/**
 * The extended result code of a SQLite error. Not `instanceof Database.SqliteError`: the native addon
 * keeps the error class of the first copy of better-sqlite3 loaded in the process, and a second copy
 * (jest loads one per test file; bundlers may too) has a different class.
 */
function sqliteCode(e: unknown): string | undefined {
  const { name, code } = (typeof e === 'object' && e !== null ? e : {}) as { name?: unknown; code?: unknown };
  return name === 'SqliteError' && typeof code === 'string' ? code : undefined;
}

export interface SqliteStoreOptions {
  /** SQLite busy timeout when another process holds the write lock; default 5000 ms. */
  busyTimeoutMs?: number;
}

export class SqliteMetadataStore implements MetadataStore {
  private readonly db: Database.Database;
  private readonly changes: ChangeFeed;
  private readonly statements = new Map<string, Database.Statement>();
  private readonly dataKeys = new SqliteDataKeys({ stmt: (sql) => this.stmt(sql), write: (durable, fn) => this.write(durable, fn), code: sqliteCode });

  constructor(file: string, options: SqliteStoreOptions = {}) {
    this.db = new Database(file);
    try {
      openSchema(this.db, options);
      this.changes = new ChangeFeed(this.db, file);
    } catch (e) {
      this.db.close();
      throw e;
    }
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
    return (this.stmt(QUOTA_COUNT_SQL).get(ownerUin, region) as { n: number }).n;
  }

  async countByState(): Promise<Record<KeyState, number>> {
    const counts = emptyStateCounts();
    for (const row of this.stmt('SELECT key_state AS s, count(*) AS n FROM keys GROUP BY key_state').all() as Array<{ s: KeyState; n: number }>)
      counts[row.s] = row.n;
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
      this.stmt('INSERT OR REPLACE INTO tombstones (key_id, owner_uin, doc) VALUES (?, ?, ?)').run(
        keyId,
        ownerUin,
        JSON.stringify(tombstoneOf(current, deletedAt)),
      );
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

  async createDataKey(record: NewDataKeyRecord, limits?: DataKeyLimits): Promise<DataKeyRecord> {
    return this.dataKeys.create(record, limits);
  }

  async countDataKeys(ownerUin: string, region: string): Promise<number> {
    return this.dataKeys.count(ownerUin, region);
  }

  async getDataKey(ownerUin: string, dataKeyId: string): Promise<DataKeyRecord | undefined> {
    return this.dataKeys.get(ownerUin, dataKeyId);
  }

  async updateDataKey(ownerUin: string, dataKeyId: string, expectedRevision: number, patch: DataKeyPatch): Promise<DataKeyRecord> {
    return this.dataKeys.update(ownerUin, dataKeyId, expectedRevision, patch);
  }

  async deleteDataKey(ownerUin: string, dataKeyId: string): Promise<boolean> {
    return this.dataKeys.delete(ownerUin, dataKeyId);
  }

  async listDataKeys(query: ListDataKeysQuery): Promise<ListDataKeysResult> {
    return this.dataKeys.list(query);
  }

  async dueDataKeys(before: number, limit: number): Promise<DataKeyRef[]> {
    return this.dataKeys.due(before, limit);
  }

  watch(listener: (change: KeyChange) => void): () => void {
    return this.changes.watch(listener);
  }

  async acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    checkLease(name, holder, ttlMs);
    return this.write(false, () => {
      const now = Date.now();
      const row = this.stmt('SELECT holder, expires_ms FROM leases WHERE name = ?').get(name) as { holder: string; expires_ms: number } | undefined;
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
    const rows = this.stmt('SELECT owner_uin, key_id FROM keys WHERE hsm_cluster_id = ? AND key_id > ? ORDER BY key_id LIMIT ?').all(
      clusterId,
      cursor,
      limit,
    ) as Array<{ owner_uin: string; key_id: string }>;
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
      this.stmt(
        'INSERT INTO cluster_states (cluster_id, revision, doc) VALUES (?, ?, ?) ON CONFLICT (cluster_id) DO UPDATE SET revision = excluded.revision, doc = excluded.doc',
      ).run(clusterId, found + 1, doc);
      return found + 1;
    });
  }

  async repair(): Promise<string[]> {
    const findings: string[] = [];
    for (const row of this.db.pragma('quick_check') as Array<{ quick_check: string }>) {
      if (row.quick_check !== 'ok') findings.push(`quick_check: ${row.quick_check}`);
    }
    const access: RepairAccess = {
      stmt: (sql) => this.stmt(sql),
      versionsOf: (ids) => this.versionsOf(ids),
      saveColumns: (r) => this.save(r, r.revision, {}),
      writeTags: (r) => this.writeTags(r),
    };
    this.write(false, () => findings.push(...removeOrphans(access), ...rederiveAll(access)));
    return findings;
  }

  async ping(): Promise<void> {
    this.stmt('SELECT 1').get();
  }

  async close(): Promise<void> {
    if (!this.db.open) return;
    this.changes.close();
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
      [sql, params] = [QUOTA_COUNT_SQL, [target.count.ownerUin, target.count.region]];
    } else {
      [sql, params] = [dueSql(target.due), [0, 10]];
    }
    const rows = this.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as Array<{ detail: string }>;
    return rows.map((r) => r.detail);
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
      if (r !== false) seq = this.changes.count();
      return r;
    });
    if (seq !== undefined) this.changes.committed(keyId, seq);
    return result;
  }

  private checkQuota(record: NewKeyRecord, limits: CreateLimits): void {
    const limit = quotaLimitFor(record, limits.maxKeys);
    if (limit === undefined) return;
    const { n } = this.stmt(QUOTA_COUNT_SQL).get(record.ownerUin, record.region) as { n: number };
    if (n >= limit) throw new QuotaExceededError(record.ownerUin, record.region, limit);
  }

  private read(ownerUin: string, keyId: string): KeyRecord | undefined {
    const row = this.stmt('SELECT key_id, revision, doc FROM keys WHERE key_id = ? AND owner_uin = ?').get(keyId, ownerUin) as KeyRow | undefined;
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
    ).run({ key_id: r.keyId, owner_uin: r.ownerUin, region: r.region, revision: r.revision, doc: encodeDoc(r), ...columnsOf(indexFacts(r)) });
  }

  /** Writes `next` over the row at `expectedRevision`, with its tags and versions if `patch` replaces them. */
  private save(next: KeyRecord, expectedRevision: number, patch: KeyPatch): void {
    const result = this.stmt(
      `UPDATE keys SET revision = @revision, doc = @doc, ${DERIVED_COLUMNS.map((c) => `${c} = @${c}`).join(', ')}
       WHERE key_id = @key_id AND revision = @expected`,
    ).run({ key_id: next.keyId, expected: expectedRevision, revision: next.revision, doc: encodeDoc(next), ...columnsOf(indexFacts(next)) });
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
    this.stmt('INSERT INTO key_versions (key_id, version, material, create_time) VALUES (?, ?, ?, ?)').run(keyId, v.version, v.material, v.createTime);
  }
}

/** An alias uniqueness violation as `AliasExistsError`; anything else unchanged. */
function aliasError(e: unknown, r: NewKeyRecord): unknown {
  return sqliteCode(e) === 'SQLITE_CONSTRAINT_UNIQUE' ? new AliasExistsError(r.ownerUin, r.region, r.alias) : e;
}

function copy(r: KeyRecord): KeyRecord {
  return {
    ...r,
    tags: { ...r.tags },
    rotation: { ...r.rotation },
    versions: r.versions.map((v) => ({ ...v, material: Buffer.from(v.material) })),
  };
}
