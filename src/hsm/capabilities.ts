import * as pk from 'pkcs11js';
import { KEY_SPECS, KeySpec } from '../common/key-specs';
import type { HsmProfile, WrapAlgorithm } from './profile';

export type { KeySpec };
export type RsaPadding = 'RSAES_PKCS1_V1_5' | 'RSAES_OAEP_SHA_1' | 'RSAES_OAEP_SHA_256';
export type SigningAlgorithm = 'RSA_PKCS1_SHA_256' | 'RSA_PSS_SHA_256' | 'ECDSA_SHA_256' | 'ECDSA_SHA_384';

/** What a member (or, intersected, a cluster) can actually do. */
export interface Capabilities {
  keySpecs: KeySpec[];
  rsaDecrypt: RsaPadding[];
  importWrapping: RsaPadding[];
  signing: SigningAlgorithm[];
  /** No CKM_ECDSA_SHA*: the digest is computed in software and signed with CKM_ECDSA. */
  ecdsaHashInSoftware: boolean;
  /** Ways to wrap material under the domain KEK, in the profile's order of preference. */
  wrapAlgorithms: WrapAlgorithm[];
  /** Mechanisms needed for the wrapped-material model itself (a wrap algorithm, HMAC) are all there. */
  wrappedMaterialModel: boolean;
}

/** The PKCS#11 mechanism behind a wrap algorithm on this profile (undefined: the module has none). */
export function wrapMechanismId(profile: HsmProfile, algorithm: WrapAlgorithm): number | undefined {
  return algorithm === 'rfc5649' ? profile.rfc5649Mechanism : pk.CKM_AES_CBC_PAD;
}

export interface MechanismFacts {
  flags: number;
  minKeySize: number;
  maxKeySize: number;
}

/** Derives capabilities from what C_GetMechanismList/Info reported, corrected by the profile's declared quirks. */
export function deriveCapabilities(mechanisms: ReadonlyMap<number, MechanismFacts>, profile: HsmProfile): Capabilities {
  const has = (mech: number, flag: number, bits?: number): boolean => {
    const m = mechanisms.get(mech);
    if (!m || (m.flags & flag) !== flag) return false;
    return bits === undefined || (m.minKeySize <= bits && bits <= m.maxKeySize);
  };
  const rsaGen = (bits: number) => has(pk.CKM_RSA_PKCS_KEY_PAIR_GEN, pk.CKF_GENERATE_KEY_PAIR, bits);
  const ecGen = (bits: number) =>
    profile.ecPrivateKeyUnwrap && has(pk.CKM_EC_KEY_PAIR_GEN, pk.CKF_GENERATE_KEY_PAIR, bits) && has(pk.CKM_ECDSA, pk.CKF_SIGN, bits);
  const spec: Record<KeySpec, boolean> = {
    AES_256: has(pk.CKM_AES_KEY_GEN, pk.CKF_GENERATE, 32) && has(pk.CKM_AES_GCM, pk.CKF_ENCRYPT | pk.CKF_DECRYPT),
    RSA_2048: rsaGen(2048),
    RSA_3072: rsaGen(3072),
    RSA_4096: rsaGen(4096),
    EC_P256: ecGen(256),
    EC_P384: ecGen(384),
  };
  const paddings = (flag: number): RsaPadding[] => {
    const out: RsaPadding[] = [];
    if (has(pk.CKM_RSA_PKCS, flag)) out.push('RSAES_PKCS1_V1_5');
    if (has(pk.CKM_RSA_PKCS_OAEP, flag)) {
      if (profile.oaepHashes.includes('sha1')) out.push('RSAES_OAEP_SHA_1');
      if (profile.oaepHashes.includes('sha256')) out.push('RSAES_OAEP_SHA_256');
    }
    return out;
  };
  const signing: SigningAlgorithm[] = [];
  // RSA signs a digest computed in software: CKM_RSA_PKCS over DigestInfo, CKM_RSA_PKCS_PSS over the hash.
  if (has(pk.CKM_RSA_PKCS, pk.CKF_SIGN)) signing.push('RSA_PKCS1_SHA_256');
  if (has(pk.CKM_RSA_PKCS_PSS, pk.CKF_SIGN)) signing.push('RSA_PSS_SHA_256');
  if (spec.EC_P256) signing.push('ECDSA_SHA_256');
  if (spec.EC_P384) signing.push('ECDSA_SHA_384');
  const wrapAlgorithms = profile.wrapAlgorithms.filter((a) => {
    const id = wrapMechanismId(profile, a);
    return id !== undefined && has(id, pk.CKF_WRAP | pk.CKF_UNWRAP);
  });
  return {
    keySpecs: KEY_SPECS.filter((s) => spec[s]),
    rsaDecrypt: paddings(pk.CKF_DECRYPT),
    importWrapping: paddings(pk.CKF_UNWRAP),
    signing,
    ecdsaHashInSoftware: !profile.ecdsaWithHash || !has(pk.CKM_ECDSA_SHA256, pk.CKF_SIGN),
    wrapAlgorithms,
    wrappedMaterialModel:
      wrapAlgorithms.length > 0 &&
      has(pk.CKM_SHA256_HMAC, pk.CKF_SIGN) &&
      has(pk.CKM_GENERIC_SECRET_KEY_GEN, pk.CKF_GENERATE) &&
      has(pk.CKM_AES_KEY_GEN, pk.CKF_GENERATE, 32),
  };
}

const both = <T>(a: T[], b: T[]): T[] => a.filter((x) => b.includes(x));

/** A cluster offers what every one of its members can do. */
export function intersectCapabilities(all: Capabilities[]): Capabilities {
  if (all.length === 0) {
    return { keySpecs: [], rsaDecrypt: [], importWrapping: [], signing: [], ecdsaHashInSoftware: false, wrapAlgorithms: [], wrappedMaterialModel: false };
  }
  return all.reduce((a, b) => ({
    keySpecs: both(a.keySpecs, b.keySpecs),
    rsaDecrypt: both(a.rsaDecrypt, b.rsaDecrypt),
    importWrapping: both(a.importWrapping, b.importWrapping),
    signing: both(a.signing, b.signing),
    ecdsaHashInSoftware: a.ecdsaHashInSoftware || b.ecdsaHashInSoftware,
    wrapAlgorithms: both(a.wrapAlgorithms, b.wrapAlgorithms),
    wrappedMaterialModel: a.wrappedMaterialModel && b.wrappedMaterialModel && both(a.wrapAlgorithms, b.wrapAlgorithms).length > 0,
  }));
}
