/**
 * The key specs an HSM cluster can make, each with the byte that names it in a wrapped material
 * record (hsm/material.ts). The codes are stored with every key version: never renumber or reuse one.
 */
export const KEY_SPEC_CODES = { AES_256: 0, RSA_2048: 1, RSA_3072: 2, RSA_4096: 3, EC_P256: 4, EC_P384: 5 } as const;

export type KeySpec = keyof typeof KEY_SPEC_CODES;

export const KEY_SPECS = Object.keys(KEY_SPEC_CODES) as KeySpec[];

export function keySpecOfCode(code: number): KeySpec | undefined {
  return KEY_SPECS.find((s) => KEY_SPEC_CODES[s] === code);
}
