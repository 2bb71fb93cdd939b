import { createHash, randomBytes } from 'node:crypto';
import { InvalidImportTokenError } from './errors';

/**
 * ImportToken: opaque to the caller, "KIT1" | key id | wrapping-key digest (32) | validTo (u32) | secret (32),
 * base64. The store keeps only its SHA-256, next to the wrapping key it belongs to, so any node
 * (and a restarted one) can check it; a token for another key or an older wrapping key is refused.
 */
const MAGIC = Buffer.from('KIT1', 'latin1');
const SECRET_BYTES = 32;

export interface ImportTokenFields {
  keyId: string;
  /** SHA-256 of the wrapping key record the token belongs to. */
  wrappingKeyDigest: Buffer;
  validTo: number;
}

export function wrappingKeyDigest(wrappingKey: Buffer): Buffer {
  return createHash('sha256').update(wrappingKey).digest();
}

export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function issueImportToken(fields: ImportTokenFields, secret: Buffer = randomBytes(SECRET_BYTES)): string {
  const id = Buffer.from(fields.keyId, 'utf8');
  const validTo = Buffer.alloc(4);
  validTo.writeUInt32BE(fields.validTo);
  return Buffer.concat([MAGIC, Buffer.from([id.length]), id, fields.wrappingKeyDigest, validTo, secret]).toString('base64');
}

/** Reads the fields of a token; anything malformed is InvalidImportTokenError. Authenticity is checked against the stored hash. */
export function readImportToken(token: string): ImportTokenFields {
  const bad = (): never => {
    throw new InvalidImportTokenError('ImportToken is not a token issued by GetParametersForImport');
  };
  if (typeof token !== 'string' || token.length === 0 || token.length > 1024 || !/^[A-Za-z0-9+/]+={0,2}$/.test(token)) bad();
  const buf = Buffer.from(token, 'base64');
  if (buf.length < MAGIC.length + 1 || !buf.subarray(0, 4).equals(MAGIC)) bad();
  const idLen = buf[4];
  if (buf.length !== 5 + idLen + 32 + 4 + SECRET_BYTES) bad();
  return {
    keyId: buf.subarray(5, 5 + idLen).toString('utf8'),
    wrappingKeyDigest: buf.subarray(5 + idLen, 5 + idLen + 32),
    validTo: buf.readUInt32BE(5 + idLen + 32),
  };
}
