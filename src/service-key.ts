/**
 * The service's own secrets (API SecretKeys) are sealed under a CMK of the KMS itself: a
 * cloud-product key (owner "kms") of an internal account in the shared pool, so it lives in the
 * HSMs like every other key, is shared by every node through the store, and can rotate. It cannot
 * be disabled or deleted through the API (cloud-product rule, and no tenant owns it).
 */
import type { Caller } from './kms/key-access';
import type { Kms } from './kms/service';
import { AliasTakenError } from './kms/errors';
import type { SecretSealer } from './iam/iam-service';

export const SYSTEM_CALLER: Caller = { tenant: '0', uin: '0', region: 'kms-internal' };
export const SERVICE_KEY_ALIAS = 'kms-service-secrets';
const CONTEXT = { purpose: 'api-secret-key' };

async function findServiceKey(kms: Kms): Promise<string | undefined> {
  const found = await kms.lifecycle.listKeyDetail(SYSTEM_CALLER, { searchAlias: SERVICE_KEY_ALIAS, role: 'product', keyUsage: 'encrypt-decrypt', limit: 10 });
  return found.keys.find((k) => k.alias === SERVICE_KEY_ALIAS)?.keyId;
}

/** Finds the service key, or creates it (several nodes starting at once agree through alias uniqueness). */
export async function serviceKeyId(kms: Kms): Promise<string> {
  const existing = await findServiceKey(kms);
  if (existing) return existing;
  try {
    return (await kms.lifecycle.createKey(SYSTEM_CALLER, { alias: SERVICE_KEY_ALIAS, description: 'seals API SecretKeys' }, 'kms')).keyId;
  } catch (e) {
    if (!(e instanceof AliasTakenError)) throw e;
    const now = await findServiceKey(kms);
    if (!now) throw e;
    return now;
  }
}

export async function serviceSealer(kms: Kms): Promise<SecretSealer> {
  const keyId = await serviceKeyId(kms);
  return {
    seal: async (plain) => (await kms.envelope.encrypt(SYSTEM_CALLER, { keyId, plaintext: plain, context: CONTEXT })).ciphertext,
    open: async (sealed) => (await kms.envelope.decrypt(SYSTEM_CALLER, { ciphertext: sealed, context: CONTEXT })).plaintext,
  };
}
