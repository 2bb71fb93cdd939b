/**
 * THE table from error classes to Tencent error codes. Every domain error of the KMS core has one
 * entry; request-level errors (signature, parameters, policy, rate, size, action) carry their code.
 * Anything else is InternalError with a message that says nothing but the request id: the raw
 * message of an unexpected error may name internals and is for the server's log only.
 */
import { NamedError } from '../common/errors';
import { SlowQueueFullError } from '../hsm/errors';
import * as iam from '../iam/errors';
import * as kms from '../kms/errors';
import { domainError } from '../kms/key-access';
import { wireMessage } from './kms-wire';
import { ParamError } from './params';
import { AuthError } from './tc3';

/** Errors of the request itself rather than of a key; each class has one code in API_ERROR_CODES. */
export abstract class RequestError extends NamedError {}

/** A policy (CAM-like) refused the caller this action on this resource. */
export class UnauthorizedError extends RequestError {}
/** The account's request rate is over its limit. */
export class RateLimitedError extends RequestError {}
/** The request body is larger than the configured maximum. */
export class RequestTooLargeError extends RequestError {}
/** X-TC-Action names no action of the API. */
export class InvalidActionError extends RequestError {}
/** An action of the API this deployment does not offer (white-box, post-quantum). */
export class UnsupportedActionError extends RequestError {}
/** X-TC-Version names no version of the service the request is for (services.ts). */
export class NoSuchVersionError extends RequestError {}
/** X-TC-Region names a region this deployment does not serve. */
export class UnsupportedRegionError extends RequestError {}
/** The source address has sent too many requests that did not authenticate; refused before any signature work. */
export class SourceLimitedError extends RequestError {}
/** The replay cache could not say whether a signature was used before (Redis or the supervisor did not answer, or it is full): refused. */
export class ReplayCheckUnavailableError extends RequestError {}

export interface ApiError {
  code: string;
  message: string;
  /** The server's fault, not the caller's: log the original error; the message says nothing about it. */
  internal: boolean;
}

type ErrorClass = abstract new (...args: never[]) => Error;

/**
 * ServiceUnavailableError (the key's HSM cluster has no healthy member, or its sessions are
 * exhausted) is Tencent's UnsupportedOperation.ServiceTemporaryUnavailable rather than InternalError:
 * it is temporary and retrying later is the right reaction, which that code says and InternalError
 * does not. It is still `internal` (the operator's problem): the message is fixed, so cluster and
 * member names never reach the tenant, and the server logs the original.
 */
const SERVICE_UNAVAILABLE_MESSAGE = 'the service is temporarily unavailable; retry later';

