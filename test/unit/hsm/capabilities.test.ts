import { join } from 'node:path';
import * as pk from 'pkcs11js';
import { Capabilities, deriveCapabilities, intersectCapabilities, MechanismFacts } from '../../../src/hsm/capabilities';
import { HsmProfile, loadProfiles } from '../../../src/hsm/profile';

const profiles = loadProfiles(join(__dirname, '..', '..', '..', '..', 'hsm-profiles'));
const profile = (name: string): HsmProfile => {
  const p = profiles.get(name);
  if (!p) throw new Error(`profile ${name} missing`);
  return p;
};
const SOFTHSM = profile('softhsm2');
const NSS = profile('nss-softokn');
/** The nss-softokn profile as if EC private keys could be unwrapped there. */
const NSS_WITH_EC: HsmProfile = { ...NSS, ecPrivateKeyUnwrap: true };

/** CKM_AES_KEY_WRAP_KWP (PKCS#11 v3.0); pkcs11js has no constant for it. */
const CKM_AES_KEY_WRAP_KWP = 0x210b;

type MechMap = Map<number, MechanismFacts>;
const m = (flags: number, minKeySize = 0, maxKeySize = 0): MechanismFacts => ({ flags, minKeySize, maxKeySize });
const ENC_DEC = pk.CKF_ENCRYPT | pk.CKF_DECRYPT;
const SIGN_VERIFY = pk.CKF_SIGN | pk.CKF_VERIFY;
const WRAP_UNWRAP = pk.CKF_WRAP | pk.CKF_UNWRAP;

/** Roughly what SoftHSM2 2.6 reports from C_GetMechanismList/Info (AES sizes in bytes, RSA/EC in bits). */
function softhsmMechanisms(): MechMap {
  return new Map<number, MechanismFacts>([
    [pk.CKM_AES_KEY_GEN, m(pk.CKF_GENERATE, 16, 32)],
    [pk.CKM_AES_GCM, m(ENC_DEC, 16, 32)],
    [pk.CKM_AES_CBC, m(ENC_DEC | WRAP_UNWRAP, 16, 32)],
    [pk.CKM_AES_KEY_WRAP, m(ENC_DEC | WRAP_UNWRAP, 16, 32)],
    [pk.CKM_AES_KEY_WRAP_PAD, m(ENC_DEC | WRAP_UNWRAP, 16, 32)],
    [pk.CKM_RSA_PKCS_KEY_PAIR_GEN, m(pk.CKF_GENERATE_KEY_PAIR, 512, 16384)],
    [pk.CKM_RSA_PKCS, m(ENC_DEC | SIGN_VERIFY | WRAP_UNWRAP, 512, 16384)],
    [pk.CKM_RSA_PKCS_OAEP, m(ENC_DEC | WRAP_UNWRAP, 512, 16384)],
    [pk.CKM_RSA_PKCS_PSS, m(SIGN_VERIFY, 512, 16384)],
    [pk.CKM_SHA256_RSA_PKCS, m(SIGN_VERIFY, 512, 16384)],
    [pk.CKM_SHA256_RSA_PKCS_PSS, m(SIGN_VERIFY, 512, 16384)],
    [pk.CKM_EC_KEY_PAIR_GEN, m(pk.CKF_GENERATE_KEY_PAIR, 112, 521)],
    [pk.CKM_ECDSA, m(SIGN_VERIFY, 112, 521)],
    [pk.CKM_SHA256_HMAC, m(SIGN_VERIFY, 32, 512)],
    [pk.CKM_GENERIC_SECRET_KEY_GEN, m(pk.CKF_GENERATE, 1, 0x80000000)],
    [pk.CKM_SHA256, m(pk.CKF_DIGEST)],
  ]);
}

