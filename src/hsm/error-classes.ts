import { ErrorClass } from './errors';
import type { ErrorOverride } from './profile';

/** The operations a member names when it calls a token: what a profile's `errorOverrides[].during` may list. */
export const MEMBER_OPERATIONS = [
  'encrypt',
  'decrypt',
  'sign',
  'verify',
  'generate',
  'wrap',
  'unwrap',
  'import-unwrap',
  'mac',
  'destroy',
  'random',
  'find',
  'login',
  'lock',
] as const;
export type MemberOperation = (typeof MEMBER_OPERATIONS)[number];

/** Default classification of PKCS#11 return values; profiles override per operation. */
const DEFAULT_CLASSES: Record<string, ErrorClass> = {
  CKR_ARGUMENTS_BAD: 'caller',
  CKR_DATA_INVALID: 'caller',
  CKR_DATA_LEN_RANGE: 'caller',
  CKR_ENCRYPTED_DATA_INVALID: 'caller',
  CKR_ENCRYPTED_DATA_LEN_RANGE: 'caller',
  CKR_SIGNATURE_INVALID: 'caller',
  CKR_SIGNATURE_LEN_RANGE: 'caller',
  CKR_WRAPPED_KEY_INVALID: 'caller',
  CKR_WRAPPED_KEY_LEN_RANGE: 'caller',
  CKR_MECHANISM_PARAM_INVALID: 'caller',
  CKR_ATTRIBUTE_VALUE_INVALID: 'caller',
  CKR_TEMPLATE_INCONSISTENT: 'caller',
  CKR_TEMPLATE_INCOMPLETE: 'caller',
  CKR_KEY_SIZE_RANGE: 'caller',
  CKR_KEY_TYPE_INCONSISTENT: 'caller',
  CKR_KEY_FUNCTION_NOT_PERMITTED: 'caller',
  CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT: 'caller',
  CKR_PIN_INCORRECT: 'caller',
  CKR_PIN_LOCKED: 'device',
  CKR_MECHANISM_INVALID: 'unsupported',
  CKR_FUNCTION_NOT_SUPPORTED: 'unsupported',
  CKR_CURVE_NOT_SUPPORTED: 'unsupported',
  CKR_DOMAIN_PARAMS_INVALID: 'unsupported',
  CKR_SESSION_HANDLE_INVALID: 'session',
  CKR_SESSION_CLOSED: 'session',
  CKR_SESSION_COUNT: 'session',
  CKR_OPERATION_ACTIVE: 'session',
  CKR_OPERATION_NOT_INITIALIZED: 'session',
  CKR_USER_NOT_LOGGED_IN: 'session',
  CKR_KEY_HANDLE_INVALID: 'session',
  CKR_OBJECT_HANDLE_INVALID: 'session',
  CKR_WRAPPING_KEY_HANDLE_INVALID: 'session',
  CKR_UNWRAPPING_KEY_HANDLE_INVALID: 'session',
  CKR_CRYPTOKI_NOT_INITIALIZED: 'device',
  CKR_DEVICE_ERROR: 'device',
  CKR_DEVICE_MEMORY: 'device',
  CKR_DEVICE_REMOVED: 'device',
  CKR_TOKEN_NOT_PRESENT: 'device',
  CKR_TOKEN_NOT_RECOGNIZED: 'device',
  CKR_SLOT_ID_INVALID: 'device',
  CKR_HOST_MEMORY: 'device',
  CKR_GENERAL_ERROR: 'device',
  CKR_FUNCTION_FAILED: 'device',
};

/** Classifies `code` (e.g. "CKR_GENERAL_ERROR") returned during `operation`; unknown codes are device errors. */
export function classifyError(code: string, operation: MemberOperation, overrides: readonly ErrorOverride[]): ErrorClass {
  const override = overrides.find((o) => o.code === code && o.during.includes(operation));
  return override ? override.errorClass : Object.hasOwn(DEFAULT_CLASSES, code) ? DEFAULT_CLASSES[code] : 'device';
}
