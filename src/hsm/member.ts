import * as pk from 'pkcs11js';
import { createHash, timingSafeEqual } from 'node:crypto';
import { Capabilities, deriveCapabilities, KeySpec, MechanismFacts, RsaPadding, SigningAlgorithm } from './capabilities';
import { classifyError } from './error-classes';
import {
  DomainKeyError, HsmError, InvalidInputError, LoginError, MaterialIntegrityError, MemberUnavailableError,
  Pkcs11CallError, UnsupportedError,
} from './errors';
import { HandleCache } from './handle-cache';
import { MaterialBinding, WrappedMaterial } from './material';
import { ModuleSpec, openModule, Pkcs11Module } from './module';
import { callSet, Pkcs11Calls } from './pkcs11-call';
import type { HsmProfile } from './profile';
import { SessionPool } from './session-pool';
import { slowLane } from './thread-lane';
import { EC_CURVES, ecdsaDerToRaw, ecdsaRawToDer, ecSpki, publicKeyTemplate, rsaSpki, SHA256_DIGEST_INFO } from './spki';

type Handle = pk.Handle;

export type MemberState = 'ACTIVE' | 'DEGRADED' | 'UNAVAILABLE';

export interface MemberOptions {
  id: string;
  profile: HsmProfile;
  module: ModuleSpec;
  tokenLabel: string;
  /** Substituted for `{dir}` in the profile's libraryParameters (NSS: the database directory). */
  moduleDir?: string;
  /** The resolved PIN; never logged, never in an error. */
  pin: string;
  maxSessions?: number;
  poolWaitMs?: number;
  handleCacheSize?: number;
  handleTtlMs?: number;
  /** First and longest delay between attempts to bring a failed member back. */
  backoffMs?: [number, number];
}

export interface DomainKeys {
  id: Buffer;
  kek: Handle;
  mac: Handle;
}

export interface GcmResult {
  iv: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

export const DOMAIN_KEK_LABEL = 'kms-domain-kek';
export const DOMAIN_MAC_LABEL = 'kms-domain-mac';
const GCM_IV_BYTES = 12;
const GCM_TAG_BYTES = 16;
const MAX_WRAPPED_BYTES = 8192;

const KEY_SPEC: Record<KeySpec, { kind: 'aes' } | { kind: 'rsa'; bits: number } | { kind: 'ec'; curve: 'P-256' | 'P-384' }> = {
  AES_256: { kind: 'aes' },
  RSA_2048: { kind: 'rsa', bits: 2048 },
  RSA_3072: { kind: 'rsa', bits: 3072 },
  RSA_4096: { kind: 'rsa', bits: 4096 },
  EC_P256: { kind: 'ec', curve: 'P-256' },
  EC_P384: { kind: 'ec', curve: 'P-384' },
};

const OAEP = (hash: 'sha1' | 'sha256'): pk.Mechanism => ({
  mechanism: pk.CKM_RSA_PKCS_OAEP,
  parameter: {
    type: pk.CK_PARAMS_RSA_OAEP,
    hashAlg: hash === 'sha1' ? pk.CKM_SHA_1 : pk.CKM_SHA256,
    mgf: hash === 'sha1' ? pk.CKG_MGF1_SHA1 : pk.CKG_MGF1_SHA256,
    source: 1, // CKZ_DATA_SPECIFIED
  } as pk.RsaOAEP,
});

function ckrName(e: unknown): string | undefined {
  const m = /(CKR_[A-Z0-9_]+)/.exec(e instanceof Error ? e.message : String(e));
  return m ? m[1] : undefined;
}

/**
 * One token of one PKCS#11 module: its sessions, unwrapped-key cache, domain keys, capabilities
 * and health. Knows nothing of CMKs: it works on wrapped material records.
 */
export class HsmMember {
  readonly id: string;
  readonly profile: HsmProfile;
  readonly module: Pkcs11Module;
  state: MemberState = 'UNAVAILABLE';
  lastError = 'not connected';
  capabilities: Capabilities | undefined;
  /** Every complete generation of domain keys on the token, by generation id (hex). */
  generations = new Map<string, DomainKeys>();
  /** The cluster's current generation (set by the cluster from the store); unset: the token's only one. */
  currentGeneration: Buffer | undefined;
  /** Set when the token holds a broken set of domain keys (a ceremony or copy interrupted half-way). */
  domainProblem: string | undefined;
  /** Generations (hex) of which the token holds only one of the two keys, or two of one. */
  brokenGenerations = new Set<string>();
  /** Errors counted since the last successful probe; more than a few make the member DEGRADED. */
  recentErrors = 0;
  resets = 0;
  /** Operations completed on this member (for metrics and for seeing where work goes). */
  operations = 0;
  /** Called after every session-level operation with its duration (metrics); unset costs nothing. */
  onOperation: ((e: { member: string; operation: string; ms: number; ok: boolean }) => void) | undefined;

  private readonly api: pk.PKCS11;
  /** AES-GCM, HMAC, AES wraps: the profile's call mode. */
  private readonly calls: Pkcs11Calls;
  /** Short private-key work on the keeper session: thread pool, no lane (it must not wait behind generations). */
  private readonly offloaded: Pkcs11Calls;
  /** Generation, RSA decrypt, signing, import unwrap: thread pool through the lane, whatever the call mode. */
  private readonly slow: Pkcs11Calls;
  private readonly cache: HandleCache<Handle>;
  private pool: SessionPool<Handle>;
  private keeper: Handle | undefined;
  private keeperQueue: Promise<unknown> = Promise.resolve();
  private generation = -1;
  private reconnectFailed = false;
  private recovery: NodeJS.Timeout | undefined;
  private backoff: number;
  private closed = false;

