import { constants, generateKeyPairSync, privateDecrypt } from 'node:crypto';
import { InvalidParameterError, UnsupportedOperationError } from '../../../src/kms/errors';
import { outputPlaintext } from '../../../src/api/public-key-output';

describe("plaintext returned under the caller's public key", () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const der = rsa.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  const pt = Buffer.from('data key bytes');

  test('no public key: the plaintext itself', () => {
    expect(outputPlaintext(pt, {})).toBe(pt);
  });

  test.each([
    ['RSAES_PKCS1_V1_5', constants.RSA_PKCS1_PADDING, undefined],
    ['RSAES_OAEP_SHA_1', constants.RSA_PKCS1_OAEP_PADDING, 'sha1'],
    ['RSAES_OAEP_SHA_256', constants.RSA_PKCS1_OAEP_PADDING, 'sha256'],
  ])('%s, PEM or base64 DER', (alg, padding, oaepHash) => {
    for (const key of [pem, der]) {
      const out = outputPlaintext(pt, { EncryptionPublicKey: key, EncryptionAlgorithm: alg });
      expect(out.equals(pt)).toBe(false);
      if (padding === constants.RSA_PKCS1_PADDING) continue; // Node 20 refuses PKCS#1 v1.5 private decryption; the HSM tests cover it
      expect(privateDecrypt({ key: rsa.privateKey, padding, oaepHash }, out).equals(pt)).toBe(true);
    }
  });

  test.each([
    [{ EncryptionPublicKey: pem }, UnsupportedOperationError],
    [{ EncryptionPublicKey: pem, EncryptionAlgorithm: 'SM2_C1C3C2_ASN1' }, UnsupportedOperationError],
    [{ EncryptionPublicKey: pem, EncryptionAlgorithm: 'RSA' }, InvalidParameterError],
    [{ EncryptionPublicKey: 'garbage', EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' }, InvalidParameterError],
    [{ EncryptionAlgorithm: 'RSAES_OAEP_SHA_1' }, InvalidParameterError],
    [
      {
        EncryptionPublicKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString(),
        EncryptionAlgorithm: 'RSAES_OAEP_SHA_1',
      },
      InvalidParameterError,
    ],
    [
      {
        EncryptionPublicKey: generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString(),
        EncryptionAlgorithm: 'RSAES_OAEP_SHA_1',
      },
      InvalidParameterError,
    ],
  ])('%#: refused', (p, cls) => {
    expect(() => outputPlaintext(pt, p)).toThrow(cls);
  });
});