/** Roughly what NSS softokn reports: RFC 5649 is the v3.0 KWP id, ECDSA with hash exists. */
function nssMechanisms(): MechMap {
  const map = softhsmMechanisms();
  map.set(CKM_AES_KEY_WRAP_KWP, m(ENC_DEC | WRAP_UNWRAP, 16, 32));
  map.set(pk.CKM_ECDSA_SHA256, m(SIGN_VERIFY, 112, 571));
  map.set(pk.CKM_ECDSA_SHA384, m(SIGN_VERIFY, 112, 571));
  map.set(pk.CKM_EC_KEY_PAIR_GEN, m(pk.CKF_GENERATE_KEY_PAIR, 112, 571));
  map.set(pk.CKM_ECDSA, m(SIGN_VERIFY, 112, 571));
  map.set(pk.CKM_RSA_PKCS_KEY_PAIR_GEN, m(pk.CKF_GENERATE_KEY_PAIR, 128, 16384));
  return map;
}

const SOFTHSM_EXPECTED: Capabilities = {
  keySpecs: ['AES_256', 'RSA_2048', 'RSA_3072', 'RSA_4096', 'EC_P256', 'EC_P384'],
  rsaDecrypt: ['RSAES_PKCS1_V1_5', 'RSAES_OAEP_SHA_1'],
  importWrapping: ['RSAES_PKCS1_V1_5', 'RSAES_OAEP_SHA_1'],
  signing: ['RSA_PKCS1_SHA_256', 'RSA_PSS_SHA_256', 'ECDSA_SHA_256', 'ECDSA_SHA_384'],
  ecdsaHashInSoftware: true,
  wrapAlgorithms: ['rfc5649'],
  wrappedMaterialModel: true,
};

/** nss-softokn declares ecPrivateKeyUnwrap: false, so no EC key specs and no ECDSA signing. */
const NSS_EXPECTED: Capabilities = {
  keySpecs: ['AES_256', 'RSA_2048', 'RSA_3072', 'RSA_4096'],
  rsaDecrypt: ['RSAES_PKCS1_V1_5', 'RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256'],
  importWrapping: ['RSAES_PKCS1_V1_5', 'RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256'],
  signing: ['RSA_PKCS1_SHA_256', 'RSA_PSS_SHA_256'],
  ecdsaHashInSoftware: false,
  wrapAlgorithms: ['rfc5649'],
  wrappedMaterialModel: true,
};

const NOTHING: Capabilities = {
  keySpecs: [],
  rsaDecrypt: [],
  importWrapping: [],
  signing: [],
  ecdsaHashInSoftware: false,
  wrapAlgorithms: [],
  wrappedMaterialModel: false,
};