  constructor(private readonly options: MemberOptions) {
    this.id = options.id;
    this.profile = options.profile;
    this.module = openModule({ ...options.module, libraryParameters: options.module.libraryParameters ?? options.profile.libraryParameters?.replace('{dir}', options.moduleDir ?? '') });
    this.api = this.module.api;
    const calls = callSet(this.module, options.profile.callMode, slowLane, options.id);
    this.calls = calls.fast;
    this.offloaded = calls.offloaded;
    this.slow = calls.slow;
    this.cache = new HandleCache<Handle>(options.handleCacheSize ?? 10_000, options.handleTtlMs ?? 15 * 60_000, (h) => this.destroyObject(h));
    this.pool = this.newPool(1);
    this.backoff = this.backoffRange[0];
  }

  private get backoffRange(): [number, number] {
    return this.options.backoffMs ?? [200, 10_000];
  }

  get tokenLabel(): string {
    return this.options.tokenLabel;
  }

  get sessions(): { open: number; busy: number; cap: number; waiting: number } {
    return { open: this.pool.size, busy: this.pool.busy, cap: this.pool.cap, waiting: this.pool.waiting };
  }

  get cachedHandles(): number {
    return this.cache.size;
  }

  private newPool(tokenMax: number): SessionPool<Handle> {
    const caps = [this.profile.maxSessions, this.options.maxSessions ?? Infinity, tokenMax > 1 ? tokenMax - 1 : Infinity];
    return new SessionPool<Handle>(
      this.id,
      () => this.api.C_OpenSession(this.slot, pk.CKF_SERIAL_SESSION | pk.CKF_RW_SESSION),
      (s) => this.api.C_CloseSession(s),
      Math.max(1, Math.min(...caps)),
      this.options.poolWaitMs ?? 2_000,
    );
  }

  private slot: Handle = Buffer.alloc(0);

  /** Initialises the module if needed, finds the token, logs in, reads capabilities and domain keys. */
  connect(): void {
    this.module.initialize();
    const token = this.module.findToken(this.options.tokenLabel);
    this.slot = token.slot;
    this.generation = this.module.generation;
    this.cache.clear(false);
    this.pool.reset(new MemberUnavailableError(this.id, 'reconnecting'));
    this.pool = this.newPool(token.maxSessions);
    this.keeper = this.api.C_OpenSession(this.slot, pk.CKF_SERIAL_SESSION | pk.CKF_RW_SESSION);
    try {
      this.api.C_Login(this.keeper, pk.CKU_USER, this.options.pin);
    } catch (e) {
      const ckr = ckrName(e) ?? 'unknown error';
      if (ckr !== 'CKR_USER_ALREADY_LOGGED_IN') {
        this.api.C_CloseSession(this.keeper);
        this.keeper = undefined;
        throw new LoginError(this.options.tokenLabel, ckr === 'CKR_PIN_INCORRECT' ? 'PIN incorrect' : ckr);
      }
    }
    this.capabilities = deriveCapabilities(this.readMechanisms(), this.profile);
    this.refreshDomainQuietly();
    this.state = 'ACTIVE';
    this.lastError = '';
    this.recentErrors = 0;
    this.backoff = this.backoffRange[0];
  }

  private readMechanisms(): Map<number, MechanismFacts> {
    const out = new Map<number, MechanismFacts>();
    for (const mech of this.api.C_GetMechanismList(this.slot)) {
      const info = this.api.C_GetMechanismInfo(this.slot, mech);
      out.set(mech, { flags: info.flags, minKeySize: info.minKeySize, maxKeySize: info.maxKeySize });
    }
    return out;
  }

  close(): void {
    this.closed = true;
    if (this.recovery) clearTimeout(this.recovery);
    if (this.module.isInitialized && this.module.generation === this.generation) {
      this.cache.clear(true);
      try {
        if (this.keeper) this.api.C_CloseAllSessions(this.slot);
      } catch {
        // module already gone
      }
    }
    this.pool.reset(new MemberUnavailableError(this.id, 'closed'));
    this.keeper = undefined;
    this.state = 'UNAVAILABLE';
    this.lastError = 'closed';
  }

  /** Marks the member failed and starts re-initialising its module with exponential backoff. */
  fail(reason: string): void {
    if (this.state === 'UNAVAILABLE' && this.recovery) return;
    this.state = 'UNAVAILABLE';
    this.lastError = reason;
    this.cache.clear(false);
    this.pool.reset(new MemberUnavailableError(this.id, reason));
    this.keeper = undefined;
    this.scheduleRecovery();
  }

  private scheduleRecovery(): void {
    if (this.closed || this.recovery) return;
    this.recovery = setTimeout(() => {
      this.recovery = undefined;
      try {
        // Re-initialise unless another member of the same module already did since we failed.
        if (this.module.generation === this.generation || this.reconnectFailed) {
          // C_Finalize under a thread-pool call (another member's generation, say) would crash the process
          if (this.module.callsInFlight > 0) return this.scheduleRecovery();
          this.module.reinitialize();
          this.resets++;
        }
        this.connect();
        this.reconnectFailed = false;
      } catch (e) {
        this.reconnectFailed = true;
        this.lastError = e instanceof Error ? e.message : String(e);
        this.backoff = Math.min(this.backoff * 2, this.backoffRange[1]);
        this.scheduleRecovery();
      }
    }, this.backoff);
    this.recovery.unref();
  }

  private toHsmError(e: unknown, operation: string): HsmError {
    if (e instanceof HsmError) return e;
    const ckr = ckrName(e);
    if (!ckr) return new InvalidInputError(`${operation} on ${this.id} rejected its arguments: ${e instanceof Error ? e.message : String(e)}`);
    return new Pkcs11CallError(classifyError(ckr, operation, this.profile.errorOverrides), ckr, operation, this.id);
  }

  private ensureConnected(): void {
    if (this.state === 'UNAVAILABLE') throw new MemberUnavailableError(this.id, this.lastError);
    if (this.module.generation !== this.generation || !this.module.isInitialized) {
      // Another member of the same module re-initialised it: our sessions and handles are gone.
      try {
        if (!this.module.isInitialized) throw new MemberUnavailableError(this.id, 'module finalised');
        this.connect();
      } catch (e) {
        this.fail((e as Error).message);
        throw new MemberUnavailableError(this.id, this.lastError);
      }
    }
  }

