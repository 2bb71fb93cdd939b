import * as pk from 'pkcs11js';
import { timingSafeEqual } from 'node:crypto';
import type { KeySpec, RsaPadding } from './capabilities';
import type { MemberOperation } from './error-classes';
import { DomainKeys, hmacSha256, MemberDomainKeys } from './domain-keys';
import { InvalidInputError, isStaleHandle, MaterialIntegrityError, SoPinError } from './errors';
import { HandleCache } from './handle-cache';
import { MaterialBinding, WrappedMaterial } from './material';
import type { CallSet } from './pkcs11-call';
import type { HsmProfile, WrapAlgorithm } from './profile';
import type { MemberSessions } from './sessions';
import { CBC_IV_BYTES, KEY_SPEC, keyWrapMechanism, rsaMechanism, unwrapTemplate } from './templates';
import { unwrapProtected } from './unwrap';

type Handle = pk.Handle;

const MAX_WRAPPED_BYTES = 8192;
/** RFC 5649 output is the key length plus 8: how an imported key's size is checked without reading it. */
const WRAPPED_AES_256_BYTES: Record<WrapAlgorithm, number> = { rfc5649: 40, 'aes-cbc-pad': CBC_IV_BYTES + 48 };

export interface SealingOptions {
  handleCacheSize?: number;
  handleTtlMs?: number;
}

/**
 * Wrapped-material records on one member: sealing (wrap under the domain KEK, MAC with the binding
 * inside the HSM), opening (MAC verified inside the HSM, unwrap into a non-extractable sensitive
 * session object, cached), re-binding of legacy records, and BYOK import.
 */
export class MemberSealing {
  private readonly cache: HandleCache<Handle>;
  /** rotate-domain's SO-trusted session key (see rewrap), while a re-wrap walk runs in this process. */
  rewrapKey: Handle | undefined;

  constructor(
    private readonly token: string,
    private readonly profile: HsmProfile,
    private readonly sessions: MemberSessions,
    private readonly domain: MemberDomainKeys,
    private readonly calls: CallSet,
    private readonly api: () => pk.PKCS11,
    options: SealingOptions,
  ) {
    this.cache = new HandleCache<Handle>(options.handleCacheSize ?? 10_000, options.handleTtlMs ?? 15 * 60_000, (h) => sessions.destroyObject(h));
  }

  get cachedHandles(): number {
    return this.cache.size;
  }

  /** Drops every cached handle; `destroy` also destroys the session objects (only while their module lives). */
  clear(destroy: boolean): void {
    this.cache.clear(destroy);
  }

  /** Throws unless the token holds domain keys (checked before expensive work whose result must be sealed). */
  requireDomain(): void {
    this.domain.require();
  }

  /** HMAC under the MAC key of `under` (else the current generation). */
  private hmac(s: Handle, data: Buffer, under?: DomainKeys): Promise<Buffer> {
    return hmacSha256(this.api(), this.calls, s, (under ?? this.domain.require()).mac, data);
  }

  /** Wraps `key` under the KEK of `under` (else the current generation) and MACs the record with its binding, inside the HSM. */
  async seal(
    s: Handle,
    spec: KeySpec,
    binding: MaterialBinding,
    key: Handle,
    publicKey: Buffer,
    algorithm: WrapAlgorithm,
    under?: DomainKeys,
  ): Promise<WrappedMaterial> {
    const domain = under ?? this.domain.require();
    const iv = algorithm === 'aes-cbc-pad' ? Buffer.from(this.api().C_GenerateRandom(s, Buffer.alloc(CBC_IV_BYTES))) : Buffer.alloc(0);
    const body = Buffer.from(
      await this.calls.forOperation('wrap').wrapKey(s, keyWrapMechanism(this.profile, algorithm, iv), domain.kek, key, Buffer.alloc(MAX_WRAPPED_BYTES)),
    );
    const wrapped = Buffer.concat([iv, body]);
    const format = WrappedMaterial.formatFor(algorithm);
    const mac = await this.hmac(s, WrappedMaterial.macInput(spec, binding, domain.id, wrapped, publicKey, format, algorithm), domain);
    return new WrappedMaterial(spec, binding, domain.id, wrapped, publicKey, mac, format, algorithm);
  }

