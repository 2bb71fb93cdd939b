/** What names of tenants, sub-accounts and attached policies may be (CAM's character set for the latter two). */
import { IamInputError } from './errors';

const TENANT_NAME = /^[\p{L}\p{N}_.@+=,-](?:[\p{L}\p{N} _.@+=,-]{0,62}[\p{L}\p{N}_.@+=,-])?$/u;
const USER_NAME = /^[A-Za-z0-9_.@+=,-]{1,64}$/;
const POLICY_NAME = /^[A-Za-z0-9_.@+=,-]{1,128}$/;

export function checkTenantName(name: string): void {
  if (!TENANT_NAME.test(name)) {
    throw new IamInputError(`tenant name must be 1 to 64 letters, digits, spaces or _.@+=,- (no leading or trailing space), not ${JSON.stringify(name)}`);
  }
}

export function checkUserName(name: string): void {
  if (!USER_NAME.test(name)) throw new IamInputError(`sub-account name must be 1 to 64 of A-Z a-z 0-9 _.@+=,-, not ${JSON.stringify(name)}`);
}

export function checkPolicyName(name: string): void {
  if (!POLICY_NAME.test(name)) throw new IamInputError(`policy name must be 1 to 128 of A-Z a-z 0-9 _.@+=,-, not ${JSON.stringify(name)}`);
}
