import * as errorCodes from '../../../src/api/error-codes';
import {
  API_ERROR_CODES,
  HSM_ERROR_CODES,
  RequestError,
  InvalidActionError,
  KMS_ERROR_CODES,
  RateLimitedError,
  RequestTooLargeError,
  toApiError,
  UnauthorizedError,
  UnsupportedActionError,
} from '../../../src/api/error-codes';
import { ParamError } from '../../../src/api/params';
import { AuthError } from '../../../src/api/tc3';
import { ClusterUnavailableError, Pkcs11CallError, PoolExhaustedError, SlowQueueFullError } from '../../../src/hsm/errors';
import * as kmsErrors from '../../../src/kms/errors';
import { AliasExistsError, ConflictError, QuotaExceededError } from '../../../src/store/store';

/** Every code Tencent documents (reference "Error codes": common codes and the KMS set; UnsupportedRegion is in the common table, marked unconfirmed in the reference). */
const TENCENT_CODES = new Set(
  `ActionOffline AuthFailure.InvalidAuthorization AuthFailure.InvalidSecretId AuthFailure.MFAFailure AuthFailure.SecretIdNotFound
AuthFailure.SignatureExpire AuthFailure.SignatureFailure AuthFailure.TokenFailure AuthFailure.UnauthorizedOperation DryRunOperation FailedOperation
InternalError InvalidAction InvalidParameter InvalidParameterValue InvalidRequest IpInBlacklist IpNotInWhitelist LimitExceeded MissingParameter
NoSuchProduct NoSuchVersion RequestLimitExceeded RequestLimitExceeded.GlobalRegionUinLimitExceeded RequestLimitExceeded.IPLimitExceeded
RequestLimitExceeded.UinLimitExceeded RequestSizeLimitExceeded ResourceInUse ResourceInsufficient ResourceNotFound ResourceUnavailable
UnauthorizedOperation UnknownParameter UnsupportedOperation UnsupportedProtocol UnsupportedRegion
AuthFailure FailedOperation.CmkUsedByCloudProduct FailedOperation.DecryptError FailedOperation.EncryptionError FailedOperation.RotateTaskRunning
FailedOperation.TaggingError InvalidParameter.DecryptMaterialError InvalidParameter.InvalidPendingWindowInDays InvalidParameterValue.AliasAlreadyExists
InvalidParameterValue.DataKeyNameAlreadyExists InvalidParameterValue.DuplicatedDataKeyId InvalidParameterValue.DuplicatedKeyId
InvalidParameterValue.InvalidAlias InvalidParameterValue.InvalidCiphertext InvalidParameterValue.InvalidDataKeyId InvalidParameterValue.InvalidDataKeyName
InvalidParameterValue.InvalidHsmClusterId InvalidParameterValue.InvalidImportKeyMaterial InvalidParameterValue.InvalidKeyId
InvalidParameterValue.InvalidKeyUsage InvalidParameterValue.InvalidPlaintext InvalidParameterValue.InvalidType InvalidParameterValue.MaterialNotMatch
InvalidParameterValue.TagKeysDuplicated InvalidParameterValue.TagsNotExisted LimitExceeded.CmkLimitExceeded LimitExceeded.DataKeyLimitExceeded
LimitExceeded.FingerprintsLimitExceeded LimitExceeded.KeyLimitExceeded RequestLimitExceeded.RotateRateLimited ResourceUnavailable.CloudResourceBindingNotFound
ResourceUnavailable.CmkArchived ResourceUnavailable.CmkDisabled ResourceUnavailable.CmkNotFound ResourceUnavailable.CmkNotPendingDelete
ResourceUnavailable.CmkShouldBeDisabled ResourceUnavailable.CmkStateNotSupport ResourceUnavailable.DataKeyDisabled ResourceUnavailable.DataKeyNotFound
ResourceUnavailable.DataKeyNotPendingDelete ResourceUnavailable.DataKeyPendingDelete ResourceUnavailable.DataKeyStateNotSupport
ResourceUnavailable.KeyDisabled ResourceUnavailable.KeyPendingDelete ResourceUnavailable.NotPurchased ResourceUnavailable.TokenExpired
UnsupportedOperation.ExternalCmkCanNotRotate UnsupportedOperation.NotExternalCmk UnsupportedOperation.NotRoleOperation
UnsupportedOperation.NotUserCreatedCmk UnsupportedOperation.RotateNotSupported UnsupportedOperation.ServiceTemporaryUnavailable
UnsupportedOperation.UnsupportedKeyUsageInCurrentRegion`.split(/\s+/),
);

type AnyErrorClass = new (message: string) => Error;

