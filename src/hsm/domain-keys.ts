import * as pk from 'pkcs11js';
import { createHash } from 'node:crypto';
import { DomainKeyError, InvalidInputError, MaterialIntegrityError } from './errors';
import type { CallSet } from './pkcs11-call';
import type { HsmProfile, WrapAlgorithm } from './profile';
import type { MemberSessions } from './sessions';
import type { TemplateCalls } from './template-attributes';
import { unwrapProtected } from './unwrap';
import {
  CBC_IV_BYTES,
  DOMAIN_KEK_LABEL,
  DOMAIN_MAC_LABEL,
  domainKeySearch,
  KEK_UNWRAP_TEMPLATE,
  kekTemplate,
  keyWrapMechanism,
  LOCKED,
  macTemplate,
  oaep,
  rsaPublicKeyTemplate,
  SEALED_COPY,
  UNMODIFIABLE,
  USES_OFF,
  templatedKekTemplate,
  transportKeyTemplates,
  trustedPublicKeyTemplate,
  trustedRewrapKeyTemplate,
  zeroAesKeyTemplate,
} from './templates';

type Handle = pk.Handle;

export interface DomainKeys {
  id: Buffer;
  kek: Handle;
  mac: Handle;
  /** The KEK has CKA_UNWRAP_TEMPLATE (read from the token): what it unwraps is sensitive and CKA_WRAP_WITH_TRUSTED. */
  unwrapTemplate: boolean;
}

export interface TransportKey {
  privateKey: Handle;
  publicKey: Handle;
  modulus: Buffer;
  exponent: Buffer;
}

export interface ExportedDomainKeys {
  id: Buffer;
  kek: Buffer;
  mac: Buffer;
  /** The source's KEK has CKA_UNWRAP_TEMPLATE: the copy gets it too where the receiving token enforces it. */
  unwrapTemplate: boolean;
}

/** HMAC-SHA256 inside the HSM on session `s`. */
export async function hmacSha256(api: pk.PKCS11, calls: CallSet, s: Handle, key: Handle, data: Buffer): Promise<Buffer> {
  api.C_SignInit(s, { mechanism: pk.CKM_SHA256_HMAC }, key);
  return Buffer.from(await calls.forOperation('mac').sign(s, data, Buffer.alloc(32)));
}

export interface DomainKeyOwner {
  id: string;
  tokenLabel: string;
  profile: HsmProfile;
}

/**
 * The domain keys of one member's token, found at login: one or more generations, each an AES-256
 * KEK and an HMAC key with CKA_ID = generation id + "K" / "M" (NSS softokn keeps one token key per
 * CKA_ID). New material is sealed under the cluster's current generation; a record is opened under
 * the generation it names. Also the member's side of the ceremony that copies a generation between members.
 */
export class MemberDomainKeys {
  /** Every complete generation on the token, by generation id (hex). */
  generations = new Map<string, DomainKeys>();
  /** Generations (hex) of which the token holds one key without the other, or one twice (a copy interrupted half-way). */
  broken = new Set<string>();
  private currentId: Buffer | undefined;
  private currentHex: string | undefined;
  /** Set when the token holds a broken set of domain keys (a ceremony interrupted half-way). */
  problem: string | undefined;
  /** Every domain-key object of the token is locked as the profile's lock leaves it (read from the token); undefined without domain keys. */
  locked: boolean | undefined;
  /**
   * Every domain-key object non-extractable, but some still CKA_MODIFIABLE where the profile's lock
   * makes them unmodifiable: locked by a version before lockUnmodifiable (kmsctl cluster lock finishes it).
   */
  lockUnfinished = false;

  constructor(
    private readonly owner: DomainKeyOwner,
    private readonly sessions: MemberSessions,
    private readonly calls: CallSet,
    private readonly api: () => pk.PKCS11,
    /** The nested-template calls of the member's library, where its profile enforces CKA_UNWRAP_TEMPLATE. */
    private readonly templates: () => TemplateCalls | undefined,
  ) {}

