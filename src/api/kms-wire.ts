/**
 * The Tencent KMS wire, mapped onto the protocol-neutral core: request parameters (already
 * shape-checked and base64-decoded by params.ts) to core requests, core results to the
 * PascalCase answers of the API. Buffers in an answer become base64 in response.ts.
 */
import { createPublicKey, randomUUID } from 'node:crypto';
import type { PublicKeyResult, SignRequest, VerifyRequest } from '../kms/asymmetric';
import type { EncryptionContext } from '../kms/ciphertext';
import type { DataKeyResult, DecryptRequest, EncryptResult, GenerateDataKeyRequest, PlaintextResult, ReEncryptRequest, ReEncryptResult } from '../kms/envelope';
import { InvalidEncryptionContextError, InvalidParameterError, InvalidTypeError } from '../kms/errors';
import type { ImportParameters, ImportRequest } from '../kms/key-import';
import type { KeyDescription } from '../kms/key-metadata';
import type { Tag } from '../kms/key-rules';
import type { DataKeyDescription, DataKeyList, DataKeyListRequest, HostedDataKeyRequest, HostedDataKeyResult, ImportDataKeyRequest } from '../kms/data-keys';
import type { DataKeyState } from '../kms/data-key-state';
import type { CreateKeyRequest, KeyList } from '../kms/lifecycle';
import type { ActionParams } from './params';
import { outputPlaintext, PublicKeyOutput } from './public-key-output';

/** Tencent's limit on EncryptionContext (reference §6). */
export const MAX_CONTEXT_CHARS = 1024;