/** Every exported class of src/kms/errors.ts but the abstract base: a new class without a table entry fails here. */
const DOMAIN_CLASSES = Object.entries(kmsErrors)
  .filter(([name, v]) => typeof v === 'function' && v.prototype instanceof Error && name !== 'KmsError')
  .map(([name, v]) => [name, v as unknown as AnyErrorClass] as const);

describe('domain errors of the KMS core', () => {
  test('src/kms/errors.ts exports the classes this test iterates', () => {
    expect(DOMAIN_CLASSES.map(([name]) => name)).toEqual(expect.arrayContaining(['KeyNotFoundError', 'ServiceUnavailableError', 'InvalidCiphertextError']));
    expect(DOMAIN_CLASSES.length).toBe(KMS_ERROR_CODES.length);
  });

  test.each(DOMAIN_CLASSES)('%s has its own entry with a documented Tencent code', (_name, cls) => {
    const entry = KMS_ERROR_CODES.find(([c]) => c === cls);
    expect(entry).toBeDefined();
    expect(TENCENT_CODES.has(entry?.[1] ?? '')).toBe(true);
  });

  test.each(DOMAIN_CLASSES.filter(([name]) => name !== 'ServiceUnavailableError'))('%s is answered with its code and its own message', (_name, cls) => {
    const e = new cls('what was wrong');
    const code = KMS_ERROR_CODES.find(([c]) => c === cls)?.[1];
    expect(toApiError(e, 'req-1')).toEqual({ code, message: e.message, internal: false });
  });

  test('the table has no entry twice and no entry for a class the module does not export', () => {
    const classes = KMS_ERROR_CODES.map(([c]) => c);
    expect(new Set(classes).size).toBe(classes.length);
    expect(classes.every((c) => DOMAIN_CLASSES.some(([, d]) => d === c))).toBe(true);
  });

  test.each<[string, string]>([
    ['KeyNotFoundError', 'ResourceUnavailable.CmkNotFound'],
    ['KeyDisabledError', 'ResourceUnavailable.CmkDisabled'],
    ['KeyArchivedError', 'ResourceUnavailable.CmkArchived'],
    ['KeyPendingDeleteError', 'ResourceUnavailable.KeyPendingDelete'],
    ['KeyStateNotSupportedError', 'ResourceUnavailable.CmkStateNotSupport'],
    ['InvalidCiphertextError', 'InvalidParameterValue.InvalidCiphertext'],
    ['InvalidEncryptionContextError', 'InvalidParameterValue'],
    ['InvalidKeyIdError', 'InvalidParameterValue.InvalidKeyId'],
    ['AliasTakenError', 'InvalidParameterValue.AliasAlreadyExists'],
    ['KeyLimitExceededError', 'LimitExceeded.CmkLimitExceeded'],
    ['UsedByCloudProductError', 'FailedOperation.CmkUsedByCloudProduct'],
    ['ImportTokenExpiredError', 'ResourceUnavailable.TokenExpired'],
    ['DecryptMaterialError', 'InvalidParameter.DecryptMaterialError'],
    ['GcmUseLimitError', 'LimitExceeded'],
    ['InvalidImportMaterialError', 'InvalidParameterValue.InvalidImportKeyMaterial'],
    ['UnsupportedKeyUsageError', 'UnsupportedOperation.UnsupportedKeyUsageInCurrentRegion'],
    ['AsymmetricDecryptError', 'FailedOperation.DecryptError'],
    ['ServiceUnavailableError', 'UnsupportedOperation.ServiceTemporaryUnavailable'],
  ])('%s → %s', (name, code) => {
    const cls = DOMAIN_CLASSES.find(([n]) => n === name)?.[1] as AnyErrorClass;
    expect(toApiError(new cls('x')).code).toBe(code);
  });

  test('ServiceUnavailable is internal with a fixed message: cluster and member names stay in the log', () => {
    const e = new kmsErrors.ServiceUnavailableError('cluster hsm-a: no healthy member (member-2 token gone)');
    expect(toApiError(e)).toEqual({
      code: 'UnsupportedOperation.ServiceTemporaryUnavailable',
      message: 'the service is temporarily unavailable; retry later',
      internal: true,
    });
  });

  test("a subclass of a mapped class gets its parent's code; an unmapped KmsError subclass is internal", () => {
    class NarrowNotFound extends kmsErrors.KeyNotFoundError {}
    class Unmapped extends kmsErrors.KmsError {}
    expect(toApiError(new NarrowNotFound('k')).code).toBe('ResourceUnavailable.CmkNotFound');
    expect(toApiError(new Unmapped('internal detail'), 'r1')).toEqual({ code: 'InternalError', message: 'internal error, request id r1', internal: true });
  });
});

