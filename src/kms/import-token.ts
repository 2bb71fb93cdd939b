import { createHash, randomBytes } from 'node:crypto';
import { about, InvalidImportTokenError } from './errors';

/**
 * ImportToken: opaque bytes to the caller, "KIT1" | key id | wrapping-key digest (32) | validTo (u32) | secret (32).
 * The store keeps only its SHA-256, next to the wrapping key it belongs to, so any node
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

/** SHA-256 of the token's base64 text: the hash stores have kept since tokens were handed out as text. */
export function tokenHash(token: Buffer): string {
  return createHash('sha256').update(token.toString('base64'), 'utf8').digest('hex');
}

export function issueImportToken(fields: ImportTokenFields, secret: Buffer = randomBytes(SECRET_BYTES)): Buffer {
  const id = Buffer.from(fields.keyId, 'utf8');
  const validTo = Buffer.alloc(4);
  validTo.writeUInt32BE(fields.validTo);
  return Buffer.concat([MAGIC, Buffer.from([id.length]), id, fields.wrappingKeyDigest, validTo, secret]);
}

/** Reads the fields of a token; anything malformed is InvalidImportTokenError. Authenticity is checked against the stored hash. */
export function readImportToken(buf: Buffer): ImportTokenFields {
  const bad = (): never => {
    throw new InvalidImportTokenError('importToken is not a token issued by GetParametersForImport', about('importToken'));
  };
  if (buf.length < MAGIC.length + 1 || !buf.subarray(0, 4).equals(MAGIC)) bad();
  const idLen = buf[4];
  if (buf.length !== 5 + idLen + 32 + 4 + SECRET_BYTES) bad();
  return {
    keyId: buf.subarray(5, 5 + idLen).toString('utf8'),
    wrappingKeyDigest: buf.subarray(5 + idLen, 5 + idLen + 32),
    validTo: buf.readUInt32BE(5 + idLen + 32),
  };
}
