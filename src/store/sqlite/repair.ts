/**
 * SQLite's side of repair: orphan rows (versions, tags, counts of keys that no longer exist) are
 * deleted; each key's columns and tag rows are compared with its document's index facts through the
 * shared planner (repair-plan.ts) and rewritten where they disagree. Runs inside one write transaction.
 */
import Database from 'better-sqlite3';
import { indexFacts } from '../record-facts';
import { decodeDoc } from '../record';
import { describeStep, Entries, EntryValue, planRepair } from '../repair-plan';
import type { KeyRecord, KeyVersion } from '../store';
import { columnsOf, Derived, DERIVED_COLUMNS } from './schema';

export interface KeyRow {
  key_id: string;
  revision: number;
  doc: string;
}
interface TagRow {
  owner_uin: string;
  region: string;
  tag_key: string;
  tag_value: string;
  create_time: number;
}

/** What repair needs of the store: its statements and its two ways of rewriting derived data. */
export interface RepairAccess {
  stmt(sql: string): Database.Statement;
  versionsOf(keyIds: string[]): Map<string, KeyVersion[]>;
  /** Rewrites the key's columns from its record (same revision). */
  saveColumns(record: KeyRecord): void;
  writeTags(record: KeyRecord): void;
}

export function toRecord(row: KeyRow, versions: KeyVersion[]): KeyRecord {
  return { ...decodeDoc(row.doc), revision: row.revision, versions };
}

export function removeOrphans(a: RepairAccess): string[] {
  const findings: string[] = [];
  for (const table of ['key_versions', 'key_tags', 'usage_counts']) {
    const { changes } = a.stmt(`DELETE FROM ${table} WHERE key_id NOT IN (SELECT key_id FROM keys)`).run();
    if (changes > 0) findings.push(`${table}: removed ${changes} row(s) of keys that no longer exist`);
  }
  return findings;
}

/** Every key, a page at a time: with 100,000 keys, reading them all at once held ~200 MB until the next collection. */
export function rederiveAll(a: RepairAccess): string[] {
  const findings: string[] = [];
  for (let after = '', rows: Array<KeyRow & Derived> = []; ; after = rows[rows.length - 1].key_id) {
    rows = a.stmt('SELECT * FROM keys WHERE key_id > ? ORDER BY key_id LIMIT 500').all(after) as Array<KeyRow & Derived>;
    if (rows.length === 0) break;
    const versions = a.versionsOf(rows.map((r) => r.key_id));
    for (const row of rows) findings.push(...rederive(a, row, versions.get(row.key_id) ?? []));
  }
  return findings;
}

const tagEntry = (key: string): string => `tag ${JSON.stringify(key)}`;
const tagValue = (owner: string, region: string, value: string, createTime: number): string => JSON.stringify([owner, region, value, createTime]);

/** The columns and tag rows the record implies. */
function wanted(r: KeyRecord): Entries {
  const f = indexFacts(r);
  const cols = columnsOf(f);
  const out = new Map<string, EntryValue>(DERIVED_COLUMNS.map((c) => [c, cols[c]]));
  for (const [k, v] of f.tags) out.set(tagEntry(k), tagValue(f.ownerUin, f.region, v, f.createTime));
  return out;
}

function found(a: RepairAccess, row: KeyRow & Derived): Entries {
  const out = new Map<string, EntryValue>(DERIVED_COLUMNS.map((c) => [c, row[c]]));
  const tags = a.stmt('SELECT owner_uin, region, tag_key, tag_value, create_time FROM key_tags WHERE key_id = ?').all(row.key_id) as TagRow[];
  for (const t of tags) out.set(tagEntry(t.tag_key), tagValue(t.owner_uin, t.region, t.tag_value, t.create_time));
  return out;
}

/** Re-derives one key's columns and tag rows from its document; says what disagreed. */
function rederive(a: RepairAccess, row: KeyRow & Derived, versions: KeyVersion[]): string[] {
  let record: KeyRecord;
  try {
    record = toRecord(row, versions);
  } catch (e) {
    return [`key ${row.key_id}: unreadable document (${(e as Error).message}); left as is`];
  }
  const steps = planRepair(wanted(record), found(a, row));
  const findings = steps.map((s) => describeStep(row.key_id, s));
  try {
    if (steps.some((s) => !s.entry.startsWith('tag '))) a.saveColumns(record);
    if (steps.some((s) => s.entry.startsWith('tag '))) a.writeTags(record);
  } catch (e) {
    findings.push(`key ${row.key_id}: could not repair (${(e as Error).message})`);
  }
  return findings;
}
