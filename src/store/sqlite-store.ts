/**
 * Embedded backend: better-sqlite3 in WAL mode. Writes that create or destroy key material
 * (createKey, addVersion, deleteKey) commit with `synchronous=FULL`; metadata updates use NORMAL
 * (durable in WAL except for the last commits on power loss, never corrupt). Every write is one
 * IMMEDIATE transaction, so several processes may share the file.
 */
import Database from 'better-sqlite3';
import {
  AliasExistsError, ConflictError, KeyNotFoundError, KeyPatch, KeyRecord, KeyVersion, ListKeysQuery, ListKeysResult,
  MetadataStore, NewKeyRecord, applyPatch, checkNewRecord, checkQuery, checkVersion,
} from './store';

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
  create_time    INTEGER NOT NULL,
  revision       INTEGER NOT NULL,
  doc            TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS keys_alias ON keys (owner_uin, region, alias);
CREATE INDEX IF NOT EXISTS keys_list ON keys (owner_uin, region, create_time, key_id);
CREATE TABLE IF NOT EXISTS key_tags (
  key_id    TEXT NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
  tag_key   TEXT NOT NULL,
  tag_value TEXT NOT NULL,
  PRIMARY KEY (key_id, tag_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS key_versions (
  key_id      TEXT NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
  version     INTEGER NOT NULL,
  material    BLOB NOT NULL,
  create_time INTEGER NOT NULL,
  PRIMARY KEY (key_id, version)
) WITHOUT ROWID;
`;

interface KeyRow { key_id: string; revision: number; doc: string }
interface VersionRow { key_id: string; version: number; material: Buffer; create_time: number }
type Doc = Omit<NewKeyRecord, 'versions'>;
type SqlParam = string | number;

function sqliteCode(e: unknown): string | undefined {
  return e instanceof Database.SqliteError ? e.code : undefined;
}

export interface SqliteStoreOptions {
  /** SQLite busy timeout when another process holds the write lock; default 5000 ms. */
  busyTimeoutMs?: number;
}

export class SqliteMetadataStore implements MetadataStore {
  private readonly db: Database.Database;

  constructor(path: string, options: SqliteStoreOptions = {}) {
    this.db = new Database(path);
    this.db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.exec(SCHEMA);
  }

  async createKey(record: NewKeyRecord): Promise<KeyRecord> {
    checkNewRecord(record);
    const stored: KeyRecord = { ...record, revision: 1 };
    try {
      this.write(true, () => {
        this.insertKey(stored);
        this.writeTags(stored);
        for (const v of record.versions) this.insertVersion(record.keyId, v);
      });
    } catch (e) {
      if (sqliteCode(e) === 'SQLITE_CONSTRAINT_UNIQUE') throw new AliasExistsError(record.ownerUin, record.region, record.alias);
      if (sqliteCode(e) === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new ConflictError(record.keyId, 'key id already exists');
      throw e;
    }
    return copy(stored);
  }

  async getKey(ownerUin: string, keyId: string): Promise<KeyRecord | undefined> {
    return this.db.transaction(() => this.read(ownerUin, keyId))();
  }

  async updateKey(ownerUin: string, keyId: string, expectedRevision: number, patch: KeyPatch): Promise<KeyRecord> {
    let next: KeyRecord | undefined;
    try {
      this.write(false, () => {
        const current = this.read(ownerUin, keyId);
        if (current === undefined) throw new KeyNotFoundError(keyId);
        if (current.revision !== expectedRevision) {
          throw new ConflictError(keyId, `expected revision ${expectedRevision}, found ${current.revision}`);
        }
        next = applyPatch(current, patch);
        this.replaceKey(next, expectedRevision);
        if (patch.tags !== undefined) this.writeTags(next);
      });
    } catch (e) {
      if (sqliteCode(e) === 'SQLITE_CONSTRAINT_UNIQUE' && patch.alias !== undefined) {
        throw new AliasExistsError(ownerUin, next?.region ?? '', patch.alias);
      }
      throw e;
    }
    return copy(next as KeyRecord);
  }

  async addVersion(ownerUin: string, keyId: string, version: KeyVersion): Promise<KeyRecord> {
    checkVersion(version);
    let next: KeyRecord | undefined;
    try {
      this.write(true, () => {
        const current = this.read(ownerUin, keyId);
        if (current === undefined) throw new KeyNotFoundError(keyId);
        this.insertVersion(keyId, version);
        next = { ...current, revision: current.revision + 1, versions: [...current.versions, version] };
        this.replaceKey(next, current.revision);
      });
    } catch (e) {
      if (sqliteCode(e) === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new ConflictError(keyId, `version ${version.version} already exists`);
      throw e;
    }
    return copy(next as KeyRecord);
  }

  async deleteKey(ownerUin: string, keyId: string): Promise<boolean> {
    return this.write(true, () => {
      const found = this.db.prepare('SELECT 1 FROM keys WHERE key_id = ? AND owner_uin = ?').get(keyId, ownerUin);
      if (found === undefined) return false;
      // Versions and tags go by ON DELETE CASCADE; deleted explicitly too, so nothing depends on the pragma.
      this.db.prepare('DELETE FROM key_versions WHERE key_id = ?').run(keyId);
      this.db.prepare('DELETE FROM key_tags WHERE key_id = ?').run(keyId);
      this.db.prepare('DELETE FROM keys WHERE key_id = ?').run(keyId);
      return true;
    });
  }

  async listKeys(q: ListKeysQuery): Promise<ListKeysResult> {
    checkQuery(q);
    const where = ['owner_uin = ?', 'region = ?'];
    const params: SqlParam[] = [q.ownerUin, q.region];
    const eq = (column: string, value: string | undefined): void => {
      if (value !== undefined) { where.push(`${column} = ?`); params.push(value); }
    };
    eq('key_state', q.keyState);
    eq('origin', q.origin);
    eq('key_usage', q.keyUsage);
    eq('hsm_cluster_id', q.hsmClusterId);
    if (q.searchAlias !== undefined && q.searchAlias !== '') {
      where.push('(instr(alias, ?) > 0 OR instr(key_id, ?) > 0)');
      params.push(q.searchAlias, q.searchAlias);
    }
    for (const f of q.tagFilters ?? []) {
      const values = f.values ?? [];
      const inValues = values.length > 0 ? ` AND t.tag_value IN (${values.map(() => '?').join(', ')})` : '';
      where.push(`EXISTS (SELECT 1 FROM key_tags t WHERE t.key_id = keys.key_id AND t.tag_key = ?${inValues})`);
      params.push(f.key, ...values);
    }
    const dir = q.order === 'desc' ? 'DESC' : 'ASC';
    const clause = where.join(' AND ');
    return this.db.transaction((): ListKeysResult => {
      const { n } = this.db.prepare(`SELECT count(*) AS n FROM keys WHERE ${clause}`).get(...params) as { n: number };
      const rows = this.db.prepare(
        `SELECT key_id, revision, doc FROM keys WHERE ${clause} ORDER BY create_time ${dir}, key_id ${dir} LIMIT ? OFFSET ?`,
      ).all(...params, q.limit, q.offset) as KeyRow[];
      const versions = this.versionsOf(rows.map((r) => r.key_id));
      return { total: n, keys: rows.map((r) => toRecord(r, versions.get(r.key_id) ?? [])) };
    })();
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  /** The query plan of a list query; for tests that check indexes are used. */
  explainList(ownerUin: string, region: string): string[] {
    const rows = this.db.prepare(
      'EXPLAIN QUERY PLAN SELECT key_id FROM keys WHERE owner_uin = ? AND region = ? ORDER BY create_time, key_id LIMIT 10',
    ).all(ownerUin, region) as Array<{ detail: string }>;
    return rows.map((r) => r.detail);
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

  private read(ownerUin: string, keyId: string): KeyRecord | undefined {
    const row = this.db.prepare('SELECT key_id, revision, doc FROM keys WHERE key_id = ? AND owner_uin = ?')
      .get(keyId, ownerUin) as KeyRow | undefined;
    if (row === undefined) return undefined;
    return toRecord(row, this.versionsOf([keyId]).get(keyId) ?? []);
  }

  private versionsOf(keyIds: string[]): Map<string, KeyVersion[]> {
    const out = new Map<string, KeyVersion[]>();
    if (keyIds.length === 0) return out;
    const rows = this.db.prepare(
      `SELECT key_id, version, material, create_time FROM key_versions WHERE key_id IN (${keyIds.map(() => '?').join(', ')}) ORDER BY key_id, version`,
    ).all(...keyIds) as VersionRow[];
    for (const r of rows) {
      const list = out.get(r.key_id) ?? [];
      list.push({ version: r.version, material: r.material, createTime: r.create_time });
      out.set(r.key_id, list);
    }
    return out;
  }

  private insertKey(r: KeyRecord): void {
    this.db.prepare(
      `INSERT INTO keys (key_id, owner_uin, region, alias, key_state, origin, key_usage, hsm_cluster_id, create_time, revision, doc)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(r.keyId, r.ownerUin, r.region, r.alias, r.keyState, r.origin, r.keyUsage, r.hsmClusterId, r.createTime, r.revision, toDoc(r));
  }

  private replaceKey(r: KeyRecord, expectedRevision: number): void {
    const result = this.db.prepare(
      'UPDATE keys SET alias = ?, key_state = ?, revision = ?, doc = ? WHERE key_id = ? AND revision = ?',
    ).run(r.alias, r.keyState, r.revision, toDoc(r), r.keyId, expectedRevision);
    if (result.changes !== 1) throw new ConflictError(r.keyId, `revision ${expectedRevision} is gone`);
  }

  private writeTags(r: KeyRecord): void {
    this.db.prepare('DELETE FROM key_tags WHERE key_id = ?').run(r.keyId);
    const insert = this.db.prepare('INSERT INTO key_tags (key_id, tag_key, tag_value) VALUES (?, ?, ?)');
    for (const [k, v] of Object.entries(r.tags)) insert.run(r.keyId, k, v);
  }

  private insertVersion(keyId: string, v: KeyVersion): void {
    this.db.prepare('INSERT INTO key_versions (key_id, version, material, create_time) VALUES (?, ?, ?, ?)')
      .run(keyId, v.version, v.material, v.createTime);
  }
}

function toDoc(r: KeyRecord): string {
  const { versions: _versions, revision: _revision, ...doc } = r;
  return JSON.stringify(doc);
}

function toRecord(row: KeyRow, versions: KeyVersion[]): KeyRecord {
  const doc = JSON.parse(row.doc) as Doc;
  return { ...doc, revision: row.revision, versions };
}

function copy(r: KeyRecord): KeyRecord {
  return {
    ...r,
    tags: { ...r.tags },
    rotation: { ...r.rotation },
    versions: r.versions.map((v) => ({ ...v, material: Buffer.from(v.material) })),
  };
}