describe('deriveCapabilities: full mechanism sets', () => {
  test('SoftHSM2-like token with the softhsm2 profile', () => {
    expect(deriveCapabilities(softhsmMechanisms(), SOFTHSM)).toEqual(SOFTHSM_EXPECTED);
  });

  test('NSS-like token with the nss-softokn profile', () => {
    expect(NSS.ecPrivateKeyUnwrap).toBe(false);
    expect(deriveCapabilities(nssMechanisms(), NSS)).toEqual(NSS_EXPECTED);
  });

  test('the same NSS-like token offers EC keys and ECDSA once the profile allows EC private key unwrap', () => {
    expect(deriveCapabilities(nssMechanisms(), NSS_WITH_EC)).toEqual({
      ...NSS_EXPECTED,
      keySpecs: ['AES_256', 'RSA_2048', 'RSA_3072', 'RSA_4096', 'EC_P256', 'EC_P384'],
      signing: ['RSA_PKCS1_SHA_256', 'RSA_PSS_SHA_256', 'ECDSA_SHA_256', 'ECDSA_SHA_384'],
    });
  });

  test('a SoftHSM-like token with a profile that cannot unwrap EC private keys offers no EC', () => {
    expect(SOFTHSM.ecPrivateKeyUnwrap).toBe(true);
    expect(deriveCapabilities(softhsmMechanisms(), { ...SOFTHSM, ecPrivateKeyUnwrap: false })).toEqual({
      ...SOFTHSM_EXPECTED,
      keySpecs: ['AES_256', 'RSA_2048', 'RSA_3072', 'RSA_4096'],
      signing: ['RSA_PKCS1_SHA_256', 'RSA_PSS_SHA_256'],
    });
  });

  test('OAEP hashes come from the profile, not from the mechanism list', () => {
    // Same mechanisms, only the profile's oaepHashes differ.
    const onlySha256: HsmProfile = { ...SOFTHSM, oaepHashes: ['sha256'] };
    const none: HsmProfile = { ...SOFTHSM, oaepHashes: [] };
    expect(deriveCapabilities(softhsmMechanisms(), onlySha256).rsaDecrypt).toEqual(['RSAES_PKCS1_V1_5', 'RSAES_OAEP_SHA_256']);
    expect(deriveCapabilities(softhsmMechanisms(), none).rsaDecrypt).toEqual(['RSAES_PKCS1_V1_5']);
    expect(deriveCapabilities(softhsmMechanisms(), none).importWrapping).toEqual(['RSAES_PKCS1_V1_5']);
  });

  test("the RFC 5649 mechanism is the profile's: the NSS profile on a SoftHSM-like list has no wrapped-material model", () => {
    const caps = deriveCapabilities(softhsmMechanisms(), NSS_WITH_EC);
    expect(caps.wrappedMaterialModel).toBe(false);
    expect(caps.keySpecs).toEqual(SOFTHSM_EXPECTED.keySpecs);
    expect(deriveCapabilities(nssMechanisms(), NSS_WITH_EC).wrappedMaterialModel).toBe(true);
  });

  test('the SoftHSM profile on an NSS-like list still hashes ECDSA in software (profile says ecdsaWithHash: false)', () => {
    const caps = deriveCapabilities(nssMechanisms(), SOFTHSM);
    expect(caps.ecdsaHashInSoftware).toBe(true);
    expect(caps.wrappedMaterialModel).toBe(true);
  });

  test('an empty mechanism list yields nothing, and software ECDSA hashing', () => {
    expect(deriveCapabilities(new Map(), SOFTHSM)).toEqual({ ...NOTHING, ecdsaHashInSoftware: true });
    expect(deriveCapabilities(new Map(), NSS)).toEqual({ ...NOTHING, ecdsaHashInSoftware: true });
  });
});

