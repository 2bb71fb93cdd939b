/**
 * The Tencent KMS wire, mapped onto the protocol-neutral core: request parameters (already
 * shape-checked and base64-decoded by params.ts) to core requests, core results to the
 * PascalCase answers of the API. Buffers in an answer become base64 in response.ts.
 */
import { createPublicKey, randomUUID } from 'node:crypto';
import type { PublicKeyResult, RsaDecryptRequest, SignRequest, VerifyRequest } from '../kms/asymmetric';
import type { EncryptionContext } from '../kms/ciphertext';
import type {
  DataKeyResult,
  DecryptRequest,
  EncryptRequest,
  EncryptResult,
  GenerateDataKeyRequest,
  PlaintextResult,
  ReEncryptRequest,
  ReEncryptResult,
} from '../kms/envelope';
import { InvalidEncryptionContextError, InvalidKeyUsageError, InvalidParameterError, InvalidTypeError, KmsError, quoted, RequestField } from '../kms/errors';
import type { ImportParameters, ImportParametersRequest, ImportRequest } from '../kms/key-import';
import type { KeyDescription } from '../kms/key-metadata';
import type { Tag } from '../kms/key-rules';
import { KEY_USAGES, KeyUsage } from '../kms/key-usage';
import type { KeyState } from '../kms/key-state';
import type { CloudResourceRequest, CreateKeyRequest, KeyList } from '../kms/lifecycle';
import type { ListRequest } from '../kms/list-query';
import type { DataKeyDescription, DataKeyList, DataKeyListRequest, HostedDataKeyRequest, HostedDataKeyResult, ImportDataKeyRequest } from '../kms/data-keys';
import type { DataKeyState } from '../kms/data-key-state';
import type { ActionParams } from './params';
import { outputPlaintext, PublicKeyOutput } from './public-key-output';

/** Tencent's names of the request values the core's error messages name (RequestField). */
const WIRE_FIELDS: Readonly<Record<RequestField, string>> = {
  keyId: 'KeyId',
  keyIds: 'KeyIds',
  alias: 'Alias',
  description: 'Description',
  keyUsage: 'KeyUsage',
  plaintext: 'Plaintext',
  ciphertext: 'CiphertextBlob',
  context: 'EncryptionContext',
  numberOfBytes: 'NumberOfBytes',
  keySpec: 'KeySpec',
  rotateDays: 'RotateDays',
  pendingWindowDays: 'PendingWindowInDays',
  tagKey: 'TagKey',
  tagValue: 'TagValue',
  tagFilters: 'TagFilters',
  offset: 'Offset',
  limit: 'Limit',
  productId: 'ProductId',
  resourceId: 'ResourceId',
  algorithm: 'Algorithm',
  messageType: 'MessageType',
  message: 'Message',
  wrappingAlgorithm: 'WrappingAlgorithm',
  wrappingKeySpec: 'WrappingKeySpec',
  validTo: 'ValidTo',
  encryptedKeyMaterial: 'EncryptedKeyMaterial',
  importToken: 'ImportToken',
  hsmClusterId: 'HsmClusterId',
  dataKeyId: 'DataKeyId',
  dataKeyIds: 'DataKeyIds',
  dataKeyName: 'DataKeyName',
  dataKeyLength: 'DataKeyLen',
  importType: 'ImportType',
};

/** A core error's message in Tencent terms: the first mention of each request value it names, and every key usage, by its wire name. */
export function wireMessage(e: KmsError): string {
  const named = e.fields.reduce((m, f) => m.replace(new RegExp(`\\b${f}\\b`), WIRE_FIELDS[f]), e.message);
  return named.replace(CORE_USAGE_NAMES, (usage) => WIRE_KEY_USAGES[usage as KeyUsage]);
}

/** Tencent's KeyUsage names of the core's key usages. */
const WIRE_KEY_USAGES: Readonly<Record<KeyUsage, string>> = {
  'encrypt-decrypt': 'ENCRYPT_DECRYPT',
  'rsa-2048-decrypt': 'ASYMMETRIC_DECRYPT_RSA_2048',
  'sm2-decrypt': 'ASYMMETRIC_DECRYPT_SM2',
  'sm2-sign-verify': 'ASYMMETRIC_SIGN_VERIFY_SM2',
  'rsa-2048-sign-verify': 'ASYMMETRIC_SIGN_VERIFY_RSA_2048',
  'ec-p256-sign-verify': 'ASYMMETRIC_SIGN_VERIFY_ECC',
  'ec-p384-sign-verify': 'ASYMMETRIC_SIGN_VERIFY_ECDSA384',
};
/** A core usage name as a word of its own (not part of a longer hyphenated word). */
const CORE_USAGE_NAMES = new RegExp(`(?<![\\w-])(${Object.keys(WIRE_KEY_USAGES).join('|')})(?![\\w-])`, 'g');
const USAGES_BY_WIRE_NAME = new Map(Object.entries(WIRE_KEY_USAGES).map(([usage, name]) => [name, usage as KeyUsage]));

export const keyUsageToWire = (usage: KeyUsage): string => WIRE_KEY_USAGES[usage];

/** A Tencent KeyUsage; "empty means ENCRYPT_DECRYPT" (CreateKey, ListKeyDetail). `refuse` makes the error of an unknown name. */
export function keyUsageFromWire(name: string | undefined, refuse: (name: string) => KmsError): KeyUsage {
  if (name === undefined || name === '') return 'encrypt-decrypt';
  const usage = USAGES_BY_WIRE_NAME.get(name);
  if (usage === undefined) throw refuse(name);
  return usage;
}

