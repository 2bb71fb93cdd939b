import { contextFromWire, generateDataKeyRequest, importRequest, signRequest, verifyRequest } from '../../../src/api/kms-wire';
import { InvalidEncryptionContextError, UnsupportedOperationError } from '../../../src/kms/errors';

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

  test('KMS-hosted data keys are refused before the core is asked', () => {
    expect(() => generateDataKeyRequest({ KeyId: 'k', IsHostedByKms: 1 })).toThrow(UnsupportedOperationError);
    expect(generateDataKeyRequest({ KeyId: 'k', IsHostedByKms: 0, KeySpec: 'AES_256', EncryptionContext: '{"a":"b"}' })).toEqual({
      keyId: 'k',
      keySpec: 'AES_256',
      numberOfBytes: undefined,
      context: { a: 'b' },
      hsmClusterId: undefined,
    });
  });
});