  /** Runs `fn` on a pooled session; failures are classified and handled as the profile says. */
  withSession<T>(operation: string, fn: (s: Handle) => T | Promise<T>): Promise<T> {
    let s: Handle | undefined;
    try {
      this.ensureConnected();
      s = this.pool.tryAcquire();
    } catch (e) {
      return Promise.reject(this.toHsmError(e, operation));
    }
    if (s === undefined) return this.pool.acquire().then((acquired) => this.runOn(operation, acquired, fn));
    return this.runOn(operation, s, fn);
  }

  /** Sync results stay sync until the end: in-process tokens pay for one promise, not one per layer. */
  private runOn<T>(operation: string, s: Handle, fn: (s: Handle) => T | Promise<T>): Promise<T> {
    const observe = this.onOperation;
    const started = observe ? process.hrtime.bigint() : 0n;
    const report = (ok: boolean): void => {
      if (observe) observe({ member: this.id, operation, ms: Number(process.hrtime.bigint() - started) / 1e6, ok });
    };
    const succeeded = (value: T): T => {
      this.pool.release(s);
      this.operations++;
      report(true);
      return value;
    };
    const failed = (e: unknown): HsmError => {
      const err = this.toHsmError(e, operation);
      this.afterFailure(err, s);
      report(false);
      return err;
    };
    let result: T | Promise<T>;
    try {
      result = fn(s);
    } catch (e) {
      return Promise.reject(failed(e));
    }
    return result instanceof Promise
      ? result.then(succeeded, (e: unknown) => {
          throw failed(e);
        })
      : Promise.resolve(succeeded(result));
  }

  private afterFailure(err: HsmError, s: Handle | undefined): void {
    if (err.errorClass === 'device') {
      this.recentErrors++;
      this.fail(err.message);
    } else if (err.errorClass === 'session') {
      this.recentErrors++;
      if (s !== undefined) this.pool.discard(s);
    } else if (s !== undefined) {
      this.pool.release(s);
    }
  }

  /** Work on the long-lived logged-in session (it owns unwrapped session objects); serialised. */
  private withKeeper<T>(operation: string, fn: (s: Handle) => T | Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      this.ensureConnected();
      const keeper = this.keeper;
      if (!keeper) throw new MemberUnavailableError(this.id, 'no session');
      try {
        return await fn(keeper);
      } catch (e) {
        const err = this.toHsmError(e, operation);
        if (err.errorClass === 'device' || err.errorClass === 'session') {
          this.recentErrors++;
          this.fail(err.message);
        }
        throw err;
      }
    };
    const p = this.keeperQueue.then(run, run);
    this.keeperQueue = p.catch(() => undefined);
    return p;
  }

  private destroyObject(h: Handle): void {
    if (this.keeper && this.module.generation === this.generation) this.api.C_DestroyObject(this.keeper, h);
  }

  // ---- objects -------------------------------------------------------------------------------

  private find(s: Handle, template: pk.Template): Handle[] {
    this.api.C_FindObjectsInit(s, template);
    try {
      const out: Handle[] = [];
      for (let batch = this.api.C_FindObjects(s, 16); batch.length > 0; batch = this.api.C_FindObjects(s, 16)) out.push(...batch);
      return out;
    } finally {
      this.api.C_FindObjectsFinal(s);
    }
  }

  /** The domain keys of the current generation (or of the token's only one when the cluster has named none). */
  get domain(): DomainKeys | undefined {
    if (this.currentGeneration) return this.generations.get(this.currentGeneration.toString('hex'));
    return this.generations.size === 1 ? this.generations.values().next().value : undefined;
  }

  holds(generation: Buffer): boolean {
    return this.generations.has(generation.toString('hex'));
  }

  /**
   * Every generation on the token, by CKA_ID: the generation id plus "K" (KEK) or "M" (MAC key),
   * since NSS softokn keeps one token key per CKA_ID. A generation is complete with exactly one of each.
   */
  private findGenerations(s: Handle): void {
    const byId = new Map<string, { kek: Handle[]; mac: Handle[] }>();
    const idOf = (h: Handle): Buffer => this.api.C_GetAttributeValue(s, h, [{ type: pk.CKA_ID }])[0].value as Buffer;
    for (const [label, slot] of [[DOMAIN_KEK_LABEL, 'kek'], [DOMAIN_MAC_LABEL, 'mac']] as const) {
      for (const h of this.find(s, [{ type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY }, { type: pk.CKA_LABEL, value: label }])) {
        const id = idOf(h);
        const key = id.subarray(0, -1).toString('hex');
        const entry = byId.get(key) ?? { kek: [], mac: [] };
        entry[slot].push(h);
        byId.set(key, entry);
      }
    }
    this.generations = new Map();
    this.brokenGenerations = new Set();
    for (const [id, e] of byId) {
      if (e.kek.length === 1 && e.mac.length === 1) this.generations.set(id, { id: Buffer.from(id, 'hex'), kek: e.kek[0], mac: e.mac[0] });
      else this.brokenGenerations.add(id);
    }
    const broken = [...this.brokenGenerations].map((id) => `${id} (${byId.get(id)!.kek.length} KEK, ${byId.get(id)!.mac.length} MAC)`);
    this.domainProblem = broken.length ? `token "${this.tokenLabel}" holds an incomplete or duplicated set of domain keys: generation ${broken.join(', ')}` : undefined;
  }

  private refreshDomainQuietly(): void {
    try {
      this.findGenerations(this.keeper as Handle);
    } catch (e) {
      this.generations = new Map();
      this.domainProblem = (e as Error).message;
    }
  }

  /** Reads the token's generations again (another process may have made or destroyed one). */
  refreshGenerations(): Promise<void> {
    return this.withKeeper('find', (s) => this.findGenerations(s));
  }

