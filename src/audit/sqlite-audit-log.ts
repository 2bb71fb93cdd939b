/**
 * The audit trail in SQLite (better-sqlite3, WAL), normally in the key store's own database file.
 *
 *   audit_events  one row per event, seq the primary key; indexes on (time, seq) and on
 *                 (event_name | account_uin | resource, time, seq), so a filtered query walks the
 *                 matching events in result order; for LookUpEvents, on (account_uin, field, time,
 *                 seq) for each indexed attribute's field (lookup.ts), walked backwards
 *   audit_heads   the head anchor: one row (seq, hash) per group commit; the newest row is the head
 *   audit_starts  after retention: one row (seq, prev_hash, mac) per run; the newest is where the kept trail begins
 *   audit_meta    the audit schema number
 *
 * The tables are append-only: triggers refuse UPDATE and DELETE (someone with the file can drop the
 * triggers; the chain catches that), except retention's DELETE of events below the newest start
 * record. Each group commit is one IMMEDIATE transaction that compares the stored head with the one
 * the batch was linked after (the links come from the HSM, outside the transaction) and inserts the
 * events and the new head only if they agree, so handles in several processes extend one chain.
 */
import Database from 'better-sqlite3';
import { AppendOutcome, AuditBackend, ChainPage, ChainSnapshot, ScanPage, TenantScan } from './backend';
import { ChainHead, ChainStart, headOf } from './chain';
import { SealKind } from './chain-seals';
import { ChainedAuditLog, AuditLogOptions } from './chained-audit-log';
import { commitOptions } from './group-commit';
import { AuditConfigError, AuditChainError } from './errors';
import { DEFAULT_EVENT_SOURCE, STORED_FIELDS, StoredAuditEvent, TEXT_FIELDS } from './event';
import { INDEXED_FIELDS } from './lookup';
import { AuditPage, AuditQuery, Position, encodeCursor } from './query';

/** 2: start records and retention's DELETE below them. 3: event_source and the LookUpEvents indexes. */
export const AUDIT_SCHEMA_VERSION = 3;