  /** Every generation on the token, grouped by CKA_ID; complete with exactly one KEK and one MAC key. */
  private find(s: Handle): void {
    const byId = new Map<string, { kek: Handle[]; mac: Handle[] }>();
    const all: Handle[] = [];
    const idOf = (h: Handle): Buffer => this.api().C_GetAttributeValue(s, h, [{ type: pk.CKA_ID }])[0].value;
    for (const [label, slot] of [
      [DOMAIN_KEK_LABEL, 'kek'],
      [DOMAIN_MAC_LABEL, 'mac'],
    ] as const) {
      for (const h of this.sessions.find(s, domainKeySearch(label))) {
        all.push(h);
        const id = idOf(h).subarray(0, -1).toString('hex');
        const entry = byId.get(id) ?? { kek: [], mac: [] };
        entry[slot].push(h);
        byId.set(id, entry);
      }
    }
    this.generations = new Map();
    this.broken = new Set();
    for (const [id, e] of byId) {
      const kek = this.one(s, e.kek);
      const mac = this.one(s, e.mac);
      if (kek && mac) this.generations.set(id, { id: Buffer.from(id, 'hex'), kek, mac, unwrapTemplate: this.hasUnwrapTemplate(s, kek) });
      else this.broken.add(id);
    }
    const broken = [...this.broken].map((id) => `generation ${id}: ${byId.get(id)!.kek.length} KEK, ${byId.get(id)!.mac.length} MAC`);
    this.problem = broken.length ? `token "${this.owner.tokenLabel}" holds an incomplete or duplicated set of domain keys (${broken.join('; ')})` : undefined;
    this.locked = this.lockedOf(s, all);
  }

  /**
   * The one key among `handles` (same label and CKA_ID): the only one, or, after a lock by copy
   * interrupted before the original was destroyed, the sealed copy (the next lock destroys the other).
   */
  private one(s: Handle, handles: readonly Handle[]): Handle | undefined {
    if (handles.length === 1) return handles[0];
    const sealed = handles.filter((h) => this.sealed(s, h));
    return handles.length === 2 && sealed.length === 1 ? sealed[0] : undefined;
  }

  /** Locked as the profile's lock leaves a key: non-extractable and, with lockUnmodifiable, CKA_MODIFIABLE=false. */
  private sealed(s: Handle, h: Handle): boolean {
    const types = this.owner.profile.lockUnmodifiable ? [{ type: pk.CKA_EXTRACTABLE }, { type: pk.CKA_MODIFIABLE }] : [{ type: pk.CKA_EXTRACTABLE }];
    return this.api()
      .C_GetAttributeValue(s, h, types)
      .every((a) => a.value[0] === 0);
  }

  private hasUnwrapTemplate(s: Handle, kek: Handle): boolean {
    const templates = this.templates();
    return templates !== undefined && templates.templateAttribute(s, kek, pk.CKA_UNWRAP_TEMPLATE) !== undefined;
  }

  /** Reads the domain keys on a fresh login; a broken set is remembered as `problem`, not thrown. */
  refresh(keeper: Handle): void {
    try {
      this.find(keeper);
    } catch (e) {
      this.generations = new Map();
      this.problem = (e as Error).message;
      this.locked = this.readLocked(keeper);
    }
  }

  /** Every object labelled as a domain key, whatever its domain or generation. */
  private allDomainKeyObjects(s: Handle): Handle[] {
    return [DOMAIN_KEK_LABEL, DOMAIN_MAC_LABEL].flatMap((label) => this.sessions.find(s, domainKeySearch(label)));
  }

  private readLocked(s: Handle): boolean | undefined {
    return this.lockedOf(s, this.allDomainKeyObjects(s));
  }

  /** Whether every one of `all` (domain-key objects) is locked (see sealed); undefined when there are none. Sets lockUnfinished. */
  private lockedOf(s: Handle, all: readonly Handle[]): boolean | undefined {
    const locked = all.length === 0 ? undefined : all.every((h) => this.sealed(s, h));
    this.lockUnfinished = locked === false && this.owner.profile.lockUnmodifiable && all.every((h) => this.nonExtractable(s, h));
    return locked;
  }

  private nonExtractable(s: Handle, h: Handle): boolean {
    return this.api().C_GetAttributeValue(s, h, [{ type: pk.CKA_EXTRACTABLE }])[0].value[0] === 0;
  }

