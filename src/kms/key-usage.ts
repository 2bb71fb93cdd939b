import type { KeySpec } from '../common/key-specs';

/** The Tencent KeyUsage values and what each needs from the HSM cluster. */
export const KEY_USAGES = {
  ENCRYPT_DECRYPT: { kind: 'symmetric', spec: 'AES_256' },
  ASYMMETRIC_DECRYPT_RSA_2048: { kind: 'asymmetric-decrypt', spec: 'RSA_2048' },
  ASYMMETRIC_DECRYPT_SM2: { kind: 'asymmetric-decrypt', spec: 'SM2' },
  ASYMMETRIC_SIGN_VERIFY_SM2: { kind: 'sign-verify', spec: 'SM2' },
  ASYMMETRIC_SIGN_VERIFY_RSA_2048: { kind: 'sign-verify', spec: 'RSA_2048' },
  ASYMMETRIC_SIGN_VERIFY_ECC: { kind: 'sign-verify', spec: 'EC_P256' },
  ASYMMETRIC_SIGN_VERIFY_ECDSA384: { kind: 'sign-verify', spec: 'EC_P384' },
} as const satisfies Record<string, { kind: string; spec: KeySpec | 'SM2' }>;

export type KeyUsage = keyof typeof KEY_USAGES;

export function isKeyUsage(v: unknown): v is KeyUsage {
  return typeof v === 'string' && Object.hasOwn(KEY_USAGES, v);
}

/** "Empty means ENCRYPT_DECRYPT" (CreateKey, ListKeyDetail). */
export function keyUsageOrDefault(v: string | undefined): string {
  return v === undefined || v === '' ? 'ENCRYPT_DECRYPT' : v;
}

/** The usages a cluster can serve: those whose key spec every member can generate (never SM2 here). */
export function usagesOffered(keySpecs: readonly KeySpec[]): KeyUsage[] {
  return (Object.keys(KEY_USAGES) as KeyUsage[]).filter((u) => {
    const spec = KEY_USAGES[u].spec;
    return spec !== 'SM2' && keySpecs.includes(spec);
  });
}

/** Symmetric KMS-made keys rotate; asymmetric and EXTERNAL keys never do. */
export function canRotate(usage: KeyUsage, origin: 'TENCENT_KMS' | 'EXTERNAL'): 'yes' | 'external' | 'asymmetric' {
  if (origin === 'EXTERNAL') return 'external';
  return KEY_USAGES[usage].kind === 'symmetric' ? 'yes' : 'asymmetric';
}
