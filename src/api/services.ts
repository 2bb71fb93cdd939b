/**
 * The Tencent Cloud APIs served on the one endpoint, one entry each: name, version, audit event
 * source, CAM action prefix, which actions it serves, refuses (UnsupportedOperation) or may answer on
 * a reused signature, which need no region, and its parameter schemas and handlers. Adding an API is
 * adding an entry.
 *
 * Which API a request is for (`serviceOf`): X-TC-Version names one (kms 2019-01-18, cam 2019-01-16,
 * cloudaudit 2019-03-19); an unknown version is NoSuchVersion. The credential scope's service is what
 * the SDK signed: the Go SDK signs its API's name, the Node SDK the endpoint's first DNS label (`kms`
 * for kms.example.com, `127` for 127.0.0.1:8080). When that label is the name of one of these APIs it
 * must be the version's API, or the request is NoSuchVersion (a cam-signed request with KMS's
 * version is a client pointed at the wrong API, not a KMS call); any other label leaves the choice to
 * the version.
 */
import type { Cam } from '../iam/cam';
import { SERVED_ACTIONS, UNSUPPORTED_ACTIONS, REPEATABLE_ACTIONS } from './actions';
import { CAM_HANDLERS, CamContext } from './cam-handlers';
import { CAM_MAXIMA, CAM_REPEATABLE, CAM_SCHEMAS, CAM_UNSUPPORTED, CamAction } from './cam-params';
import { NoSuchVersionError } from './error-codes';
import { CLOUDAUDIT_HANDLERS, CLOUDAUDIT_MAXIMA, CLOUDAUDIT_SCHEMAS, CloudAuditAction, TrailContext } from './cloudaudit-handlers';
import { ActionContext, HANDLERS, Resources } from './handlers';
import { Fields, ServedAction, validateFields, validateParams } from './params';

export type ServiceName = 'kms' | 'cam' | 'cloudaudit';

/** What a handler of any API is given: the KMS core and the identity layer's CAM rules, the caller. */
export interface ServiceContext extends ActionContext, CamContext, TrailContext {
  cam: Cam;
}

export interface ServiceHandler {
  resources(ctx: ServiceContext, params: unknown): Promise<Resources>;
  run(ctx: ServiceContext, params: unknown): Promise<object>;
}

export interface ApiService {
  name: ServiceName;
  version: string;
  /** The audit trail's EventSource. */
  eventSource: string;
  /** The service part of its CAM action names (`kms` in `kms:Encrypt`). */
  camPrefix: string;
  served: ReadonlySet<string>;
  /** Actions of the SDK's client this deployment refuses, with UnsupportedOperation and `unsupportedWhy`. */
  unsupported: ReadonlySet<string>;
  /** Why `action` (one of `unsupported`) is refused, after its name in the message. */
  unsupportedWhy(action: string): string;
  /** Effect-free reads served on a signature used before (docs/security.md §1). */
  repeatable: ReadonlySet<string>;
  /** Whether `action` needs no X-TC-Region. */
  regionless(action: string): boolean;
  /** The typed parameters of a served action (ParamError otherwise). */
  validate(action: string, body: unknown): unknown;
  handler(action: string): ServiceHandler;
}

const KMS_REGIONLESS = new Set(['GetRegions']);

/** The KMS families refused, and why (the README says the same). */
function kmsRefusal(action: string): string {
  if (action.startsWith('PostQuantumCrypto'))
    return 'is not offered: post-quantum keys (ML-KEM, ML-DSA) need an HSM that has them, and none of the supported PKCS#11 tokens (SoftHSM2, NSS softokn, openCryptoki) does';
  if (action.includes('WhiteBox'))
    return "is not offered: white-box keys are used through Tencent's client-side white-box library, which is not part of this KMS";
  return 'is not offered by this service';
}

const KMS: ApiService = {
  name: 'kms',
  version: '2019-01-18',
  eventSource: 'kms.tencentcloudapi.com',
  camPrefix: 'kms',
  served: new Set(SERVED_ACTIONS),
  unsupported: new Set(UNSUPPORTED_ACTIONS),
  unsupportedWhy: kmsRefusal,
  repeatable: REPEATABLE_ACTIONS,
  regionless: (action) => KMS_REGIONLESS.has(action),
  validate: (action, body) => validateParams(action as ServedAction, body),
  handler: (action) => HANDLERS[action as ServedAction],
};