  /**
   * The lock: CKA_EXTRACTABLE=false on every domain-key object of the token, read back to be sure.
   * With the profile's lockUnmodifiable, each key is replaced by a copy that is also
   * CKA_MODIFIABLE=false with CKA_ENCRYPT/DECRYPT/DERIVE false: otherwise a user session turns
   * CKA_DECRYPT on and unwraps any record in software with the KEK as an AES-ECB oracle (measured,
   * test/integration/domain-attacker.test.ts). Idempotent; irreversible; true if anything changed.
   */
  lock(): Promise<boolean> {
    return this.sessions.withKeeper('lock', (s) => {
      const api = this.api();
      let changed = false;
      const objects = this.allDomainKeyObjects(s);
      const key = (h: Handle) => {
        const [label, id] = api.C_GetAttributeValue(s, h, [{ type: pk.CKA_LABEL }, { type: pk.CKA_ID }]);
        return `${String(label.value)}/${id.value.toString('hex')}`;
      };
      const sealedKeys = new Set(objects.filter((h) => this.sealed(s, h)).map(key));
      for (const h of objects) {
        if (this.sealed(s, h)) continue;
        try {
          if (!this.owner.profile.lockUnmodifiable) api.C_SetAttributeValue(s, h, LOCKED);
          else {
            // a copy already sealed by an interrupted lock: this is the original it left
            if (!sealedKeys.has(key(h))) {
              api.C_SetAttributeValue(s, h, USES_OFF);
              // locked by an older version (non-extractable already): SoftHSM2 refuses to name CKA_EXTRACTABLE again, even false
              api.C_CopyObject(s, h, this.nonExtractable(s, h) ? UNMODIFIABLE : SEALED_COPY);
            }
            api.C_DestroyObject(s, h);
          }
        } catch (e) {
          throw new DomainKeyError(
            `token "${this.owner.tokenLabel}" of member ${this.owner.id} refused the lock (CKA_EXTRACTABLE=false): ${(e as Error).message}`,
          );
        }
        changed = true;
      }
      this.find(s);
      if (this.locked !== true)
        throw new DomainKeyError(`token "${this.owner.tokenLabel}" of member ${this.owner.id} still reports an extractable domain key after the lock`);
      return changed;
    });
  }

  /** Reads the token's generations again (another process may have made or destroyed one). */
  reread(): Promise<void> {
    return this.sessions.withKeeper('find', (s) => this.find(s));
  }

  /** The cluster's current generation (the cluster says, from the store); unset: the token's only one. */
  get current(): Buffer | undefined {
    return this.currentId;
  }

  set current(generation: Buffer | undefined) {
    this.currentId = generation;
    this.currentHex = generation?.toString('hex');
  }

  /** The current generation's keys, or the token's only generation's when the cluster named none. */
  get keys(): DomainKeys | undefined {
    if (this.currentHex !== undefined) return this.generations.get(this.currentHex);
    return this.generations.size === 1 ? this.generations.values().next().value : undefined;
  }

  holds(generation: Buffer): boolean {
    return this.generations.has(generation.toString('hex'));
  }

  require(): DomainKeys {
    const keys = this.keys;
    if (keys) return keys;
    const where = `token "${this.owner.tokenLabel}" of member ${this.owner.id}`;
    if (this.current)
      throw new DomainKeyError(`${where} does not hold the current domain generation ${this.current.toString('hex')}: run cluster rotate-domain`);
    if (this.generations.size > 1)
      throw new DomainKeyError(`${where} holds ${this.generations.size} domain generations and the cluster has not said which is current`);
    throw new DomainKeyError(`${where} holds no domain keys: run cluster init / add-member`);
  }

  /** The keys of the generation a record names; a record of a generation not held here is refused. */
  requireGeneration(generation: Buffer): DomainKeys {
    const keys = this.generations.get(generation.toString('hex'));
    if (!keys) throw new MaterialIntegrityError(`wrapped material belongs to another HSM domain, or to a generation member ${this.owner.id} does not hold`);
    return keys;
  }

  /**
   * Removes domain-key objects from this token: those of `generation` (retired, or a copy
   * interrupted half-way), or without it every generation (a ceremony interrupted half-way).
   */
  remove(generation?: Buffer): Promise<void> {
    return this.sessions.withKeeper('destroy', (s) => {
      for (const [label, suffix] of [
        [DOMAIN_KEK_LABEL, 'K'],
        [DOMAIN_MAC_LABEL, 'M'],
      ] as const) {
        const search = domainKeySearch(label);
        if (generation) search.push({ type: pk.CKA_ID, value: Buffer.concat([generation, Buffer.from(suffix)]) });
        for (const h of this.sessions.find(s, search)) this.api().C_DestroyObject(s, h);
      }
      this.find(s);
    });
  }

