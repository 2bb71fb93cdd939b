/**
 * Domain errors of the KMS core. Each class means one thing; the API layer maps each class to one
 * Tencent error code in its single table. Messages say what was wrong and never carry secrets.
 */
import { NamedError } from '../common/errors';

/**
 * A caller-chosen value for an error message: cut to 64 characters, JSON-quoted (control characters
 * escaped) and never longer than 100 characters, so a request cannot make its answer echo it at length.
 */
export function quoted(value: string): string {
  const q = JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
  return q.length > 100 ? `${q.slice(0, 99)}…` : q;
}

/**
 * The core's names of the request values an error can be about. A message names such a value by this
 * name, as a whole word, and lists it in `fields`, so that each protocol can put its own field name
 * there (the Tencent wire: `wireMessage` in api/kms-wire.ts).
 */
export type RequestField =
  | 'keyId'
  | 'keyIds'
  | 'alias'
  | 'description'
  | 'keyUsage'
  | 'plaintext'
  | 'ciphertext'
  | 'context'
  | 'numberOfBytes'
  | 'keySpec'
  | 'rotateDays'
  | 'pendingWindowDays'
  | 'tagKey'
  | 'tagValue'
  | 'tagFilters'
  | 'offset'
  | 'limit'
  | 'productId'
  | 'resourceId'
  | 'algorithm'
  | 'messageType'
  | 'message'
  | 'wrappingAlgorithm'
  | 'wrappingKeySpec'
  | 'validTo'
  | 'encryptedKeyMaterial'
  | 'importToken'
  | 'hsmClusterId'
  | 'dataKeyId'
  | 'dataKeyIds'
  | 'dataKeyName'
  | 'dataKeyLength'
  | 'importType';

export interface KmsErrorOptions {
  cause?: unknown;
  /** The request values the message names (by their core names). */
  fields?: readonly RequestField[];
}

/** Options naming the request values a message is about. */
export const about = (...fields: RequestField[]): KmsErrorOptions => ({ fields });

export abstract class KmsError extends NamedError {
  readonly fields: readonly RequestField[];

  constructor(message: string, options?: KmsErrorOptions) {
    super(message, options);
    this.fields = options?.fields ?? [];
  }
}

/** Altered, truncated, foreign or otherwise unusable ciphertext, or the wrong encryption context. */
export class InvalidCiphertextError extends KmsError {}
export class InvalidEncryptionContextError extends KmsError {}

/** A parameter that is present but wrong, with no more specific class. */
export class InvalidParameterError extends KmsError {}
export class InvalidKeyIdError extends KmsError {}
export class DuplicatedKeyIdError extends KmsError {}
export class InvalidAliasError extends KmsError {}
export class AliasTakenError extends KmsError {}
export class InvalidKeyUsageError extends KmsError {}
export class InvalidTypeError extends KmsError {}
export class InvalidHsmClusterError extends KmsError {}
export class InvalidPlaintextError extends KmsError {}
export class InvalidPendingWindowError extends KmsError {}
export class TagKeysDuplicatedError extends KmsError {}
export class InvalidTagError extends KmsError {}
export class KeyLimitExceededError extends KmsError {}

/** No such key for this tenant (another tenant's key is reported the same way: no existence leak). */
export class KeyNotFoundError extends KmsError {
  constructor(
    readonly keyId: string,
    detail?: string,
  ) {
    super(detail ?? `key ${keyId} was not found`);
  }
}

export class KeyDisabledError extends KmsError {}
export class KeyArchivedError extends KmsError {}
export class KeyPendingDeleteError extends KmsError {}
export class KeyStateNotSupportedError extends KmsError {}
export class KeyShouldBeDisabledError extends KmsError {}
export class KeyNotPendingDeleteError extends KmsError {}

/** Cloud-product keys and keys bound to cloud resources cannot be disabled, archived or deleted. */
export class UsedByCloudProductError extends KmsError {}
export class NotUserCreatedError extends KmsError {}
export class ExternalKeyCannotRotateError extends KmsError {}
export class RotationNotSupportedError extends KmsError {}
export class RotationRunningError extends KmsError {}
export class NotExternalKeyError extends KmsError {}
export class ImportTokenExpiredError extends KmsError {}
export class InvalidImportTokenError extends KmsError {}
/** An import failed after the RSA step (one message whatever went wrong: see IMPORT_FAILED_MESSAGE). */
export class DecryptMaterialError extends KmsError {}
export class InvalidImportMaterialError extends KmsError {}
export class BindingNotFoundError extends KmsError {}
/** A key already has the most cloud-resource bindings it may have. */
export class BindingLimitExceededError extends KmsError {}

/** The HSMs of the key's cluster cannot do this (names the limit). */
export class UnsupportedOperationError extends KmsError {}
/** The key usage exists in the API but no HSM of the cluster can serve it (SM2 here). */
export class UnsupportedKeyUsageError extends KmsError {}
/** An asymmetric decryption whose ciphertext the HSM could not decrypt. */
export class AsymmetricDecryptError extends KmsError {}
/** Encrypting a result under the caller's public key failed (bad key). */
export class PublicKeyEncryptionError extends KmsError {}

/** A key version that cannot rotate used up its AES-GCM invocations (random IVs): it only decrypts now. */
export class GcmUseLimitError extends KmsError {}
/** The account already has as many expensive requests (key-pair generation, RSA decryption, signing) in flight as allowed. */
export class ExpensiveLimitError extends KmsError {}

/** The key's HSM cluster has no healthy member right now: retry later. */
export class ServiceUnavailableError extends KmsError {}

/**
 * A stored record that carries authority (a key's ownership, its material's binding) failed its
 * integrity check: it was changed outside the service. Refused, never obeyed; an alarm is raised.
 */
export class StoreIntegrityError extends KmsError {}

/** Hosted data keys (data-keys.ts): each class one Tencent code. */
export class InvalidDataKeyIdError extends KmsError {}
export class InvalidDataKeyNameError extends KmsError {}
export class DataKeyNameTakenError extends KmsError {}
export class DuplicatedDataKeyIdError extends KmsError {}
export class DataKeyLimitExceededError extends KmsError {}
/** No such data key for this tenant and region (another tenant's is reported the same way). */
export class DataKeyNotFoundError extends KmsError {
  constructor(readonly dataKeyId: string) {
    super(`data key ${dataKeyId} was not found`);
  }
}
export class DataKeyDisabledError extends KmsError {}
export class DataKeyPendingDeleteError extends KmsError {}
export class DataKeyStateNotSupportedError extends KmsError {}
export class DataKeyNotPendingDeleteError extends KmsError {}
