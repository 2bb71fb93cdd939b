import {
  contextFromWire,
  generateDataKeyRequest,
  hostedDataKeyRequest,
  importDataKeyRequest,
  importRequest,
  isHosted,
  listDataKeyDetailRequest,
  listDataKeysRequest,
  signRequest,
  verifyRequest,
} from '../../../src/api/kms-wire';
import { InvalidEncryptionContextError, InvalidParameterError, InvalidTypeError } from '../../../src/kms/errors';

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
