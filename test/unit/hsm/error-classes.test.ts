import { join } from 'node:path';
import { classifyError, MemberOperation } from '../../../src/hsm/error-classes';
import { ErrorClass } from '../../../src/hsm/errors';
import { ErrorOverride, HsmProfile, loadProfiles } from '../../../src/hsm/profile';

const profiles = loadProfiles(join(__dirname, '..', '..', '..', '..', 'hsm-profiles'));
const profile = (name: string): HsmProfile => {
  const p = profiles.get(name);
  if (!p) throw new Error(`profile ${name} missing`);
  return p;
};
const softhsm = profile('softhsm2').errorOverrides;
const nss = profile('nss-softokn').errorOverrides;
const none: readonly ErrorOverride[] = [];

describe('classifyError: default classes (no overrides)', () => {
  const table: Array<[string, ErrorClass]> = [
    ['CKR_ARGUMENTS_BAD', 'caller'],
    ['CKR_DATA_INVALID', 'caller'],
    ['CKR_DATA_LEN_RANGE', 'caller'],
    ['CKR_ENCRYPTED_DATA_INVALID', 'caller'],
    ['CKR_ENCRYPTED_DATA_LEN_RANGE', 'caller'],
    ['CKR_SIGNATURE_INVALID', 'caller'],
    ['CKR_SIGNATURE_LEN_RANGE', 'caller'],
    ['CKR_WRAPPED_KEY_INVALID', 'caller'],
    ['CKR_WRAPPED_KEY_LEN_RANGE', 'caller'],
    ['CKR_MECHANISM_PARAM_INVALID', 'caller'],
    ['CKR_ATTRIBUTE_VALUE_INVALID', 'caller'],
    ['CKR_TEMPLATE_INCONSISTENT', 'caller'],
    ['CKR_TEMPLATE_INCOMPLETE', 'caller'],
    ['CKR_KEY_SIZE_RANGE', 'caller'],
    ['CKR_KEY_TYPE_INCONSISTENT', 'caller'],
    ['CKR_KEY_FUNCTION_NOT_PERMITTED', 'caller'],
    ['CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT', 'caller'],
    ['CKR_PIN_INCORRECT', 'caller'],
    ['CKR_PIN_LOCKED', 'device'],
    ['CKR_MECHANISM_INVALID', 'unsupported'],
    ['CKR_FUNCTION_NOT_SUPPORTED', 'unsupported'],
    ['CKR_CURVE_NOT_SUPPORTED', 'unsupported'],
    ['CKR_DOMAIN_PARAMS_INVALID', 'unsupported'],
    ['CKR_SESSION_HANDLE_INVALID', 'session'],
    ['CKR_SESSION_CLOSED', 'session'],
    ['CKR_SESSION_COUNT', 'session'],
    ['CKR_OPERATION_ACTIVE', 'session'],
    ['CKR_OPERATION_NOT_INITIALIZED', 'session'],
    ['CKR_USER_NOT_LOGGED_IN', 'session'],
    ['CKR_KEY_HANDLE_INVALID', 'session'],
    ['CKR_OBJECT_HANDLE_INVALID', 'session'],
    ['CKR_CRYPTOKI_NOT_INITIALIZED', 'device'],
    ['CKR_DEVICE_ERROR', 'device'],
    ['CKR_DEVICE_MEMORY', 'device'],
    ['CKR_DEVICE_REMOVED', 'device'],
    ['CKR_TOKEN_NOT_PRESENT', 'device'],
    ['CKR_TOKEN_NOT_RECOGNIZED', 'device'],
    ['CKR_SLOT_ID_INVALID', 'device'],
    ['CKR_HOST_MEMORY', 'device'],
    ['CKR_GENERAL_ERROR', 'device'],
    ['CKR_FUNCTION_FAILED', 'device'],
  ];

  test.each(table)('%s -> %s', (code, expected) => {
    expect(classifyError(code, 'decrypt', none)).toBe(expected);
    // The operation does not matter without overrides.
    expect(classifyError(code, 'sign', none)).toBe(expected);
  });
});

