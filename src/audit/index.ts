/** The audit trail: append-only, hash-chained, in the key store's SQLite file or Redis. See docs/audit.md. */
export type { AuditCounters, AuditLog, RetainedRange, VerifyOptions } from './audit-log';
export type { LinkMac } from './link-mac';
export type { AuditEvent, NewAuditEvent, StoredAuditEvent, ChainLink } from './event';
export {
  DEFAULT_EVENT_SOURCE,
  EVENT_FIELDS,
  STORED_FIELDS,
  TEXT_FIELDS,
  MAX_FIELD_CHARS,
  MAX_TIME,
  canonical,
  parseStored,
  storedJson,
  toAuditEvent,
} from './event';
export type { ChainHead, ChainSlot, ChainStart, LinkCheck, VerifyProblem, VerifyResult } from './chain';
export { ChainVerifier, GENESIS, MAX_PROBLEMS, checkLinks, hashEvent, headOf, linkBatch, macEvent } from './chain';
export { EXPORT_KIND, parseExport } from './export-file';
export type { ExportHeader } from './export-file';
export type { AuditFilter, AuditPage, AuditQuery } from './query';
export { MAX_QUERY_LIMIT, matches } from './query';
export type { GroupCommitOptions } from './group-commit';
export type { AuditLogOptions } from './chained-audit-log';
export { ChainedAuditLog, EPOCH_EVENT } from './chained-audit-log';
export type { LookupAttribute, LookupKey, LookupRequest, LookupResult } from './lookup';
export { INDEXED_ATTRIBUTES, LOOKUP_KEYS, MAX_LOOKUP_RESULTS, isReadOnlyEvent, resourceTypeOf } from './lookup';
export { AuditChainError, AuditConfigError, AuditError, AuditInputError, AuditTokenError, AuditWriteError } from './errors';
export { AUDIT_SCHEMA_VERSION, SqliteAuditLog } from './sqlite-audit-log';
export type { SqliteAuditOptions } from './sqlite-audit-log';
export { RedisAuditLog } from './redis-audit-log';
export type { RedisAuditOptions } from './redis-audit-log';
