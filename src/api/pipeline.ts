/**
 * One API request, start to end: source limit → headers (X-TC-Version picks the API, services.ts) →
 * TC3 signature → principal → replay cache → the credential scope's service against the API → rate
 * limits (account, then principal) → action → parameters → CAM policy → the API's handler (KMS core,
 * identity layer) → envelope; then one audit event with the API's event source (or, for a request
 * that did not authenticate, a count in an aggregate), one log line, metrics.
 */
import { randomUUID } from 'node:crypto';
import type { Cam } from '../iam/cam';
import type { Principal } from '../iam/principal';
import type { Caller } from '../kms/key-access';
import type { Kms } from '../kms/service';
import {
  InvalidActionError,
  RateLimitedError,
  ReplayCheckUnavailableError,
  SourceLimitedError,
  toApiError,
  UnauthorizedError,
  UnsupportedActionError,
  UnsupportedRegionError,
} from './error-codes';
import type { Metrics } from './metrics';
import { ParamError, parseJsonBody } from './params';
import type { AuditSink, AuditTrail, Authenticator, AuthorizationRequest, Authorizer, RateLimiter, RequestLog } from './ports';
import type { FailureAudit, PreAuthLimiter } from './pre-auth';
import { ReplayGuard, replayKey, signatureExpiry } from './replay-guard';
import { errorBody, successBody } from './response';
import { ApiService, checkScope, isKnownAction, serviceOfVersion, ServiceContext } from './services';
import { AuthError, MAX_AUTHORIZATION_CHARS, TC3_MAX_SKEW_SECONDS, Tc3Identity, Tc3Policy, verifyTc3 } from './tc3';

/** The KMS API's version (the others: services.ts). */
export const API_VERSION = '2019-01-18';

export interface PipelineDeps {
  kms: Kms;
  authn: Authenticator;
  authz: Authorizer;
  audit: AuditSink;
  /** Per account (tenant uin). */
  limiter: RateLimiter;
  /** Per principal (its uin: the root account's or a sub-account's); absent, only the account's limit applies. */
  principalLimiter?: RateLimiter;
  log: RequestLog;
  metrics: Metrics;
  /** CAM's users, keys and policies (the CAM API's handlers call it). */
  cam: Cam;
  /** The audit trail, read back by CloudAudit LookUpEvents. */
  trail: AuditTrail;
  regions: readonly string[];
  deploymentId: Buffer;
  trust: TrustDeps;
  now?: () => number;
}

/** Replays and what a client that has not authenticated may cost (docs/security.md §1, §6). */
export interface TrustDeps {
  tc3: Tc3Policy;
  /** undefined: the replay cache is off (tc3.replayCache: false). */
  replay?: ReplayGuard;
  preAuth: PreAuthLimiter;
  failures: FailureAudit;
}

export interface RawRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  sourceIp: string;
}

interface Trace {
  requestId: string;
  action: string;
  region: string;
  /** The API X-TC-Version named, once known. */
  service?: ApiService;
  principal?: Principal;
  /** The signature verified and was not used before. */
  authenticated?: boolean;
  resource: string;
}

