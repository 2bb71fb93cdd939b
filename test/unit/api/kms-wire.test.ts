import { toApiError } from '../../../src/api/error-codes';
import {
  contextFromWire,
  createKeyRequest,
  generateDataKeyRequest,
  hostedDataKeyRequest,
  importDataKeyRequest,
  importRequest,
  isHosted,
  listAlgorithmsAnswer,
  listDataKeyDetailRequest,
  listDataKeysRequest,
  listKeyDetailRequest,
  signRequest,
  toKeyMetadata,
  verifyRequest,
  wireMessage,
} from '../../../src/api/kms-wire';
import {
  about,
  InvalidEncryptionContextError,
  InvalidKeyUsageError,
  InvalidParameterError,
  InvalidPlaintextError,
  InvalidTypeError,
  KeyDisabledError,
} from '../../../src/kms/errors';
import type { KeyDescription } from '../../../src/kms/key-metadata';

describe('the Tencent wire mapped onto the core', () => {
  test.each([
    ['ECC_P256_R1', 'ECDSA_SHA_256'],
    ['ECC_P384_R1', 'ECDSA_SHA_384'],
    ['ECDSA_SHA_256', 'ECDSA_SHA_256'],
    ['RSA_PSS_SHA_256', 'RSA_PSS_SHA_256'],
    ['SM2DSA', 'SM2DSA'],
    ['constructor', 'constructor'],
    ['__proto__', '__proto__'],
  ])('signing algorithm %s reaches the core as %s', (name, core) => {
    expect(signRequest({ KeyId: 'k', Algorithm: name, Message: Buffer.from('m') }).algorithm).toBe(core);
  });

  test('sign and verify requests carry the message, its type and the signature bytes', () => {
    const message = Buffer.from('m');
    const signature = Buffer.from('s');
    expect(verifyRequest({ KeyId: 'k', Algorithm: 'ECC_P256_R1', Message: message, MessageType: 'DIGEST', SignatureValue: signature })).toEqual({
      keyId: 'k',
      algorithm: 'ECDSA_SHA_256',
      message,
      messageType: 'DIGEST',
      signature,
    });
  });

  test('ValidTo 0 and an absent ValidTo both reach the core as "never expires"', () => {
    const token = Buffer.from('t');
    expect(importRequest({ KeyId: 'k', ImportToken: token, EncryptedKeyMaterial: token }).validTo).toBeUndefined();
    expect(importRequest({ KeyId: 'k', ImportToken: token, EncryptedKeyMaterial: token, ValidTo: 0 }).validTo).toBe(0);
  });

  test('EncryptionContext: JSON text of an object of strings; absent or empty is none', () => {
    expect(contextFromWire(undefined)).toBeUndefined();
    expect(contextFromWire('')).toBeUndefined();
    expect(contextFromWire('{"b":"2","a":"1"}')).toEqual({ a: '1', b: '2' });
    for (const bad of ['nope', '[]', 'null', '{"a":1}', `{"a":"${'x'.repeat(1100)}"}`])
      expect(() => contextFromWire(bad)).toThrow(InvalidEncryptionContextError);
  });

  test('IsHostedByKms is 0 or 1; a hosted request carries its name, description and tags to the core', () => {
    expect(isHosted({ KeyId: 'k' })).toBe(false);
    expect(isHosted({ KeyId: 'k', IsHostedByKms: 0 })).toBe(false);
    expect(isHosted({ KeyId: 'k', IsHostedByKms: 1 })).toBe(true);
    expect(() => isHosted({ KeyId: 'k', IsHostedByKms: 2 })).toThrow(InvalidParameterError);
    expect(
      hostedDataKeyRequest({ KeyId: 'k', KeySpec: 'AES_128', IsHostedByKms: 1, DataKeyName: 'n', Description: 'd', Tags: [{ TagKey: 'a', TagValue: 'b' }] }),
    ).toEqual({
      keyId: 'k',
      keySpec: 'AES_128',
      numberOfBytes: undefined,
      context: undefined,
      hsmClusterId: undefined,
      name: 'n',
      description: 'd',
      tags: [{ key: 'a', value: 'b' }],
    });
  });

  test('a data key that is not hosted maps as before', () => {
    expect(generateDataKeyRequest({ KeyId: 'k', IsHostedByKms: 0, KeySpec: 'AES_256', EncryptionContext: '{"a":"b"}' })).toEqual({
      keyId: 'k',
      keySpec: 'AES_256',
      numberOfBytes: undefined,
      context: { a: 'b' },
      hsmClusterId: undefined,
    });
  });

  test("a core error's message names request values by the wire's names: the first mention of each field the error lists", () => {
    const e = new InvalidPlaintextError('plaintext must be 1 to 4096 bytes, got 0', about('plaintext'));
    expect(wireMessage(e)).toBe('Plaintext must be 1 to 4096 bytes, got 0');
    expect(toApiError(e)).toEqual({ code: 'InvalidParameterValue.InvalidPlaintext', message: 'Plaintext must be 1 to 4096 bytes, got 0', internal: false });
    const both = new InvalidParameterError('one of keySpec or numberOfBytes is required', about('keySpec', 'numberOfBytes'));
    expect(wireMessage(both)).toBe('one of KeySpec or NumberOfBytes is required');
    // a caller's value quoted after the field keeps its text; a word that only contains a field name is not one
    const quotedValue = new InvalidParameterError('keyId "keyId" is not a key id; keyIds differ', about('keyId'));
    expect(wireMessage(quotedValue)).toBe('KeyId "keyId" is not a key id; keyIds differ');
    const usage = new InvalidKeyUsageError('key k is a ec-p256-sign-verify key; symmetric encryption needs an encrypt-decrypt key');
    expect(wireMessage(usage)).toBe('key k is a ASYMMETRIC_SIGN_VERIFY_ECC key; symmetric encryption needs an ENCRYPT_DECRYPT key');
    const none = new KeyDisabledError('key k is disabled: plaintext stays');
    expect(wireMessage(none)).toBe('key k is disabled: plaintext stays');
  });

  test('KeyUsage: Tencent names to the core usages and back; empty means ENCRYPT_DECRYPT; unknown names refused with their code', () => {
    expect(createKeyRequest({ Alias: 'a' }).keyUsage).toBe('encrypt-decrypt');
    expect(createKeyRequest({ Alias: 'a', KeyUsage: 'ASYMMETRIC_DECRYPT_RSA_2048' }).keyUsage).toBe('rsa-2048-decrypt');
    expect(() => createKeyRequest({ Alias: 'a', KeyUsage: 'encrypt-decrypt' })).toThrow(InvalidKeyUsageError);
    const d = { keyId: 'k', keyUsage: 'ec-p384-sign-verify', creatorUin: '1', accountUin: '1' } as KeyDescription;
    expect(toKeyMetadata(d).KeyUsage).toBe('ASYMMETRIC_SIGN_VERIFY_ECDSA384');
  });

  test('ListKeyDetail: Tencent codes and names to the neutral list request', () => {
    expect(listKeyDetailRequest({})).toMatchObject({ role: 'user', order: 'desc', keyState: undefined, origin: undefined, keyUsage: 'encrypt-decrypt' });
    expect(
      listKeyDetailRequest({ Role: 1, OrderType: 1, KeyState: 4, Origin: 'ALL', KeyUsage: 'ALL', TagFilters: [{ TagKey: 't' }], Offset: 3, Limit: 7 }),
    ).toEqual({
      offset: 3,
      limit: 7,
      role: 'product',
      hsmClusterId: undefined,
      order: 'asc',
      keyState: 'PendingImport',
      searchAlias: undefined,
      origin: undefined,
      keyUsage: undefined,
      tagFilters: [{ key: 't', values: [] }],
    });
    for (const bad of [{ Role: 2 }, { OrderType: -1 }, { KeyState: 6 }, { Origin: 'x' }, { KeyUsage: 'all' }])
      expect(() => listKeyDetailRequest(bad)).toThrow(InvalidParameterError);
  });

  test("ListAlgorithms: the offered usages by kind, in Tencent's names", () => {
    expect(listAlgorithmsAnswer(['encrypt-decrypt', 'rsa-2048-decrypt', 'ec-p256-sign-verify'])).toEqual({
      SymmetricAlgorithms: [{ KeyUsage: 'ENCRYPT_DECRYPT', Algorithm: 'AES_256' }],
      AsymmetricAlgorithms: [{ KeyUsage: 'ASYMMETRIC_DECRYPT_RSA_2048', Algorithm: 'RSA_2048' }],
      AsymmetricSignVerifyAlgorithms: [{ KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_ECC', Algorithm: 'ECC_P256' }],
    });
  });
});

describe('hosted data keys on the wire', () => {
  test('ImportType 1 is a ciphertext import, 2 plaintext; anything else InvalidType', () => {
    const base = { DataKeyName: 'n', ImportKeyMaterial: Buffer.from('x') };
    expect(importDataKeyRequest({ ...base, ImportType: 1 }).importType).toBe('ciphertext');
    expect(importDataKeyRequest({ ...base, ImportType: 2, KeyId: 'k' })).toMatchObject({ importType: 'plaintext', keyId: 'k', name: 'n' });
    for (const t of [0, 3, -1]) expect(() => importDataKeyRequest({ ...base, ImportType: t })).toThrow(InvalidTypeError);
  });

  test('ListDataKeyDetail: every filter of the SDK model maps to the core, codes checked', () => {
    expect(
      listDataKeyDetailRequest({
        Offset: 5,
        Limit: 7,
        Role: 1,
        OrderType: 1,
        KeyState: 3,
        SearchKeyAlias: 's',
        Origin: 'EXTERNAL',
        HsmClusterId: 'c',
        KeyId: 'k',
        DataKeyLen: 16,
        TagFilters: [{ TagKey: 't' }],
      }),
    ).toEqual({
      offset: 5,
      limit: 7,
      role: 'product',
      order: 'asc',
      state: 'PendingDelete',
      search: 's',
      origin: 'EXTERNAL',
      hsmClusterId: 'c',
      keyId: 'k',
      numberOfBytes: 16,
      tagFilters: [{ key: 't', values: [] }],
    });
    expect(listDataKeyDetailRequest({})).toMatchObject({ order: 'desc', role: 'user', state: undefined, origin: undefined });
    expect(listDataKeyDetailRequest({ Origin: 'ALL' }).origin).toBeUndefined();
    for (const bad of [{ KeyState: 4 }, { OrderType: 2 }, { Role: 2 }, { Origin: 'all' }, { KeyState: -1 }])
      expect(() => listDataKeyDetailRequest(bad)).toThrow(InvalidParameterError);
    expect(listDataKeysRequest({ Role: 0 })).toEqual({ offset: undefined, limit: undefined, role: 'user', order: 'asc', hsmClusterId: undefined });
  });
});
