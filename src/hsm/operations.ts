import * as pk from 'pkcs11js';
import { createHash } from 'node:crypto';
import { GCM_IV_BYTES, GCM_TAG_BYTES } from '../common/gcm';
import type { Capabilities, KeySpec, RsaPadding, SigningAlgorithm } from './capabilities';
import { rsaPublicParts } from './domain-keys';
import { InvalidInputError, MemberUnavailableError, UnsupportedError } from './errors';
import type { MaterialBinding, WrappedMaterial } from './material';
import type { CallSet } from './pkcs11-call';
import type { HsmProfile, WrapAlgorithm } from './profile';
import type { MemberSealing } from './sealing';
import type { MemberSessions } from './sessions';
import { ecdsaDerToRaw, ecdsaRawToDer, ecSpki, publicKeyTemplate, rsaSpki, SHA256_DIGEST_INFO } from './spki';
import { aesKeyTemplate, gcmMechanism, KEY_SPEC, keyPairTemplates, rsaMechanism } from './templates';

type Handle = pk.Handle;

export interface GcmResult {
  iv: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

type SigningInput = { message: Buffer } | { digest: Buffer };

/** Turns a synchronous throw of `fn` into a rejected promise: member operations never throw. */
function rejecting<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return fn();
  } catch (e) {
    return Promise.reject(e);
  }
}

export interface OperationsOwner {
  id: string;
  tokenLabel: string;
  profile: HsmProfile;
  capabilities: Capabilities | undefined;
  domainMac(purpose: string, data: Buffer): Promise<Buffer>;
}

/** The cryptographic operations of one member, on sealed records (generate, GCM, sign, verify, RSA decrypt, random, import). */
export class MemberOperations {
  constructor(
    private readonly owner: OperationsOwner,
    private readonly sessions: MemberSessions,
    private readonly sealing: MemberSealing,
    private readonly calls: CallSet,
    private readonly api: () => pk.PKCS11,
  ) {}

  private get profile(): HsmProfile {
    return this.owner.profile;
  }

  private require(list: readonly string[] | undefined, name: string): void {
    if (!list?.includes(name)) throw new UnsupportedError(`${name} is not supported by ${this.profile.name} token "${this.owner.tokenLabel}"`);
  }

  /** Generates key material inside this token, wraps it under the domain KEK and MACs it with its binding. */
  /** The wrap algorithm this member uses when its cluster does not choose one. */
  defaultWrap(): WrapAlgorithm {
    const first = this.owner.capabilities?.wrapAlgorithms[0];
    if (!first)
      throw new UnsupportedError(
        `${this.profile.name} token "${this.owner.tokenLabel}" has none of the key-wrap mechanisms the profile names (${this.profile.wrapAlgorithms.join(', ')})`,
      );
    return first;
  }

  private requireWrap(wrap: WrapAlgorithm | undefined): WrapAlgorithm {
    const chosen = wrap ?? this.defaultWrap();
    this.require(this.owner.capabilities?.wrapAlgorithms, chosen);
    return chosen;
  }

  generate(spec: KeySpec, binding: MaterialBinding, wrapAlgorithm?: WrapAlgorithm): Promise<WrappedMaterial> {
    return rejecting(() => {
      if (!this.owner.capabilities?.keySpecs.includes(spec))
        throw new UnsupportedError(`${this.profile.name} token "${this.owner.tokenLabel}" cannot generate ${spec} keys`);
      const wrap = this.requireWrap(wrapAlgorithm);
      this.sealing.requireDomain();
      const kind = KEY_SPEC[spec];
      return this.sessions.withSession('generate', async (s) => {
        const api = this.api();
        if (kind.kind === 'aes') {
          const key = await this.calls.forOperation('generate').generateKey(s, { mechanism: pk.CKM_AES_KEY_GEN }, aesKeyTemplate());
          try {
            return await this.sealing.seal(s, spec, binding, key, Buffer.alloc(0), wrap);
          } finally {
            api.C_DestroyObject(s, key);
          }
        }
        const t = keyPairTemplates(kind);
        const pair = await this.calls.slow.generateKeyPair(s, t.mechanism, t.publicKey, t.privateKey);
        try {
          const spki =
            kind.kind === 'rsa'
              ? rsaSpki(rsaPublicParts(api, s, pair.publicKey))
              : ecSpki(kind.curve, api.C_GetAttributeValue(s, pair.publicKey, [{ type: pk.CKA_EC_POINT }])[0].value);
          return await this.sealing.seal(s, spec, binding, pair.privateKey, spki, wrap);
        } finally {
          api.C_DestroyObject(s, pair.privateKey);
          api.C_DestroyObject(s, pair.publicKey);
        }
      });
    });
  }