function header(req: Pick<RawRequest, 'headers'>, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

async function authenticate(deps: PipelineDeps, req: RawRequest, trace: Trace & { service: ApiService }, now: number): Promise<Principal> {
  let found: { principal: Principal; secretKey: Buffer } | undefined;
  const identity = await verifyTc3(
    { method: req.method, headers: req.headers, body: req.body, url: req.url },
    async (secretId) => {
      found = await deps.authn.resolve(secretId);
      return found?.secretKey;
    },
    now,
    deps.trust.tc3,
  );
  trace.principal = found!.principal;
  await claimSignature(deps.trust.replay, identity, trace);
  checkScope(trace.service, identity.service);
  return found!.principal;
}

/**
 * Effect-free reads may reuse a signature (the SDKs give GetServiceStatus({}) then GetRegions({}) in
 * one second one signature; serving the second reveals metadata only); anything else may not, nor
 * after a read. A replayed signature has not authenticated anyone; one that could not be checked did
 * (it is refused all the same).
 */
async function claimSignature(replay: ReplayGuard | undefined, identity: Tc3Identity, trace: Trace & { service: ApiService }): Promise<void> {
  const claim = replay
    ? await replay.claim({
        key: replayKey(identity.secretId, identity.signature),
        expiresAt: signatureExpiry(identity.timestamp, TC3_MAX_SKEW_SECONDS),
        repeatable: trace.service.repeatable.has(trace.action),
      })
    : 'fresh';
  trace.authenticated = claim !== 'used';
  if (claim === 'used')
    throw new AuthError(
      'AuthFailure.SignatureFailure',
      'this signature was already used; every request needs a signature of its own (sign it again, with a new X-TC-Timestamp)',
    );
  if (claim === 'unavailable') throw new ReplayCheckUnavailableError('whether this signature was used before cannot be checked now; retry later');
}

/** The SecretId an Authorization header names, if well-formed (for the failure aggregate only). */
function namedSecretId(req: Pick<RawRequest, 'headers'>): string {
  const auth = header(req, 'authorization');
  if (auth === undefined || auth.length > MAX_AUTHORIZATION_CHARS) return '';
  return /Credential=([A-Za-z0-9_-]{1,128})\//.exec(auth)?.[1] ?? '';
}

/** Runs the request; resolves to the response body (never rejects for anything the caller did). */
export async function handleRequest(deps: PipelineDeps, req: RawRequest): Promise<string> {
  const started = process.hrtime.bigint();
  const now = deps.now ?? (() => Math.floor(Date.now() / 1000));
  const trace: Trace = { requestId: randomUUID(), action: header(req, 'x-tc-action') ?? '', region: header(req, 'x-tc-region') ?? '', resource: '' };
  let body: string;
  let code = 'Success';
  try {
    body = successBody(await run(deps, req, trace, now()), trace.requestId);
  } catch (e) {
    const err = toApiError(e, trace.requestId);
    code = err.code;
    if (err.internal)
      deps.log.write({ level: 'error', requestId: trace.requestId, action: trace.action, error: (e as Error).name, detail: (e as Error).message });
    body = errorBody(err.code, err.message, trace.requestId);
  }
  finish(deps, req, trace, code, Number(process.hrtime.bigint() - started) / 1e9);
  return body;
}

async function run(deps: PipelineDeps, req: RawRequest, trace: Trace, now: number): Promise<object> {
  const { action } = trace;
  if (!deps.trust.preAuth.allows(req.sourceIp)) throw new SourceLimitedError('too many requests from this address failed to authenticate; slow down');
  if (!action) throw new ParamError('MissingParameter', 'X-TC-Action', 'the X-TC-Action header is required');
  const service = serviceOfVersion(header(req, 'x-tc-version'));
  const traced = Object.assign(trace, { service });
  const principal = await authenticate(deps, req, traced, now);
  if (!(await deps.limiter.take(principal.tenantUin))) throw new RateLimitedError('this account is over its request rate; slow down');
  if (deps.principalLimiter && !(await deps.principalLimiter.take(principal.uin)))
    throw new RateLimitedError(`${principal.kind === 'root' ? 'the root account' : 'this sub-account'} is over its request rate; slow down`);
  if (service.unsupported.has(action)) throw new UnsupportedActionError(`${action} ${service.unsupportedWhy(action)}`);
  if (!service.served.has(action))
    throw new InvalidActionError(`${JSON.stringify(action.slice(0, 64))} is not an action of the ${service.name.toUpperCase()} API ${service.version}`);
  if (!service.regionless(action)) {
    if (!trace.region) throw new ParamError('MissingParameter', 'X-TC-Region', 'the X-TC-Region header is required');
    if (!deps.regions.includes(trace.region))
      throw new UnsupportedRegionError(`region ${JSON.stringify(trace.region.slice(0, 64))} is not served here (served: ${deps.regions.join(', ')})`);
  }
  // A regionless action (GetRegions) may carry any region header, or none: it acts in the first served region.
  const region = deps.regions.includes(trace.region) ? trace.region : deps.regions[0];
  const caller: Caller = { tenant: principal.tenantUin, uin: principal.uin, region };
  const ctx: ServiceContext = { kms: deps.kms, cam: deps.cam, trail: deps.trail, caller, principal, regions: deps.regions, deploymentId: deps.deploymentId };
  return dispatch(deps, service, action, parseJsonBody(req.body), ctx, trace, { sourceIp: req.sourceIp, region: caller.region, currentTime: now });
}

/** Parameters, resources, policy, then the handler (typed per action inside the service's table). */
async function dispatch(
  deps: PipelineDeps,
  service: ApiService,
  action: string,
  body: unknown,
  ctx: ServiceContext,
  trace: Trace,
  context: AuthorizationRequest['context'],
): Promise<object> {
  const params = service.validate(action, body);
  const handler = service.handler(action);
  const resources = await handler.resources(ctx, params);
  trace.resource = resources.audit;
  for (const check of [{ action, cam: resources.cam }, ...(resources.also ?? [])]) {
    const decision = await deps.authz.check(ctx.principal, { action: `${service.camPrefix}:${check.action}`, resources: check.cam, context });
    if (!decision.allowed) throw refusal(ctx.principal, action);
  }
  return handler.run(ctx, params);
}

/**
 * One message for every refusal of a principal and action: it names neither the key nor its creator
 * nor the policy's reason, so a sub-account cannot tell a key it may not touch from a missing one.
 */
function refusal(principal: Principal, action: string): UnauthorizedError {
  const who = principal.kind === 'root' ? 'account' : 'sub-account';
  return new UnauthorizedError(`${who} ${principal.uin} is not allowed ${action} on the resource it names`);
}

/**
 * A request refused before the pipeline could read it (body over the size limit, a body that cannot be read or decoded):
 * its envelope, with the audit event, log line and metrics every other request gets.
 */
export function refuseUnread(deps: PipelineDeps, req: Omit<RawRequest, 'body'>, code: string, message: string): string {
  const trace: Trace = { requestId: randomUUID(), action: header(req, 'x-tc-action') ?? '', region: header(req, 'x-tc-region') ?? '', resource: '' };
  try {
    trace.service = serviceOfVersion(header(req, 'x-tc-version'));
  } catch {
    // no API named: the event has no source
  }
  finish(deps, req, trace, code);
  return errorBody(code, message, trace.requestId);
}

/** Refusals that are not the client's doing (or are the limit's own): they cost the address nothing. */
const UNCHARGED = new Set(['RequestLimitExceeded.IPLimitExceeded', 'InternalError', 'UnsupportedOperation.ServiceTemporaryUnavailable']);

/**
 * A request that did not authenticate is a count in an aggregate, not an event of its own; it
 * spends one of its address's pre-authentication tokens (unless the server, not the client, failed).
 */
function auditUnauthenticated(deps: PipelineDeps, req: Pick<RawRequest, 'sourceIp' | 'headers'>, trace: Trace, code: string): void {
  if (!UNCHARGED.has(code)) deps.trust.preAuth.charge(req.sourceIp);
  const p = trace.principal;
  deps.trust.failures.record({
    sourceIp: req.sourceIp,
    secretId: p?.secretId ?? namedSecretId(req),
    code,
    requestId: trace.requestId,
    accountUin: p?.tenantUin,
    subAccountUin: p?.uin,
  });
}

/** Metrics, audit event and log line of a request. The action label is a known action or "unknown", never a client's string. */
function finish(deps: PipelineDeps, req: Pick<RawRequest, 'sourceIp' | 'headers'>, trace: Trace, code: string, seconds?: number): void {
  const action = isKnownAction(trace.action) ? trace.action : 'unknown';
  deps.metrics.requests.inc({ action, code });
  if (seconds !== undefined) deps.metrics.latency.observe({ action }, seconds);
  const p = trace.principal;
  if (!trace.authenticated) auditUnauthenticated(deps, req, trace, code);
  else
    deps.audit.append({
      eventName: trace.action.slice(0, 64),
      accountUin: p?.tenantUin ?? '',
      subAccountUin: p?.uin ?? '',
      secretId: p?.secretId ?? '',
      sourceIp: req.sourceIp,
      region: trace.region.slice(0, 64),
      requestId: trace.requestId,
      resource: trace.resource,
      errorCode: code === 'Success' ? '' : code,
      eventSource: trace.service?.eventSource ?? '',
      time: Date.now(),
    });
  deps.log.write({
    requestId: trace.requestId,
    action,
    region: trace.region.slice(0, 64),
    account: p?.tenantUin,
    uin: p?.uin,
    ip: req.sourceIp,
    code,
    ms: seconds === undefined ? undefined : Math.round(seconds * 1e6) / 1e3,
  });
}
