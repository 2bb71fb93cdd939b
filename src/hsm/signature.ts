import { constants, createHash, createPublicKey, KeyObject, publicDecrypt, verify } from 'node:crypto';
import type { SigningAlgorithm } from './capabilities';
import { SHA256_DIGEST_INFO } from './spki';

/**
 * Verifies in software what needs only the public key: any algorithm over a message, and RSA
 * (PKCS#1 v1.5, PSS) over a digest. Returns undefined for ECDSA over a bare digest, which Node
 * cannot verify without hashing again: the member verifies that one inside the HSM.
 */
export function verifyInSoftware(
  spki: Buffer,
  algorithm: SigningAlgorithm,
  input: { message: Buffer } | { digest: Buffer },
  signature: Buffer,
): boolean | undefined {
  const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  const hash = algorithm === 'ECDSA_SHA_384' ? 'sha384' : 'sha256';
  try {
    if ('message' in input) {
      const pss = algorithm === 'RSA_PSS_SHA_256' ? { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } : {};
      return verify(hash, input.message, { key, ...pss }, signature);
    }
    if (algorithm === 'RSA_PKCS1_SHA_256') {
      return publicDecrypt({ key, padding: constants.RSA_PKCS1_PADDING }, signature).equals(Buffer.concat([SHA256_DIGEST_INFO, input.digest]));
    }
    if (algorithm === 'RSA_PSS_SHA_256') return pssVerifyDigest(key, input.digest, signature);
    return undefined;
  } catch {
    return false;
  }
}

function mgf1(seed: Buffer, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let c = 0, off = 0; off < length; c++, off += 32) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(c);
    createHash('sha256').update(seed).update(counter).digest().copy(out, off);
  }
  return out;
}

/** RSASSA-PSS verification of a SHA-256 digest (RFC 8017 9.1.2), MGF1-SHA-256, 32-byte salt. */
function pssVerifyDigest(key: KeyObject, mHash: Buffer, signature: Buffer): boolean {
  const modBits = (key.asymmetricKeyDetails?.modulusLength ?? 0) - 1;
  const emLen = Math.ceil(modBits / 8);
  const raw = publicDecrypt({ key, padding: constants.RSA_NO_PADDING }, signature);
  const em = raw.subarray(raw.length - emLen);
  if (mHash.length !== 32 || em[emLen - 1] !== 0xbc) return false;
  const maskedDb = em.subarray(0, emLen - 33);
  const h = em.subarray(emLen - 33, emLen - 1);
  const mask = mgf1(h, maskedDb.length);
  const db = Buffer.from(maskedDb.map((b, i) => b ^ mask[i]));
  db[0] &= 0xff >> (8 * emLen - modBits);
  const saltStart = db.length - 32;
  if (!db.subarray(0, saltStart - 1).every((b) => b === 0) || db[saltStart - 1] !== 1) return false;
  const mPrime = Buffer.concat([Buffer.alloc(8), mHash, db.subarray(saltStart)]);
  return createHash('sha256').update(mPrime).digest().equals(h);
}
