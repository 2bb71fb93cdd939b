import * as pk from 'pkcs11js';
import { GCM_TAG_BYTES } from '../common/gcm';
import { KeySpec, RsaPadding, wrapMechanismId } from './capabilities';
import { UnsupportedError } from './errors';
import type { HsmProfile, WrapAlgorithm } from './profile';
import { EC_CURVES } from './spki';
import type { NestedTemplate } from './template-attributes';

/** Attribute templates and mechanisms: pure data, one place for what every object the layer makes looks like. */

export const DOMAIN_KEK_LABEL = 'kms-domain-kek';
export const DOMAIN_MAC_LABEL = 'kms-domain-mac';
export const TRANSPORT_KEY_BITS = 3072;
export const CBC_IV_BYTES = 16;

export type KeyKind = { kind: 'aes' } | { kind: 'rsa'; bits: number } | { kind: 'ec'; curve: 'P-256' | 'P-384' };

export const KEY_SPEC: Record<KeySpec, KeyKind> = {
  AES_256: { kind: 'aes' },
  RSA_2048: { kind: 'rsa', bits: 2048 },
  RSA_3072: { kind: 'rsa', bits: 3072 },
  RSA_4096: { kind: 'rsa', bits: 4096 },
  EC_P256: { kind: 'ec', curve: 'P-256' },
  EC_P384: { kind: 'ec', curve: 'P-384' },
};

const PUBLIC_EXPONENT = Buffer.from([1, 0, 1]);

export function oaep(hash: 'sha1' | 'sha256'): pk.Mechanism {
  return {
    mechanism: pk.CKM_RSA_PKCS_OAEP,
    parameter: {
      type: pk.CK_PARAMS_RSA_OAEP,
      hashAlg: hash === 'sha1' ? pk.CKM_SHA_1 : pk.CKM_SHA256,
      mgf: hash === 'sha1' ? pk.CKG_MGF1_SHA1 : pk.CKG_MGF1_SHA256,
      source: 1, // CKZ_DATA_SPECIFIED
    } as pk.RsaOAEP,
  };
}

export function rsaMechanism(padding: RsaPadding): pk.Mechanism {
  if (padding === 'RSAES_PKCS1_V1_5') return { mechanism: pk.CKM_RSA_PKCS };
  return oaep(padding === 'RSAES_OAEP_SHA_1' ? 'sha1' : 'sha256');
}

export function gcmMechanism(profile: HsmProfile, iv: Buffer, aad: Buffer): pk.Mechanism {
  const type = profile.gcmParams === 'v2.40' ? pk.CK_PARAMS_AES_GCM_v240 : pk.CK_PARAMS_AES_GCM;
  return { mechanism: pk.CKM_AES_GCM, parameter: { type, iv, aad, ivBits: iv.length * 8, tagBits: GCM_TAG_BYTES * 8 } as pk.AesGCM };
}

/** The mechanism of a wrap algorithm on this profile; CBC-PAD carries its IV, RFC 5649 has none. */
export function keyWrapMechanism(profile: HsmProfile, algorithm: WrapAlgorithm, iv: Buffer): pk.Mechanism {
  const id = wrapMechanismId(profile, algorithm);
  if (id === undefined) throw new UnsupportedError(`${profile.name} has no ${algorithm} key-wrap mechanism`);
  return algorithm === 'aes-cbc-pad' ? { mechanism: id, parameter: iv } : { mechanism: id };
}

/**
 * Domain keys carry CKA_ID = domain id + "K"/"M": NSS softokn keeps one token key per CKA_ID.
 * Extractable only until every member holds them (then locked); where the token enforces it,
 * only under a key the Security Officer marked CKA_TRUSTED, from the start.
 */