describe('deriveCapabilities: one mechanism changed on a SoftHSM2-like token', () => {
  type Row = [string, (map: MechMap) => void, Partial<Capabilities>];
  const without = (mech: number) => (map: MechMap) => {
    map.delete(mech);
  };
  const replace = (mech: number, facts: MechanismFacts) => (map: MechMap) => {
    map.set(mech, facts);
  };
  const noAes: Partial<Capabilities> = {
    keySpecs: ['RSA_2048', 'RSA_3072', 'RSA_4096', 'EC_P256', 'EC_P384'],
    wrappedMaterialModel: false,
  };
  const rows: Row[] = [
    ['no CKM_AES_KEY_GEN', without(pk.CKM_AES_KEY_GEN), noAes],
    ['CKM_AES_KEY_GEN only up to 16 bytes', replace(pk.CKM_AES_KEY_GEN, m(pk.CKF_GENERATE, 16, 16)), noAes],
    ['CKM_AES_KEY_GEN without CKF_GENERATE', replace(pk.CKM_AES_KEY_GEN, m(pk.CKF_ENCRYPT, 16, 32)), noAes],
    // without GCM there are no AES_256 keys, but RSA material can still be wrapped and MACed
    ['no CKM_AES_GCM', without(pk.CKM_AES_GCM), { keySpecs: noAes.keySpecs }],
    ['CKM_AES_GCM with neither encrypt nor decrypt', replace(pk.CKM_AES_GCM, m(SIGN_VERIFY, 16, 32)), { keySpecs: noAes.keySpecs }],
    ['no CKM_RSA_PKCS_KEY_PAIR_GEN', without(pk.CKM_RSA_PKCS_KEY_PAIR_GEN), { keySpecs: ['AES_256', 'EC_P256', 'EC_P384'] }],
    [
      'RSA key generation up to 3072 bits',
      replace(pk.CKM_RSA_PKCS_KEY_PAIR_GEN, m(pk.CKF_GENERATE_KEY_PAIR, 1024, 3072)),
      { keySpecs: ['AES_256', 'RSA_2048', 'RSA_3072', 'EC_P256', 'EC_P384'] },
    ],
    [
      'RSA key generation from 3072 bits',
      replace(pk.CKM_RSA_PKCS_KEY_PAIR_GEN, m(pk.CKF_GENERATE_KEY_PAIR, 3072, 4096)),
      { keySpecs: ['AES_256', 'RSA_3072', 'RSA_4096', 'EC_P256', 'EC_P384'] },
    ],
    [
      'RSA key generation without CKF_GENERATE_KEY_PAIR',
      replace(pk.CKM_RSA_PKCS_KEY_PAIR_GEN, m(pk.CKF_GENERATE, 512, 16384)),
      { keySpecs: ['AES_256', 'EC_P256', 'EC_P384'] },
    ],
    [
      'no CKM_EC_KEY_PAIR_GEN',
      without(pk.CKM_EC_KEY_PAIR_GEN),
      { keySpecs: ['AES_256', 'RSA_2048', 'RSA_3072', 'RSA_4096'], signing: ['RSA_PKCS1_SHA_256', 'RSA_PSS_SHA_256'] },
    ],
    ['no CKM_ECDSA', without(pk.CKM_ECDSA), { keySpecs: ['AES_256', 'RSA_2048', 'RSA_3072', 'RSA_4096'], signing: ['RSA_PKCS1_SHA_256', 'RSA_PSS_SHA_256'] }],
    [
      'CKM_ECDSA verify-only',
      replace(pk.CKM_ECDSA, m(pk.CKF_VERIFY, 112, 521)),
      { keySpecs: ['AES_256', 'RSA_2048', 'RSA_3072', 'RSA_4096'], signing: ['RSA_PKCS1_SHA_256', 'RSA_PSS_SHA_256'] },
    ],
    [
      'EC key generation up to 256 bits',
      replace(pk.CKM_EC_KEY_PAIR_GEN, m(pk.CKF_GENERATE_KEY_PAIR, 256, 256)),
      { keySpecs: ['AES_256', 'RSA_2048', 'RSA_3072', 'RSA_4096', 'EC_P256'], signing: ['RSA_PKCS1_SHA_256', 'RSA_PSS_SHA_256', 'ECDSA_SHA_256'] },
    ],
    [
      'CKM_ECDSA from 384 bits',
      replace(pk.CKM_ECDSA, m(SIGN_VERIFY, 384, 521)),
      { keySpecs: ['AES_256', 'RSA_2048', 'RSA_3072', 'RSA_4096', 'EC_P384'], signing: ['RSA_PKCS1_SHA_256', 'RSA_PSS_SHA_256', 'ECDSA_SHA_384'] },
    ],
    [
      'no CKM_RSA_PKCS',
      without(pk.CKM_RSA_PKCS),
      { rsaDecrypt: ['RSAES_OAEP_SHA_1'], importWrapping: ['RSAES_OAEP_SHA_1'], signing: ['RSA_PSS_SHA_256', 'ECDSA_SHA_256', 'ECDSA_SHA_384'] },
    ],
    ['no CKM_RSA_PKCS_OAEP', without(pk.CKM_RSA_PKCS_OAEP), { rsaDecrypt: ['RSAES_PKCS1_V1_5'], importWrapping: ['RSAES_PKCS1_V1_5'] }],
    ['CKM_RSA_PKCS_OAEP cannot unwrap', replace(pk.CKM_RSA_PKCS_OAEP, m(ENC_DEC, 512, 16384)), { importWrapping: ['RSAES_PKCS1_V1_5'] }],
    ['CKM_RSA_PKCS_OAEP cannot decrypt', replace(pk.CKM_RSA_PKCS_OAEP, m(pk.CKF_ENCRYPT | WRAP_UNWRAP, 512, 16384)), { rsaDecrypt: ['RSAES_PKCS1_V1_5'] }],
    ['CKM_RSA_PKCS cannot unwrap', replace(pk.CKM_RSA_PKCS, m(ENC_DEC | SIGN_VERIFY, 512, 16384)), { importWrapping: ['RSAES_OAEP_SHA_1'] }],
    ['no CKM_SHA256_RSA_PKCS (not needed: the digest is computed in software)', without(pk.CKM_SHA256_RSA_PKCS), {}],
    [
      'CKM_RSA_PKCS cannot sign',
      replace(pk.CKM_RSA_PKCS, m(ENC_DEC | WRAP_UNWRAP, 512, 16384)),
      { signing: ['RSA_PSS_SHA_256', 'ECDSA_SHA_256', 'ECDSA_SHA_384'] },
    ],
    ['no CKM_RSA_PKCS_PSS', without(pk.CKM_RSA_PKCS_PSS), { signing: ['RSA_PKCS1_SHA_256', 'ECDSA_SHA_256', 'ECDSA_SHA_384'] }],
    ['no CKM_SHA256_HMAC', without(pk.CKM_SHA256_HMAC), { wrappedMaterialModel: false }],
    ['CKM_SHA256_HMAC verify-only', replace(pk.CKM_SHA256_HMAC, m(pk.CKF_VERIFY, 32, 512)), { wrappedMaterialModel: false }],
    ['no CKM_GENERIC_SECRET_KEY_GEN', without(pk.CKM_GENERIC_SECRET_KEY_GEN), { wrappedMaterialModel: false }],
    ['no RFC 5649 (CKM_AES_KEY_WRAP_PAD)', without(pk.CKM_AES_KEY_WRAP_PAD), { wrapAlgorithms: [], wrappedMaterialModel: false }],
    [
      'RFC 5649 mechanism with neither wrap nor unwrap',
      replace(pk.CKM_AES_KEY_WRAP_PAD, m(ENC_DEC, 16, 32)),
      { wrapAlgorithms: [], wrappedMaterialModel: false },
    ],
    ['an extra CKM_ECDSA_SHA256 (profile still says no)', replace(pk.CKM_ECDSA_SHA256, m(SIGN_VERIFY, 112, 521)), {}],
    ['no plain CKM_AES_KEY_WRAP (not needed)', without(pk.CKM_AES_KEY_WRAP), {}],
  ];

  test.each(rows)('%s', (_name, change, delta) => {
    const map = softhsmMechanisms();
    change(map);
    const caps = deriveCapabilities(map, SOFTHSM);
    expect(caps).toEqual({ ...SOFTHSM_EXPECTED, ...delta });
  });
});

