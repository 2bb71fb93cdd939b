import { constants, createPublicKey, KeyObject, publicEncrypt } from 'node:crypto';
import { InvalidParameterError, PublicKeyEncryptionError, UnsupportedOperationError } from '../kms/errors';

/**
 * Decrypt and GenerateDataKey may return their plaintext encrypted under a public key the caller
 * sends (EncryptionPublicKey + EncryptionAlgorithm), so it never crosses the wire in clear.
 */
export const OUTPUT_ALGORITHMS = ['RSAES_PKCS1_V1_5', 'RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256'] as const;
const SM2_ALGORITHMS = ['SM2', 'SM2_C1C3C2_ASN1'];

export interface PublicKeyOutput {
  EncryptionPublicKey?: string;
  EncryptionAlgorithm?: string;
}

function parseKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem.includes('-----BEGIN') ? pem : { key: Buffer.from(pem, 'base64'), format: 'der', type: 'spki' });
  } catch {
    throw new InvalidParameterError('EncryptionPublicKey is not a PEM (or base64 DER) public key');
  }
  if (key.asymmetricKeyType !== 'rsa') throw new InvalidParameterError(`EncryptionPublicKey is a ${key.asymmetricKeyType} key; only RSA keys can be used here`);
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < 2048 || bits > 4096) throw new InvalidParameterError(`EncryptionPublicKey must be an RSA key of 2048 to 4096 bits, got ${bits}`);
  return key;
}

/** The plaintext as the caller asked for it: unchanged, or encrypted under its public key. */
export function outputPlaintext(plaintext: Buffer, p: PublicKeyOutput): Buffer {
  if (p.EncryptionPublicKey === undefined || p.EncryptionPublicKey === '') {
    if (p.EncryptionAlgorithm) throw new InvalidParameterError('EncryptionAlgorithm needs an EncryptionPublicKey');
    return plaintext;
  }
  const algorithm = p.EncryptionAlgorithm ?? 'SM2';
  if (SM2_ALGORITHMS.includes(algorithm)) {
    throw new UnsupportedOperationError(
      `EncryptionAlgorithm ${algorithm} (the default when none is given) needs SM2, which no HSM of this deployment offers; use one of ${OUTPUT_ALGORITHMS.join(', ')}`,
    );
  }
  if (!(OUTPUT_ALGORITHMS as readonly string[]).includes(algorithm)) {
    throw new InvalidParameterError(`EncryptionAlgorithm must be one of ${[...SM2_ALGORITHMS, ...OUTPUT_ALGORITHMS].join(', ')}`);
  }
  const key = parseKey(p.EncryptionPublicKey);
  try {
    if (algorithm === 'RSAES_PKCS1_V1_5') return publicEncrypt({ key, padding: constants.RSA_PKCS1_PADDING }, plaintext);
    return publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: algorithm === 'RSAES_OAEP_SHA_1' ? 'sha1' : 'sha256' }, plaintext);
  } catch {
    throw new PublicKeyEncryptionError(`the plaintext (${plaintext.length} bytes) cannot be encrypted under EncryptionPublicKey with ${algorithm}`);
  }
}