/** Domain errors: class → code. The message is the error's own (the core writes them for callers). */
export const KMS_ERROR_CODES: ReadonlyArray<readonly [ErrorClass, string]> = [
  [kms.InvalidCiphertextError, 'InvalidParameterValue.InvalidCiphertext'],
  // A malformed context (not a JSON object of strings, too long); a wrong one is InvalidCiphertext.
  [kms.InvalidEncryptionContextError, 'InvalidParameterValue'],
  [kms.InvalidParameterError, 'InvalidParameter'],
  [kms.InvalidKeyIdError, 'InvalidParameterValue.InvalidKeyId'],
  [kms.DuplicatedKeyIdError, 'InvalidParameterValue.DuplicatedKeyId'],
  [kms.InvalidAliasError, 'InvalidParameterValue.InvalidAlias'],
  [kms.AliasTakenError, 'InvalidParameterValue.AliasAlreadyExists'],
  [kms.InvalidKeyUsageError, 'InvalidParameterValue.InvalidKeyUsage'],
  [kms.InvalidTypeError, 'InvalidParameterValue.InvalidType'],
  [kms.InvalidHsmClusterError, 'InvalidParameterValue.InvalidHsmClusterId'],
  [kms.InvalidPlaintextError, 'InvalidParameterValue.InvalidPlaintext'],
  [kms.InvalidPendingWindowError, 'InvalidParameter.InvalidPendingWindowInDays'],
  [kms.TagKeysDuplicatedError, 'InvalidParameterValue.TagKeysDuplicated'],
  // Empty or over-long tag keys/values, too many tags: no more specific Tencent code.
  [kms.InvalidTagError, 'InvalidParameterValue'],
  [kms.KeyLimitExceededError, 'LimitExceeded.CmkLimitExceeded'],
  [kms.KeyNotFoundError, 'ResourceUnavailable.CmkNotFound'],
  [kms.KeyDisabledError, 'ResourceUnavailable.CmkDisabled'],
  [kms.KeyArchivedError, 'ResourceUnavailable.CmkArchived'],
  [kms.KeyPendingDeleteError, 'ResourceUnavailable.KeyPendingDelete'],
  [kms.KeyStateNotSupportedError, 'ResourceUnavailable.CmkStateNotSupport'],
  [kms.KeyShouldBeDisabledError, 'ResourceUnavailable.CmkShouldBeDisabled'],
  [kms.KeyNotPendingDeleteError, 'ResourceUnavailable.CmkNotPendingDelete'],
  [kms.UsedByCloudProductError, 'FailedOperation.CmkUsedByCloudProduct'],
  [kms.NotUserCreatedError, 'UnsupportedOperation.NotUserCreatedCmk'],
  [kms.ExternalKeyCannotRotateError, 'UnsupportedOperation.ExternalCmkCanNotRotate'],
  [kms.RotationNotSupportedError, 'UnsupportedOperation.RotateNotSupported'],
  [kms.RotationRunningError, 'FailedOperation.RotateTaskRunning'],
  [kms.NotExternalKeyError, 'UnsupportedOperation.NotExternalCmk'],
  [kms.ImportTokenExpiredError, 'ResourceUnavailable.TokenExpired'],
  // Forged, another key's, used or replaced: the message says which; no Tencent code is closer.
  [kms.InvalidImportTokenError, 'InvalidParameterValue'],
  // Every import failure after the RSA step, other material than before included: one code and one message (no padding oracle).
  [kms.DecryptMaterialError, 'InvalidParameter.DecryptMaterialError'],
  [kms.InvalidImportMaterialError, 'InvalidParameterValue.InvalidImportKeyMaterial'],
  [kms.BindingNotFoundError, 'ResourceUnavailable.CloudResourceBindingNotFound'],
  // A per-key count (bindings) is full: Tencent's generic quota code.
  [kms.BindingLimitExceededError, 'LimitExceeded'],
  [kms.UnsupportedOperationError, 'UnsupportedOperation'],
  [kms.UnsupportedKeyUsageError, 'UnsupportedOperation.UnsupportedKeyUsageInCurrentRegion'],
  [kms.AsymmetricDecryptError, 'FailedOperation.DecryptError'],
  [kms.PublicKeyEncryptionError, 'FailedOperation.EncryptionError'],
  // Tencent's generic quota code: the version's AES-GCM invocations (NIST SP 800-38D 8.3) are used up; no KMS-specific code is closer.
  [kms.GcmUseLimitError, 'LimitExceeded'],
  [kms.ServiceUnavailableError, 'UnsupportedOperation.ServiceTemporaryUnavailable'],
  // A stored key record or its material was changed outside the service (alarm raised): refused, no closer Tencent code.
  [kms.StoreIntegrityError, 'FailedOperation'],
  // The account's concurrency cap on expensive actions (limits.expensivePerTenant): Tencent's per-account request limit.
  [kms.ExpensiveLimitError, 'RequestLimitExceeded.UinLimitExceeded'],
  [kms.InvalidDataKeyIdError, 'InvalidParameterValue.InvalidDataKeyId'],
  [kms.InvalidDataKeyNameError, 'InvalidParameterValue.InvalidDataKeyName'],
  [kms.DataKeyNameTakenError, 'InvalidParameterValue.DataKeyNameAlreadyExists'],
  [kms.DuplicatedDataKeyIdError, 'InvalidParameterValue.DuplicatedDataKeyId'],
  [kms.DataKeyLimitExceededError, 'LimitExceeded.DataKeyLimitExceeded'],
  [kms.DataKeyNotFoundError, 'ResourceUnavailable.DataKeyNotFound'],
  [kms.DataKeyDisabledError, 'ResourceUnavailable.DataKeyDisabled'],
  [kms.DataKeyPendingDeleteError, 'ResourceUnavailable.DataKeyPendingDelete'],
  [kms.DataKeyStateNotSupportedError, 'ResourceUnavailable.DataKeyStateNotSupport'],
  [kms.DataKeyNotPendingDeleteError, 'ResourceUnavailable.DataKeyNotPendingDelete'],
];

