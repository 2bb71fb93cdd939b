/** What the API layer needs from the layers below, as small interfaces the composition root fills in. */
import type { NewAuditEvent } from '../audit/event';
import type { LookupRequest, LookupResult } from '../audit/lookup';
import type { Principal } from '../iam/principal';

export interface Authenticator {
  /** The principal and SecretKey behind a SecretId, or undefined when unknown or disabled. */
  resolve(secretId: string): Promise<{ principal: Principal; secretKey: Buffer } | undefined>;
}

export interface AuthorizationRequest {
  /** `kms:Encrypt` */
  action: string;
  /** CAM resource names; every one must be allowed. */
  resources: string[];
  context: { sourceIp: string; region: string; currentTime: number };
}

export interface Authorizer {
  check(principal: Principal, request: AuthorizationRequest): Promise<{ allowed: boolean; reason: string }>;
}

/** One audit event per request, allowed or not; never blocks the request. */
export interface AuditSink {
  append(e: NewAuditEvent): void;
}

export interface RateLimiter {
  /** False when the account is over its request rate. */
  take(accountUin: string): Promise<boolean>;
}

export interface RequestLog {
  write(line: Record<string, unknown>): void;
}

/** The audit trail as a tenant reads it back (CloudAudit LookUpEvents). */
export interface AuditTrail {
  lookUpEvents(r: LookupRequest): Promise<LookupResult>;
}
