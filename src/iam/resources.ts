/**
 * CAM names of KMS actions and resources. Pure.
 *
 *   action      kms:${Action}                       e.g. kms:Encrypt
 *   key         qcs::kms:${region}:uin/${tenantUin}:key/creatorUin/${creatorUin}/${keyId}
 *   collection  qcs::kms:${region}:uin/${tenantUin}:key/*
 *   data key    qcs::kms:${region}:uin/${tenantUin}:datakey/creatorUin/${creatorUin}/${dataKeyId}
 *   data keys   qcs::kms:${region}:uin/${tenantUin}:datakey/*
 *
 * A data key's resource is its DataKeyMetadata.ResourceId (`creatorUin/$creatorUin/$dataKeyId`,
 * reference more-apis.md §1a) under the resource type `datakey`, as a key's is its ResourceId under `key`.
 *
 * The collection resource stands for the tenant's keys as a whole in a region: it is the resource
 * of actions that name no key (COLLECTION_ACTIONS) and of DescribeKeys before its keys are known.
 */
export const SERVICE = 'kms';

/** Actions that name no key: they are authorised against the collection resource. */
export const COLLECTION_ACTIONS: readonly string[] = [
  'CreateKey',
  'ListKeys',
  'ListKeyDetail',
  'GenerateRandom',
  'GetServiceStatus',
  'GetRegions',
  'ListAlgorithms',
  'DescribeKeys',
  'ListDataKeys',
  'ListDataKeyDetail',
];

export interface KeyResourceName {
  region: string;
  tenantUin: string;
  creatorUin: string;
  keyId: string;
}

/** What a concrete resource name says; creatorUin and keyId are absent for the collection. */
export interface ParsedResource {
  region: string;
  tenantUin: string;
  creatorUin?: string;
  keyId?: string;
  /** Present for data-key resources only (`keyId` is then the data key's id). */
  resourceType?: 'datakey';
}

const RESOURCE = /^qcs::kms:([^:]*):uin\/(\d+):(key|datakey)\/(?:\*|creatorUin\/(\d+)\/([^/*?]+))$/;

export function actionName(action: string): string {
  return `${SERVICE}:${action}`;
}

export function isCollectionAction(action: string): boolean {
  return COLLECTION_ACTIONS.includes(action);
}

/** The creator a key resource names when the key does not exist (no account has uin 0). */
export const UNKNOWN_CREATOR = '0';

export function keyResource(k: KeyResourceName): string {
  return `qcs::kms:${k.region}:uin/${k.tenantUin}:key/creatorUin/${k.creatorUin}/${k.keyId}`;
}

export function collectionResource(region: string, tenantUin: string): string {
  return `qcs::kms:${region}:uin/${tenantUin}:key/*`;
}

/**
 * CAM names of the identity resources (region-free):
 *   sub-account (and its access keys)   qcs::cam::uin/${tenantUin}:uin/${uin}
 *   tenant policy or preset             qcs::cam::uin/${tenantUin}:policyId/${policyId}
 *   collections                         qcs::cam::uin/${tenantUin}:uin/*, …:policyId/*
 * Another protocol's service (cloudaudit) names the tenant's whole trail: qcs::cloudaudit::uin/${tenantUin}:*
 */
const SERVICE_RESOURCE = /^qcs::(cam|cloudaudit)::uin\/(\d+):(?:(?:uin|policyId)\/(?:\*|\d+)|\*)$/;

export type CamKind = 'uin' | 'policyId';

export function camResource(tenantUin: string, kind: CamKind, id: string): string {
  return `qcs::cam::uin/${tenantUin}:${kind}/${id}`;
}

export function serviceCollectionResource(service: string, tenantUin: string): string {
  return `qcs::${service}::uin/${tenantUin}:*`;
}

/** Parses a concrete resource name (a KMS key or collection, a CAM or CloudAudit resource); undefined for anything else. */
export function parseResource(resource: string): ParsedResource | undefined {
  const other = SERVICE_RESOURCE.exec(resource);
  if (other) return { region: '', tenantUin: other[2] };
  const m = RESOURCE.exec(resource);
  if (!m) return undefined;
  const [, region, tenantUin, type, creatorUin, keyId] = m;
  const parsed: ParsedResource = creatorUin === undefined ? { region, tenantUin } : { region, tenantUin, creatorUin, keyId };
  return type === 'datakey' ? { ...parsed, resourceType: 'datakey' } : parsed;
}

export interface DataKeyResourceName {
  region: string;
  tenantUin: string;
  creatorUin: string;
  dataKeyId: string;
}

export function dataKeyResource(k: DataKeyResourceName): string {
  return `qcs::kms:${k.region}:uin/${k.tenantUin}:datakey/creatorUin/${k.creatorUin}/${k.dataKeyId}`;
}

export function dataKeyCollectionResource(region: string, tenantUin: string): string {
  return `qcs::kms:${region}:uin/${tenantUin}:datakey/*`;
}