/** ListAlgorithms' Algorithm names of the key specs the usages need. */
const ALGORITHM_NAMES: Readonly<Record<(typeof KEY_USAGES)[KeyUsage]['spec'], string>> = {
  AES_256: 'AES_256',
  RSA_2048: 'RSA_2048',
  EC_P256: 'ECC_P256',
  EC_P384: 'ECC_P384',
  SM2: 'SM2',
};

/** ListAlgorithms: the usages offered, by kind, in Tencent's names. */
export function listAlgorithmsAnswer(offered: readonly KeyUsage[]) {
  const of = (kind: string) =>
    offered.filter((u) => KEY_USAGES[u].kind === kind).map((u) => ({ KeyUsage: keyUsageToWire(u), Algorithm: ALGORITHM_NAMES[KEY_USAGES[u].spec] }));
  return { SymmetricAlgorithms: of('symmetric'), AsymmetricAlgorithms: of('asymmetric-decrypt'), AsymmetricSignVerifyAlgorithms: of('sign-verify') };
}

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

export const encryptRequest = (p: ActionParams<'Encrypt'>): EncryptRequest => ({
  keyId: p.KeyId,
  plaintext: p.Plaintext,
  context: contextFromWire(p.EncryptionContext),
});

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

export const rsaDecryptRequest = (p: ActionParams<'AsymmetricRsaDecrypt'>): RsaDecryptRequest => ({
  keyId: p.KeyId,
  ciphertext: p.Ciphertext,
  algorithm: p.Algorithm,
});

export const importParametersRequest = (p: ActionParams<'GetParametersForImport'>): ImportParametersRequest => ({
  keyId: p.KeyId,
  wrappingAlgorithm: p.WrappingAlgorithm,
  wrappingKeySpec: p.WrappingKeySpec,
});

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
    KeyUsage: keyUsageToWire(d.keyUsage),
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
  keyUsage: keyUsageFromWire(
    p.KeyUsage,
    (name) => new InvalidKeyUsageError(`KeyUsage ${quoted(name)} is not one of ${Object.values(WIRE_KEY_USAGES).join(', ')}`),
  ),
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
  KeyUsage: keyUsageToWire(d.keyUsage),
  TagCode: 0,
  TagMsg: '',
  HsmClusterId: d.hsmClusterId,
});

/** ListKeyDetail's KeyState codes: 0 every state. */
const WIRE_KEY_STATES: Readonly<Record<number, KeyState | undefined>> = {
  0: undefined,
  1: 'Enabled',
  2: 'Disabled',
  3: 'PendingDelete',
  4: 'PendingImport',
  5: 'Archived',
};

/** A small enumeration of the wire (Role, OrderType, KeyState): an integer in range; absent is `fallback`. */
function wireCode(name: string, v: number | undefined, fallback: number, max: number): number {
  if (v === undefined) return fallback;
  if (!Number.isInteger(v) || v < 0 || v > max) throw new InvalidParameterError(`${name} must be an integer from 0 to ${max}`);
  return v;
}

/** Origin: TENCENT_KMS or EXTERNAL; ALL, empty or absent mean both. */
function originFilter(origin: string | undefined): ListRequest['origin'] {
  if (origin === undefined || origin === '' || origin === 'ALL') return undefined;
  if (origin !== 'TENCENT_KMS' && origin !== 'EXTERNAL') throw new InvalidParameterError('Origin must be TENCENT_KMS, EXTERNAL or ALL');
  return origin;
}

/** ListKeys: paging, Role (0 user-created, default; 1 created by cloud products) and the cluster. */
export const listKeysRequest = (p: ActionParams<'ListKeys'>): ListRequest => ({
  offset: p.Offset,
  limit: p.Limit,
  role: wireCode('Role', p.Role, 0, 1) === 1 ? 'product' : 'user',
  hsmClusterId: p.HsmClusterId,
});

/** ListKeyDetail: OrderType 0 newest first (default), 1 oldest first; KeyUsage ALL, a usage, or empty (ENCRYPT_DECRYPT only). */
export function listKeyDetailRequest(p: ActionParams<'ListKeyDetail'>): ListRequest {
  const order = wireCode('OrderType', p.OrderType, 0, 1) === 1 ? 'asc' : 'desc';
  const keyState = WIRE_KEY_STATES[wireCode('KeyState', p.KeyState, 0, 5)];
  const origin = originFilter(p.Origin);
  const keyUsage =
    p.KeyUsage === 'ALL'
      ? undefined
      : keyUsageFromWire(p.KeyUsage, (name) => new InvalidParameterError(`KeyUsage ${quoted(name)} is not a key usage (or ALL)`));
  const tagFilters = p.TagFilters?.map((f) => ({ key: f.TagKey, values: f.TagValue ?? [] }));
  return { ...listKeysRequest(p), order, keyState, searchAlias: p.SearchKeyAlias || undefined, origin, keyUsage, tagFilters };
}

export const listKeysAnswer = (r: KeyList<{ keyId: string }>) => ({ Keys: r.keys.map((k) => ({ KeyId: k.keyId })), TotalCount: r.totalCount });

export const listKeyDetailAnswer = (r: KeyList<KeyDescription>) => ({ KeyMetadatas: r.keys.map(toKeyMetadata), TotalCount: r.totalCount });

export const cloudResourceRequest = (p: ActionParams<'BindCloudResource'>): CloudResourceRequest => ({
  keyId: p.KeyId,
  productId: p.ProductId,
  resourceId: p.ResourceId,
});

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