  /**
   * Removes domain-key objects from this token: those of `generation` (a retired generation, or a
   * copy interrupted half-way), or without it every generation (a ceremony interrupted half-way).
   */
  removeDomainKeys(generation?: Buffer): Promise<void> {
    return this.withKeeper('destroy', (s) => {
      for (const [label, suffix] of [[DOMAIN_KEK_LABEL, 'K'], [DOMAIN_MAC_LABEL, 'M']] as const) {
        const template: pk.Template = [{ type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY }, { type: pk.CKA_LABEL, value: label }];
        if (generation) template.push({ type: pk.CKA_ID, value: Buffer.concat([generation, Buffer.from(suffix)]) });
        for (const h of this.find(s, template)) this.api.C_DestroyObject(s, h);
      }
      this.findGenerations(s);
    });
  }

  private requireDomain(): DomainKeys {
    this.ensureConnected();
    const domain = this.domain;
    if (domain) return domain;
    if (this.currentGeneration) throw new DomainKeyError(`token "${this.tokenLabel}" of member ${this.id} does not hold the current domain generation ${this.currentGeneration.toString('hex')}: run cluster rotate-domain`);
    if (this.generations.size > 1) throw new DomainKeyError(`token "${this.tokenLabel}" of member ${this.id} holds ${this.generations.size} domain generations and the cluster has not said which is current`);
    throw new DomainKeyError(`token "${this.tokenLabel}" of member ${this.id} holds no domain keys: run cluster init / add-member`);
  }

  /** The keys of the generation a record names; a record of a generation not held here is refused. */
  private requireGeneration(generation: Buffer): DomainKeys {
    this.ensureConnected();
    const keys = this.generations.get(generation.toString('hex'));
    if (!keys) throw new MaterialIntegrityError(`wrapped material belongs to another HSM domain, or to a generation member ${this.id} does not hold`);
    return keys;
  }

  private kekTemplate(id: Buffer, token: boolean): pk.Template {
    return [
      { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY }, { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
      { type: pk.CKA_TOKEN, value: token }, { type: pk.CKA_PRIVATE, value: true }, { type: pk.CKA_LABEL, value: DOMAIN_KEK_LABEL },
      { type: pk.CKA_ID, value: Buffer.concat([id, Buffer.from('K')]) }, { type: pk.CKA_SENSITIVE, value: true }, { type: pk.CKA_EXTRACTABLE, value: true },
      { type: pk.CKA_WRAP, value: true }, { type: pk.CKA_UNWRAP, value: true },
      { type: pk.CKA_ENCRYPT, value: false }, { type: pk.CKA_DECRYPT, value: false },
    ];
  }

  private macTemplate(id: Buffer, token: boolean): pk.Template {
    return [
      { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY }, { type: pk.CKA_KEY_TYPE, value: pk.CKK_GENERIC_SECRET },
      { type: pk.CKA_TOKEN, value: token }, { type: pk.CKA_PRIVATE, value: true }, { type: pk.CKA_LABEL, value: DOMAIN_MAC_LABEL },
      { type: pk.CKA_ID, value: Buffer.concat([id, Buffer.from('M')]) }, { type: pk.CKA_SENSITIVE, value: true }, { type: pk.CKA_EXTRACTABLE, value: true },
      { type: pk.CKA_SIGN, value: true }, { type: pk.CKA_VERIFY, value: true },
    ];
  }

  /** Generates a fresh pair of domain keys as token objects: generation `id` (cluster init, or rotate-domain on one member). */
  generateDomainKeys(id: Buffer): Promise<DomainKeys> {
    return this.withKeeper('generate', async (s) => {
      this.findGenerations(s);
      if (this.generations.has(id.toString('hex')) || this.brokenGenerations.has(id.toString('hex'))) throw new DomainKeyError(`token "${this.tokenLabel}" already holds domain keys of generation ${id.toString('hex')}`);
      await this.calls.generateKey(s, { mechanism: pk.CKM_AES_KEY_GEN }, [...this.kekTemplate(id, true), { type: pk.CKA_VALUE_LEN, value: 32 }]);
      await this.calls.generateKey(s, { mechanism: pk.CKM_GENERIC_SECRET_KEY_GEN }, [...this.macTemplate(id, true), { type: pk.CKA_VALUE_LEN, value: 32 }]);
      return this.generationKeys(s, id);
    });
  }

  /** After making or copying generation `id`: the token's generations read again, and `id`'s keys. */
  private generationKeys(s: Handle, id: Buffer): DomainKeys {
    this.findGenerations(s);
    const keys = this.generations.get(id.toString('hex'));
    if (!keys) throw new DomainKeyError(`token "${this.tokenLabel}" does not hold a complete generation ${id.toString('hex')} after writing it`);
    return keys;
  }

  private rsaPublic(s: Handle, publicKey: Handle): { modulus: Buffer; exponent: Buffer } {
    const [m, e] = this.api.C_GetAttributeValue(s, publicKey, [{ type: pk.CKA_MODULUS }, { type: pk.CKA_PUBLIC_EXPONENT }]);
    return { modulus: m.value as Buffer, exponent: e.value as Buffer };
  }

  /** Receiving side of a copy: an RSA transport key pair generated here; only its public half leaves. */
  createTransportKey(): Promise<{ privateKey: Handle; publicKey: Handle; modulus: Buffer; exponent: Buffer }> {
    return this.withKeeper('generate', async (s) => {
      const pair = await this.offloaded.generateKeyPair(
        s,
        { mechanism: pk.CKM_RSA_PKCS_KEY_PAIR_GEN },
        [{ type: pk.CKA_TOKEN, value: false }, { type: pk.CKA_MODULUS_BITS, value: 3072 }, { type: pk.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) }, { type: pk.CKA_WRAP, value: true }, { type: pk.CKA_ENCRYPT, value: true }],
        [{ type: pk.CKA_TOKEN, value: false }, { type: pk.CKA_PRIVATE, value: true }, { type: pk.CKA_SENSITIVE, value: true }, { type: pk.CKA_EXTRACTABLE, value: false }, { type: pk.CKA_UNWRAP, value: true }, { type: pk.CKA_DECRYPT, value: true }],
      );
      return { privateKey: pair.privateKey, publicKey: pair.publicKey, ...this.rsaPublic(s, pair.publicKey) };
    });
  }