describe('deriveCapabilities: ECDSA hashing on an NSS-like token', () => {
  test.each<[string, (map: MechMap) => void, boolean]>([
    ['with CKM_ECDSA_SHA256', () => undefined, false],
    ['without CKM_ECDSA_SHA256', (map) => map.delete(pk.CKM_ECDSA_SHA256), true],
    ['CKM_ECDSA_SHA256 verify-only', (map) => map.set(pk.CKM_ECDSA_SHA256, m(pk.CKF_VERIFY, 112, 571)), true],
  ])('%s', (_name, change, inSoftware) => {
    const map = nssMechanisms();
    change(map);
    expect(deriveCapabilities(map, NSS).ecdsaHashInSoftware).toBe(inSoftware);
  });
});

describe('intersectCapabilities', () => {
  const softhsm = deriveCapabilities(softhsmMechanisms(), SOFTHSM);
  const nss = deriveCapabilities(nssMechanisms(), NSS);
  const small = (): Capabilities => {
    const map = softhsmMechanisms();
    map.set(pk.CKM_RSA_PKCS_KEY_PAIR_GEN, m(pk.CKF_GENERATE_KEY_PAIR, 1024, 2048));
    map.delete(pk.CKM_RSA_PKCS_PSS);
    map.set(pk.CKM_RSA_PKCS, m(SIGN_VERIFY, 512, 16384));
    map.set(pk.CKM_EC_KEY_PAIR_GEN, m(pk.CKF_GENERATE_KEY_PAIR, 256, 256));
    return deriveCapabilities(map, NSS_WITH_EC);
  };

  test('softhsm2 and nss-softokn: only what both can do', () => {
    const both = intersectCapabilities([softhsm, nss]);
    expect(both).toEqual({
      keySpecs: ['AES_256', 'RSA_2048', 'RSA_3072', 'RSA_4096'],
      rsaDecrypt: ['RSAES_PKCS1_V1_5', 'RSAES_OAEP_SHA_1'],
      importWrapping: ['RSAES_PKCS1_V1_5', 'RSAES_OAEP_SHA_1'],
      signing: ['RSA_PKCS1_SHA_256', 'RSA_PSS_SHA_256'],
      ecdsaHashInSoftware: true,
      wrapAlgorithms: ['rfc5649'],
      wrappedMaterialModel: true,
    });
    // softhsm2 alone has EC, nss-softokn alone has OAEP SHA-256: the cluster has neither.
    expect(softhsm.keySpecs).toContain('EC_P256');
    expect(nss.rsaDecrypt).toContain('RSAES_OAEP_SHA_256');
  });

  test('order of members does not matter', () => {
    expect(intersectCapabilities([nss, softhsm])).toEqual(intersectCapabilities([softhsm, nss]));
  });

  test('a weaker member narrows every list', () => {
    const weak = small();
    expect(weak).toEqual({
      keySpecs: ['AES_256', 'RSA_2048', 'EC_P256'],
      rsaDecrypt: ['RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256'],
      importWrapping: ['RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256'],
      signing: ['RSA_PKCS1_SHA_256', 'ECDSA_SHA_256'],
      ecdsaHashInSoftware: true,
      wrapAlgorithms: [],
      wrappedMaterialModel: false, // the NSS profile's KWP id is not in a SoftHSM-like list
    });
    expect(intersectCapabilities([softhsm, weak])).toEqual({
      keySpecs: ['AES_256', 'RSA_2048', 'EC_P256'],
      rsaDecrypt: ['RSAES_OAEP_SHA_1'],
      importWrapping: ['RSAES_OAEP_SHA_1'],
      signing: ['RSA_PKCS1_SHA_256', 'ECDSA_SHA_256'],
      ecdsaHashInSoftware: true,
      wrapAlgorithms: [],
      wrappedMaterialModel: false,
    });
    expect(intersectCapabilities([nss, weak])).toEqual({
      keySpecs: ['AES_256', 'RSA_2048'],
      rsaDecrypt: ['RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256'],
      importWrapping: ['RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256'],
      signing: ['RSA_PKCS1_SHA_256'],
      ecdsaHashInSoftware: true,
      wrapAlgorithms: [],
      wrappedMaterialModel: false,
    });
    expect(intersectCapabilities([softhsm, nss, weak])).toEqual({
      keySpecs: ['AES_256', 'RSA_2048'],
      rsaDecrypt: ['RSAES_OAEP_SHA_1'],
      importWrapping: ['RSAES_OAEP_SHA_1'],
      signing: ['RSA_PKCS1_SHA_256'],
      ecdsaHashInSoftware: true,
      wrapAlgorithms: [],
      wrappedMaterialModel: false,
    });
  });

  test('ecdsaHashInSoftware is set if any member needs it', () => {
    const withHash = deriveCapabilities(nssMechanisms(), NSS_WITH_EC);
    expect(withHash.ecdsaHashInSoftware).toBe(false);
    expect(intersectCapabilities([withHash, withHash]).ecdsaHashInSoftware).toBe(false);
    expect(intersectCapabilities([withHash, softhsm]).ecdsaHashInSoftware).toBe(true);
    expect(intersectCapabilities([softhsm, withHash]).ecdsaHashInSoftware).toBe(true);
  });

  test('one member is itself', () => {
    expect(intersectCapabilities([nss])).toEqual(nss);
    expect(intersectCapabilities([softhsm])).toEqual(softhsm);
  });

  test('a member with nothing empties the cluster', () => {
    const nothing = deriveCapabilities(new Map(), NSS);
    expect(intersectCapabilities([softhsm, nothing, nss])).toEqual({ ...NOTHING, ecdsaHashInSoftware: true });
  });

  test('an empty list offers nothing', () => {
    expect(intersectCapabilities([])).toEqual(NOTHING);
  });

  test('inputs are not modified', () => {
    const a = deriveCapabilities(nssMechanisms(), NSS);
    const b = small();
    const aCopy: Capabilities = JSON.parse(JSON.stringify(a)) as Capabilities;
    const bCopy: Capabilities = JSON.parse(JSON.stringify(b)) as Capabilities;
    intersectCapabilities([a, b]);
    expect(a).toEqual(aCopy);
    expect(b).toEqual(bCopy);
  });
});