/** Request-level errors: class → code. */
export const API_ERROR_CODES: ReadonlyArray<readonly [ErrorClass, string]> = [
  [UnauthorizedError, 'UnauthorizedOperation'],
  [NoSuchVersionError, 'NoSuchVersion'],
  [UnsupportedRegionError, 'UnsupportedRegion'],
  [RateLimitedError, 'RequestLimitExceeded'],
  [SourceLimitedError, 'RequestLimitExceeded.IPLimitExceeded'],
  [ReplayCheckUnavailableError, 'UnsupportedOperation.ServiceTemporaryUnavailable'],
  [RequestTooLargeError, 'RequestSizeLimitExceeded'],
  [InvalidActionError, 'InvalidAction'],
  [UnsupportedActionError, 'UnsupportedOperation'],
];

/** Identity errors that reach a caller: a stored API key, membership or policy changed outside the service (alarm raised) is refused. */
export const IAM_ERROR_CODES: ReadonlyArray<readonly [ErrorClass, string]> = [
  [iam.IamIntegrityError, 'FailedOperation'],
  // CAM's actions (docs/access-control.md "CAM API"): the nearest Tencent codes
  [iam.UserNotFoundError, 'ResourceNotFound.UserNotExist'],
  [iam.PolicyNotFoundError, 'ResourceNotFound.PolicyIdNotFound'],
  [iam.AccessKeyNotFoundError, 'ResourceNotFound.SecretNotExist'],
  [iam.IamNotFoundError, 'ResourceNotFound'],
  [iam.IamAlreadyExistsError, 'ResourceInUse'],
  [iam.IamInputError, 'InvalidParameter.ParamError'],
  [iam.PolicyError, 'InvalidParameter.PolicyDocumentError'],
  [iam.IamForbiddenError, 'UnauthorizedOperation'],
  [iam.IamLimitError, 'OperationDenied.AccessKeyOverLimit'],
  [iam.IamStateError, 'OperationDenied'],
  // another writer changed the same sub-account's policies at the same moment: retry
  [iam.IamConflictError, 'FailedOperation'],
];

/**
 * HSM errors the core passes through untranslated that reach a caller: the cluster's queue of slow
 * operations is full (per cluster, shared by its tenants: the generic request-limit code, not the per-account one).
 */
export const HSM_ERROR_CODES: ReadonlyArray<readonly [ErrorClass, string]> = [[SlowQueueFullError, 'RequestLimitExceeded']];

const CODES = new Map<ErrorClass, string>([...KMS_ERROR_CODES, ...API_ERROR_CODES, ...IAM_ERROR_CODES, ...HSM_ERROR_CODES]);

/** The code of an error's class or its nearest mapped ancestor. */
function classCode(e: Error): string | undefined {
  for (let p = Object.getPrototypeOf(e) as object | null; p !== null && p !== Error.prototype; p = Object.getPrototypeOf(p) as object | null) {
    const code = CODES.get((p as { constructor: ErrorClass }).constructor);
    if (code !== undefined) return code;
  }
  return undefined;
}

export function internalError(requestId = ''): ApiError {
  return { code: 'InternalError', message: `internal error, request id ${requestId}`.trim(), internal: true };
}

/**
 * The Tencent error an exception is answered with. Store and HSM errors the core did not translate
 * go through its own translation first (domainError: alias taken, quota, no healthy member, …).
 * `requestId` goes into the InternalError message.
 */
export function toApiError(thrown: unknown, requestId = ''): ApiError {
  if (thrown instanceof AuthError || thrown instanceof ParamError) return { code: thrown.code, message: thrown.message, internal: false };
  const e = domainError(thrown);
  if (!(e instanceof Error)) return internalError(requestId);
  const code = classCode(e);
  if (code === undefined) return internalError(requestId);
  if (e instanceof kms.ServiceUnavailableError) return { code, message: SERVICE_UNAVAILABLE_MESSAGE, internal: true };
  return { code, message: e instanceof kms.KmsError ? wireMessage(e) : e.message, internal: false };
}