  /** Sending side: wraps this member's domain keys (of `generation`, else the current) under a receiving member's transport public key. */
  exportDomainKeys(modulus: Buffer, exponent: Buffer, generation?: Buffer): Promise<{ id: Buffer; kek: Buffer; mac: Buffer }> {
    const domain = generation ? this.requireGeneration(generation) : this.requireDomain();
    return this.withKeeper('wrap', async (s) => {
      const pub = this.api.C_CreateObject(s, [
        { type: pk.CKA_CLASS, value: pk.CKO_PUBLIC_KEY }, { type: pk.CKA_KEY_TYPE, value: pk.CKK_RSA }, { type: pk.CKA_TOKEN, value: false },
        { type: pk.CKA_MODULUS, value: modulus }, { type: pk.CKA_PUBLIC_EXPONENT, value: exponent }, { type: pk.CKA_WRAP, value: true }, { type: pk.CKA_ENCRYPT, value: true },
      ]);
      try {
        const kek = Buffer.from(await this.calls.wrapKey(s, OAEP('sha1'), pub, domain.kek, Buffer.alloc(1024)));
        const mac = Buffer.from(await this.calls.wrapKey(s, OAEP('sha1'), pub, domain.mac, Buffer.alloc(1024)));
        return { id: domain.id, kek, mac };
      } finally {
        this.api.C_DestroyObject(s, pub);
      }
    });
  }

  /** Receiving side: unwraps the copied domain keys into token objects, then drops the transport key. */
  importDomainKeys(transport: { privateKey: Handle; publicKey: Handle }, wrapped: { id: Buffer; kek: Buffer; mac: Buffer }): Promise<DomainKeys> {
    return this.withKeeper('unwrap', async (s) => {
      try {
        await this.offloaded.unwrapKey(s, OAEP('sha1'), transport.privateKey, wrapped.kek, this.kekTemplate(wrapped.id, true));
        await this.offloaded.unwrapKey(s, OAEP('sha1'), transport.privateKey, wrapped.mac, this.macTemplate(wrapped.id, true));
      } finally {
        this.api.C_DestroyObject(s, transport.privateKey);
        this.api.C_DestroyObject(s, transport.publicKey);
      }
      return this.generationKeys(s, wrapped.id);
    });
  }

  /**
   * A fingerprint of the domain keys computed inside the HSM: HMAC of a constant under the MAC key
   * and RFC 5649 wrap (deterministic) of an all-zero AES key under the KEK. Equal on two members
   * exactly when they hold the same domain keys.
   */
  domainFingerprint(generation?: Buffer): Promise<Buffer> {
    const domain = generation ? this.requireGeneration(generation) : this.requireDomain();
    return this.withKeeper('wrap', async (s) => {
      const zero = this.api.C_CreateObject(s, [
        { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY }, { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES }, { type: pk.CKA_TOKEN, value: false },
        { type: pk.CKA_VALUE, value: Buffer.alloc(32) }, { type: pk.CKA_EXTRACTABLE, value: true }, { type: pk.CKA_SENSITIVE, value: false },
      ]);
      try {
        const kekCheck = Buffer.from(await this.calls.wrapKey(s, { mechanism: this.profile.rfc5649Mechanism }, domain.kek, zero, Buffer.alloc(64)));
        this.api.C_SignInit(s, { mechanism: pk.CKM_SHA256_HMAC }, domain.mac);
        const macCheck = Buffer.from(await this.calls.sign(s, Buffer.from('kms-domain-fingerprint'), Buffer.alloc(32)));
        return createHash('sha256').update(kekCheck).update(macCheck).digest();
      } finally {
        this.api.C_DestroyObject(s, zero);
      }
    });
  }

  // ---- material ------------------------------------------------------------------------------

  private requireSpec(spec: KeySpec): void {
    if (!this.capabilities?.keySpecs.includes(spec)) {
      throw new UnsupportedError(`${this.profile.name} token "${this.tokenLabel}" cannot generate ${spec} keys`);
    }
  }

  private async hmac(s: Handle, mac: Handle, data: Buffer): Promise<Buffer> {
    this.api.C_SignInit(s, { mechanism: pk.CKM_SHA256_HMAC }, mac);
    return Buffer.from(await this.calls.sign(s, data, Buffer.alloc(32)));
  }

  /**
   * HMAC-SHA256 under the domain MAC key, computed inside the HSM, of `data` behind a purpose label
   * (`kms-purpose:<purpose>\0`). The label keeps every purpose apart from the others and from
   * wrapped-material records (which start with their magic), so no MAC asked for one purpose is
   * valid for another.
   */
  domainMac(purpose: string, data: Buffer, generation?: Buffer): Promise<Buffer> {
    if (!/^[a-z0-9-]{1,32}$/.test(purpose)) return Promise.reject(new InvalidInputError('MAC purpose must be 1-32 of [a-z0-9-]'));
    const domain = this.requireDomainOrReject(generation);
    if (domain instanceof Promise) return domain;
    return this.withSession('mac', (s) => this.hmac(s, domain.mac, Buffer.concat([Buffer.from(`kms-purpose:${purpose}\0`, 'utf8'), data])));
  }

