/**
 * What an attacker holding a token's user PIN does with PKCS#11 (issue 12 §1), shared by
 * test/integration/domain-lockdown.test.ts (what each implementation enforces),
 * test/integration/domain-attacker.test.ts (the attack on a cluster after the ceremony) and
 * test/e2e/domain-key-theft.test.ts (the attack on a development installation). The tests keep
 * their own assertions; this module only makes the keys and the attempts.
 */
import * as pk from 'pkcs11js';
import { constants, createDecipheriv, generateKeyPairSync, KeyObject, privateDecrypt, randomBytes } from 'node:crypto';
import type { HsmProfile } from '../../src/hsm/profile';

export const RFC5649_IV = Buffer.from('a65959a6', 'hex');

/** RSA-OAEP with SHA-1 (the one every implementation here has). */
export const OAEP_SHA1: pk.Mechanism = {
  mechanism: pk.CKM_RSA_PKCS_OAEP,
  parameter: { type: pk.CK_PARAMS_RSA_OAEP, hashAlg: pk.CKM_SHA_1, mgf: pk.CKG_MGF1_SHA1, source: 1 } as pk.RsaOAEP,
};

/** The IV the attacker's CBC-PAD wraps use (openCryptoki 3.8.1 has no RFC 5649 wrap). */
const ATTACKER_CBC_IV = Buffer.alloc(16, 1);

/** The AES key-wrap mechanism the attacker uses on a token of `profile`: RFC 5649 where it has one, else CKM_AES_CBC_PAD. */
export function attackerWrapMechanism(profile: HsmProfile): pk.Mechanism {
  return profile.rfc5649Mechanism !== undefined ? { mechanism: profile.rfc5649Mechanism } : { mechanism: pk.CKM_AES_CBC_PAD, parameter: ATTACKER_CBC_IV };
}

/** 'ok', or the CKR_ code the call failed with, or the binding's own refusal. */
export function attempt(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    const m = /CKR_[A-Z0-9_]+/.exec((e as Error).message);
    if (m) return m[0];
    if (/should be a Number, Boolean, String or Buffer/.test((e as Error).message))
      return 'refused by pkcs11js: an attribute value is a number, boolean, string or Buffer, never a template';
    return `error: ${(e as Error).message}`;
  }
}

/** The value `fn` returns, or undefined if it throws. */
export function outcome<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

/** An RSA public-key object template for a key whose private half the attacker holds in software. */
export function rsaPublicTemplate(publicKey: KeyObject, extra: pk.Template = []): pk.Template {
  const jwk = publicKey.export({ format: 'jwk' });
  return [
    { type: pk.CKA_CLASS, value: pk.CKO_PUBLIC_KEY },
    { type: pk.CKA_KEY_TYPE, value: pk.CKK_RSA },
    { type: pk.CKA_TOKEN, value: false },
    { type: pk.CKA_MODULUS, value: Buffer.from(jwk.n!, 'base64url') },
    { type: pk.CKA_PUBLIC_EXPONENT, value: Buffer.from(jwk.e!, 'base64url') },
    { type: pk.CKA_WRAP, value: true },
    { type: pk.CKA_ENCRYPT, value: true },
    ...extra,
  ];
}