describe('request-level errors', () => {
  test.each<[string, Error, string]>([
    ['AuthError', new AuthError('AuthFailure.SignatureExpire', 'expired'), 'AuthFailure.SignatureExpire'],
    ['AuthError', new AuthError('AuthFailure.SecretIdNotFound', 'no id'), 'AuthFailure.SecretIdNotFound'],
    ['ParamError', new ParamError('MissingParameter', 'KeyId', 'KeyId is required'), 'MissingParameter'],
    ['ParamError', new ParamError('UnknownParameter', 'X', 'X is not a parameter'), 'UnknownParameter'],
    ['ParamError', new ParamError('InvalidParameterValue', 'Plaintext', 'Plaintext is not canonical base64'), 'InvalidParameterValue'],
    ['UnauthorizedError', new UnauthorizedError('policy denies kms:Encrypt'), 'UnauthorizedOperation'],
    ['RateLimitedError', new RateLimitedError('over 100 requests per second'), 'RequestLimitExceeded'],
    ['RequestTooLargeError', new RequestTooLargeError('body over 64 KiB'), 'RequestSizeLimitExceeded'],
    ['InvalidActionError', new InvalidActionError('no action Foo'), 'InvalidAction'],
    ['UnsupportedActionError', new UnsupportedActionError('white-box keys are not offered'), 'UnsupportedOperation'],
  ])('%s → %s', (_name, e, code) => {
    expect(toApiError(e)).toEqual({ code, message: e.message, internal: false });
    expect(TENCENT_CODES.has(code)).toBe(true);
  });

  test('every RequestError class exported here has its own entry', () => {
    const classes = Object.values(errorCodes).filter((v) => typeof v === 'function' && v.prototype instanceof RequestError);
    expect(classes).toHaveLength(API_ERROR_CODES.length);
    expect(classes.every((c) => API_ERROR_CODES.some(([mapped]) => mapped === c))).toBe(true);
  });

  test('every request-level code is documented', () => {
    expect(API_ERROR_CODES.every(([, code]) => TENCENT_CODES.has(code))).toBe(true);
  });
});

describe("store and HSM errors go through the core's translation; anything else is InternalError", () => {
  test.each<[string, unknown, string, boolean]>([
    ['store alias taken', new AliasExistsError('100001', 'ap-guangzhou', 'a'), 'InvalidParameterValue.AliasAlreadyExists', false],
    ['store quota', new QuotaExceededError('100001', 'ap-guangzhou', 200), 'LimitExceeded.CmkLimitExceeded', false],
    ['HSM pool exhausted', new PoolExhaustedError('m1', 5, 100), 'UnsupportedOperation.ServiceTemporaryUnavailable', true],
    ['HSM cluster down', new ClusterUnavailableError('c1'), 'UnsupportedOperation.ServiceTemporaryUnavailable', true],
  ])('%s → %s', (_name, e, code, internal) => {
    expect(toApiError(e)).toMatchObject({ code, internal });
  });

  test.each<[string, unknown]>([
    ['a TypeError', new TypeError('Cannot read properties of undefined (reading "secretKey")')],
    ['a store conflict', new ConflictError('k1', 'revision 3 is not 2')],
    ['a PKCS#11 failure', new Pkcs11CallError('device', 'CKR_DEVICE_ERROR', 'C_Decrypt', 'member-1')],
    ['a thrown string', 'plaintext=hello'],
    ['undefined', undefined],
    ['a plain object', { code: 'ResourceUnavailable.CmkNotFound', message: 'spoofed' }],
  ])('%s → InternalError naming only the request id', (_name, e) => {
    const api = toApiError(e, 'b6c1e0a4');
    expect(api).toEqual({ code: 'InternalError', message: 'internal error, request id b6c1e0a4', internal: true });
  });
});

describe('HSM errors that reach a caller untranslated', () => {
  test('a full slow queue is RequestLimitExceeded with its own message (no cluster or member name), not internal', () => {
    const e = new SlowQueueFullError('cls-tenant-secret-name', 32);
    const api = toApiError(e, 'r2');
    expect(api).toEqual({ code: 'RequestLimitExceeded', message: e.message, internal: false });
    expect(api.message).toMatch(/retry later/);
    expect(api.message).not.toContain('cls-tenant-secret-name');
  });

  test('every HSM code is documented and no class is in the table twice', () => {
    expect(HSM_ERROR_CODES.every(([, code]) => TENCENT_CODES.has(code))).toBe(true);
    expect(new Set(HSM_ERROR_CODES.map(([c]) => c)).size).toBe(HSM_ERROR_CODES.length);
  });
});
