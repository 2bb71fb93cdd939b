import type { KeySpec } from '../common/key-specs';
import { KEY_USAGE_CODES, KEY_USAGE_NAMES, KeyUsage, keyUsageOfCode } from '../common/key-usages';
import type { KeyOrigin, KeyRecord } from '../store/store';
import { StoreIntegrityError } from './errors';

export type { KeyUsage } from '../common/key-usages';

/** What each key usage does (its kind) and which key spec it needs from the HSM cluster; protocols name usages their own way in src/api. */
export const KEY_USAGES = {
  'encrypt-decrypt': { kind: 'symmetric', spec: 'AES_256' },
  'rsa-2048-decrypt': { kind: 'asymmetric-decrypt', spec: 'RSA_2048' },
  'sm2-decrypt': { kind: 'asymmetric-decrypt', spec: 'SM2' },
  'sm2-sign-verify': { kind: 'sign-verify', spec: 'SM2' },
  'rsa-2048-sign-verify': { kind: 'sign-verify', spec: 'RSA_2048' },
  'ec-p256-sign-verify': { kind: 'sign-verify', spec: 'EC_P256' },
  'ec-p384-sign-verify': { kind: 'sign-verify', spec: 'EC_P384' },
} as const satisfies Record<KeyUsage, { kind: string; spec: KeySpec | 'SM2' }>;

/** CreateKey without a usage makes a symmetric key. */
export const DEFAULT_KEY_USAGE: KeyUsage = 'encrypt-decrypt';

export function isKeyUsage(v: unknown): v is KeyUsage {
  return typeof v === 'string' && Object.hasOwn(KEY_USAGES, v);
}

/** The code a usage is stored under (common/key-usages.ts). */
export function storedUsage(usage: KeyUsage): string {
  return KEY_USAGE_CODES[usage];
}

/** The usage of a stored key; a code no usage has means the record was changed outside the service. */
export function usageOf(r: Pick<KeyRecord, 'keyId' | 'keyUsage'>): KeyUsage {
  const usage = keyUsageOfCode(r.keyUsage);
  if (usage === undefined) throw new StoreIntegrityError(`key ${r.keyId} has a stored key usage no usage has`);
  return usage;
}

/** The usages a cluster can serve: those whose key spec every member can generate (never SM2 here). */
export function usagesOffered(keySpecs: readonly KeySpec[]): KeyUsage[] {
  return KEY_USAGE_NAMES.filter((u) => {
    const spec = KEY_USAGES[u].spec;
    return spec !== 'SM2' && keySpecs.includes(spec);
  });
}

/** Symmetric KMS-made keys rotate; asymmetric and EXTERNAL keys never do. */
export function canRotate(usage: KeyUsage, origin: KeyOrigin): 'yes' | 'external' | 'asymmetric' {
  if (origin === 'EXTERNAL') return 'external';
  return KEY_USAGES[usage].kind === 'symmetric' ? 'yes' : 'asymmetric';
}