  random(length: number): Promise<Buffer> {
    return this.sessions.withSession('random', (s) => Buffer.from(this.api().C_GenerateRandom(s, Buffer.alloc(length))));
  }

  encryptGcm(material: WrappedMaterial, plaintext: Buffer, aad: Buffer): Promise<GcmResult> {
    if (this.profile.gcmIv === 'token') {
      return Promise.reject(
        new UnsupportedError(
          `${this.profile.name} token "${this.owner.tokenLabel}" chooses the AES-GCM IV itself (profile gcmIv: token); caller-chosen IVs are all this layer sends so far`,
        ),
      );
    }
    return this.sealing.withKey(material, 'encrypt', (s, key) => {
      const api = this.api();
      const iv = api.C_GenerateRandom(s, Buffer.alloc(GCM_IV_BYTES));
      api.C_EncryptInit(s, gcmMechanism(this.profile, iv, aad), key);
      const split = (out: Buffer): GcmResult => ({
        iv,
        ciphertext: out.subarray(0, out.length - GCM_TAG_BYTES),
        tag: out.subarray(out.length - GCM_TAG_BYTES),
      });
      const out = this.calls.forOperation('encrypt').encrypt(s, plaintext, Buffer.alloc(plaintext.length + GCM_TAG_BYTES));
      return out instanceof Promise ? out.then(split) : split(out);
    });
  }

  decryptGcm(material: WrappedMaterial, input: GcmResult, aad: Buffer): Promise<Buffer> {
    if (input.iv.length !== GCM_IV_BYTES || input.tag.length !== GCM_TAG_BYTES)
      return Promise.reject(new InvalidInputError('GCM IV must be 12 bytes and tag 16 bytes'));
    return this.sealing.withKey(material, 'decrypt', async (s, key) => {
      this.api().C_DecryptInit(s, gcmMechanism(this.profile, input.iv, aad), key);
      const data = Buffer.concat([input.ciphertext, input.tag]);
      return Buffer.from(await this.calls.forOperation('decrypt').decrypt(s, data, Buffer.alloc(data.length)));
    });
  }

  /** The digest to sign or verify and the mechanism that does it (ECDSA: digest computed in software). */
  private signingInput(spec: KeySpec, algorithm: SigningAlgorithm, input: SigningInput): { digest: Buffer; mechanism: pk.Mechanism } {
    this.require(this.owner.capabilities?.signing, algorithm);
    const hash = algorithm === 'ECDSA_SHA_384' ? 'sha384' : 'sha256';
    const size = hash === 'sha384' ? 48 : 32;
    const digest = 'digest' in input ? input.digest : createHash(hash).update(input.message).digest();
    if (digest.length !== size) throw new InvalidInputError(`a ${hash.toUpperCase()} digest is ${size} bytes`);
    const keyFits = algorithm.startsWith('RSA') ? spec.startsWith('RSA') : spec === (algorithm === 'ECDSA_SHA_256' ? 'EC_P256' : 'EC_P384');
    if (!keyFits) throw new InvalidInputError(`${algorithm} cannot be used with a ${spec} key`);
    if (algorithm === 'RSA_PKCS1_SHA_256') return { digest: Buffer.concat([SHA256_DIGEST_INFO, digest]), mechanism: { mechanism: pk.CKM_RSA_PKCS } };
    if (algorithm === 'RSA_PSS_SHA_256') {
      const pss: pk.RsaPSS = { type: pk.CK_PARAMS_RSA_PSS, hashAlg: pk.CKM_SHA256, mgf: pk.CKG_MGF1_SHA256, saltLen: 32 };
      return { digest, mechanism: { mechanism: pk.CKM_RSA_PKCS_PSS, parameter: pss } };
    }
    return { digest, mechanism: { mechanism: pk.CKM_ECDSA } };
  }