function domainKeyCommon(label: string, id: Buffer, suffix: string, token: boolean, wrapWithTrusted: boolean): pk.Template {
  return [
    { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
    { type: pk.CKA_TOKEN, value: token },
    { type: pk.CKA_PRIVATE, value: true },
    { type: pk.CKA_LABEL, value: label },
    { type: pk.CKA_ID, value: Buffer.concat([id, Buffer.from(suffix)]) },
    { type: pk.CKA_SENSITIVE, value: true },
    { type: pk.CKA_EXTRACTABLE, value: true },
    ...(wrapWithTrusted ? [{ type: pk.CKA_WRAP_WITH_TRUSTED, value: true }] : []),
  ];
}

export function kekTemplate(id: Buffer, token: boolean, wrapWithTrusted = false): pk.Template {
  return [
    ...domainKeyCommon(DOMAIN_KEK_LABEL, id, 'K', token, wrapWithTrusted),
    { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
    { type: pk.CKA_WRAP, value: true },
    { type: pk.CKA_UNWRAP, value: true },
    { type: pk.CKA_ENCRYPT, value: false },
    { type: pk.CKA_DECRYPT, value: false },
  ];
}

/**
 * What the KEK's CKA_UNWRAP_TEMPLATE forces on every key it unwraps, whoever asks: sensitive (never
 * read) and wrappable only under a key the Security Officer marked CKA_TRUSTED (so never under a
 * key of the caller's). Not CKA_EXTRACTABLE=false: rotate-domain must re-wrap what it unwraps
 * (through an SO-trusted session key, see MemberSealing.rewrap).
 */
export const KEK_UNWRAP_TEMPLATE: NestedTemplate = [
  { type: pk.CKA_SENSITIVE, value: true },
  { type: pk.CKA_WRAP_WITH_TRUSTED, value: true },
];

/** The KEK with CKA_UNWRAP_TEMPLATE (set through template-attributes.ts; pkcs11js cannot pass it). */
export function templatedKekTemplate(id: Buffer, token: boolean, wrapWithTrusted: boolean): NestedTemplate {
  return [...kekTemplate(id, token, wrapWithTrusted), { type: pk.CKA_UNWRAP_TEMPLATE, value: KEK_UNWRAP_TEMPLATE }];
}

export function macTemplate(id: Buffer, token: boolean, wrapWithTrusted = false): pk.Template {
  return [
    ...domainKeyCommon(DOMAIN_MAC_LABEL, id, 'M', token, wrapWithTrusted),
    { type: pk.CKA_KEY_TYPE, value: pk.CKK_GENERIC_SECRET },
    { type: pk.CKA_SIGN, value: true },
    { type: pk.CKA_VERIFY, value: true },
  ];
}

export function domainKeySearch(label: string): pk.Template {
  return [
    { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
    { type: pk.CKA_LABEL, value: label },
  ];
}

/** Freshly generated material: a session object, sensitive, extractable only so it can be wrapped under the KEK. */
const GENERATED: pk.Template = [
  { type: pk.CKA_TOKEN, value: false },
  { type: pk.CKA_SENSITIVE, value: true },
  { type: pk.CKA_EXTRACTABLE, value: true },
];

export function aesKeyTemplate(): pk.Template {
  return [
    ...GENERATED,
    { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
    { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
    { type: pk.CKA_VALUE_LEN, value: 32 },
    { type: pk.CKA_ENCRYPT, value: true },
    { type: pk.CKA_DECRYPT, value: true },
  ];
}

export interface PairTemplates {
  mechanism: pk.Mechanism;
  publicKey: pk.Template;
  privateKey: pk.Template;
}

export function keyPairTemplates(kind: Exclude<KeyKind, { kind: 'aes' }>): PairTemplates {
  if (kind.kind === 'rsa') {
    return {
      mechanism: { mechanism: pk.CKM_RSA_PKCS_KEY_PAIR_GEN },
      publicKey: [
        { type: pk.CKA_TOKEN, value: false },
        { type: pk.CKA_MODULUS_BITS, value: kind.bits },
        { type: pk.CKA_PUBLIC_EXPONENT, value: PUBLIC_EXPONENT },
        { type: pk.CKA_VERIFY, value: true },
        { type: pk.CKA_ENCRYPT, value: true },
      ],
      privateKey: [...GENERATED, { type: pk.CKA_PRIVATE, value: true }, { type: pk.CKA_SIGN, value: true }, { type: pk.CKA_DECRYPT, value: true }],
    };
  }
  return {
    mechanism: { mechanism: pk.CKM_EC_KEY_PAIR_GEN },
    publicKey: [
      { type: pk.CKA_TOKEN, value: false },
      { type: pk.CKA_EC_PARAMS, value: EC_CURVES[kind.curve].oid },
      { type: pk.CKA_VERIFY, value: true },
    ],
    privateKey: [...GENERATED, { type: pk.CKA_PRIVATE, value: true }, { type: pk.CKA_SIGN, value: true }],
  };
}

/**
 * What unwrapping a record makes: a sensitive session object, non-extractable unless it is about
 * to be re-wrapped. Under a KEK with CKA_UNWRAP_TEMPLATE (`templated`) the call names the
 * template's attributes with its values, as the token requires; `wrapWithTrusted` false is the
 * re-wrap's second unwrap, under the SO-trusted session key.
 */
export function unwrapTemplate(spec: KeySpec, extractable = false, templated = false): pk.Template {
  const kind = KEY_SPEC[spec];
  const common: pk.Template = [
    { type: pk.CKA_TOKEN, value: false },
    { type: pk.CKA_SENSITIVE, value: true },
    { type: pk.CKA_EXTRACTABLE, value: extractable },
    ...(templated ? [{ type: pk.CKA_WRAP_WITH_TRUSTED, value: true }] : []),
  ];
  if (kind.kind === 'aes') {
    return [
      ...common,
      { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
      { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
      { type: pk.CKA_ENCRYPT, value: true },
      { type: pk.CKA_DECRYPT, value: true },
    ];
  }
  const priv: pk.Template = [
    ...common,
    { type: pk.CKA_CLASS, value: pk.CKO_PRIVATE_KEY },
    { type: pk.CKA_PRIVATE, value: true },
    { type: pk.CKA_SIGN, value: true },
  ];
  return kind.kind === 'rsa'
    ? [...priv, { type: pk.CKA_KEY_TYPE, value: pk.CKK_RSA }, { type: pk.CKA_DECRYPT, value: true }, { type: pk.CKA_UNWRAP, value: true }]
    : [...priv, { type: pk.CKA_KEY_TYPE, value: pk.CKK_EC }];
}

/** The ceremony's transport key pair, generated inside the receiving member; the private half never leaves it. */
export function transportKeyTemplates(): PairTemplates {
  return {
    mechanism: { mechanism: pk.CKM_RSA_PKCS_KEY_PAIR_GEN },
    publicKey: [
      { type: pk.CKA_TOKEN, value: false },
      { type: pk.CKA_MODULUS_BITS, value: TRANSPORT_KEY_BITS },
      { type: pk.CKA_PUBLIC_EXPONENT, value: PUBLIC_EXPONENT },
      { type: pk.CKA_WRAP, value: true },
      { type: pk.CKA_ENCRYPT, value: true },
    ],
    privateKey: [
      { type: pk.CKA_TOKEN, value: false },
      { type: pk.CKA_PRIVATE, value: true },
      { type: pk.CKA_SENSITIVE, value: true },
      { type: pk.CKA_EXTRACTABLE, value: false },
      { type: pk.CKA_UNWRAP, value: true },
      { type: pk.CKA_DECRYPT, value: true },
    ],
  };
}

/** The receiving member's transport public key, re-created as a session object in the sending member. */
export function rsaPublicKeyTemplate(modulus: Buffer, exponent: Buffer): pk.Template {
  return [
    { type: pk.CKA_CLASS, value: pk.CKO_PUBLIC_KEY },
    { type: pk.CKA_KEY_TYPE, value: pk.CKK_RSA },
    { type: pk.CKA_TOKEN, value: false },
    { type: pk.CKA_MODULUS, value: modulus },
    { type: pk.CKA_PUBLIC_EXPONENT, value: exponent },
    { type: pk.CKA_WRAP, value: true },
    { type: pk.CKA_ENCRYPT, value: true },
  ];
}

/** The same, made by the sending token's Security Officer: public (it must outlive the SO login) and CKA_TRUSTED. */
export function trustedPublicKeyTemplate(modulus: Buffer, exponent: Buffer): pk.Template {
  return [...rsaPublicKeyTemplate(modulus, exponent), { type: pk.CKA_PRIVATE, value: false }, { type: pk.CKA_TRUSTED, value: true }];
}

/**
 * rotate-domain's re-wrap key on a member whose retiring KEK has CKA_UNWRAP_TEMPLATE: an AES key
 * made by the token's Security Officer, CKA_TRUSTED, public (it must outlive the SO login) and a
 * session object (it lives only in the rotating process, and dies with it), never readable.
 */
export function trustedRewrapKeyTemplate(): pk.Template {
  return [
    { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
    { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
    { type: pk.CKA_VALUE_LEN, value: 32 },
    { type: pk.CKA_TOKEN, value: false },
    { type: pk.CKA_PRIVATE, value: false },
    { type: pk.CKA_SENSITIVE, value: true },
    { type: pk.CKA_EXTRACTABLE, value: false },
    { type: pk.CKA_WRAP, value: true },
    { type: pk.CKA_UNWRAP, value: true },
    { type: pk.CKA_ENCRYPT, value: false },
    { type: pk.CKA_DECRYPT, value: false },
    { type: pk.CKA_TRUSTED, value: true },
  ];
}

/** The lock: a domain key that every member holds is no longer extractable (false -> true is refused by the token). */
export const LOCKED: pk.Template = [{ type: pk.CKA_EXTRACTABLE, value: false }];

/**
 * The lock by copy (profile lockUnmodifiable): first the uses a user session could have turned on
 * are turned off (SoftHSM2's C_CopyObject changes CKA_EXTRACTABLE and CKA_MODIFIABLE only), then the
 * copy is made non-extractable and unmodifiable.
 */
export const USES_OFF: pk.Template = [
  { type: pk.CKA_ENCRYPT, value: false },
  { type: pk.CKA_DECRYPT, value: false },
  { type: pk.CKA_DERIVE, value: false },
];
export const UNMODIFIABLE: pk.Template = [{ type: pk.CKA_MODIFIABLE, value: false }];
export const SEALED_COPY: pk.Template = [...LOCKED, ...UNMODIFIABLE];

/** An all-zero AES key: the domain fingerprint wraps it (deterministically) under the KEK. */
export function zeroAesKeyTemplate(): pk.Template {
  return [
    { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
    { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
    { type: pk.CKA_TOKEN, value: false },
    { type: pk.CKA_VALUE, value: Buffer.alloc(32) },
    { type: pk.CKA_EXTRACTABLE, value: true },
    { type: pk.CKA_SENSITIVE, value: false },
  ];
}
