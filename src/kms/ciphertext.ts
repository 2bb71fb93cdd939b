import { GCM_IV_BYTES as IV_BYTES, GCM_TAG_BYTES as TAG_BYTES } from '../common/gcm';
import { about, InvalidCiphertextError, InvalidEncryptionContextError } from './errors';

/**
 * The ciphertext blob: self-describing and versioned.
 *
 *   "KMS" | format 0x01 | deployment id (16) | key id length (1) | key id | key version (u32)
 *   | IV (12) | tag (16) | ciphertext
 *
 * The header (everything before the IV) and the canonical encryption context are the AES-GCM AAD,
 * so any changed byte fails authentication. Decrypt needs nothing but the blob.
 */
export interface CiphertextHeader {
  deploymentId: Buffer;
  keyId: string;
  keyVersion: number;
}

export interface SealedBlob extends CiphertextHeader {
  header: Buffer;
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
}

const MAGIC = Buffer.from('KMS', 'latin1');
const FORMAT = 1;
const DEPLOYMENT_ID_BYTES = 16;

export function encodeHeader(h: CiphertextHeader): Buffer {
  const keyId = Buffer.from(h.keyId, 'utf8');
  if (h.deploymentId.length !== DEPLOYMENT_ID_BYTES) throw new RangeError('deployment id must be 16 bytes');
  if (keyId.length === 0 || keyId.length > 255) throw new RangeError('key id must be 1..255 bytes');
  if (!Number.isInteger(h.keyVersion) || h.keyVersion < 0 || h.keyVersion > 0xffffffff) throw new RangeError('key version must be a u32');
  const version = Buffer.alloc(4);
  version.writeUInt32BE(h.keyVersion);
  return Buffer.concat([MAGIC, Buffer.from([FORMAT]), h.deploymentId, Buffer.from([keyId.length]), keyId, version]);
}

/** The encryption context: string names to string values, bound to a ciphertext as part of its AAD. */
export type EncryptionContext = Readonly<Record<string, string>>;

/**
 * The context in canonical form: the JSON object with its names sorted, no whitespace (the same
 * bytes whichever protocol or name order it came in). Absent or empty means no context.
 */
export function canonicalContext(context: EncryptionContext | undefined): Buffer {
  if (context === undefined) return Buffer.alloc(0);
  const entries = Object.entries(context);
  if (entries.length === 0) return Buffer.alloc(0);
  if (!entries.every(([, v]) => typeof v === 'string')) throw new InvalidEncryptionContextError('context values must be strings', about('context'));
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Buffer.from(JSON.stringify(Object.fromEntries(entries)), 'utf8');
}

/** AAD = header || u32 length of context || canonical context. */
export function additionalData(header: Buffer, context: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(context.length);
  return Buffer.concat([header, len, context]);
}

export function encodeBlob(header: Buffer, iv: Buffer, tag: Buffer, ciphertext: Buffer): Buffer {
  if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw new RangeError('IV must be 12 bytes and tag 16 bytes');
  return Buffer.concat([header, iv, tag, ciphertext]);
}

const CIPHERTEXT = about('ciphertext');

/** Parses the bytes of a blob made by this deployment; anything else is InvalidCiphertextError, never another error. */
export function decodeBlob(buf: Buffer, deploymentId: Buffer): SealedBlob {
  const minimum = MAGIC.length + 1 + DEPLOYMENT_ID_BYTES + 1 + 1 + 4 + IV_BYTES + TAG_BYTES;
  if (buf.length < minimum || !buf.subarray(0, 3).equals(MAGIC)) throw new InvalidCiphertextError('ciphertext is not a ciphertext of this service', CIPHERTEXT);
  if (buf[3] !== FORMAT) throw new InvalidCiphertextError(`ciphertext has unknown format version ${buf[3]}`, CIPHERTEXT);
  const deployment = buf.subarray(4, 4 + DEPLOYMENT_ID_BYTES);
  if (!deployment.equals(deploymentId)) throw new InvalidCiphertextError('ciphertext was made by another deployment', CIPHERTEXT);
  const idLen = buf[4 + DEPLOYMENT_ID_BYTES];
  const idStart = 5 + DEPLOYMENT_ID_BYTES;
  const headerEnd = idStart + idLen + 4;
  if (idLen === 0 || buf.length < headerEnd + IV_BYTES + TAG_BYTES) throw new InvalidCiphertextError('ciphertext is truncated', CIPHERTEXT);
  const keyId = buf.subarray(idStart, idStart + idLen).toString('utf8');
  return {
    deploymentId: Buffer.from(deployment),
    keyId,
    keyVersion: buf.readUInt32BE(idStart + idLen),
    header: buf.subarray(0, headerEnd),
    iv: buf.subarray(headerEnd, headerEnd + IV_BYTES),
    tag: buf.subarray(headerEnd + IV_BYTES, headerEnd + IV_BYTES + TAG_BYTES),
    ciphertext: buf.subarray(headerEnd + IV_BYTES + TAG_BYTES),
  };
}