const CAM: ApiService = {
  name: 'cam',
  version: '2019-01-16',
  eventSource: 'cam.tencentcloudapi.com',
  camPrefix: 'cam',
  served: new Set(Object.keys(CAM_SCHEMAS)),
  unsupported: new Set(CAM_UNSUPPORTED),
  unsupportedWhy: () => 'is not offered by this service: it serves the users, access keys and policies of CAM, not groups, roles, SAML, MFA or policy versions',
  repeatable: new Set(CAM_REPEATABLE),
  regionless: () => true,
  validate: (action, body) => validateFields(CAM_SCHEMAS[action as CamAction] as Fields, body, CAM_MAXIMA),
  handler: (action) => CAM_HANDLERS[action as CamAction],
};

/** The SDK client's CloudAudit actions other than the trail's reads: tracks, delivery and the console's helpers. */
const CLOUDAUDIT_UNSUPPORTED = [
  'CreateAuditTrack',
  'CreateEventsAuditTrack',
  'DeleteAuditTrack',
  'DescribeAudit',
  'DescribeAuditTrack',
  'DescribeAuditTracks',
  'DescribeEvents',
  'InquireAuditCredit',
  'ListAudits',
  'ListCmqEnableRegion',
  'ListCosEnableRegion',
  'ListKeyAliasByRegion',
  'ModifyAuditTrack',
  'ModifyEventsAuditTrack',
  'StartLogging',
  'StopLogging',
  'UpdateAudit',
] as const;

const CLOUDAUDIT: ApiService = {
  name: 'cloudaudit',
  version: '2019-03-19',
  eventSource: 'cloudaudit.tencentcloudapi.com',
  camPrefix: 'cloudaudit',
  served: new Set(Object.keys(CLOUDAUDIT_SCHEMAS)),
  unsupported: new Set(CLOUDAUDIT_UNSUPPORTED),
  unsupportedWhy: () =>
    'is not offered by this service: it serves the trail it keeps itself (LookUpEvents, GetAttributeKey); tracks that deliver to COS or CMQ do not exist here (kmsctl audit export writes the trail to a file)',
  repeatable: new Set(Object.keys(CLOUDAUDIT_SCHEMAS)),
  // The trail is the tenant's, across the regions served: any region header, or none.
  regionless: () => true,
  validate: (action, body) => validateFields(CLOUDAUDIT_SCHEMAS[action as CloudAuditAction] as Fields, body, CLOUDAUDIT_MAXIMA),
  handler: (action) => CLOUDAUDIT_HANDLERS[action as CloudAuditAction],
};

export const API_SERVICES: readonly ApiService[] = [KMS, CAM, CLOUDAUDIT];

const BY_VERSION = new Map(API_SERVICES.map((s) => [s.version, s]));
const NAMES: ReadonlySet<string> = new Set<ServiceName>(['kms', 'cam', 'cloudaudit']);

export function serviceByName(name: ServiceName): ApiService | undefined {
  return API_SERVICES.find((s) => s.name === name);
}

const versions = (): string => API_SERVICES.map((s) => `${s.name} ${s.version}`).join(', ');

/** The API X-TC-Version names; NoSuchVersion for any other (checked before the signature). */
export function serviceOfVersion(version: string | undefined): ApiService {
  const s = version === undefined ? undefined : BY_VERSION.get(version);
  if (!s) throw new NoSuchVersionError(`X-TC-Version must be the version of an API served here (${versions()})`);
  return s;
}

/** The credential scope's service against the version's API (once the signature verified). */
export function checkScope(service: ApiService, scopeService: string): void {
  const label = scopeService.toLowerCase();
  if (NAMES.has(label) && label !== service.name)
    throw new NoSuchVersionError(`the request is signed for ${label} but X-TC-Version ${service.version} is ${service.name}'s (served: ${versions()})`);
}

/** Whether `action` is one of any served API's actions (served or refused): the bounded set of metrics labels. */
export function isKnownAction(action: string): boolean {
  return API_SERVICES.some((s) => s.served.has(action) || s.unsupported.has(action));
}
