/**
 * The SQLite layout: tables, indexes, the schema number and the migrations, and how a record's
 * index facts map onto the columns beside its document. `PRAGMA user_version` holds the schema
 * number; a file with a newer number is refused.
 */
import Database from 'better-sqlite3';
import { IndexFacts, QUOTA_RULE } from '../record-facts';
import { StoreConfigError } from '../errors';
import type { DueKind } from '../store';

/** Bumped with every change of the layout below; a file with a newer number is refused. */
export const SCHEMA_VERSION = 3;

/**
 * What turns schema n-1 into n before SCHEMA runs. 2: the list indexes carry every filter column
 * after (create_time, key_id), so a filtered count or a deep page is read from the index alone
 * (with 100,000 keys, ListKeyDetail went from 58 ms to a few: docs/benchmarks.md). 3: the
 * data_keys table (hosted data keys), which SCHEMA creates.
 */
const MIGRATIONS: Record<number, string> = {
  2: ['keys_list', 'keys_state', 'keys_origin', 'keys_usage', 'keys_cluster', 'keys_role'].map((i) => `DROP INDEX IF EXISTS ${i};`).join('\n'),
};

/** The quota rule (record-facts.ts) as SQL over the derived columns. */
const QUOTA_WHERE = `role = '${QUOTA_RULE.role}' AND key_state <> '${QUOTA_RULE.notState}'`;

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
CREATE INDEX IF NOT EXISTS keys_quota ON keys (owner_uin, region) WHERE ${QUOTA_WHERE};
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
CREATE TABLE IF NOT EXISTS data_keys (
  data_key_id  TEXT PRIMARY KEY,
  owner_uin    TEXT NOT NULL,
  region       TEXT NOT NULL,
  name         TEXT NOT NULL,
  create_time  INTEGER NOT NULL,
  deletion_due INTEGER,
  revision     INTEGER NOT NULL,
  doc          TEXT NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS data_keys_name ON data_keys (owner_uin, region, name);
CREATE INDEX IF NOT EXISTS data_keys_list ON data_keys (owner_uin, region, create_time, data_key_id);
CREATE INDEX IF NOT EXISTS data_keys_due ON data_keys (deletion_due, data_key_id) WHERE deletion_due IS NOT NULL;
CREATE TABLE IF NOT EXISTS changes (
  id  INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO changes (id, seq) VALUES (1, 0);
`;

/** The quota's count of a tenant's keys in a region (through its partial index). */
export const QUOTA_COUNT_SQL = `SELECT count(*) AS n FROM keys INDEXED BY keys_quota WHERE owner_uin = ? AND region = ? AND ${QUOTA_WHERE}`;

/** The indexed columns beside a record's document: its index facts, by column. */
export interface Derived {
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
export const DERIVED_COLUMNS = [
  'alias',
  'key_state',
  'origin',
  'key_usage',
  'hsm_cluster_id',
  'role',
  'create_time',
  'rotation_due',
  'deletion_due',
  'expiry_due',
] as const;

export const DUE_COLUMN: Record<DueKind, 'rotation_due' | 'deletion_due' | 'expiry_due'> = {
  rotation: 'rotation_due',
  deletion: 'deletion_due',
  expiry: 'expiry_due',
};

export function columnsOf(f: IndexFacts): Derived {
  return {
    alias: f.alias,
    key_state: f.keyState,
    origin: f.origin,
    key_usage: f.keyUsage,
    hsm_cluster_id: f.hsmClusterId,
    role: f.role,
    create_time: f.createTime,
    rotation_due: f.due.rotation ?? null,
    deletion_due: f.due.deletion ?? null,
    expiry_due: f.due.expiry ?? null,
  };
}

/** Sets the connection up and brings the file to SCHEMA_VERSION (refusing a newer or unnumbered one). */
export function openSchema(db: Database.Database, options: { busyTimeoutMs?: number }): void {
  db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw new StoreConfigError(`database schema ${version} is newer than this build's (${SCHEMA_VERSION}); upgrade the KMS`);
    }
    const keysTable = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'keys'").get();
    if (version === 0 && keysTable !== undefined) {
      throw new StoreConfigError('database has a pre-release layout without a schema number; it cannot be opened');
    }
    for (let v = Math.max(version, 1) + 1; keysTable !== undefined && v <= SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v] ?? '');
    db.exec(SCHEMA);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}