/** An AES session key with a value the attacker chose (so what it wraps, the attacker unwraps in software). */
export function knownAesTemplate(value: Buffer): pk.Template {
  return [
    { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
    { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
    { type: pk.CKA_TOKEN, value: false },
    { type: pk.CKA_VALUE, value },
    { type: pk.CKA_WRAP, value: true },
    { type: pk.CKA_UNWRAP, value: true },
  ];
}

/** The attacker's own wrapping keys on session `s`: an AES key it knows the value of, an RSA public key it holds the private half of. */
export class AttackerKeys {
  readonly known = randomBytes(32);
  readonly aes: pk.Handle;
  readonly rsa: pk.Handle;
  private readonly rsaPrivate: KeyObject;

  constructor(
    private readonly api: pk.PKCS11,
    private readonly s: pk.Handle,
    readonly wrapMechanism: pk.Mechanism,
  ) {
    this.aes = api.C_CreateObject(s, knownAesTemplate(this.known));
    const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
    this.rsaPrivate = pair.privateKey;
    this.rsa = api.C_CreateObject(s, rsaPublicTemplate(pair.publicKey));
  }

  /** `key` wrapped under the attacker's AES key, or undefined if the token refused. */
  wrapUnderAes(key: pk.Handle): Buffer | undefined {
    return outcome(() => Buffer.from(this.api.C_WrapKey(this.s, this.wrapMechanism, this.aes, key, Buffer.alloc(4096))));
  }

  /** `key` wrapped under the attacker's RSA key (OAEP SHA-1), or undefined if the token refused. */
  wrapUnderRsa(key: pk.Handle): Buffer | undefined {
    return outcome(() => Buffer.from(this.api.C_WrapKey(this.s, OAEP_SHA1, this.rsa, key, Buffer.alloc(512))));
  }

  /** What a wrap under the attacker's AES key holds, in software. */
  openAes(wrapped: Buffer): Buffer | undefined {
    return this.wrapMechanism.mechanism === pk.CKM_AES_CBC_PAD
      ? outcome(() => cbcDecrypt(this.known, ATTACKER_CBC_IV, wrapped))
      : outcome(() => unwrapRfc5649(this.known, wrapped));
  }

  /** What a wrap under the attacker's RSA key holds, in software. */
  openRsa(wrapped: Buffer): Buffer | undefined {
    return outcome(() => privateDecrypt({ key: this.rsaPrivate, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, wrapped));
  }
}

/** Every secret-key object the session sees (token objects only with `tokenOnly`). */
export function allSecretKeys(api: pk.PKCS11, s: pk.Handle, tokenOnly = false): pk.Handle[] {
  api.C_FindObjectsInit(s, [{ type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY }, ...(tokenOnly ? [{ type: pk.CKA_TOKEN, value: true }] : [])]);
  try {
    const all: pk.Handle[] = [];
    for (let batch = api.C_FindObjects(s, 64); batch.length > 0; batch = api.C_FindObjects(s, 64)) all.push(...batch);
    return all;
  } finally {
    api.C_FindObjectsFinal(s);
  }
}

export function labelOf(api: pk.PKCS11, s: pk.Handle, h: pk.Handle): string {
  return outcome(() => api.C_GetAttributeValue(s, h, [{ type: pk.CKA_LABEL }])[0].value?.toString()) ?? '(no label)';
}

/** A key's CKA_VALUE if the token gives it (a sensitive key answers with an error or nothing). */
export function readValue(api: pk.PKCS11, s: pk.Handle, h: pk.Handle): Buffer | undefined {
  const value = outcome(() => api.C_GetAttributeValue(s, h, [{ type: pk.CKA_VALUE }])[0].value);
  return value && value.length > 0 ? value : undefined;
}

/** An AES-256 key template the attacker asks C_UnwrapKey for: readable (non-sensitive, extractable), as openCryptoki allows (naming neither), or sensitive but extractable. */
export function attackerUnwrapTemplate(kind: 'readable' | 'unnamed' | 'wrappable', wrapWithTrusted?: boolean): pk.Template {
  const protection: Record<typeof kind, pk.Template> = {
    readable: [
      { type: pk.CKA_SENSITIVE, value: false },
      { type: pk.CKA_EXTRACTABLE, value: true },
    ],
    unnamed: [],
    wrappable: [
      { type: pk.CKA_SENSITIVE, value: true },
      { type: pk.CKA_EXTRACTABLE, value: true },
    ],
  };
  return [
    { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
    { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
    { type: pk.CKA_TOKEN, value: false },
    ...protection[kind],
    { type: pk.CKA_ENCRYPT, value: true },
    ...(wrapWithTrusted === undefined ? [] : [{ type: pk.CKA_WRAP_WITH_TRUSTED, value: wrapWithTrusted }]),
  ];
}

export function unwrapRfc5649(kek: Buffer, wrapped: Buffer): Buffer {
  const d = createDecipheriv('id-aes256-wrap-pad', kek, RFC5649_IV);
  return Buffer.concat([d.update(wrapped), d.final()]);
}

export function cbcDecrypt(key: Buffer, iv: Buffer, data: Buffer): Buffer {
  const d = createDecipheriv('aes-256-cbc', key, iv);
  return Buffer.concat([d.update(data), d.final()]);
}
