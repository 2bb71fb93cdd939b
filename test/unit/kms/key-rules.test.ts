import { aliasProblem, descriptionProblem, pendingWindowProblem, rotateDaysProblem } from '../../../src/kms/key-rules';
import { canRotate, isKeyUsage, keyUsageOrDefault, usagesOffered } from '../../../src/kms/key-usage';

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
  test('empty means ENCRYPT_DECRYPT', () => {
    expect(keyUsageOrDefault(undefined)).toBe('ENCRYPT_DECRYPT');
    expect(keyUsageOrDefault('')).toBe('ENCRYPT_DECRYPT');
    expect(keyUsageOrDefault('ASYMMETRIC_SIGN_VERIFY_ECC')).toBe('ASYMMETRIC_SIGN_VERIFY_ECC');
  });
  test('only known usages are usages', () => {
    expect(isKeyUsage('ASYMMETRIC_DECRYPT_RSA_2048')).toBe(true);
    expect(isKeyUsage('toString')).toBe(false);
    expect(isKeyUsage('SYMMETRIC')).toBe(false);
  });
  test('a cluster offers the usages whose key spec all members can make; never SM2', () => {
    expect(usagesOffered(['AES_256', 'RSA_2048', 'RSA_3072', 'RSA_4096', 'EC_P256', 'EC_P384'])).toEqual([
      'ENCRYPT_DECRYPT',
      'ASYMMETRIC_DECRYPT_RSA_2048',
      'ASYMMETRIC_SIGN_VERIFY_RSA_2048',
      'ASYMMETRIC_SIGN_VERIFY_ECC',
      'ASYMMETRIC_SIGN_VERIFY_ECDSA384',
    ]);
    expect(usagesOffered(['AES_256', 'RSA_2048'])).toEqual(['ENCRYPT_DECRYPT', 'ASYMMETRIC_DECRYPT_RSA_2048', 'ASYMMETRIC_SIGN_VERIFY_RSA_2048']);
  });
  test.each<[Parameters<typeof canRotate>[0], Parameters<typeof canRotate>[1], string]>([
    ['ENCRYPT_DECRYPT', 'TENCENT_KMS', 'yes'],
    ['ENCRYPT_DECRYPT', 'EXTERNAL', 'external'],
    ['ASYMMETRIC_SIGN_VERIFY_ECC', 'TENCENT_KMS', 'asymmetric'],
    ['ASYMMETRIC_DECRYPT_RSA_2048', 'TENCENT_KMS', 'asymmetric'],
  ])('rotation of %s / %s: %s', (usage, origin, expected) => {
    expect(canRotate(usage, origin)).toBe(expected);
  });
});
