import { aliasProblem, descriptionProblem, pendingWindowProblem, rotateDaysProblem } from '../../../src/kms/key-rules';
import { keyUsageFromWire, keyUsageToWire } from '../../../src/api/kms-wire';
import { KEY_USAGE_CODES, KEY_USAGE_NAMES } from '../../../src/common/key-usages';
import { InvalidKeyUsageError, StoreIntegrityError } from '../../../src/kms/errors';
import { canRotate, isKeyUsage, storedUsage, usageOf, usagesOffered } from '../../../src/kms/key-usage';

describe('alias rules', () => {
  test.each<[unknown, boolean, RegExp | undefined]>([
    ['my-key_1', false, undefined],
    ['A', false, undefined],
    ['a'.repeat(60), false, undefined],
    ['a'.repeat(61), false, /1-60/],
    ['', false, /required/],
    [undefined, false, /required/],
    [42, false, /required/],
    ['-leading', false, /starting with a letter or digit/],
    ['_leading', false, /starting/],
    ['has space', false, /letters/],
    ['ключ', false, /letters/],
    ['kms-mine', false, /reserved/],
    ['KMS-mine', false, /reserved/],
    ['kms-secretsmanager', true, undefined],
  ])('%p (cloud product: %p)', (alias, cloud, problem) => {
    const p = aliasProblem(alias, cloud);
    if (problem) expect(p).toMatch(problem);
    else expect(p).toBeUndefined();
  });
});

describe('numeric rules', () => {
  test.each<[unknown, boolean]>([
    [undefined, true],
    [7, true],
    [365, true],
    [6, false],
    [366, false],
    [30.5, false],
    ['30', false],
  ])('RotateDays %p ok=%p', (v, ok) => {
    expect(rotateDaysProblem(v) === undefined).toBe(ok);
  });
  test.each<[unknown, boolean]>([
    [7, true],
    [30, true],
    [6, false],
    [31, false],
    [undefined, false],
    [7.5, false],
  ])('PendingWindowInDays %p ok=%p', (v, ok) => {
    expect(pendingWindowProblem(v) === undefined).toBe(ok);
  });
  test.each<[unknown, boolean]>([
    [undefined, true],
    ['', true],
    ['é'.repeat(512), true],
    ['é'.repeat(513), false],
    [5, false],
  ])('Description %p ok=%p', (v, ok) => {
    expect(descriptionProblem(v) === undefined).toBe(ok);
  });
});

describe('key usages', () => {
  test('on the Tencent wire, an empty or absent KeyUsage means ENCRYPT_DECRYPT; names map both ways', () => {
    const refuse = (name: string) => new InvalidKeyUsageError(name);
    expect(keyUsageFromWire(undefined, refuse)).toBe('encrypt-decrypt');
    expect(keyUsageFromWire('', refuse)).toBe('encrypt-decrypt');
    expect(keyUsageFromWire('ASYMMETRIC_SIGN_VERIFY_ECC', refuse)).toBe('ec-p256-sign-verify');
    expect(() => keyUsageFromWire('toString', refuse)).toThrow(InvalidKeyUsageError);
    for (const u of KEY_USAGE_NAMES) expect(keyUsageFromWire(keyUsageToWire(u), refuse)).toBe(u);
  });
  test('only known usages are usages', () => {
    expect(isKeyUsage('rsa-2048-decrypt')).toBe(true);
    expect(isKeyUsage('ASYMMETRIC_DECRYPT_RSA_2048')).toBe(false);
    expect(isKeyUsage('toString')).toBe(false);
    expect(isKeyUsage('SYMMETRIC')).toBe(false);
  });
  test('stored codes stay what records and material bindings have always carried', () => {
    expect(KEY_USAGE_CODES).toEqual({
      'encrypt-decrypt': 'ENCRYPT_DECRYPT',
      'rsa-2048-decrypt': 'ASYMMETRIC_DECRYPT_RSA_2048',
      'sm2-decrypt': 'ASYMMETRIC_DECRYPT_SM2',
      'sm2-sign-verify': 'ASYMMETRIC_SIGN_VERIFY_SM2',
      'rsa-2048-sign-verify': 'ASYMMETRIC_SIGN_VERIFY_RSA_2048',
      'ec-p256-sign-verify': 'ASYMMETRIC_SIGN_VERIFY_ECC',
      'ec-p384-sign-verify': 'ASYMMETRIC_SIGN_VERIFY_ECDSA384',
    });
    for (const u of KEY_USAGE_NAMES) expect(usageOf({ keyId: 'k', keyUsage: storedUsage(u) })).toBe(u);
    expect(() => usageOf({ keyId: 'k', keyUsage: 'encrypt-decrypt' })).toThrow(StoreIntegrityError);
  });
  test('a cluster offers the usages whose key spec all members can make; never SM2', () => {
    expect(usagesOffered(['AES_256', 'RSA_2048', 'RSA_3072', 'RSA_4096', 'EC_P256', 'EC_P384'])).toEqual([
      'encrypt-decrypt',
      'rsa-2048-decrypt',
      'rsa-2048-sign-verify',
      'ec-p256-sign-verify',
      'ec-p384-sign-verify',
    ]);
    expect(usagesOffered(['AES_256', 'RSA_2048'])).toEqual(['encrypt-decrypt', 'rsa-2048-decrypt', 'rsa-2048-sign-verify']);
  });
  test.each<[Parameters<typeof canRotate>[0], Parameters<typeof canRotate>[1], string]>([
    ['encrypt-decrypt', 'TENCENT_KMS', 'yes'],
    ['encrypt-decrypt', 'EXTERNAL', 'external'],
    ['ec-p256-sign-verify', 'TENCENT_KMS', 'asymmetric'],
    ['rsa-2048-decrypt', 'TENCENT_KMS', 'asymmetric'],
  ])('rotation of %s / %s: %s', (usage, origin, expected) => {
    expect(canRotate(usage, origin)).toBe(expected);
  });
});
