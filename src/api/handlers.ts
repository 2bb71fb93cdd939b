/**
 * One thin handler per served action: which CAM resources it touches, and the KMS-core call. All
 * validation of shapes happened in params.ts; all rules live in the core.
 */
import { isUuid } from '../common/ids';
import type { Principal } from '../iam/principal';
import { collectionResource, dataKeyCollectionResource, dataKeyResource, keyResource, UNKNOWN_CREATOR } from '../iam/resources';
import { decodeBlob } from '../kms/ciphertext';
import { DataKeyNotFoundError, InvalidCiphertextError, KeyNotFoundError } from '../kms/errors';
import type { Caller } from '../kms/key-access';
import { usagesOffered } from '../kms/key-usage';
import type { Kms } from '../kms/service';
import * as wire from './kms-wire';
import type { ActionParams, ServedAction } from './params';

export interface ActionContext {
  kms: Kms;
  caller: Caller;
  principal: Principal;
  regions: readonly string[];
  deploymentId: Buffer;
}

/** CAM resource names to authorise, and the resource the audit event names (a key id or `key/*`). */
export interface Resources {
  cam: string[];
  audit: string;
  /** Checks besides the action's own on `cam`; every one must be allowed too (ReEncrypt: Decrypt on the source, Encrypt on the destination). */
  also?: ReadonlyArray<{ action: ServedAction; cam: string[] }>;
}

export interface ActionHandler<P> {
  resources(ctx: ActionContext, params: P): Promise<Resources>;
  run(ctx: ActionContext, params: P): Promise<object>;
}

export type ActionTable = { [A in ServedAction]: ActionHandler<ActionParams<A>> };

function collection(ctx: ActionContext): Resources {
  return { cam: [collectionResource(ctx.caller.region, ctx.caller.tenant)], audit: 'key/*' };
}

/** A key's resource name; a key that cannot be found gets UNKNOWN_CREATOR (the authoriser then asks whether any creator's key would be allowed). */
async function resourceOf(ctx: ActionContext, keyId: string): Promise<string> {
  let creatorUin = UNKNOWN_CREATOR;
  try {
    creatorUin = (await ctx.kms.lifecycle.describeKey(ctx.caller, keyId)).creatorUin;
  } catch (e) {
    if (!(e instanceof KeyNotFoundError)) throw e;
  }
  return keyResource({ region: ctx.caller.region, tenantUin: ctx.caller.tenant, creatorUin, keyId });
}

async function keys(ctx: ActionContext, ids: string[]): Promise<Resources> {
  const cam: string[] = [];
  for (const id of ids) cam.push(await resourceOf(ctx, id));
  return { cam, audit: ids.join(',').slice(0, 4096) };
}

const oneKey = async (ctx: ActionContext, p: { KeyId: string }): Promise<Resources> => keys(ctx, [p.KeyId]);

/** The key a ciphertext names; a blob naming no key id at all was altered. */
function blobKey(ctx: ActionContext, blob: Buffer): string {
  const { keyId } = decodeBlob(blob, ctx.deploymentId);
  if (!isUuid(keyId)) throw new InvalidCiphertextError('CiphertextBlob names no key of this service');
  return keyId;
}
const nothing = async (): Promise<object> => ({});

/**
 * ReEncrypt: kms:ReEncrypt on both keys, kms:Decrypt on the source (the key the blob's header names,
 * the one the core decrypts with) and kms:Encrypt on the destination. Stricter than Tencent (which
 * checks kms:ReEncrypt only): otherwise a Decrypt deny on k1 is undone by ReEncrypt to k2 and Decrypt there.
 */
async function reEncryptResources(ctx: ActionContext, p: ActionParams<'ReEncrypt'>): Promise<Resources> {
  const source = blobKey(ctx, p.CiphertextBlob);
  const dest = p.DestinationKeyId ? p.DestinationKeyId : source;
  const src = await resourceOf(ctx, source);
  const dst = dest === source ? src : await resourceOf(ctx, dest);
  return {
    cam: [...new Set([src, dst])],
    audit: [...new Set([source, dest])].join(',').slice(0, 4096),
    also: [
      { action: 'Decrypt', cam: [src] },
      { action: 'Encrypt', cam: [dst] },
    ],
  };
}

