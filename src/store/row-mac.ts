/**
 * The port through which rows that carry authority (who owns a key, which policies a sub-account
 * has, whether an API key is active, which tenant a sub-account belongs to) are authenticated: a
 * MAC under a key the store never sees (the server's is an HMAC inside the shared cluster's HSMs).
 * Pure: no HSM here. The sealing decorators above the backends (src/kms/sealed-store.ts,
 * src/iam/sealed-identity-store.ts) are its users.
 */
import { timingSafeEqual } from 'node:crypto';

export interface RowAuthenticator {
  mac(data: Buffer): Promise<Buffer>;
  /** Whether `mac` is the MAC of `data` (constant-time comparison). */
  verify(data: Buffer, mac: Buffer): Promise<boolean>;
}

/**
 * The bytes a row's MAC covers: its kind, then its fields, as a JSON array (unambiguous: no field
 * can run into the next, and the kind keeps one kind of row from standing for another).
 */
export function rowBytes(kind: string, fields: ReadonlyArray<string | number | boolean | null>): Buffer {
  return Buffer.from(JSON.stringify([kind, ...fields]), 'utf8');
}

/** A RowAuthenticator from a MAC function (verification recomputes and compares in constant time). */
export function rowAuthenticator(mac: (data: Buffer) => Promise<Buffer>): RowAuthenticator {
  return {
    mac,
    async verify(data, given) {
      const expected = await mac(data);
      return given.length === expected.length && timingSafeEqual(given, expected);
    },
  };
}
