import { NamedError } from '../common/errors';

/** Errors of the audit trail. Messages name what was wrong and never carry event contents beyond ids. */
export abstract class AuditError extends NamedError {}

/** A malformed event or query (a bug in the caller, or a cursor that was not made here). */
export class AuditInputError extends AuditError {}

/** A LookUpEvents NextToken this audit log did not issue for this lookup (changed, made up, or another tenant's or query's). */
export class AuditTokenError extends AuditInputError {}

/** Events could not be written (store down, busy or refusing); they stay buffered and are retried. */
export class AuditWriteError extends AuditError {}

/**
 * The stored chain does not allow an append: its head anchor is behind events already stored, so
 * writing would overwrite them. Never resolved automatically; `verify()` says what is wrong.
 */
export class AuditChainError extends AuditError {}

/** The stored trail cannot be used as configured (e.g. written by a newer build). */
export class AuditConfigError extends AuditError {}
