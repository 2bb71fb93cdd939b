import * as pk from 'pkcs11js';
import type { Pkcs11Module } from './module';
import type { MemberOperation } from './error-classes';
import type { CallMode } from './profile';
import type { ThreadLane } from './thread-lane';

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

/**
 * What a member calls with: `fast` in the profile's call mode (AES-GCM, HMAC, AES wraps);
 * `offloaded` always on the thread pool (short private-key work on the serialised keeper session,
 * such as unwrapping an RSA key, which must not wait behind generations); `slow` on the thread pool
 * through the process's lane (key-pair generation, RSA decrypt, signing, RSA unwrap of imports).
 * Slow calls never run on the event loop, whatever the profile's call mode.
 */
export interface CallSet {
  fast: Pkcs11Calls;
  offloaded: Pkcs11Calls;
  slow: Pkcs11Calls;
  /** The calls for a fast-path operation: `fast`, or `slow` if the profile marks the operation slow. */
  forOperation(operation: MemberOperation): Pkcs11Calls;
}

async function pinned<T>(refs: unknown[], call: Promise<T>): Promise<T> {
  try {
    return await call;
  } finally {
    refs.length = 0;
  }
}

function syncCalls(api: pk.PKCS11): Pkcs11Calls {
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

/** Thread-pool calls, counted by the module while in flight; `via` decides when each starts (the lane, or at once). */
function asyncCalls(module: Pkcs11Module, lane?: { lane: ThreadLane; owner: string }): Pkcs11Calls {
  const api = module.api;
  const via = <T>(start: () => Promise<T>): Promise<T> => {
    const tracked = () => module.track(start());
    return lane ? lane.lane.run(lane.owner, tracked) : tracked();
  };
  return {
    encrypt: (s, d, o) => via(() => pinned([s, d, o], api.C_EncryptAsync(s, d, o))),
    decrypt: (s, d, o) => via(() => pinned([s, d, o], api.C_DecryptAsync(s, d, o))),
    sign: (s, d, o) => via(() => pinned([s, d, o], api.C_SignAsync(s, d, o))),
    wrapKey: (s, m, w, k, o) => via(() => pinned([s, m, w, k, o], api.C_WrapKeyAsync(s, m, w, k, o))),
    unwrapKey: (s, m, u, w, t) => via(() => pinned([s, m, u, w, t], api.C_UnwrapKeyAsync(s, m, u, w, t))),
    generateKey: (s, m, t) => via(() => pinned([s, m, t], api.C_GenerateKeyAsync(s, m, t))),
    generateKeyPair: (s, m, pub, priv) => via(() => pinned([s, m, pub, priv], api.C_GenerateKeyPairAsync(s, m, pub, priv))),
  };
}

/** The call set of one member; `owner` is its turn in the lane; `slowOperations` never run on the event loop. */
export function callSet(module: Pkcs11Module, mode: CallMode, lane: ThreadLane, owner: string, slowOperations: readonly MemberOperation[] = []): CallSet {
  const offloaded = asyncCalls(module);
  const fast = mode === 'sync' ? syncCalls(module.api) : offloaded;
  const slow = asyncCalls(module, { lane, owner });
  const slowSet = new Set(slowOperations);
  return { fast, offloaded, slow, forOperation: (operation) => (slowSet.has(operation) ? slow : fast) };
}