  /**
   * Generates generation `id` as token objects (cluster init, or rotate-domain, on one member).
   * Made CKA_WRAP_WITH_TRUSTED (copied under SO-trusted keys only), the KEK also gets
   * CKA_UNWRAP_TEMPLATE where the token enforces it: its records can then be re-wrapped only
   * through an SO-trusted key, so the two go together.
   */
  generate(id: Buffer, wrapWithTrusted = this.owner.profile.wrapWithTrusted): Promise<DomainKeys> {
    return this.sessions.withKeeper('generate', async (s) => {
      this.find(s);
      const hex = id.toString('hex');
      if (this.generations.has(hex) || this.broken.has(hex))
        throw new DomainKeyError(`token "${this.owner.tokenLabel}" already holds domain keys of generation ${hex}`);
      const mechanism = { mechanism: pk.CKM_AES_KEY_GEN };
      const length = { type: pk.CKA_VALUE_LEN, value: 32 };
      const templates = wrapWithTrusted ? this.templates() : undefined;
      if (templates) templates.generateKey(s, mechanism, [...templatedKekTemplate(id, true, wrapWithTrusted), length]);
      else await this.calls.fast.generateKey(s, mechanism, [...kekTemplate(id, true, wrapWithTrusted), length]);
      await this.calls.fast.generateKey(s, { mechanism: pk.CKM_GENERIC_SECRET_KEY_GEN }, [
        ...macTemplate(id, true, wrapWithTrusted),
        { type: pk.CKA_VALUE_LEN, value: 32 },
      ]);
      return this.written(s, id);
    });
  }

  /** After making or copying generation `id`: the token read again, and `id`'s keys. */
  private written(s: Handle, id: Buffer): DomainKeys {
    this.find(s);
    const keys = this.generations.get(id.toString('hex'));
    if (!keys) throw new DomainKeyError(`token "${this.owner.tokenLabel}" does not hold a complete generation ${id.toString('hex')} after writing it`);
    return keys;
  }

  private pick(generation: Buffer | undefined): DomainKeys {
    return generation ? this.requireGeneration(generation) : this.require();
  }

  /** Receiving side of a copy: an RSA transport key pair generated here; only its public half leaves. */
  createTransportKey(): Promise<TransportKey> {
    return this.sessions.withKeeper('generate', async (s) => {
      const t = transportKeyTemplates();
      const pair = await this.calls.offloaded.generateKeyPair(s, t.mechanism, t.publicKey, t.privateKey);
      return { privateKey: pair.privateKey, publicKey: pair.publicKey, ...rsaPublicParts(this.api(), s, pair.publicKey) };
    });
  }

  /**
   * Sending side, in a Security Officer session: the receiving members' transport public keys as
   * public session objects marked CKA_TRUSTED (they outlive the SO login; export destroys them).
   */
  trustTransportKeys(soSession: Handle, transports: readonly { modulus: Buffer; exponent: Buffer }[]): Handle[] {
    return transports.map((t) => this.api().C_CreateObject(soSession, trustedPublicKeyTemplate(t.modulus, t.exponent)));
  }

  /** rotate-domain, in a Security Officer session: the SO-trusted AES session key the re-wrap of templated records goes through. */
  trustedRewrapKey(soSession: Handle): Handle {
    return this.api().C_GenerateKey(soSession, { mechanism: pk.CKM_AES_KEY_GEN }, trustedRewrapKeyTemplate());
  }

  /**
   * Sending side: wraps this member's domain keys (of `generation`, else the current) under a
   * receiving member's transport public key, or under `trusted`, the same key made CKA_TRUSTED by
   * this token's SO (needed where the domain keys are CKA_WRAP_WITH_TRUSTED). The public key
   * object is destroyed afterwards.
   */
  export(modulus: Buffer, exponent: Buffer, generation?: Buffer, trusted?: Handle): Promise<ExportedDomainKeys> {
    return this.sessions.withKeeper('wrap', async (s) => {
      const domain = this.pick(generation);
      const api = this.api();
      const pub = trusted ?? api.C_CreateObject(s, rsaPublicKeyTemplate(modulus, exponent));
      try {
        const kek = Buffer.from(await this.calls.fast.wrapKey(s, oaep('sha1'), pub, domain.kek, Buffer.alloc(1024)));
        const mac = Buffer.from(await this.calls.fast.wrapKey(s, oaep('sha1'), pub, domain.mac, Buffer.alloc(1024)));
        return { id: domain.id, kek, mac, unwrapTemplate: domain.unwrapTemplate };
      } finally {
        api.C_DestroyObject(s, pub);
      }
    });
  }