/** Keys that could change did; the first refusal answers the request. */
async function batch(ctx: ActionContext, ids: string[], action: 'EnableKey' | 'DisableKey'): Promise<object> {
  const failed = (await ctx.kms.lifecycle.batch(ctx.caller, ids, action)).find((o) => o.error);
  if (failed?.error) throw failed.error;
  return {};
}

/** What the tenant's clusters (shared pool and its own dedicated ones) can all do. */
function algorithms(ctx: ActionContext): object {
  const dir = ctx.kms.clusters;
  const usable = [dir.shared, ...dir.dedicatedOf(ctx.caller.tenant)];
  return wire.listAlgorithmsAnswer([...new Set(usable.flatMap((c) => usagesOffered(c.capabilities.keySpecs)))]);
}

/** A data key's resource name; one that cannot be found gets UNKNOWN_CREATOR, as a key does. */
async function dataKeyResourceOf(ctx: ActionContext, dataKeyId: string): Promise<string> {
  let creatorUin = UNKNOWN_CREATOR;
  try {
    creatorUin = (await ctx.kms.dataKeys.describe(ctx.caller, dataKeyId)).creatorUin;
  } catch (e) {
    if (!(e instanceof DataKeyNotFoundError)) throw e;
  }
  return dataKeyResource({ region: ctx.caller.region, tenantUin: ctx.caller.tenant, creatorUin, dataKeyId });
}

async function dataKeys(ctx: ActionContext, ids: string[]): Promise<Resources> {
  const cam: string[] = [];
  for (const id of ids) cam.push(await dataKeyResourceOf(ctx, id));
  return { cam, audit: ids.join(',').slice(0, 4096) };
}

const oneDataKey = async (ctx: ActionContext, p: { DataKeyId: string }): Promise<Resources> => dataKeys(ctx, [p.DataKeyId]);
const dataKeyCollection = async (ctx: ActionContext): Promise<Resources> => ({
  cam: [dataKeyCollectionResource(ctx.caller.region, ctx.caller.tenant)],
  audit: 'datakey/*',
});

/** ImportDataKey acts on the CMK that will seal the data key: KeyId, else the one the imported blob names. */
function importDataKeyResources(ctx: ActionContext, p: ActionParams<'ImportDataKey'>): Promise<Resources> {
  if (p.KeyId) return keys(ctx, [p.KeyId]);
  if (p.ImportType === 1) return keys(ctx, [blobKey(ctx, p.ImportKeyMaterial)]);
  return dataKeyCollection(ctx);
}

async function serviceStatus(ctx: ActionContext): Promise<object> {
  const dedicated = ctx.kms.clusters.dedicatedOf(ctx.caller.tenant);
  const quota = await ctx.kms.lifecycle.keyQuota(ctx.caller);
  const dataKeyQuota = await ctx.kms.dataKeys.quota(ctx.caller);
  return {
    ServiceEnabled: true,
    InvalidType: 1,
    UserLevel: 1,
    ExclusiveVSMEnabled: false,
    ExclusiveHSMEnabled: dedicated.length > 0,
    ExclusiveHSMList: dedicated.map((c) => ({ HsmClusterId: c.id, HsmClusterName: c.id })),
    CmkUserCount: quota.used,
    CmkLimit: quota.limit,
    IsAllowedDataKeyHosted: true,
    DataKeyLimit: dataKeyQuota.limit,
    DataKeyUsedCount: dataKeyQuota.used,
    SubscriptionInfo: 'on-premises',
    IsAllowedSync: false,
    SyncTaskList: [],
  };
}