/** EncryptionContext as Tencent sends it: the text of a JSON object of strings. Absent or empty means none. */
export function contextFromWire(text: string | undefined): EncryptionContext | undefined {
  if (text === undefined || text === '') return undefined;
  if (text.length > MAX_CONTEXT_CHARS) throw new InvalidEncryptionContextError(`EncryptionContext is longer than ${MAX_CONTEXT_CHARS} characters`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new InvalidEncryptionContextError('EncryptionContext is not valid JSON');
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new InvalidEncryptionContextError('EncryptionContext must be a JSON object');
  const entries = Object.entries(parsed as Record<string, unknown>);
  if (!entries.every(([, v]) => typeof v === 'string')) throw new InvalidEncryptionContextError('EncryptionContext values must be strings');
  return parsed as EncryptionContext;
}

/** The plaintext as the caller asked for it (in clear, or under its EncryptionPublicKey); a plaintext that was re-encrypted is wiped. */
function plaintextOut(plaintext: Buffer, p: PublicKeyOutput): Buffer {
  try {
    return outputPlaintext(plaintext, p);
  } finally {
    if (p.EncryptionPublicKey) plaintext.fill(0);
  }
}

export const encryptAnswer = (r: EncryptResult) => ({ CiphertextBlob: r.ciphertext, KeyId: r.keyId });

export const decryptRequest = (p: ActionParams<'Decrypt'>): DecryptRequest => ({ ciphertext: p.CiphertextBlob, context: contextFromWire(p.EncryptionContext) });

export const decryptAnswer = (r: PlaintextResult, p: PublicKeyOutput) => ({ KeyId: r.keyId, Plaintext: plaintextOut(r.plaintext, p) });

export const reEncryptRequest = (p: ActionParams<'ReEncrypt'>): ReEncryptRequest => ({
  ciphertext: p.CiphertextBlob,
  destinationKeyId: p.DestinationKeyId,
  sourceContext: contextFromWire(p.SourceEncryptionContext),
  destinationContext: contextFromWire(p.DestinationEncryptionContext),
});

export const reEncryptAnswer = (r: ReEncryptResult) => ({
  CiphertextBlob: r.ciphertext,
  KeyId: r.keyId,
  SourceKeyId: r.sourceKeyId,
  ReEncrypted: r.reEncrypted,
});

export function generateDataKeyRequest(p: ActionParams<'GenerateDataKey'>): GenerateDataKeyRequest {
  return { keyId: p.KeyId, keySpec: p.KeySpec, numberOfBytes: p.NumberOfBytes, context: contextFromWire(p.EncryptionContext), hsmClusterId: p.HsmClusterId };
}

export const generateDataKeyAnswer = (r: DataKeyResult, p: PublicKeyOutput) => ({
  KeyId: r.keyId,
  Plaintext: plaintextOut(r.plaintext, p),
  CiphertextBlob: r.ciphertext,
});

export const publicKeyAnswer = (r: PublicKeyResult) => ({
  KeyId: r.keyId,
  PublicKey: r.publicKey,
  PublicKeyPem: createPublicKey({ key: r.publicKey, format: 'der', type: 'spki' }).export({ format: 'pem', type: 'spki' }).toString(),
});

/**
 * Tencent's signing algorithm names that are not the core's: ECC_P256_R1 is Tencent's name; for P-384
 * keys the name is not documented, so ECC_P384_R1 is accepted too. Every other name goes to the core as it is.
 */
const SIGNING_NAMES: Readonly<Record<string, string>> = { ECC_P256_R1: 'ECDSA_SHA_256', ECC_P384_R1: 'ECDSA_SHA_384' };

/** own names only: "constructor" or "__proto__" must not find Object.prototype's members */
const signingAlgorithm = (name: string): string => (Object.hasOwn(SIGNING_NAMES, name) ? SIGNING_NAMES[name] : name);

export const signRequest = (p: ActionParams<'SignByAsymmetricKey'>): SignRequest => ({
  keyId: p.KeyId,
  algorithm: signingAlgorithm(p.Algorithm),
  message: p.Message,
  messageType: p.MessageType,
});

export const verifyRequest = (p: ActionParams<'VerifyByAsymmetricKey'>): VerifyRequest => ({ ...signRequest(p), signature: p.SignatureValue });

export const importParametersAnswer = (r: ImportParameters) => ({
  KeyId: r.keyId,
  ImportToken: r.importToken,
  PublicKey: r.publicKey,
  ParametersValidTo: r.parametersValidTo,
});

export const importRequest = (p: ActionParams<'ImportKeyMaterial'>): ImportRequest => ({
  keyId: p.KeyId,
  encryptedKeyMaterial: p.EncryptedKeyMaterial,
  importToken: p.ImportToken,
  validTo: p.ValidTo,
});

/** KeyMetadata as the Tencent API reports it. */
export interface KeyMetadata {
  KeyId: string;
  Alias: string;
  CreateTime: number;
  Description: string;
  KeyState: string;
  KeyUsage: string;
  /** 2: FIPS-family algorithms (4 would be the SM family, which no HSM here offers). */
  Type: number;
  CreatorUin: number;
  KeyRotationEnabled: boolean;
  Owner: string;
  NextRotateTime: number;
  DeletionDate: number;
  Origin: string;
  ValidTo: number;
  ResourceId: string;
  HsmClusterId: string;
  RotateDays: number;
  LastRotateTime: number;
  IsSyncReplica: number;
  SourceRegion: string;
  SyncStatus: number;
  AccountUin: number;
  CreatorUinString: string;
}

/** Absent times are 0 on the Tencent wire; account ids are numbers (and the creator's also a string). */
export function toKeyMetadata(d: KeyDescription): KeyMetadata {
  return {
    KeyId: d.keyId,
    Alias: d.alias,
    CreateTime: d.createTime,
    Description: d.description,
    KeyState: d.keyState,
    KeyUsage: d.keyUsage,
    Type: 2,
    CreatorUin: Number(d.creatorUin),
    KeyRotationEnabled: d.rotationEnabled,
    Owner: d.owner,
    NextRotateTime: d.nextRotateTime ?? 0,
    DeletionDate: d.deletionDate ?? 0,
    Origin: d.origin,
    ValidTo: d.validTo ?? 0,
    ResourceId: `creatorUin/${d.creatorUin}/${d.keyId}`,
    HsmClusterId: d.hsmClusterId,
    RotateDays: d.rotateDays,
    LastRotateTime: d.lastRotateTime ?? 0,
    IsSyncReplica: 0,
    SourceRegion: d.region,
    SyncStatus: 0,
    AccountUin: Number(d.accountUin),
    CreatorUinString: d.creatorUin,
  };
}

/** CreateKey's Type: 1 (default) material made by the KMS, 2 imported later (EXTERNAL). */
function originOf(type: number | undefined): KeyDescription['origin'] {
  if (type === undefined || type === 1) return 'TENCENT_KMS';
  if (type === 2) return 'EXTERNAL';
  throw new InvalidTypeError('Type must be 1 (material made by the KMS) or 2 (external material imported later)');
}

export const tagsFromWire = (tags: ReadonlyArray<{ TagKey: string; TagValue: string }> | undefined): Tag[] | undefined =>
  tags?.map((t) => ({ key: t.TagKey, value: t.TagValue }));

export const createKeyRequest = (p: ActionParams<'CreateKey'>): CreateKeyRequest => ({
  alias: p.Alias,
  description: p.Description,
  keyUsage: p.KeyUsage,
  origin: originOf(p.Type),
  tags: tagsFromWire(p.Tags),
  hsmClusterId: p.HsmClusterId,
});

export const createKeyAnswer = (d: KeyDescription) => ({
  KeyId: d.keyId,
  Alias: d.alias,
  CreateTime: d.createTime,
  Description: d.description,
  KeyState: d.keyState,
  KeyUsage: d.keyUsage,
  TagCode: 0,
  TagMsg: '',
  HsmClusterId: d.hsmClusterId,
});

export const listKeysAnswer = (r: KeyList<{ keyId: string }>) => ({ Keys: r.keys.map((k) => ({ KeyId: k.keyId })), TotalCount: r.totalCount });

export const listKeyDetailAnswer = (r: KeyList<KeyDescription>) => ({ KeyMetadatas: r.keys.map(toKeyMetadata), TotalCount: r.totalCount });

/** Rotation runs at once here; Tencent's answer names a task all the same. */
export const rotateKeyAnswer = () => ({ TaskId: randomUUID() });

/** IsHostedByKms: 1 the KMS keeps the data key, 0 (default) it does not. */
export function isHosted(p: ActionParams<'GenerateDataKey'>): boolean {
  if (p.IsHostedByKms === undefined || p.IsHostedByKms === 0) return false;
  if (p.IsHostedByKms === 1) return true;
  throw new InvalidParameterError('IsHostedByKms must be 0 (not hosted) or 1 (hosted by the KMS)');
}

/** DataKeyName, Description and Tags are for hosted data keys only; a hosted one needs its name. */
export const hostedDataKeyRequest = (p: ActionParams<'GenerateDataKey'>): HostedDataKeyRequest => ({
  ...generateDataKeyRequest(p),
  name: p.DataKeyName ?? '',
  description: p.Description,
  tags: tagsFromWire(p.Tags),
});

export const hostedDataKeyAnswer = (r: HostedDataKeyResult, p: PublicKeyOutput) => ({
  ...generateDataKeyAnswer(r, p),
  DataKeyId: r.dataKeyId,
  TagCode: 0,
  TagMsg: '',
});

const IMPORT_TYPES: Readonly<Record<number, ImportDataKeyRequest['importType']>> = { 1: 'ciphertext', 2: 'plaintext' };

export function importDataKeyRequest(p: ActionParams<'ImportDataKey'>): ImportDataKeyRequest {
  const importType = Object.hasOwn(IMPORT_TYPES, p.ImportType) ? IMPORT_TYPES[p.ImportType] : undefined;
  if (importType === undefined) throw new InvalidTypeError('ImportType must be 1 (a ciphertext made by GenerateDataKey) or 2 (plaintext)');
  return {
    name: p.DataKeyName,
    importType,
    material: p.ImportKeyMaterial,
    description: p.Description,
    keyId: p.KeyId,
    hsmClusterId: p.HsmClusterId,
    tags: tagsFromWire(p.Tags),
  };
}

export const importDataKeyAnswer = (r: { keyId: string; dataKeyId: string }) => ({ KeyId: r.keyId, DataKeyId: r.dataKeyId, TagCode: 0, TagMsg: '' });

/** DataKeyMetadata as the Tencent API reports it. */
export function toDataKeyMetadata(d: DataKeyDescription) {
  return {
    DataKeyId: d.dataKeyId,
    KeyId: d.keyId,
    KeyName: d.keyName,
    DataKeyName: d.name,
    NumberOfBytes: d.numberOfBytes,
    CreateTime: d.createTime,
    Description: d.description,
    KeyState: d.keyState,
    CreatorUin: Number(d.creatorUin),
    Owner: d.owner,
    DeletionDate: d.deletionDate ?? 0,
    Origin: d.origin,
    HsmClusterId: d.hsmClusterId,
    ResourceId: `creatorUin/${d.creatorUin}/${d.dataKeyId}`,
    IsSyncReplica: 0,
    SourceRegion: d.region,
    SyncStatus: 0,
    AccountUin: Number(d.accountUin),
    CreatorUinString: d.creatorUin,
  };
}

const DATA_KEY_STATE_CODES: Readonly<Record<number, DataKeyState | undefined>> = { 0: undefined, 1: 'Enabled', 2: 'Disabled', 3: 'PendingDelete' };

function codeIn<T>(name: string, table: Readonly<Record<number, T>>, v: number | undefined, fallback: number): T {
  const code = v ?? fallback;
  if (!Object.hasOwn(table, code)) throw new InvalidParameterError(`${name} must be one of ${Object.keys(table).join(', ')}`);
  return table[code];
}

/** ListDataKeys: paging, role and cluster; oldest first. */
export const listDataKeysRequest = (p: ActionParams<'ListDataKeys'>): DataKeyListRequest => ({
  offset: p.Offset,
  limit: p.Limit,
  role: codeIn('Role', { 0: 'user', 1: 'product' } as const, p.Role, 0),
  order: 'asc',
  hsmClusterId: p.HsmClusterId,
});

export function listDataKeyDetailRequest(p: ActionParams<'ListDataKeyDetail'>): DataKeyListRequest {
  const origin = p.Origin === undefined || p.Origin === '' || p.Origin === 'ALL' ? undefined : p.Origin;
  if (origin !== undefined && origin !== 'TENCENT_KMS' && origin !== 'EXTERNAL') throw new InvalidParameterError('Origin must be TENCENT_KMS, EXTERNAL or ALL');
  return {
    ...listDataKeysRequest(p),
    order: codeIn('OrderType', { 0: 'desc', 1: 'asc' } as const, p.OrderType, 0),
    state: codeIn('KeyState', DATA_KEY_STATE_CODES, p.KeyState, 0),
    search: p.SearchKeyAlias,
    origin,
    keyId: p.KeyId,
    numberOfBytes: p.DataKeyLen,
    tagFilters: p.TagFilters?.map((f) => ({ key: f.TagKey, values: f.TagValue ?? [] })),
  };
}

export const listDataKeysAnswer = (r: DataKeyList<DataKeyDescription>) => ({
  DataKeys: r.dataKeys.map((d) => ({ DataKeyId: d.dataKeyId })),
  TotalCount: r.totalCount,
});

export const listDataKeyDetailAnswer = (r: DataKeyList<DataKeyDescription>) => ({
  DataKeyMetadatas: r.dataKeys.map(toDataKeyMetadata),
  TotalCount: r.totalCount,
});

export const dataKeyPlaintextAnswer = (plaintext: Buffer, p: PublicKeyOutput) => ({ Plaintext: plaintextOut(plaintext, p) });
