import * as pk from 'pkcs11js';
import { createHash } from 'node:crypto';
import { DomainKeyError, InvalidInputError } from './errors';
import type { CallSet } from './pkcs11-call';
import type { HsmProfile } from './profile';
import type { MemberSessions } from './sessions';
import {
  DOMAIN_KEK_LABEL, DOMAIN_MAC_LABEL, domainKeySearch, kekTemplate, keyWrapMechanism, LOCKED, macTemplate, oaep, rsaPublicKeyTemplate,
  transportKeyTemplates, trustedPublicKeyTemplate, zeroAesKeyTemplate,
} from './templates';

type Handle = pk.Handle;

export interface DomainKeys {
  id: Buffer;
  kek: Handle;
  mac: Handle;
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
 * The two domain keys of one member's token (AES-256 KEK, HMAC key), found at login, and the
 * member's side of the ceremony that copies them between members.
 */
export class MemberDomainKeys {
  keys: DomainKeys | undefined;
  /** Set when the token holds a broken set of domain keys (a ceremony interrupted half-way). */
  problem: string | undefined;
  /** Every domain-key object of the token is non-extractable (read from the token); undefined without domain keys. */
  locked: boolean | undefined;

  constructor(
    private readonly owner: DomainKeyOwner,
    private readonly sessions: MemberSessions,
    private readonly calls: CallSet,
    private readonly api: () => pk.PKCS11,
  ) {}

  private find(s: Handle): DomainKeys | undefined {
    const kek = this.sessions.find(s, domainKeySearch(DOMAIN_KEK_LABEL));
    const mac = this.sessions.find(s, domainKeySearch(DOMAIN_MAC_LABEL));
    if (kek.length === 0 && mac.length === 0) return undefined;
    if (kek.length !== 1 || mac.length !== 1) {
      throw new DomainKeyError(`token "${this.owner.tokenLabel}" holds an incomplete or duplicated set of domain keys (${kek.length} KEK, ${mac.length} MAC)`);
    }
    const id = (h: Handle) => (this.api().C_GetAttributeValue(s, h, [{ type: pk.CKA_ID }])[0].value as Buffer).subarray(0, -1);
    const kekId = Buffer.from(id(kek[0]));
    if (!kekId.equals(id(mac[0]))) throw new DomainKeyError(`token "${this.owner.tokenLabel}" holds domain keys of two different domains`);
    return { id: kekId, kek: kek[0], mac: mac[0] };
  }

  /** Reads the domain keys on a fresh login; a broken set is remembered as `problem`, not thrown. */
  refresh(keeper: Handle): void {
    try {
      this.keys = this.find(keeper);
      this.problem = undefined;
    } catch (e) {
      this.keys = undefined;
      this.problem = (e as Error).message;
    }
    this.locked = this.readLocked(keeper);
  }

  /** Every object labelled as a domain key, whatever its domain or generation. */
  private allDomainKeyObjects(s: Handle): Handle[] {
    return [DOMAIN_KEK_LABEL, DOMAIN_MAC_LABEL].flatMap((label) => this.sessions.find(s, domainKeySearch(label)));
  }

  private readLocked(s: Handle): boolean | undefined {
    const all = this.allDomainKeyObjects(s);
    if (all.length === 0) return undefined;
    return all.every((h) => (this.api().C_GetAttributeValue(s, h, [{ type: pk.CKA_EXTRACTABLE }])[0].value as Buffer)[0] === 0);
  }

  /**
   * The lock: CKA_EXTRACTABLE=false on every domain-key object of the token, read back to be sure.
   * Idempotent; irreversible (the token refuses false -> true); true if anything changed.
   */
  lock(): Promise<boolean> {
    return this.sessions.withKeeper('lock', (s) => {
      const api = this.api();
      let changed = false;
      for (const h of this.allDomainKeyObjects(s)) {
        if ((api.C_GetAttributeValue(s, h, [{ type: pk.CKA_EXTRACTABLE }])[0].value as Buffer)[0] === 0) continue;
        try {
          api.C_SetAttributeValue(s, h, LOCKED);
        } catch (e) {
          throw new DomainKeyError(`token "${this.owner.tokenLabel}" of member ${this.owner.id} refused the lock (CKA_EXTRACTABLE=false): ${(e as Error).message}`);
        }
        changed = true;
      }
      this.locked = this.readLocked(s);
      if (this.locked !== true) throw new DomainKeyError(`token "${this.owner.tokenLabel}" of member ${this.owner.id} still reports an extractable domain key after the lock`);
      return changed;
    });
  }

  require(): DomainKeys {
    if (!this.keys) throw new DomainKeyError(`token "${this.owner.tokenLabel}" of member ${this.owner.id} holds no domain keys: run cluster init / add-member`);
    return this.keys;
  }

