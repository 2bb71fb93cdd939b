import { NamedError } from '../common/errors';

/**
 * How a failure should be handled: by the caller, by dropping a session, by resetting the device,
 * not at all, or by trying again later (busy: nothing was started and nothing is broken; never
 * given to a PKCS#11 return value).
 */
export type ErrorClass = 'caller' | 'session' | 'device' | 'unsupported' | 'busy';

export abstract class HsmError extends NamedError {
  abstract readonly errorClass: ErrorClass;
}

/** A PKCS#11 return value, classified by the member's profile. */
export class Pkcs11CallError extends HsmError {
  constructor(
    readonly errorClass: ErrorClass,
    readonly ckr: string,
    readonly operation: string,
    readonly member: string,
  ) {
    super(`${operation} on ${member} failed: ${ckr}`);
  }
}

export class ModuleLoadError extends HsmError {
  readonly errorClass = 'device';
  constructor(path: string, reason: string) {
    super(`cannot load PKCS#11 module ${path}: ${reason}`);
  }
}

export class TokenNotFoundError extends HsmError {
  readonly errorClass = 'device';
  constructor(label: string, present: string[]) {
    super(`no token labelled "${label}"; tokens present: ${present.length ? present.map((l) => `"${l}"`).join(', ') : 'none'}`);
  }
}

export class LoginError extends HsmError {
  readonly errorClass = 'device';
  constructor(token: string, reason: string) {
    super(`login to token "${token}" failed: ${reason}`);
  }
}

export class PoolExhaustedError extends HsmError {
  readonly errorClass = 'session';
  constructor(member: string, size: number, waitedMs: number) {
    super(`session pool of ${member} exhausted: all ${size} sessions busy for ${waitedMs} ms`);
  }
}

export class MemberUnavailableError extends HsmError {
  readonly errorClass = 'device';
  constructor(member: string, reason: string) {
    super(`HSM member ${member} is unavailable: ${reason}`);
  }
}

export class ClusterUnavailableError extends HsmError {
  readonly errorClass = 'device';
  constructor(cluster: string) {
    super(`HSM cluster ${cluster} has no healthy member`);
  }
}

export class UnsupportedError extends HsmError {
  readonly errorClass = 'unsupported';
}

/** The wrapped material failed its MAC or binding check: it was altered or belongs elsewhere. Nothing was unwrapped. */
export class MaterialIntegrityError extends HsmError {
  readonly errorClass = 'caller';
}

/** Input that can never succeed: malformed record, wrong key type for the operation, bad sizes. */
export class InvalidInputError extends HsmError {
  readonly errorClass = 'caller';
}

export class DomainKeyError extends HsmError {
  readonly errorClass = 'caller';
}

/** The Security Officer PIN a ceremony needs was not given, or the token refused it. Never holds the PIN. */
export class SoPinError extends DomainKeyError {}

/** The cluster's domain keys are locked (non-extractable on every member): no member can be copied into any more. */
export class DomainLockedError extends DomainKeyError {}

export class ConfigError extends HsmError {
  readonly errorClass = 'caller';
}

/**
 * The cluster's queue of slow operations (key-pair generation, private-key RSA/EC work) is full:
 * refused at once, nothing was started. The caller backs off; no member is at fault.
 */
export class SlowQueueFullError extends HsmError {
  readonly errorClass = 'busy';
  constructor(
    readonly cluster: string,
    readonly queued: number,
  ) {
    super(`too many slow HSM operations (key-pair generation, private-key RSA/EC) are waiting on this key's HSM cluster (${queued} queued); retry later`);
  }
}

/** An object handle the token no longer knows (the object was destroyed, or replaced, by another session or process). */
export function isStaleHandle(e: unknown): boolean {
  return e instanceof Pkcs11CallError && STALE_HANDLE.has(e.ckr);
}

const STALE_HANDLE = new Set(['CKR_KEY_HANDLE_INVALID', 'CKR_OBJECT_HANDLE_INVALID', 'CKR_WRAPPING_KEY_HANDLE_INVALID', 'CKR_UNWRAPPING_KEY_HANDLE_INVALID']);
