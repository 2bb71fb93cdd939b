import { createPublicKey } from 'node:crypto';
import * as pk from 'pkcs11js';
import { InvalidInputError } from './errors';

const b64url = (b: Buffer) => b.toString('base64url');

export function rsaSpki({ modulus, exponent }: { modulus: Buffer; exponent: Buffer }): Buffer {
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

/** Strict DER SEQUENCE { r, s } to fixed-size r||s; undefined for anything but the one valid encoding. */
export function ecdsaDerToRaw(der: Buffer, size: number): Buffer | undefined {
  if (der.length < 8 || der[0] !== 0x30) return undefined;
  let at: number;
  if (der[1] < 0x80) {
    if (der[1] !== der.length - 2) return undefined;
    at = 2;
  } else if (der[1] === 0x81 && der[2] >= 0x80) {
    if (der[2] !== der.length - 3) return undefined;
    at = 3;
  } else {
    return undefined;
  }
  const parts: Buffer[] = [];
  for (let i = 0; i < 2; i++) {
    if (der[at] !== 0x02 || at + 2 > der.length) return undefined;
    const len = der[at + 1];
    if (len === 0 || len >= 0x80 || at + 2 + len > der.length) return undefined;
    const v = der.subarray(at + 2, at + 2 + len);
    if (v[0] & 0x80) return undefined; // negative
    if (v[0] === 0 && (len === 1 || !(v[1] & 0x80))) return undefined; // zero or non-minimal
    const body = v[0] === 0 ? v.subarray(1) : v;
    if (body.length > size) return undefined;
    parts.push(Buffer.concat([Buffer.alloc(size - body.length), body]));
    at += 2 + len;
  }
  return at === der.length ? Buffer.concat(parts) : undefined;
}

/** A session public-key object template for an SPKI (RSA or EC P-256/P-384). */
export function publicKeyTemplate(spki: Buffer): pk.Template {
  const jwk = createPublicKey({ key: spki, format: 'der', type: 'spki' }).export({ format: 'jwk' });
  const common: pk.Template = [
    { type: pk.CKA_CLASS, value: pk.CKO_PUBLIC_KEY },
    { type: pk.CKA_TOKEN, value: false },
    { type: pk.CKA_VERIFY, value: true },
    { type: pk.CKA_ENCRYPT, value: false },
  ];
  if (jwk.kty === 'RSA') {
    return [
      ...common,
      { type: pk.CKA_KEY_TYPE, value: pk.CKK_RSA },
      { type: pk.CKA_MODULUS, value: Buffer.from(jwk.n!, 'base64url') },
      { type: pk.CKA_PUBLIC_EXPONENT, value: Buffer.from(jwk.e!, 'base64url') },
    ];
  }
  const curve = jwk.crv as EcCurve;
  if (!(curve in EC_CURVES)) throw new InvalidInputError(`unsupported public key curve ${jwk.crv}`);
  const point = Buffer.concat([Buffer.from([0x04]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
  const octet = Buffer.concat([Buffer.from([0x04]), point.length < 128 ? Buffer.from([point.length]) : Buffer.from([0x81, point.length]), point]);
  return [
    ...common,
    { type: pk.CKA_KEY_TYPE, value: pk.CKK_EC },
    { type: pk.CKA_EC_PARAMS, value: EC_CURVES[curve].oid },
    { type: pk.CKA_EC_POINT, value: octet },
  ];
}
