/**
 * The core's key usages, each with the code stored for it: in key records, their list indexes and
 * tombstones, and in the binding of every wrapped material record (inside its MAC, hsm/material.ts).
 * The codes are the names the first protocol served (Tencent KMS) gave the usages when the store was
 * first written; they are storage codes now, not wire names: each protocol maps its own names in
 * src/api. Never change or reuse a code: existing records and material carry them.
 */
export const KEY_USAGE_CODES = {
  'encrypt-decrypt': 'ENCRYPT_DECRYPT',
  'rsa-2048-decrypt': 'ASYMMETRIC_DECRYPT_RSA_2048',
  'sm2-decrypt': 'ASYMMETRIC_DECRYPT_SM2',
  'sm2-sign-verify': 'ASYMMETRIC_SIGN_VERIFY_SM2',
  'rsa-2048-sign-verify': 'ASYMMETRIC_SIGN_VERIFY_RSA_2048',
  'ec-p256-sign-verify': 'ASYMMETRIC_SIGN_VERIFY_ECC',
  'ec-p384-sign-verify': 'ASYMMETRIC_SIGN_VERIFY_ECDSA384',
} as const;

export type KeyUsage = keyof typeof KEY_USAGE_CODES;

export const KEY_USAGE_NAMES = Object.keys(KEY_USAGE_CODES) as KeyUsage[];

/** The usage a stored code stands for; undefined for a code no usage has. */
export function keyUsageOfCode(code: string): KeyUsage | undefined {
  return KEY_USAGE_NAMES.find((u) => KEY_USAGE_CODES[u] === code);
}