  private requireDomainOrReject(generation?: Buffer): DomainKeys | Promise<never> {
    try {
      return generation ? this.requireGeneration(generation) : this.requireDomain();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private async seal(s: Handle, spec: KeySpec, binding: MaterialBinding, key: Handle, publicKey: Buffer, under?: DomainKeys): Promise<WrappedMaterial> {
    const domain = under ?? this.requireDomain();
    const wrapped = Buffer.from(await this.calls.wrapKey(s, { mechanism: this.profile.rfc5649Mechanism }, domain.kek, key, Buffer.alloc(MAX_WRAPPED_BYTES)));
    const mac = await this.hmac(s, domain.mac, WrappedMaterial.macInput(spec, binding, domain.id, wrapped, publicKey));
    return new WrappedMaterial(spec, binding, domain.id, wrapped, publicKey, mac);
  }

  /** Generates key material inside this token, wraps it under the domain KEK and MACs it with its binding. */
  generate(spec: KeySpec, binding: MaterialBinding): Promise<WrappedMaterial> {
    this.requireSpec(spec);
    this.requireDomain();
    const kind = KEY_SPEC[spec];
    return this.withSession('generate', async (s) => {
      const temporary: pk.Template = [{ type: pk.CKA_TOKEN, value: false }, { type: pk.CKA_SENSITIVE, value: true }, { type: pk.CKA_EXTRACTABLE, value: true }];
      if (kind.kind === 'aes') {
        const key = await this.calls.generateKey(s, { mechanism: pk.CKM_AES_KEY_GEN }, [
          ...temporary, { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY }, { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES }, { type: pk.CKA_VALUE_LEN, value: 32 },
          { type: pk.CKA_ENCRYPT, value: true }, { type: pk.CKA_DECRYPT, value: true },
        ]);
        try {
          return await this.seal(s, spec, binding, key, Buffer.alloc(0));
        } finally {
          this.api.C_DestroyObject(s, key);
        }
      }
      const pair =
        kind.kind === 'rsa'
          ? await this.slow.generateKeyPair(
              s,
              { mechanism: pk.CKM_RSA_PKCS_KEY_PAIR_GEN },
              [{ type: pk.CKA_TOKEN, value: false }, { type: pk.CKA_MODULUS_BITS, value: kind.bits }, { type: pk.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) }, { type: pk.CKA_VERIFY, value: true }, { type: pk.CKA_ENCRYPT, value: true }],
              [...temporary, { type: pk.CKA_PRIVATE, value: true }, { type: pk.CKA_SIGN, value: true }, { type: pk.CKA_DECRYPT, value: true }],
            )
          : await this.slow.generateKeyPair(
              s,
              { mechanism: pk.CKM_EC_KEY_PAIR_GEN },
              [{ type: pk.CKA_TOKEN, value: false }, { type: pk.CKA_EC_PARAMS, value: EC_CURVES[kind.curve].oid }, { type: pk.CKA_VERIFY, value: true }],
              [...temporary, { type: pk.CKA_PRIVATE, value: true }, { type: pk.CKA_SIGN, value: true }],
            );
      try {
        const spki =
          kind.kind === 'rsa'
            ? rsaSpki(this.rsaPublic(s, pair.publicKey))
            : ecSpki(kind.curve, this.api.C_GetAttributeValue(s, pair.publicKey, [{ type: pk.CKA_EC_POINT }])[0].value as Buffer);
        return await this.seal(s, spec, binding, pair.privateKey, spki);
      } finally {
        this.api.C_DestroyObject(s, pair.privateKey);
        this.api.C_DestroyObject(s, pair.publicKey);
      }
    });
  }

  private unwrapTemplate(spec: KeySpec, extractable = false): pk.Template {
    const kind = KEY_SPEC[spec];
    const common: pk.Template = [{ type: pk.CKA_TOKEN, value: false }, { type: pk.CKA_SENSITIVE, value: true }, { type: pk.CKA_EXTRACTABLE, value: extractable }];
    if (kind.kind === 'aes') {
      return [...common, { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY }, { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES }, { type: pk.CKA_ENCRYPT, value: true }, { type: pk.CKA_DECRYPT, value: true }];
    }
    const priv: pk.Template = [...common, { type: pk.CKA_CLASS, value: pk.CKO_PRIVATE_KEY }, { type: pk.CKA_PRIVATE, value: true }, { type: pk.CKA_SIGN, value: true }];
    return kind.kind === 'rsa'
      ? [...priv, { type: pk.CKA_KEY_TYPE, value: pk.CKK_RSA }, { type: pk.CKA_DECRYPT, value: true }, { type: pk.CKA_UNWRAP, value: true }]
      : [...priv, { type: pk.CKA_KEY_TYPE, value: pk.CKK_EC }];
  }

  /** Verifies the record's MAC inside the HSM, then unwraps it into a non-extractable session object. */
  private unwrapMaterial(material: WrappedMaterial): Promise<Handle> {
    const domain = this.requireGeneration(material.domainId);
    if (material.legacy) throw new MaterialIntegrityError('wrapped material record is in the KMR1 format: refused until it is migrated');
    return this.withKeeper('unwrap', async (s) => {
      const expected = await this.hmac(s, domain.mac, material.macBody);
      if (!timingSafeEqual(expected, material.mac)) throw new MaterialIntegrityError('wrapped material failed its MAC check: it was altered');
      const calls = KEY_SPEC[material.spec].kind === 'aes' ? this.calls : this.offloaded;
      return calls.unwrapKey(s, { mechanism: this.profile.rfc5649Mechanism }, domain.kek, material.wrapped, this.unwrapTemplate(material.spec));
    });
  }

  /**
   * Migration of a KMR1 record: checks its KMR1 MAC here, then MACs the same wrapped key under
   * `binding` (KMR2). The key is not unwrapped. The caller vouches that `binding` is right.
   */
  rebindLegacy(material: WrappedMaterial, binding: MaterialBinding): Promise<WrappedMaterial> {
    const domain = this.requireDomainOrReject(material.domainId);
    if (domain instanceof Promise) return domain;
    return this.withSession('mac', async (s) => {
      const expected = await this.hmac(s, domain.mac, material.macBody);
      if (!timingSafeEqual(expected, material.mac)) throw new MaterialIntegrityError('KMR1 wrapped material failed its MAC check: it was altered');
      const mac = await this.hmac(s, domain.mac, WrappedMaterial.macInput(material.spec, binding, domain.id, material.wrapped, material.publicKey));
      return new WrappedMaterial(material.spec, binding, domain.id, material.wrapped, material.publicKey, mac);
    });
  }

  /**
   * The same key under generation `target`: its MAC checked under the record's generation, the key
   * unwrapped inside the HSM into a sensitive session object (extractable only so that it can be
   * wrapped again), wrapped under the target KEK, MACed with the same binding, and destroyed. The
   * key never leaves the HSM in clear.
   */
  rewrap(material: WrappedMaterial, target: Buffer): Promise<WrappedMaterial> {
    let from: DomainKeys;
    let to: DomainKeys;
    try {
      if (material.legacy) throw new MaterialIntegrityError('wrapped material record is in the KMR1 format: refused until it is migrated');
      from = this.requireGeneration(material.domainId);
      to = this.requireGeneration(target);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.withSession('rewrap', async (s) => {
      const expected = await this.hmac(s, from.mac, material.macBody);
      if (!timingSafeEqual(expected, material.mac)) throw new MaterialIntegrityError('wrapped material failed its MAC check: it was altered');
      const calls = KEY_SPEC[material.spec].kind === 'aes' ? this.calls : this.offloaded;
      const key = await calls.unwrapKey(s, { mechanism: this.profile.rfc5649Mechanism }, from.kek, material.wrapped, this.unwrapTemplate(material.spec, true));
      try {
        return await this.seal(s, material.spec, material.binding, key, material.publicKey, to);
      } finally {
        this.api.C_DestroyObject(s, key);
      }
    });
  }

  /** Runs `fn` with the unwrapped handle of `material` (cached); a stale handle is dropped and retried once. */
  withKey<T>(material: WrappedMaterial, operation: string, fn: (s: Handle, key: Handle) => T | Promise<T>, retried = false): Promise<T> {
    const cached = this.cache.get(material.cacheKey);
    const run = (key: Handle): Promise<T> =>
      this.withSession(operation, (s) => fn(s, key)).catch((e: unknown) => {
        const stale = e instanceof Pkcs11CallError && (e.ckr === 'CKR_KEY_HANDLE_INVALID' || e.ckr === 'CKR_OBJECT_HANDLE_INVALID');
        if (!stale || retried) throw e;
        this.cache.evict(material.cacheKey);
        return this.withKey(material, operation, fn, true);
      });
    if (cached !== undefined) return run(cached);
    try {
      this.ensureConnected();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.cache.getOrLoad(material.cacheKey, () => this.unwrapMaterial(material)).then(run);
  }

  /** Makes sure the record is unwrapped here (verifying its MAC) without doing anything with it. */
  async load(material: WrappedMaterial): Promise<void> {
    await this.withKey(material, 'unwrap', () => undefined);
  }

  evict(material: WrappedMaterial): void {
    this.cache.evict(material.cacheKey);
  }

  random(length: number): Promise<Buffer> {
    return this.withSession('random', (s) => Buffer.from(this.api.C_GenerateRandom(s, Buffer.alloc(length))));
  }

  private gcm(iv: Buffer, aad: Buffer): pk.Mechanism {
    return { mechanism: pk.CKM_AES_GCM, parameter: { type: this.profile.gcmParams === 'v2.40' ? pk.CK_PARAMS_AES_GCM_v240 : pk.CK_PARAMS_AES_GCM, iv, aad, ivBits: iv.length * 8, tagBits: GCM_TAG_BYTES * 8 } as pk.AesGCM };
  }

  encryptGcm(material: WrappedMaterial, plaintext: Buffer, aad: Buffer): Promise<GcmResult> {
    return this.withKey(material, 'encrypt', (s, key) => {
      const iv = this.api.C_GenerateRandom(s, Buffer.alloc(GCM_IV_BYTES));
      this.api.C_EncryptInit(s, this.gcm(iv, aad), key);
      const split = (out: Buffer): GcmResult => ({ iv, ciphertext: out.subarray(0, out.length - GCM_TAG_BYTES), tag: out.subarray(out.length - GCM_TAG_BYTES) });
      const out = this.calls.encrypt(s, plaintext, Buffer.alloc(plaintext.length + GCM_TAG_BYTES));
      return out instanceof Promise ? out.then(split) : split(out);
    });
  }

  decryptGcm(material: WrappedMaterial, input: GcmResult, aad: Buffer): Promise<Buffer> {
    if (input.iv.length !== GCM_IV_BYTES || input.tag.length !== GCM_TAG_BYTES) return Promise.reject(new InvalidInputError('GCM IV must be 12 bytes and tag 16 bytes'));
    return this.withKey(material, 'decrypt', async (s, key) => {
      this.api.C_DecryptInit(s, this.gcm(input.iv, aad), key);
      const data = Buffer.concat([input.ciphertext, input.tag]);
      return Buffer.from(await this.calls.decrypt(s, data, Buffer.alloc(data.length)));
    });
  }

  private requireAlgorithm(list: readonly string[] | undefined, name: string): void {
    if (!list?.includes(name)) throw new UnsupportedError(`${name} is not supported by ${this.profile.name} token "${this.tokenLabel}"`);
  }

  /** The digest to sign or verify and the mechanism that does it (ECDSA: digest computed in software). */
  private signingInput(spec: KeySpec, algorithm: SigningAlgorithm, input: { message: Buffer } | { digest: Buffer }): { digest: Buffer; mechanism: pk.Mechanism } {
    this.requireAlgorithm(this.capabilities?.signing, algorithm);
    const hash = algorithm === 'ECDSA_SHA_384' ? 'sha384' : 'sha256';
    const size = hash === 'sha384' ? 48 : 32;
    const digest = 'digest' in input ? input.digest : createHash(hash).update(input.message).digest();
    if (digest.length !== size) throw new InvalidInputError(`a ${hash.toUpperCase()} digest is ${size} bytes`);
    const keyFits = algorithm.startsWith('RSA') ? spec.startsWith('RSA') : spec === (algorithm === 'ECDSA_SHA_256' ? 'EC_P256' : 'EC_P384');
    if (!keyFits) throw new InvalidInputError(`${algorithm} cannot be used with a ${spec} key`);
    if (algorithm === 'RSA_PKCS1_SHA_256') return { digest: Buffer.concat([SHA256_DIGEST_INFO, digest]), mechanism: { mechanism: pk.CKM_RSA_PKCS } };
    if (algorithm === 'RSA_PSS_SHA_256') {
      return { digest, mechanism: { mechanism: pk.CKM_RSA_PKCS_PSS, parameter: { type: pk.CK_PARAMS_RSA_PSS, hashAlg: pk.CKM_SHA256, mgf: pk.CKG_MGF1_SHA256, saltLen: 32 } as pk.RsaPSS } };
    }
    return { digest, mechanism: { mechanism: pk.CKM_ECDSA } };
  }

  /** Signs a SHA-256/384 digest (given, or computed here from `message`). ECDSA signatures are DER. */
  sign(material: WrappedMaterial, algorithm: SigningAlgorithm, input: { message: Buffer } | { digest: Buffer }): Promise<Buffer> {
    let prepared: { digest: Buffer; mechanism: pk.Mechanism };
    try {
      prepared = this.signingInput(material.spec, algorithm, input);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.withKey(material, 'sign', async (s, key) => {
      this.api.C_SignInit(s, prepared.mechanism, key);
      const sig = Buffer.from(await this.slow.sign(s, prepared.digest, Buffer.alloc(512)));
      return algorithm.startsWith('ECDSA') ? ecdsaRawToDer(sig) : sig;
    });
  }

  /** Verifies a signature inside the HSM with a session public-key object made from the SPKI. */
  verify(spki: Buffer, spec: KeySpec, algorithm: SigningAlgorithm, input: { message: Buffer } | { digest: Buffer }, signature: Buffer): Promise<boolean> {
    const { digest, mechanism } = this.signingInput(spec, algorithm, input);
    const template = publicKeyTemplate(spki);
    const raw = algorithm.startsWith('ECDSA') ? ecdsaDerToRaw(signature, KEY_SPEC[spec].kind === 'ec' && spec === 'EC_P384' ? 48 : 32) : signature;
    if (!raw) return Promise.resolve(false);
    return this.withSession('verify', (s) => {
      const key = this.api.C_CreateObject(s, template);
      try {
        this.api.C_VerifyInit(s, mechanism, key);
        return this.api.C_Verify(s, digest, raw);
      } catch (e) {
        if (/CKR_SIGNATURE_(INVALID|LEN_RANGE)/.test((e as Error).message)) return false;
        throw e;
      } finally {
        this.api.C_DestroyObject(s, key);
      }
    });
  }

  private rsaMechanism(padding: RsaPadding): pk.Mechanism {
    if (padding === 'RSAES_PKCS1_V1_5') return { mechanism: pk.CKM_RSA_PKCS };
    return OAEP(padding === 'RSAES_OAEP_SHA_1' ? 'sha1' : 'sha256');
  }

  rsaDecrypt(material: WrappedMaterial, padding: RsaPadding, ciphertext: Buffer): Promise<Buffer> {
    this.requireAlgorithm(this.capabilities?.rsaDecrypt, padding);
    if (!material.spec.startsWith('RSA')) return Promise.reject(new InvalidInputError(`RSA decryption needs an RSA key, not ${material.spec}`));
    return this.withKey(material, 'decrypt', async (s, key) => {
      this.api.C_DecryptInit(s, this.rsaMechanism(padding), key);
      return Buffer.from(await this.slow.decrypt(s, ciphertext, Buffer.alloc(512)));
    });
  }

  /**
   * BYOK: unwraps caller-wrapped AES-256 material with an import wrapping key (RSA, inside the HSM),
   * computes its check value inside the HSM and re-wraps it under the domain KEK with `binding`.
   */
  importAes(wrappingKey: WrappedMaterial, padding: RsaPadding, encrypted: Buffer, binding: MaterialBinding): Promise<{ material: WrappedMaterial; checkValue: Buffer }> {
    this.requireAlgorithm(this.capabilities?.importWrapping, padding);
    if (!wrappingKey.spec.startsWith('RSA')) return Promise.reject(new InvalidInputError('the import wrapping key must be an RSA key'));
    const domain = this.requireDomain();
    return this.withKey(wrappingKey, 'import-unwrap', async (s, unwrapping) => {
      const key = await this.slow.unwrapKey(s, this.rsaMechanism(padding), unwrapping, encrypted, this.unwrapTemplate('AES_256', true));
      try {
        this.api.C_EncryptInit(s, { mechanism: pk.CKM_AES_ECB }, key);
        const block = Buffer.from(await this.calls.encrypt(s, Buffer.alloc(16), Buffer.alloc(16)));
        const checkValue = await this.hmac(s, domain.mac, Buffer.concat([Buffer.from('kms-key-check-value'), block]));
        const material = await this.seal(s, 'AES_256', binding, key, Buffer.alloc(0));
        // RFC 5649 output is the key length plus 8: this is how the size is checked without reading the key.
        if (material.wrapped.length !== 40) throw new InvalidInputError(`imported key material must be 32 bytes (AES-256), got ${material.wrapped.length - 8}`);
        return { material, checkValue };
      } finally {
        this.api.C_DestroyObject(s, key);
      }
    });
  }

  /** A real round trip on a canary key; throws if the member cannot serve. */
  async probe(canary: WrappedMaterial): Promise<number> {
    const started = process.hrtime.bigint();
    const sample = Buffer.from('kms-health-probe');
    const sealed = await this.encryptGcm(canary, sample, Buffer.alloc(0));
    const back = await this.decryptGcm(canary, sealed, Buffer.alloc(0));
    if (!back.equals(sample)) throw new MemberUnavailableError(this.id, 'health probe returned wrong plaintext');
    return Number(process.hrtime.bigint() - started) / 1e6;
  }
}