  /** Signs a SHA-256/384 digest (given, or computed here from `message`). ECDSA signatures are DER. */
  sign(material: WrappedMaterial, algorithm: SigningAlgorithm, input: SigningInput): Promise<Buffer> {
    return rejecting(() => {
      const prepared = this.signingInput(material.spec, algorithm, input);
      return this.sealing.withKey(material, 'sign', async (s, key) => {
        this.api().C_SignInit(s, prepared.mechanism, key);
        const sig = Buffer.from(await this.calls.slow.sign(s, prepared.digest, Buffer.alloc(512)));
        return algorithm.startsWith('ECDSA') ? ecdsaRawToDer(sig) : sig;
      });
    });
  }

  /** Verifies a signature inside the HSM with a session public-key object made from the SPKI. */
  verify(spki: Buffer, spec: KeySpec, algorithm: SigningAlgorithm, input: SigningInput, signature: Buffer): Promise<boolean> {
    return rejecting(() => {
      const { digest, mechanism } = this.signingInput(spec, algorithm, input);
      const template = publicKeyTemplate(spki);
      const raw = algorithm.startsWith('ECDSA') ? ecdsaDerToRaw(signature, spec === 'EC_P384' ? 48 : 32) : signature;
      if (!raw) return Promise.resolve(false);
      return this.sessions.withSession('verify', (s) => this.verifyOn(s, template, mechanism, digest, raw));
    });
  }

  private verifyOn(s: Handle, template: pk.Template, mechanism: pk.Mechanism, digest: Buffer, signature: Buffer): boolean {
    const api = this.api();
    const key = api.C_CreateObject(s, template);
    try {
      api.C_VerifyInit(s, mechanism, key);
      return api.C_Verify(s, digest, signature);
    } catch (e) {
      if (/CKR_SIGNATURE_(INVALID|LEN_RANGE)/.test((e as Error).message)) return false;
      throw e;
    } finally {
      api.C_DestroyObject(s, key);
    }
  }

  rsaDecrypt(material: WrappedMaterial, padding: RsaPadding, ciphertext: Buffer): Promise<Buffer> {
    return rejecting(() => {
      this.require(this.owner.capabilities?.rsaDecrypt, padding);
      if (!material.spec.startsWith('RSA')) throw new InvalidInputError(`RSA decryption needs an RSA key, not ${material.spec}`);
      return this.sealing.withKey(material, 'decrypt', async (s, key) => {
        this.api().C_DecryptInit(s, rsaMechanism(padding), key);
        return Buffer.from(await this.calls.slow.decrypt(s, ciphertext, Buffer.alloc(512)));
      });
    });
  }

  importAes(
    wrappingKey: WrappedMaterial,
    padding: RsaPadding,
    encrypted: Buffer,
    binding: MaterialBinding,
    wrapAlgorithm?: WrapAlgorithm,
  ): Promise<{ material: WrappedMaterial; checkValue: Buffer }> {
    return rejecting(() => {
      this.require(this.owner.capabilities?.importWrapping, padding);
      return this.sealing.importAes(wrappingKey, padding, encrypted, binding, this.requireWrap(wrapAlgorithm));
    });
  }

  /** A real round trip on a canary key (without one, an HMAC under the domain MAC key); rejects if the member cannot serve. */
  async probe(canary: WrappedMaterial | undefined): Promise<number> {
    const started = process.hrtime.bigint();
    const sample = Buffer.from('kms-health-probe');
    if (!canary) {
      if ((await this.owner.domainMac('health-probe', sample)).length !== 32)
        throw new MemberUnavailableError(this.owner.id, 'health probe returned a wrong MAC');
      return Number(process.hrtime.bigint() - started) / 1e6;
    }
    const sealed = await this.encryptGcm(canary, sample, Buffer.alloc(0));
    const back = await this.decryptGcm(canary, sealed, Buffer.alloc(0));
    if (!back.equals(sample)) throw new MemberUnavailableError(this.owner.id, 'health probe returned wrong plaintext');
    return Number(process.hrtime.bigint() - started) / 1e6;
  }
}