/** The column of a field: eventId -> event_id. */
const column = (field: string): string => field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** The LookUpEvents index of a field (the tenant's time index is audit_events_account). */
const lookupIndex = (field: string): string => `audit_lookup_${column(field)}`;

/** Schema 2 files have no event_source column: added with the default every old event had. */
const ADD_EVENT_SOURCE = `ALTER TABLE audit_events ADD COLUMN event_source TEXT NOT NULL DEFAULT '${DEFAULT_EVENT_SOURCE}'`;

const appendOnly = (table: string): string =>
  ['UPDATE', 'DELETE']
    .map(
      (op) => `
CREATE TRIGGER IF NOT EXISTS ${table}_no_${op.toLowerCase()} BEFORE ${op} ON ${table}
BEGIN SELECT RAISE(ABORT, '${table} is append-only'); END;`,
    )
    .join('');

const SCHEMA = `
CREATE TABLE IF NOT EXISTS audit_events (
  seq INTEGER PRIMARY KEY,
  ${STORED_FIELDS.slice(1)
    .map((f) => `${column(f)} ${f === 'time' ? 'INTEGER' : 'TEXT'} NOT NULL${f === 'eventSource' ? ` DEFAULT '${DEFAULT_EVENT_SOURCE}'` : ''}`)
    .join(',\n  ')}
);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time, seq);
CREATE INDEX IF NOT EXISTS audit_events_name ON audit_events (event_name, time, seq);
CREATE INDEX IF NOT EXISTS audit_events_account ON audit_events (account_uin, time, seq);
CREATE INDEX IF NOT EXISTS audit_events_resource ON audit_events (resource, time, seq);
${INDEXED_FIELDS.map((f) => `CREATE INDEX IF NOT EXISTS ${lookupIndex(f)} ON audit_events (account_uin, ${column(f)}, time, seq);`).join('\n')}
CREATE TABLE IF NOT EXISTS audit_heads (seq INTEGER PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_starts (seq INTEGER PRIMARY KEY, prev_hash TEXT NOT NULL, mac TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_seals (kind TEXT NOT NULL, seq INTEGER NOT NULL, generation TEXT NOT NULL, seal TEXT NOT NULL, PRIMARY KEY (kind, seq, generation));
CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO audit_meta (name, value) VALUES ('schema', ${AUDIT_SCHEMA_VERSION});
CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
DROP TRIGGER IF EXISTS audit_events_no_delete;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN OLD.seq >= coalesce((SELECT max(seq) FROM audit_starts), 1)
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
${appendOnly('audit_heads')}
${appendOnly('audit_starts')}
${appendOnly('audit_seals')}
`;
/** Schema 1 files (no start records) become 2 at open; the only UPDATE here. */
const UPGRADE = `UPDATE audit_meta SET value = ${AUDIT_SCHEMA_VERSION} WHERE name = 'schema' AND value < ${AUDIT_SCHEMA_VERSION}`;
/** Retention removes what it archived; the trigger refuses anything at or above the newest start record. */
const RETAIN = 'DELETE FROM audit_events WHERE seq < ?';

const SELECT = `SELECT ${STORED_FIELDS.map((f) => `${column(f)} AS ${f}`).join(', ')} FROM audit_events`;
const INSERT = `INSERT INTO audit_events (${STORED_FIELDS.map(column).join(', ')}) VALUES (${STORED_FIELDS.map((f) => `@${f}`).join(', ')})`;
const HEAD = 'SELECT seq, hash FROM audit_heads ORDER BY seq DESC LIMIT 1';
const START = 'SELECT seq, prev_hash AS prevHash, mac FROM audit_starts ORDER BY seq DESC LIMIT 1';

type SqlParam = string | number;

/** The index a query walks: the most selective filter given (resource, account, action), else time. */
function indexFor(q: AuditQuery): string {
  if (q.resource !== undefined) return 'audit_events_resource';
  if (q.accountUin !== undefined) return 'audit_events_account';
  if (q.eventName !== undefined) return 'audit_events_name';
  return 'audit_events_time';
}

function querySql(q: AuditQuery, after: Position | undefined): { sql: string; params: SqlParam[] } {
  const where: string[] = [];
  const params: SqlParam[] = [];
  const add = (clause: string, ...values: SqlParam[]): void => {
    where.push(clause);
    params.push(...values);
  };
  for (const f of ['resource', 'accountUin', 'eventName'] as const) {
    const v = q[f];
    if (v !== undefined) add(`${column(f)} = ?`, v);
  }
  if (q.from !== undefined) add('time >= ?', q.from);
  if (q.to !== undefined) add('time <= ?', q.to);
  if (after !== undefined) add('(time, seq) > (?, ?)', after.time, after.seq);
  if (q.keyword !== undefined && q.keyword !== '') {
    add(`(${TEXT_FIELDS.map((f) => `instr(${column(f)}, ?) > 0`).join(' OR ')})`, ...TEXT_FIELDS.map(() => q.keyword as string));
  }
  const clause = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
  return { sql: `${SELECT} INDEXED BY ${indexFor(q)} ${clause} ORDER BY time, seq LIMIT ?`, params: [...params, q.limit + 1] };
}

/**
 * A lookup's scan: the tenant's (field, time, seq) index, or its (time, seq) index, walked backwards
 * from the token's position (or the range's end) down to the range's start.
 */
function scanSql(scan: TenantScan): { sql: string; params: SqlParam[] } {
  const where = ['account_uin = ?'];
  const params: SqlParam[] = [scan.tenant];
  if (scan.index !== undefined) {
    where.push(`${column(scan.index.field)} = ?`);
    params.push(scan.index.value);
  }
  where.push('time >= ?');
  params.push(scan.from);
  const { before } = scan;
  if (before !== undefined && before.time <= scan.to) {
    where.push('(time, seq) < (?, ?)');
    params.push(before.time, before.seq);
  } else {
    where.push('time <= ?');
    params.push(scan.to);
  }
  const index = scan.index === undefined ? 'audit_events_account' : lookupIndex(scan.index.field);
  return { sql: `${SELECT} INDEXED BY ${index} WHERE ${where.join(' AND ')} ORDER BY time DESC, seq DESC LIMIT ?`, params: [...params, scan.limit] };
}

/** The extended result code of a SQLite error (by name: jest loads several copies of the addon's classes). */
function sqliteCode(e: unknown): string | undefined {
  const { name, code } = (typeof e === 'object' && e !== null ? e : {}) as { name?: unknown; code?: unknown };
  return name === 'SqliteError' && typeof code === 'string' ? code : undefined;
}

export interface SqliteAuditOptions extends AuditLogOptions {
  /** How long a group commit waits for another process's write lock before it fails and is retried; default 250 ms. */
  busyTimeoutMs?: number;
}

class SqliteAuditBackend implements AuditBackend {
  readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();

  constructor(file: string, options: SqliteAuditOptions) {
    this.db = new Database(file);
    try {
      this.init(options.busyTimeoutMs ?? 250);
    } catch (e) {
      this.db.close();
      throw e;
    }
  }

  async appendAfter(expected: ChainHead | undefined, stored: readonly StoredAuditEvent[]): Promise<AppendOutcome> {
    try {
      return this.db
        .transaction((): AppendOutcome => {
          const head = this.readHead();
          if (head?.seq !== expected?.seq || head?.hash !== expected?.hash) return { kind: 'moved', head };
          const insert = this.stmt(INSERT);
          for (const e of stored) insert.run(e);
          this.stmt('INSERT INTO audit_heads (seq, hash) VALUES (@seq, @hash)').run(headOf(stored));
          return { kind: 'written' };
        })
        .immediate();
    } catch (e) {
      if (sqliteCode(e) !== 'SQLITE_CONSTRAINT_PRIMARYKEY') throw e;
      throw new AuditChainError('audit events are stored beyond the head anchor; refusing to overwrite them (run verify)', { cause: e });
    }
  }

  async query(q: AuditQuery, after: Position | undefined): Promise<AuditPage> {
    const { sql, params } = querySql(q, after);
    const rows = this.stmt(sql).all(...params) as StoredAuditEvent[];
    if (rows.length <= q.limit) return { events: rows };
    const events = rows.slice(0, q.limit);
    return { events, nextCursor: encodeCursor(events[events.length - 1]) };
  }

  async scanTenant(scan: TenantScan): Promise<ScanPage> {
    const { sql, params } = scanSql(scan);
    const events = this.stmt(sql).all(...params) as StoredAuditEvent[];
    const last = events[events.length - 1];
    return { events, last: last && { time: last.time, seq: last.seq }, end: events.length < scan.limit };
  }

  async head(): Promise<ChainHead | undefined> {
    return this.readHead();
  }

  async snapshot(): Promise<ChainSnapshot> {
    return this.db.transaction((): ChainSnapshot => {
      const head = this.readHead();
      const start = this.stmt(START).get() as ChainStart | undefined;
      const { n, top } = this.stmt('SELECT count(*) AS n, coalesce(max(seq), 0) AS top FROM audit_events').get() as { n: number; top: number };
      return { head, start, upTo: Math.max(top, head?.seq ?? 0), stored: n };
    })();
  }

  async removeBefore(start: ChainStart, removed: readonly StoredAuditEvent[]): Promise<void> {
    this.db
      .transaction(() => {
        const current = (this.stmt(START).get() as ChainStart | undefined)?.seq ?? 1;
        const head = this.readHead()?.seq ?? 0;
        if (start.seq <= current || start.seq > head || removed.some((e) => e.seq < current || e.seq >= start.seq)) {
          throw new AuditChainError(`retention refused: a start at ${start.seq} is not within ${current + 1}..${head}`);
        }
        this.stmt('INSERT INTO audit_starts (seq, prev_hash, mac) VALUES (@seq, @prevHash, @mac)').run(start);
        this.stmt(RETAIN).run(start.seq);
      })
      .immediate();
  }

  async readSeals(kind: SealKind, from: number, to: number): Promise<Map<number, string>> {
    // append-only: an item's newest seal (a later rotation's) is the one read
    const rows = this.stmt('SELECT seq, seal FROM audit_seals WHERE kind = ? AND seq >= ? AND seq <= ? ORDER BY rowid').all(kind, from, to) as Array<{
      seq: number;
      seal: string;
    }>;
    return new Map(rows.map((r) => [r.seq, r.seal]));
  }

  async writeSeals(kind: SealKind, seals: ReadonlyMap<number, string>): Promise<void> {
    const put = this.stmt('INSERT OR IGNORE INTO audit_seals (kind, seq, generation, seal) VALUES (?, ?, ?, ?)');
    this.db.transaction(() => {
      for (const [seq, seal] of seals) put.run(kind, seq, seal.slice(0, seal.indexOf(':')), seal);
    })();
  }

  async readChain(after: number, upTo: number, limit: number): Promise<ChainPage> {
    const rows = this.stmt(`${SELECT} WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?`).all(after, upTo, limit) as StoredAuditEvent[];
    const last = rows.length < limit ? upTo : rows[rows.length - 1].seq;
    return { slots: rows.map((event) => ({ seq: event.seq, event })), last };
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  /** The query plan of a query or a lookup's scan (tests check that filters are driven by their index). */
  explain(q: AuditQuery | TenantScan): string[] {
    const { sql, params } = 'tenant' in q ? scanSql(q) : querySql(q, undefined);
    return (this.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as Array<{ detail: string }>).map((r) => r.detail);
  }

  private init(busyTimeoutMs: number): void {
    this.db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db
      .transaction(() => {
        if (this.lacksEventSource()) this.db.exec(ADD_EVENT_SOURCE);
        this.db.exec(SCHEMA);
        this.db.exec(UPGRADE);
        const { value } = this.db.prepare("SELECT value FROM audit_meta WHERE name = 'schema'").get() as { value: number };
        if (value > AUDIT_SCHEMA_VERSION) {
          throw new AuditConfigError(`audit schema ${value} is newer than this build's (${AUDIT_SCHEMA_VERSION}); upgrade the KMS`);
        }
      })
      .immediate();
  }

  /** An audit_events table of schema 1 or 2 (none at all: SCHEMA creates it whole). */
  private lacksEventSource(): boolean {
    const columns = this.db.prepare("SELECT name FROM pragma_table_info('audit_events')").all() as Array<{ name: string }>;
    return columns.length > 0 && !columns.some((c) => c.name === 'event_source');
  }

  private readHead(): ChainHead | undefined {
    return this.stmt(HEAD).get() as ChainHead | undefined;
  }

  private stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (s === undefined) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }
}

/** The audit trail in a SQLite file (typically the key store's `kms.db`). */
export class SqliteAuditLog extends ChainedAuditLog {
  private readonly sqlite: SqliteAuditBackend;

  constructor(file: string, options: SqliteAuditOptions = {}) {
    commitOptions(options);
    const backend = new SqliteAuditBackend(file, options);
    super(backend, options);
    this.sqlite = backend;
  }

  /** The query plan of `q` or of a lookup's scan (for tests and diagnosis). */
  explain(q: AuditQuery | TenantScan): string[] {
    return this.sqlite.explain(q);
  }
}