  /** C_UnwrapKey of the record's wrapped bytes under its generation's KEK, with the algorithm it names; the key's protection checked. */
  private unwrapRecord(s: Handle, material: WrappedMaterial, domain: DomainKeys, extractable: boolean): Promise<Handle> {
    return this.unwrapUnder(s, material, domain.kek, material.wrapped, unwrapTemplate(material.spec, extractable, domain.unwrapTemplate));
  }

  /** `wrapped` (IV first for CBC-PAD) unwrapped under `key` with the record's algorithm and `template`. */
  private unwrapUnder(s: Handle, material: WrappedMaterial, key: Handle, wrapped: Buffer, template: pk.Template): Promise<Handle> {
    const ivBytes = material.wrapAlgorithm === 'aes-cbc-pad' ? CBC_IV_BYTES : 0;
    const mechanism = keyWrapMechanism(this.profile, material.wrapAlgorithm, wrapped.subarray(0, ivBytes));
    return unwrapProtected(this.api(), this.profile, this.token, this.unwrapCalls(material), s, mechanism, key, wrapped.subarray(ivBytes), template);
  }

  /**
   * A key unwrapped under a templated KEK is CKA_WRAP_WITH_TRUSTED, and the next KEK is not
   * trusted (the SO cannot see private objects to mark one): it goes through the SO-trusted session
   * key, wrapped under it and unwrapped again without CKA_WRAP_WITH_TRUSTED, inside the HSM.
   */
  private async throughTrusted(s: Handle, material: WrappedMaterial, key: Handle): Promise<Handle> {
    const trusted = this.rewrapKey;
    if (trusted === undefined) {
      throw new SoPinError(
        `records of generation ${material.domainId.toString('hex')} on token "${this.token}" can be re-wrapped only through a key its Security Officer makes trusted: ` +
          'run kmsctl cluster rotate-domain --resume with the SO PIN (--so-pin-file, or at a terminal)',
      );
    }
    const iv = material.wrapAlgorithm === 'aes-cbc-pad' ? Buffer.from(this.api().C_GenerateRandom(s, Buffer.alloc(CBC_IV_BYTES))) : Buffer.alloc(0);
    const body = Buffer.from(
      await this.calls
        .forOperation('wrap')
        .wrapKey(s, keyWrapMechanism(this.profile, material.wrapAlgorithm, iv), trusted, key, Buffer.alloc(MAX_WRAPPED_BYTES)),
    );
    return this.unwrapUnder(s, material, trusted, Buffer.concat([iv, body]), unwrapTemplate(material.spec, true));
  }

  /** The record's generation, and its MAC checked inside the HSM under that generation's MAC key. */
  private async verified(s: Handle, material: WrappedMaterial, what = 'wrapped material'): Promise<DomainKeys> {
    const domain = this.domain.requireGeneration(material.domainId);
    const expected = await this.hmac(s, material.macBody, domain);
    if (!timingSafeEqual(expected, material.mac)) throw new MaterialIntegrityError(`${what} failed its MAC check: it was altered`);
    return domain;
  }

  /** The calls that unwrap `material`: AES on the loop when unwraps are fast, private keys on the thread pool. */
  private unwrapCalls(material: WrappedMaterial) {
    const onLoop = KEY_SPEC[material.spec].kind === 'aes' && this.calls.forOperation('unwrap') === this.calls.fast;
    return onLoop ? this.calls.fast : this.calls.offloaded;
  }

  /** Verifies the record's MAC inside the HSM (under the generation it names), then unwraps it into a non-extractable session object. */
  private open(material: WrappedMaterial): Promise<Handle> {
    return this.sessions.withKeeper('unwrap', async (s) => {
      this.domain.requireGeneration(material.domainId);
      if (material.legacy) throw new MaterialIntegrityError('wrapped material record is in the KMR1 format: refused until it is migrated');
      const domain = await this.verified(s, material);
      return this.unwrapRecord(s, material, domain, false);
    });
  }