  /** Removes domain-key objects from this token; only used to repair a ceremony interrupted half-way. */
  remove(): Promise<void> {
    return this.sessions.withKeeper('destroy', (s) => {
      for (const label of [DOMAIN_KEK_LABEL, DOMAIN_MAC_LABEL]) {
        for (const h of this.sessions.find(s, domainKeySearch(label))) this.api().C_DestroyObject(s, h);
      }
      this.keys = undefined;
      this.problem = undefined;
      this.locked = this.readLocked(s);
    });
  }

  /** Generates a fresh pair of domain keys as token objects (cluster init on the first member). */
  generate(id: Buffer): Promise<DomainKeys> {
    return this.sessions.withKeeper('generate', async (s) => {
      if (this.find(s)) throw new DomainKeyError(`token "${this.owner.tokenLabel}" already holds domain keys`);
      await this.calls.fast.generateKey(s, { mechanism: pk.CKM_AES_KEY_GEN }, [...kekTemplate(id, true, this.owner.profile.wrapWithTrusted), { type: pk.CKA_VALUE_LEN, value: 32 }]);
      await this.calls.fast.generateKey(s, { mechanism: pk.CKM_GENERIC_SECRET_KEY_GEN }, [...macTemplate(id, true, this.owner.profile.wrapWithTrusted), { type: pk.CKA_VALUE_LEN, value: 32 }]);
      this.keys = this.find(s);
      this.locked = this.readLocked(s);
      return this.require();
    });
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

  /**
   * Sending side: wraps this member's domain keys under a receiving member's transport public key,
   * or under `trusted`, the same key made CKA_TRUSTED by this token's SO (needed where the domain
   * keys are CKA_WRAP_WITH_TRUSTED). The public key object is destroyed afterwards.
   */
  export(modulus: Buffer, exponent: Buffer, trusted?: Handle): Promise<ExportedDomainKeys> {
    return this.sessions.withKeeper('wrap', async (s) => {
      const domain = this.require();
      const api = this.api();
      const pub = trusted ?? api.C_CreateObject(s, rsaPublicKeyTemplate(modulus, exponent));
      try {
        const kek = Buffer.from(await this.calls.fast.wrapKey(s, oaep('sha1'), pub, domain.kek, Buffer.alloc(1024)));
        const mac = Buffer.from(await this.calls.fast.wrapKey(s, oaep('sha1'), pub, domain.mac, Buffer.alloc(1024)));
        return { id: domain.id, kek, mac };
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
        const trusted = this.owner.profile.wrapWithTrusted;
        await this.calls.offloaded.unwrapKey(s, oaep('sha1'), transport.privateKey, wrapped.kek, kekTemplate(wrapped.id, true, trusted));
        await this.calls.offloaded.unwrapKey(s, oaep('sha1'), transport.privateKey, wrapped.mac, macTemplate(wrapped.id, true, trusted));
      } finally {
        api.C_DestroyObject(s, transport.privateKey);
        api.C_DestroyObject(s, transport.publicKey);
      }
      this.keys = this.find(s);
      this.locked = this.readLocked(s);
      return this.require();
    });
  }

  /**
   * A fingerprint of the domain keys computed inside the HSM: HMAC of a constant under the MAC key
   * and RFC 5649 wrap (deterministic) of an all-zero AES key under the KEK. Equal on two members
   * exactly when they hold the same domain keys.
   */
  fingerprint(): Promise<Buffer> {
    return this.sessions.withKeeper('wrap', async (s) => {
      const domain = this.require();
      const api = this.api();
      const zero = api.C_CreateObject(s, zeroAesKeyTemplate());
      try {
        const kekCheck = Buffer.from(await this.calls.fast.wrapKey(s, keyWrapMechanism(this.owner.profile), domain.kek, zero, Buffer.alloc(64)));
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
  mac(purpose: string, data: Buffer): Promise<Buffer> {
    if (!/^[a-z0-9-]{1,32}$/.test(purpose)) return Promise.reject(new InvalidInputError('MAC purpose must be 1-32 of [a-z0-9-]'));
    return this.sessions.withSession('mac', (s) => hmacSha256(this.api(), this.calls, s, this.require().mac, Buffer.concat([Buffer.from(`kms-purpose:${purpose}\0`, 'utf8'), data])));
  }
}

export function rsaPublicParts(api: pk.PKCS11, s: Handle, publicKey: Handle): { modulus: Buffer; exponent: Buffer } {
  const [m, e] = api.C_GetAttributeValue(s, publicKey, [{ type: pk.CKA_MODULUS }, { type: pk.CKA_PUBLIC_EXPONENT }]);
  return { modulus: m.value as Buffer, exponent: e.value as Buffer };
}
