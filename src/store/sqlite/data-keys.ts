/**
 * Hosted data keys in SQLite: one row per data key, its document (the CMK-sealed blob inside) beside
 * the columns its uniqueness, listing and due index need. Writes run in the store's transactions.
 */
import type Database from 'better-sqlite3';
import {
  applyDataKeyPatch,
  checkDataKeyQuery,
  checkNewDataKey,
  dataKeyDeletionDue,
  decodeDataKeyDoc,
  encodeDataKeyDoc,
  selectDataKeys,
} from '../data-key-record';
import {
  ConflictError,
  DataKeyLimits,
  DataKeyNameExistsError,
  DataKeyNotFoundError,
  DataKeyPatch,
  DataKeyQuotaExceededError,
  DataKeyRecord,
  DataKeyRef,
  ListDataKeysQuery,
  ListDataKeysResult,
  NewDataKeyRecord,
  StoreInputError,
} from '../store';

interface Row {
  revision: number;
  doc: string;
}

export interface SqliteAccess {
  stmt(sql: string): Database.Statement;
  /** One IMMEDIATE transaction; `durable` commits with synchronous=FULL. */
  write<T>(durable: boolean, fn: () => T): T;
  /** The extended result code of a SQLite error. */
  code(e: unknown): string | undefined;
}

export class SqliteDataKeys {
  constructor(private readonly db: SqliteAccess) {}

  create(record: NewDataKeyRecord, limits: DataKeyLimits = {}): DataKeyRecord {
    checkNewDataKey(record);
    const stored: DataKeyRecord = { ...record, revision: 1 };
    try {
      this.db.write(true, () => {
        if (limits.maxDataKeys !== undefined && this.count(record.ownerUin, record.region) >= limits.maxDataKeys) {
          throw new DataKeyQuotaExceededError(record.region, limits.maxDataKeys);
        }
        this.db
          .stmt(
            `INSERT INTO data_keys (data_key_id, owner_uin, region, name, create_time, deletion_due, revision, doc)
             VALUES (@id, @owner, @region, @name, @createTime, @due, 1, @doc)`,
          )
          .run({ ...this.columns(stored), owner: record.ownerUin, region: record.region, createTime: record.createTime });
      });
    } catch (e) {
      throw this.uniqueError(e, record);
    }
    return stored;
  }

  count(ownerUin: string, region: string): number {
    return (this.db.stmt('SELECT count(*) AS n FROM data_keys WHERE owner_uin = ? AND region = ?').get(ownerUin, region) as { n: number }).n;
  }

  get(ownerUin: string, dataKeyId: string): DataKeyRecord | undefined {
    const row = this.db.stmt('SELECT revision, doc FROM data_keys WHERE data_key_id = ? AND owner_uin = ?').get(dataKeyId, ownerUin) as Row | undefined;
    return row === undefined ? undefined : decodeDataKeyDoc(row.doc, row.revision);
  }

  update(ownerUin: string, dataKeyId: string, expectedRevision: number, patch: DataKeyPatch): DataKeyRecord {
    let next: DataKeyRecord | undefined;
    try {
      this.db.write(false, () => {
        const current = this.get(ownerUin, dataKeyId);
        if (current === undefined) throw new DataKeyNotFoundError(dataKeyId);
        if (current.revision !== expectedRevision) throw new ConflictError(dataKeyId, `expected revision ${expectedRevision}, found ${current.revision}`);
        next = applyDataKeyPatch(current, patch);
        this.db
          .stmt('UPDATE data_keys SET name = @name, deletion_due = @due, revision = @revision, doc = @doc WHERE data_key_id = @id AND revision = @expected')
          .run({ ...this.columns(next), revision: next.revision, expected: expectedRevision });
      });
    } catch (e) {
      throw next === undefined ? e : this.uniqueError(e, next);
    }
    return next as DataKeyRecord;
  }

  delete(ownerUin: string, dataKeyId: string): boolean {
    return this.db.write(true, () => this.db.stmt('DELETE FROM data_keys WHERE data_key_id = ? AND owner_uin = ?').run(dataKeyId, ownerUin).changes > 0);
  }

  list(q: ListDataKeysQuery): ListDataKeysResult {
    checkDataKeyQuery(q);
    const rows = this.db
      .stmt('SELECT revision, doc FROM data_keys WHERE owner_uin = ? AND region = ? ORDER BY create_time, data_key_id')
      .all(q.ownerUin, q.region) as Row[];
    return selectDataKeys(
      rows.map((r) => decodeDataKeyDoc(r.doc, r.revision)),
      q,
    );
  }

  due(before: number, limit: number): DataKeyRef[] {
    if (!Number.isFinite(before) || !Number.isInteger(limit) || limit < 1) throw new StoreInputError('before must be a number and limit an integer >= 1');
    const rows = this.db
      .stmt('SELECT owner_uin, data_key_id FROM data_keys WHERE deletion_due IS NOT NULL AND deletion_due <= ? ORDER BY deletion_due, data_key_id LIMIT ?')
      .all(before, limit) as Array<{ owner_uin: string; data_key_id: string }>;
    return rows.map((r) => ({ ownerUin: r.owner_uin, dataKeyId: r.data_key_id }));
  }

  private columns(r: DataKeyRecord): { id: string; name: string; due: number | null; doc: string } {
    return { id: r.dataKeyId, name: r.name, due: dataKeyDeletionDue(r) ?? null, doc: encodeDataKeyDoc(r) };
  }

  private uniqueError(e: unknown, r: NewDataKeyRecord): unknown {
    const code = this.db.code(e);
    if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY') return new ConflictError(r.dataKeyId, 'data key id already exists');
    return code === 'SQLITE_CONSTRAINT_UNIQUE' ? new DataKeyNameExistsError(r.region, r.name) : e;
  }
}