  /**
   * The same key under generation `target`: the MAC checked under the record's generation, the key
   * unwrapped inside the HSM into a sensitive session object (extractable only so that it can be
   * wrapped again; under a templated KEK through the SO-trusted key), wrapped under the target KEK,
   * MACed with the same binding, and destroyed. The key never leaves the HSM in clear.
   */
  rewrap(material: WrappedMaterial, target: Buffer): Promise<WrappedMaterial> {
    if (material.legacy) return Promise.reject(new MaterialIntegrityError('wrapped material record is in the KMR1 format: refused until it is migrated'));
    return this.sessions.withSession('unwrap', async (s) => {
      const to = this.domain.requireGeneration(target);
      const from = await this.verified(s, material);
      const keys: Handle[] = [];
      try {
        keys.push(await this.unwrapRecord(s, material, from, true));
        if (from.unwrapTemplate) keys.push(await this.throughTrusted(s, material, keys[0]));
        return await this.seal(s, material.spec, material.binding, keys[keys.length - 1], material.publicKey, material.wrapAlgorithm, to);
      } finally {
        for (const key of keys) this.api().C_DestroyObject(s, key);
      }
    });
  }

  /** Runs `fn` with the unwrapped handle of `material` (cached); a stale handle is dropped and retried once. */
  withKey<T>(material: WrappedMaterial, operation: MemberOperation, fn: (s: Handle, key: Handle) => T | Promise<T>, retried = false): Promise<T> {
    const cached = this.cache.get(material.cacheKey);
    const run = (key: Handle): Promise<T> =>
      this.sessions
        .withSession(operation, (s) => fn(s, key))
        .catch((e: unknown) => {
          const stale = isStaleHandle(e);
          if (!stale || retried) throw e;
          this.cache.evict(material.cacheKey);
          return this.withKey(material, operation, fn, true);
        });
    if (cached !== undefined) return run(cached);
    return this.cache.getOrLoad(material.cacheKey, () => this.open(material)).then(run);
  }

  evict(material: WrappedMaterial): void {
    this.cache.evict(material.cacheKey);
  }

  /**
   * Migration of a KMR1 record: checks its KMR1 MAC here, then MACs the same wrapped key under
   * `binding` (KMR2). The key is not unwrapped. The caller vouches that `binding` is right.
   */
  rebindLegacy(material: WrappedMaterial, binding: MaterialBinding): Promise<WrappedMaterial> {
    return this.sessions.withSession('mac', async (s) => {
      const domain = await this.verified(s, material, 'KMR1 wrapped material');
      const mac = await this.hmac(s, WrappedMaterial.macInput(material.spec, binding, domain.id, material.wrapped, material.publicKey), domain);
      return new WrappedMaterial(material.spec, binding, domain.id, material.wrapped, material.publicKey, mac);
    });
  }

  /**
   * BYOK: unwraps caller-wrapped AES-256 material with an import wrapping key (RSA, inside the HSM),
   * computes its check value inside the HSM and re-wraps it under the domain KEK with `binding`.
   */
  importAes(
    wrappingKey: WrappedMaterial,
    padding: RsaPadding,
    encrypted: Buffer,
    binding: MaterialBinding,
    wrap: WrapAlgorithm,
  ): Promise<{ material: WrappedMaterial; checkValue: Buffer }> {
    if (!wrappingKey.spec.startsWith('RSA')) return Promise.reject(new InvalidInputError('the import wrapping key must be an RSA key'));
    return this.withKey(wrappingKey, 'import-unwrap', async (s, unwrapping) => {
      const api = this.api();
      const key = await unwrapProtected(
        api,
        this.profile,
        this.token,
        this.calls.slow,
        s,
        rsaMechanism(padding),
        unwrapping,
        encrypted,
        unwrapTemplate('AES_256', true),
      );
      try {
        api.C_EncryptInit(s, { mechanism: pk.CKM_AES_ECB }, key);
        const block = Buffer.from(await this.calls.forOperation('encrypt').encrypt(s, Buffer.alloc(16), Buffer.alloc(16)));
        const checkValue = await this.hmac(s, Buffer.concat([Buffer.from('kms-key-check-value'), block]));
        const material = await this.seal(s, 'AES_256', binding, key, Buffer.alloc(0), wrap);
        if (material.wrapped.length !== WRAPPED_AES_256_BYTES[wrap]) throw new InvalidInputError('imported key material must be 32 bytes (AES-256)');
        return { material, checkValue };
      } finally {
        api.C_DestroyObject(s, key);
      }
    });
  }
}
