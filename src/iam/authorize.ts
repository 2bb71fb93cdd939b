/**
 * The access decision for one request. Pure.
 *
 * - A resource that is not a concrete KMS resource name, or that names another account than the
 *   principal's tenant, is refused for everyone (root included): accounts never reach each other.
 * - A root account may do everything on its own tenant's resources; policies do not apply to it.
 * - A sub-account may do nothing unless an attached policy allows the request, and no attached
 *   policy denies it (an explicit deny wins).
 */
import { AccessRequest, Policy, evaluate } from './policy';
import { Principal } from './principal';
import { dataKeyResource, keyResource, parseResource, UNKNOWN_CREATOR } from './resources';

export interface Authorization {
  allowed: boolean;
  /** Why, for audit and error messages (names the principal, action and resource; nothing secret). */
  reason: string;
}

export function authorize(principal: Principal, request: AccessRequest, attached: readonly Policy[]): Authorization {
  const what = `${request.action} on ${request.resource}`;
  const who = `${principal.kind === 'root' ? 'root account' : 'sub-account'} ${principal.uin}`;
  const resource = parseResource(request.resource);
  if (resource === undefined) return { allowed: false, reason: `${what}: not a KMS resource name` };
  if (resource.tenantUin !== principal.tenantUin) {
    return { allowed: false, reason: `${who} may not act on resources of account ${resource.tenantUin}` };
  }
  if (principal.kind === 'root') return { allowed: true, reason: `${who} owns ${request.resource}` };
  switch (evaluate(request, attached)) {
    case 'allow':
      return { allowed: true, reason: `${what} allowed for ${who} by an attached policy` };
    case 'deny':
      return { allowed: false, reason: `${what} explicitly denied for ${who} by an attached policy` };
    case 'none':
      return { allowed: false, reason: `no attached policy allows ${what} for ${who}` };
  }
}

/**
 * A sub-account's decision on a key that does not exist (its resource names UNKNOWN_CREATOR): allowed
 * only if the request would be allowed whoever of `creators` (the tenant's root and sub-accounts) had
 * made it. So a sub-account refused some creator's keys is refused a key id that names nothing in the
 * same way, and cannot tell a missing key from one it may not touch. Anything else: authorize().
 */
export function authorizeAnyCreator(principal: Principal, request: AccessRequest, attached: readonly Policy[], creators: readonly string[]): Authorization {
  const r = parseResource(request.resource);
  if (principal.kind === 'root' || r?.creatorUin !== UNKNOWN_CREATOR || r.keyId === undefined) return authorize(principal, request, attached);
  for (const creatorUin of [UNKNOWN_CREATOR, ...creators]) {
    const name = { region: r.region, tenantUin: r.tenantUin, creatorUin };
    const resource = r.resourceType === 'datakey' ? dataKeyResource({ ...name, dataKeyId: r.keyId }) : keyResource({ ...name, keyId: r.keyId });
    const d = authorize(principal, { ...request, resource }, attached);
    if (!d.allowed) return d;
  }
  return { allowed: true, reason: `${request.action} on a key that does not exist allowed for sub-account ${principal.uin} whoever made it` };
}
