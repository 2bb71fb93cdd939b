import * as pk from 'pkcs11js';
import type { CallMode } from './profile';

type Out = Buffer | Promise<Buffer>;

/**
 * The PKCS#11 functions that have async variants, called the way the profile says: sync for
 * in-process tokens (several times faster), async (libuv threadpool) for network HSMs. Async calls
 * keep every Buffer they were given referenced until they settle (pkcs11js #121).
 */
export interface Pkcs11Calls {
  encrypt(s: pk.Handle, data: Buffer, out: Buffer): Out;
  decrypt(s: pk.Handle, data: Buffer, out: Buffer): Out;
  sign(s: pk.Handle, data: Buffer, out: Buffer): Out;
  wrapKey(s: pk.Handle, mech: pk.Mechanism, wrapping: pk.Handle, key: pk.Handle, out: Buffer): Out;
  unwrapKey(s: pk.Handle, mech: pk.Mechanism, unwrapping: pk.Handle, wrapped: Buffer, template: pk.Template): pk.Handle | Promise<pk.Handle>;
  generateKey(s: pk.Handle, mech: pk.Mechanism, template: pk.Template): pk.Handle | Promise<pk.Handle>;
  generateKeyPair(s: pk.Handle, mech: pk.Mechanism, pub: pk.Template, priv: pk.Template): pk.KeyPair | Promise<pk.KeyPair>;
}

async function pinned<T>(refs: unknown[], call: Promise<T>): Promise<T> {
  try {
    return await call;
  } finally {
    refs.length = 0;
  }
}

export function pkcs11Calls(api: pk.PKCS11, mode: CallMode): Pkcs11Calls {
  if (mode === 'sync') {
    return {
      encrypt: (s, d, o) => api.C_Encrypt(s, d, o),
      decrypt: (s, d, o) => api.C_Decrypt(s, d, o),
      sign: (s, d, o) => api.C_Sign(s, d, o),
      wrapKey: (s, m, w, k, o) => api.C_WrapKey(s, m, w, k, o),
      unwrapKey: (s, m, u, w, t) => api.C_UnwrapKey(s, m, u, w, t),
      generateKey: (s, m, t) => api.C_GenerateKey(s, m, t),
      generateKeyPair: (s, m, pub, priv) => api.C_GenerateKeyPair(s, m, pub, priv),
    };
  }
  return {
    encrypt: (s, d, o) => pinned([s, d, o], api.C_EncryptAsync(s, d, o)),
    decrypt: (s, d, o) => pinned([s, d, o], api.C_DecryptAsync(s, d, o)),
    sign: (s, d, o) => pinned([s, d, o], api.C_SignAsync(s, d, o)),
    wrapKey: (s, m, w, k, o) => pinned([s, m, w, k, o], api.C_WrapKeyAsync(s, m, w, k, o)),
    unwrapKey: (s, m, u, w, t) => pinned([s, m, u, w, t], api.C_UnwrapKeyAsync(s, m, u, w, t)),
    generateKey: (s, m, t) => pinned([s, m, t], api.C_GenerateKeyAsync(s, m, t)),
    generateKeyPair: (s, m, pub, priv) => pinned([s, m, pub, priv], api.C_GenerateKeyPairAsync(s, m, pub, priv)),
  };
}
