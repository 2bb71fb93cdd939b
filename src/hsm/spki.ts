import { createPublicKey } from 'node:crypto';
import { InvalidInputError } from './errors';

const b64url = (b: Buffer) => b.toString('base64url');

export function rsaSpki(modulus: Buffer, exponent: Buffer): Buffer {
  return createPublicKey({ key: { kty: 'RSA', n: b64url(modulus), e: b64url(exponent) }, format: 'jwk' }).export({ type: 'spki', format: 'der' });
}

export const EC_CURVES = {
  'P-256': { oid: Buffer.from('06082a8648ce3d030107', 'hex'), bytes: 32 },
  'P-384': { oid: Buffer.from('06052b81040022', 'hex'), bytes: 48 },
} as const;
export type EcCurve = keyof typeof EC_CURVES;

/** CKA_EC_POINT is a DER OCTET STRING around the uncompressed point 04||X||Y. */
export function ecSpki(curve: EcCurve, ecPoint: Buffer): Buffer {
  const size = EC_CURVES[curve].bytes;
  let point = ecPoint;
  if (point.length !== 1 + 2 * size) {
    if (point[0] !== 0x04) throw new InvalidInputError('unexpected EC point encoding');
    point = point.subarray(point[1] & 0x80 ? 2 + (point[1] & 0x7f) : 2);
  }
  if (point.length !== 1 + 2 * size || point[0] !== 0x04) throw new InvalidInputError('unexpected EC point encoding');
  const x = point.subarray(1, 1 + size);
  const y = point.subarray(1 + size);
  return createPublicKey({ key: { kty: 'EC', crv: curve, x: b64url(x), y: b64url(y) }, format: 'jwk' }).export({ type: 'spki', format: 'der' });
}

function derInteger(v: Buffer): Buffer {
  let i = 0;
  while (i < v.length - 1 && v[i] === 0) i++;
  let body = v.subarray(i);
  if (body[0] & 0x80) body = Buffer.concat([Buffer.from([0]), body]);
  return Buffer.concat([Buffer.from([0x02, body.length]), body]);
}

/** PKCS#11 ECDSA signatures are r||s; X.509 and most verifiers want DER SEQUENCE { r, s }. */
export function ecdsaRawToDer(raw: Buffer): Buffer {
  const half = raw.length / 2;
  const body = Buffer.concat([derInteger(raw.subarray(0, half)), derInteger(raw.subarray(half))]);
  const len = body.length < 128 ? Buffer.from([body.length]) : Buffer.from([0x81, body.length]);
  return Buffer.concat([Buffer.from([0x30]), len, body]);
}

/** DER DigestInfo prefix for SHA-256 (RFC 8017 9.2), for CKM_RSA_PKCS signing of a digest. */
export const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');