export const HANDLERS: ActionTable = {
  CreateKey: {
    resources: async (ctx) => collection(ctx),
    run: async (ctx, p) => wire.createKeyAnswer(await ctx.kms.lifecycle.createKey(ctx.caller, wire.createKeyRequest(p))),
  },
  DescribeKey: { resources: oneKey, run: async (ctx, p) => ({ KeyMetadata: wire.toKeyMetadata(await ctx.kms.lifecycle.describeKey(ctx.caller, p.KeyId)) }) },
  DescribeKeys: {
    resources: (ctx, p) => keys(ctx, p.KeyIds),
    run: async (ctx, p) => ({ KeyMetadatas: (await ctx.kms.lifecycle.describeKeys(ctx.caller, p.KeyIds)).map(wire.toKeyMetadata) }),
  },
  ListKeys: {
    resources: async (ctx) => collection(ctx),
    run: async (ctx, p) => wire.listKeysAnswer(await ctx.kms.lifecycle.listKeys(ctx.caller, wire.listKeysRequest(p))),
  },
  ListKeyDetail: {
    resources: async (ctx) => collection(ctx),
    run: async (ctx, p) => wire.listKeyDetailAnswer(await ctx.kms.lifecycle.listKeyDetail(ctx.caller, wire.listKeyDetailRequest(p))),
  },
  UpdateAlias: { resources: oneKey, run: (ctx, p) => ctx.kms.lifecycle.updateAlias(ctx.caller, { keyId: p.KeyId, alias: p.Alias }).then(nothing) },
  UpdateKeyDescription: {
    resources: oneKey,
    run: (ctx, p) => ctx.kms.lifecycle.updateKeyDescription(ctx.caller, { keyId: p.KeyId, description: p.Description }).then(nothing),
  },
  EnableKey: { resources: oneKey, run: (ctx, p) => ctx.kms.lifecycle.enableKey(ctx.caller, p.KeyId).then(nothing) },
  EnableKeys: { resources: (ctx, p) => keys(ctx, p.KeyIds), run: (ctx, p) => batch(ctx, p.KeyIds, 'EnableKey') },
  DisableKey: { resources: oneKey, run: (ctx, p) => ctx.kms.lifecycle.disableKey(ctx.caller, p.KeyId).then(nothing) },
  DisableKeys: { resources: (ctx, p) => keys(ctx, p.KeyIds), run: (ctx, p) => batch(ctx, p.KeyIds, 'DisableKey') },
  ScheduleKeyDeletion: {
    resources: oneKey,
    run: async (ctx, p) => {
      const r = await ctx.kms.lifecycle.scheduleKeyDeletion(ctx.caller, { keyId: p.KeyId, pendingWindowDays: p.PendingWindowInDays });
      return { KeyId: r.keyId, DeletionDate: r.deletionDate };
    },
  },
  CancelKeyDeletion: { resources: oneKey, run: async (ctx, p) => ({ KeyId: (await ctx.kms.lifecycle.cancelKeyDeletion(ctx.caller, p.KeyId)).keyId }) },
  ArchiveKey: { resources: oneKey, run: (ctx, p) => ctx.kms.lifecycle.archiveKey(ctx.caller, p.KeyId).then(nothing) },
  CancelKeyArchive: { resources: oneKey, run: (ctx, p) => ctx.kms.lifecycle.cancelKeyArchive(ctx.caller, p.KeyId).then(nothing) },
  EnableKeyRotation: {
    resources: oneKey,
    run: (ctx, p) => ctx.kms.rotation.enableKeyRotation(ctx.caller, { keyId: p.KeyId, rotateDays: p.RotateDays }).then(nothing),
  },
  DisableKeyRotation: { resources: oneKey, run: (ctx, p) => ctx.kms.rotation.disableKeyRotation(ctx.caller, p.KeyId).then(nothing) },
  GetKeyRotationStatus: {
    resources: oneKey,
    run: async (ctx, p) => ({ KeyRotationEnabled: (await ctx.kms.rotation.getKeyRotationStatus(ctx.caller, p.KeyId)).rotationEnabled }),
  },
  RotateKey: { resources: oneKey, run: (ctx, p) => ctx.kms.rotation.rotateKey(ctx.caller, p.KeyId).then(wire.rotateKeyAnswer) },
  Encrypt: {
    resources: oneKey,
    run: async (ctx, p) => wire.encryptAnswer(await ctx.kms.envelope.encrypt(ctx.caller, wire.encryptRequest(p))),
  },
  Decrypt: {
    resources: (ctx, p) => keys(ctx, [blobKey(ctx, p.CiphertextBlob)]),
    run: async (ctx, p) => wire.decryptAnswer(await ctx.kms.envelope.decrypt(ctx.caller, wire.decryptRequest(p)), p),
  },
  ReEncrypt: {
    resources: reEncryptResources,
    run: async (ctx, p) => wire.reEncryptAnswer(await ctx.kms.envelope.reEncrypt(ctx.caller, wire.reEncryptRequest(p))),
  },
  GenerateDataKey: {
    resources: oneKey,
    run: async (ctx, p) =>
      wire.isHosted(p)
        ? wire.hostedDataKeyAnswer(await ctx.kms.dataKeys.generate(ctx.caller, wire.hostedDataKeyRequest(p)), p)
        : wire.generateDataKeyAnswer(await ctx.kms.envelope.generateDataKey(ctx.caller, wire.generateDataKeyRequest(p)), p),
  },
  GenerateRandom: {
    resources: async (ctx) => collection(ctx),
    run: async (ctx, p) => ({ Plaintext: await ctx.kms.envelope.generateRandom(ctx.caller, p.NumberOfBytes) }),
  },
  GetPublicKey: { resources: oneKey, run: async (ctx, p) => wire.publicKeyAnswer(await ctx.kms.asymmetric.getPublicKey(ctx.caller, p.KeyId)) },
  AsymmetricRsaDecrypt: {
    resources: oneKey,
    run: async (ctx, p) => {
      const r = await ctx.kms.asymmetric.rsaDecrypt(ctx.caller, wire.rsaDecryptRequest(p));
      return { KeyId: r.keyId, Plaintext: r.plaintext };
    },
  },
  AsymmetricSm2Decrypt: { resources: oneKey, run: (ctx, p) => ctx.kms.asymmetric.sm2Decrypt(ctx.caller, p.KeyId) },
  SignByAsymmetricKey: {
    resources: oneKey,
    run: async (ctx, p) => ({ Signature: (await ctx.kms.asymmetric.sign(ctx.caller, wire.signRequest(p))).signature }),
  },
  VerifyByAsymmetricKey: {
    resources: oneKey,
    run: async (ctx, p) => ({ SignatureValid: (await ctx.kms.asymmetric.verify(ctx.caller, wire.verifyRequest(p))).signatureValid }),
  },
  GetParametersForImport: {
    resources: oneKey,
    run: async (ctx, p) => wire.importParametersAnswer(await ctx.kms.keyImport.getParametersForImport(ctx.caller, wire.importParametersRequest(p))),
  },
  ImportKeyMaterial: { resources: oneKey, run: (ctx, p) => ctx.kms.keyImport.importKeyMaterial(ctx.caller, wire.importRequest(p)).then(nothing) },
  DeleteImportedKeyMaterial: { resources: oneKey, run: (ctx, p) => ctx.kms.keyImport.deleteImportedKeyMaterial(ctx.caller, p.KeyId).then(nothing) },
  GetServiceStatus: { resources: async (ctx) => collection(ctx), run: serviceStatus },
  GetRegions: { resources: async (ctx) => collection(ctx), run: async (ctx) => ({ Regions: [...ctx.regions] }) },
  ListAlgorithms: { resources: async (ctx) => collection(ctx), run: async (ctx) => algorithms(ctx) },
  BindCloudResource: { resources: oneKey, run: (ctx, p) => ctx.kms.lifecycle.bindCloudResource(ctx.caller, wire.cloudResourceRequest(p)).then(nothing) },
  UnbindCloudResource: {
    resources: oneKey,
    run: (ctx, p) => ctx.kms.lifecycle.unbindCloudResource(ctx.caller, wire.cloudResourceRequest(p)).then(nothing),
  },
  ImportDataKey: {
    resources: importDataKeyResources,
    run: async (ctx, p) => wire.importDataKeyAnswer(await ctx.kms.dataKeys.importDataKey(ctx.caller, wire.importDataKeyRequest(p))),
  },
  DescribeDataKey: {
    resources: oneDataKey,
    run: async (ctx, p) => ({ DataKeyMetadata: wire.toDataKeyMetadata(await ctx.kms.dataKeys.describe(ctx.caller, p.DataKeyId)) }),
  },
  DescribeDataKeys: {
    resources: (ctx, p) => dataKeys(ctx, p.DataKeyIds),
    run: async (ctx, p) => ({ DataKeyMetadatas: (await ctx.kms.dataKeys.describeMany(ctx.caller, p.DataKeyIds)).map(wire.toDataKeyMetadata) }),
  },
  ListDataKeys: {
    resources: dataKeyCollection,
    run: async (ctx, p) => wire.listDataKeysAnswer(await ctx.kms.dataKeys.list(ctx.caller, wire.listDataKeysRequest(p))),
  },
  ListDataKeyDetail: {
    resources: dataKeyCollection,
    run: async (ctx, p) => wire.listDataKeyDetailAnswer(await ctx.kms.dataKeys.list(ctx.caller, wire.listDataKeyDetailRequest(p))),
  },
  EnableDataKey: { resources: oneDataKey, run: (ctx, p) => ctx.kms.dataKeys.enable(ctx.caller, p.DataKeyId).then(nothing) },
  EnableDataKeys: {
    resources: (ctx, p) => dataKeys(ctx, p.DataKeyIds),
    run: (ctx, p) => ctx.kms.dataKeys.batch(ctx.caller, p.DataKeyIds, 'EnableDataKey').then(nothing),
  },
  DisableDataKey: { resources: oneDataKey, run: (ctx, p) => ctx.kms.dataKeys.disable(ctx.caller, p.DataKeyId).then(nothing) },
  DisableDataKeys: {
    resources: (ctx, p) => dataKeys(ctx, p.DataKeyIds),
    run: (ctx, p) => ctx.kms.dataKeys.batch(ctx.caller, p.DataKeyIds, 'DisableDataKey').then(nothing),
  },
  ScheduleDataKeyDeletion: {
    resources: oneDataKey,
    run: async (ctx, p) => {
      const r = await ctx.kms.dataKeys.scheduleDeletion(ctx.caller, p.DataKeyId, p.PendingWindowInDays);
      return { DataKeyId: r.dataKeyId, DeletionDate: r.deletionDate };
    },
  },
  CancelDataKeyDeletion: {
    resources: oneDataKey,
    run: async (ctx, p) => ({ DataKeyId: (await ctx.kms.dataKeys.cancelDeletion(ctx.caller, p.DataKeyId)).dataKeyId }),
  },
  GetDataKeyPlaintext: {
    resources: oneDataKey,
    run: async (ctx, p) => wire.dataKeyPlaintextAnswer(await ctx.kms.dataKeys.plaintext(ctx.caller, p.DataKeyId), p),
  },
  GetDataKeyCiphertextBlob: {
    resources: oneDataKey,
    run: async (ctx, p) => ({ CiphertextBlob: await ctx.kms.dataKeys.ciphertextBlob(ctx.caller, p.DataKeyId) }),
  },
  UpdateDataKeyName: { resources: oneDataKey, run: (ctx, p) => ctx.kms.dataKeys.rename(ctx.caller, p.DataKeyId, p.DataKeyName).then(nothing) },
  UpdateDataKeyDescription: {
    resources: oneDataKey,
    run: (ctx, p) => ctx.kms.dataKeys.updateDescription(ctx.caller, p.DataKeyId, p.Description).then(nothing),
  },
};