describe('classifyError: unknown codes are device errors', () => {
  test.each(['CKR_VENDOR_DEFINED', 'CKR_SOMETHING_NEW', '', 'ckr_arguments_bad', 'CKR_ARGUMENTS_BAD ', 'CKR_OK'])('%j -> device', (code) => {
    expect(classifyError(code, 'decrypt', none)).toBe('device');
    expect(classifyError(code, 'decrypt', softhsm)).toBe('device');
  });
});

describe('classifyError: profile overrides', () => {
  const table: Array<[string, string, string, readonly ErrorOverride[], ErrorClass]> = [
    ['softhsm2', 'CKR_GENERAL_ERROR', 'decrypt', softhsm, 'caller'],
    ['softhsm2', 'CKR_GENERAL_ERROR', 'import-unwrap', softhsm, 'caller'],
    ['softhsm2', 'CKR_GENERAL_ERROR', 'encrypt', softhsm, 'device'],
    ['softhsm2', 'CKR_GENERAL_ERROR', 'sign', softhsm, 'device'],
    ['softhsm2', 'CKR_GENERAL_ERROR', 'unwrap', softhsm, 'device'],
    ['softhsm2', 'CKR_GENERAL_ERROR', 'Decrypt', softhsm, 'device'],
    ['softhsm2', 'CKR_DEVICE_ERROR', 'decrypt', softhsm, 'device'],
    ['softhsm2', 'CKR_SESSION_HANDLE_INVALID', 'decrypt', softhsm, 'session'],
    ['softhsm2', 'CKR_ENCRYPTED_DATA_INVALID', 'decrypt', softhsm, 'caller'],
    ['nss-softokn', 'CKR_GENERAL_ERROR', 'decrypt', nss, 'device'],
    ['nss-softokn', 'CKR_GENERAL_ERROR', 'import-unwrap', nss, 'device'],
    ['(none)', 'CKR_GENERAL_ERROR', 'decrypt', none, 'device'],
  ];

  test.each(table)('%s: %s during %s', (_profile, code, operation, overrides, expected) => {
    expect(classifyError(code, operation as MemberOperation, overrides)).toBe(expected);
  });

  test('the softhsm2 profile declares the decrypt override and nss-softokn declares none', () => {
    expect(softhsm).toContainEqual({ code: 'CKR_GENERAL_ERROR', during: ['decrypt'], errorClass: 'caller' });
    expect(nss).toEqual([]);
  });

  test('an override can downgrade or upgrade any code, but only for its own operations', () => {
    const overrides: ErrorOverride[] = [
      { code: 'CKR_DEVICE_ERROR', during: ['sign', 'verify'], errorClass: 'session' },
      { code: 'CKR_ARGUMENTS_BAD', during: ['encrypt'], errorClass: 'unsupported' },
      { code: 'CKR_VENDOR_X', during: ['random'], errorClass: 'caller' },
    ];
    expect(classifyError('CKR_DEVICE_ERROR', 'sign', overrides)).toBe('session');
    expect(classifyError('CKR_DEVICE_ERROR', 'verify', overrides)).toBe('session');
    expect(classifyError('CKR_DEVICE_ERROR', 'decrypt', overrides)).toBe('device');
    expect(classifyError('CKR_ARGUMENTS_BAD', 'encrypt', overrides)).toBe('unsupported');
    expect(classifyError('CKR_ARGUMENTS_BAD', 'decrypt', overrides)).toBe('caller');
    expect(classifyError('CKR_VENDOR_X', 'random', overrides)).toBe('caller');
    expect(classifyError('CKR_VENDOR_X', 'sign', overrides)).toBe('device');
  });

  test('the first matching override wins', () => {
    const overrides: ErrorOverride[] = [
      { code: 'CKR_GENERAL_ERROR', during: ['decrypt'], errorClass: 'session' },
      { code: 'CKR_GENERAL_ERROR', during: ['decrypt'], errorClass: 'caller' },
    ];
    expect(classifyError('CKR_GENERAL_ERROR', 'decrypt', overrides)).toBe('session');
  });
});
