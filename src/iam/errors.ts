import { NamedError } from '../common/errors';

/**
 * Errors of the identity layer. Each class means one thing, so the API layer can map each to one
 * Tencent error code. Messages name accounts, SecretIds and policy names, never a SecretKey.
 */
export abstract class IamError extends NamedError {}

/** No such tenant, sub-account, API key or policy attachment. */
export class IamNotFoundError extends IamError {}

/** A tenant name, a sub-account name within its tenant, or a SecretId is already taken. */
export class IamAlreadyExistsError extends IamError {}

/** A malformed name, uin or argument (policy documents have their own class). */
export class IamInputError extends IamError {}

/** A policy document that does not follow the grammar, or an unknown preset. */
export class PolicyError extends IamError {}

/** The identity store cannot be used as configured (Redis without persistence, newer schema). */
export class IamConfigError extends IamError {}

/** A stored API key whose sealed secret does not belong to it (store tampered with). */
export class IamIntegrityError extends IamError {}

/** A write that expected the stored state to be something it no longer is (another writer got there first); retry. */
export class IamConflictError extends IamError {}

/** No such sub-account in the caller's tenant (another tenant's sub-account is not found either). */
export class UserNotFoundError extends IamNotFoundError {}

/** No such policy in the caller's tenant, nor a preset of that id. */
export class PolicyNotFoundError extends IamNotFoundError {}

/** No such API key on that account. */
export class AccessKeyNotFoundError extends IamNotFoundError {}

/** The caller's role does not allow this on that account (a sub-account acting on its root account's keys). */
export class IamForbiddenError extends IamError {}

/** A per-account count is full (API keys per account). */
export class IamLimitError extends IamError {}

/** The request cannot be done in the current state (a sub-account that still has keys without Force, a preset deleted). */
export class IamStateError extends IamError {}
