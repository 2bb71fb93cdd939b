/** AES-GCM as this service uses it: random 96-bit IVs and 128-bit tags (HSM operations and the ciphertext format). */
export const GCM_IV_BYTES = 12;
export const GCM_TAG_BYTES = 16;

/** NIST SP 800-38D 8.3: encryptions under one key with random 96-bit IVs. */
export const GCM_RANDOM_IV_LIMIT = 2 ** 32;
