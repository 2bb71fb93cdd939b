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

/**
 * A MAC key with generations (the shared cluster's domain MAC key, which `kmsctl cluster
 * rotate-domain` replaces): MACs are made under the current one; while a rotation is under way the
 * retiring one is still held, and a MAC made under it still verifies until the walk re-seals it.
 */
export interface GenerationalMac {
  /** The generation (hex) new MACs are made under. */
  current(): string;
  /** The generations a stored MAC may verify under: those still held (asks the tokens again when `generation` is not among them). */
  held(generation?: string): Promise<readonly string[]>;
  macUnder(generation: string, data: Buffer): Promise<Buffer>;
}

/** A row authenticator whose MACs name the generation they were made under (rotate-domain re-seals by it). */
export interface GenerationalAuthenticator extends RowAuthenticator {
  /** The generation (hex) a stored MAC names; `legacy` for one made before MACs named theirs. */
  generationOf(mac: Buffer): string;
  current(): string;
}

/** The tag of a MAC that names its generation: 'g', the generation's length, the generation, then the 32-byte HMAC. */
const TAG = 0x67;
const HMAC_BYTES = 32;
export const LEGACY_GENERATION = 'legacy';

function parseTagged(mac: Buffer): { generation: string; hmac: Buffer } | undefined {
  if (mac.length < 2 || mac[0] !== TAG || mac.length !== 2 + mac[1] + HMAC_BYTES) return undefined;
  return { generation: mac.subarray(2, 2 + mac[1]).toString('hex'), hmac: mac.subarray(2 + mac[1]) };
}

const same = (a: Buffer, b: Buffer): boolean => a.length === b.length && timingSafeEqual(a, b);

/**
 * MACs tagged with the current generation. A tagged MAC verifies only under the generation it names,
 * and only while that generation is held (so once the old generation is destroyed nothing made under
 * it verifies); an untagged one (written before tags) under any held generation.
 */
export function generationalAuthenticator(key: GenerationalMac): GenerationalAuthenticator {
  return {
    current: () => key.current(),
    async mac(data) {
      const generation = key.current();
      const id = Buffer.from(generation, 'hex');
      return Buffer.concat([Buffer.from([TAG, id.length]), id, await key.macUnder(generation, data)]);
    },
    async verify(data, given) {
      const tagged = parseTagged(given);
      if (tagged) {
        if (!(await key.held(tagged.generation)).includes(tagged.generation)) return false;
        return same(tagged.hmac, await key.macUnder(tagged.generation, data));
      }
      if (given.length !== HMAC_BYTES) return false;
      for (const g of await key.held()) if (same(given, await key.macUnder(g, data))) return true;
      return false;
    },
    generationOf: (mac) => parseTagged(mac)?.generation ?? LEGACY_GENERATION,
  };
}