  /** Receiving side: unwraps the copied domain keys into token objects, then drops the transport key. */
  import(transport: { privateKey: Handle; publicKey: Handle }, wrapped: ExportedDomainKeys): Promise<DomainKeys> {
    return this.sessions.withKeeper('unwrap', async (s) => {
      const api = this.api();
      try {
        const { profile, tokenLabel } = this.owner;
        const templates = wrapped.unwrapTemplate ? this.templates() : undefined;
        const withTemplate = templates && {
          unwrapKey: (...a: Parameters<TemplateCalls['unwrapKey']>) =>
            templates.unwrapKey(a[0], a[1], a[2], a[3], [...a[4], { type: pk.CKA_UNWRAP_TEMPLATE, value: KEK_UNWRAP_TEMPLATE }]),
        };
        await unwrapProtected(
          api,
          profile,
          tokenLabel,
          withTemplate ?? this.calls.offloaded,
          s,
          oaep('sha1'),
          transport.privateKey,
          wrapped.kek,
          kekTemplate(wrapped.id, true, profile.wrapWithTrusted),
        );
        await unwrapProtected(
          api,
          profile,
          tokenLabel,
          this.calls.offloaded,
          s,
          oaep('sha1'),
          transport.privateKey,
          wrapped.mac,
          macTemplate(wrapped.id, true, profile.wrapWithTrusted),
        );
      } finally {
        api.C_DestroyObject(s, transport.privateKey);
        api.C_DestroyObject(s, transport.publicKey);
      }
      return this.written(s, wrapped.id);
    });
  }

  /**
   * A fingerprint of the domain keys computed inside the HSM: HMAC of a constant under the MAC key
   * and a deterministic wrap (RFC 5649, or CBC-PAD under a zero IV) of an all-zero AES key under the
   * KEK. Equal on two members, for the same `algorithm`, exactly when they hold the same domain keys.
   */
  fingerprint(algorithm: WrapAlgorithm, generation?: Buffer): Promise<Buffer> {
    return this.sessions.withKeeper('wrap', async (s) => {
      const domain = this.pick(generation);
      const api = this.api();
      const zero = api.C_CreateObject(s, zeroAesKeyTemplate());
      try {
        const kekCheck = Buffer.from(
          await this.calls.fast.wrapKey(s, keyWrapMechanism(this.owner.profile, algorithm, Buffer.alloc(CBC_IV_BYTES)), domain.kek, zero, Buffer.alloc(64)),
        );
        const macCheck = await hmacSha256(api, this.calls, s, domain.mac, Buffer.from('kms-domain-fingerprint'));
        return createHash('sha256').update(kekCheck).update(macCheck).digest();
      } finally {
        api.C_DestroyObject(s, zero);
      }
    });
  }

  /**
   * HMAC-SHA256 under the domain MAC key, computed inside the HSM, of `data` behind a purpose label
   * (`kms-purpose:<purpose>\0`). The label keeps every purpose apart from the others and from
   * wrapped-material records (which start with their magic), so no MAC asked for one purpose is
   * valid for another.
   */
  mac(purpose: string, data: Buffer, generation?: Buffer): Promise<Buffer> {
    if (!/^[a-z0-9-]{1,32}$/.test(purpose)) return Promise.reject(new InvalidInputError('MAC purpose must be 1-32 of [a-z0-9-]'));
    return this.sessions.withSession('mac', (s) =>
      hmacSha256(this.api(), this.calls, s, this.pick(generation).mac, Buffer.concat([Buffer.from(`kms-purpose:${purpose}\0`, 'utf8'), data])),
    );
  }
}

export function rsaPublicParts(api: pk.PKCS11, s: Handle, publicKey: Handle): { modulus: Buffer; exponent: Buffer } {
  const [m, e] = api.C_GetAttributeValue(s, publicKey, [{ type: pk.CKA_MODULUS }, { type: pk.CKA_PUBLIC_EXPONENT }]);
  return { modulus: m.value, exponent: e.value };
}