/** What openCryptoki 3.8.1 swtok reported on the reference machine (the entries that matter here). */
function opencryptokiMechanisms(): MechMap {
  return new Map<number, MechanismFacts>([
    [pk.CKM_RSA_PKCS_KEY_PAIR_GEN, m(pk.CKF_GENERATE_KEY_PAIR, 512, 4096)],
    [pk.CKM_RSA_PKCS, m(0x67b00, 512, 4096)],
    [pk.CKM_RSA_PKCS_PSS, m(SIGN_VERIFY, 1024, 4096)],
    [pk.CKM_RSA_PKCS_OAEP, m(ENC_DEC | WRAP_UNWRAP, 1024, 4096)],
    [pk.CKM_SHA256_HMAC, m(SIGN_VERIFY)],
    [pk.CKM_AES_KEY_GEN, m(pk.CKF_GENERATE, 16, 32)],
    [pk.CKM_AES_ECB, m(ENC_DEC | WRAP_UNWRAP, 16, 32)],
    [pk.CKM_AES_CBC_PAD, m(ENC_DEC | WRAP_UNWRAP, 16, 32)],
    [pk.CKM_GENERIC_SECRET_KEY_GEN, m(pk.CKF_GENERATE, 80, 2048)],
  ]);
}

describe('openCryptoki 3.8.1 swtok: no GCM, no EC, no RFC 5649', () => {
  const ock = deriveCapabilities(opencryptokiMechanisms(), profile('opencryptoki-swtok'));

  test('RSA keys, RSA signing and decryption, CBC-PAD wrap; no AES_256 and no EC', () => {
    expect(ock).toEqual({
      keySpecs: ['RSA_2048', 'RSA_3072', 'RSA_4096'],
      rsaDecrypt: ['RSAES_PKCS1_V1_5', 'RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256'],
      importWrapping: ['RSAES_PKCS1_V1_5', 'RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256'],
      signing: ['RSA_PKCS1_SHA_256', 'RSA_PSS_SHA_256'],
      ecdsaHashInSoftware: true,
      wrapAlgorithms: ['aes-cbc-pad'],
      wrappedMaterialModel: true,
    });
  });

  test('with SoftHSM2 no wrap algorithm is common, so no wrapped-material model; with NSS softokn, CBC-PAD', () => {
    const softhsm = deriveCapabilities(softhsmMechanisms(), SOFTHSM);
    expect(intersectCapabilities([softhsm, ock])).toMatchObject({
      wrapAlgorithms: [],
      wrappedMaterialModel: false,
      keySpecs: ['RSA_2048', 'RSA_3072', 'RSA_4096'],
    });
    const nssWithCbc = new Map(nssMechanisms()).set(pk.CKM_AES_CBC_PAD, m(ENC_DEC | WRAP_UNWRAP, 16, 32));
    const nss = deriveCapabilities(nssWithCbc, NSS);
    expect(nss.wrapAlgorithms).toEqual(['rfc5649', 'aes-cbc-pad']);
    expect(intersectCapabilities([nss, ock])).toMatchObject({
      wrapAlgorithms: ['aes-cbc-pad'],
      wrappedMaterialModel: true,
      keySpecs: ['RSA_2048', 'RSA_3072', 'RSA_4096'],
    });
    // the cluster's choice follows the first member's preference order among the common ones
    expect(intersectCapabilities([nss, softhsm]).wrapAlgorithms).toEqual(['rfc5649']);
  });
});
