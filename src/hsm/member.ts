import type * as pk from 'pkcs11js';
import { Capabilities, deriveCapabilities, KeySpec, MechanismFacts, RsaPadding, SigningAlgorithm } from './capabilities';
import { MemberConnection, MemberState } from './connection';
import { isStaleHandle } from './errors';
import { DomainKeys, ExportedDomainKeys, MemberDomainKeys, TransportKey } from './domain-keys';
import type { MemberOperation } from './error-classes';
import type { MaterialBinding, WrappedMaterial } from './material';
import { ModuleSpec, openModule, Pkcs11Module, TokenSlot } from './module';
import { GcmResult, MemberOperations } from './operations';
import { callSet } from './pkcs11-call';
import type { HsmProfile, WrapAlgorithm } from './profile';
import { MemberSealing } from './sealing';
import { MemberSessions, OperationEvent } from './sessions';
import { templateCalls, TemplateCalls } from './template-attributes';
import { slowLane } from './thread-lane';

export type { MemberState } from './connection';
export type { DomainKeys } from './domain-keys';
export type { GcmResult } from './operations';
export { DOMAIN_KEK_LABEL, DOMAIN_MAC_LABEL } from './templates';

type Handle = pk.Handle;

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

/**
 * One token of one PKCS#11 module, put together from its parts: the connection (login, recovery),
 * its sessions, its domain keys, the sealing of records and the operations on them. Knows nothing
 * of CMKs: it works on wrapped material records. Every operation returns a promise and never throws.
 */
export class HsmMember {
  readonly id: string;
  readonly profile: HsmProfile;
  readonly module: Pkcs11Module;
  capabilities: Capabilities | undefined;
  private readonly connection: MemberConnection;
  private readonly session: MemberSessions;
  private readonly domainKeys: MemberDomainKeys;
  private readonly sealing: MemberSealing;
  private readonly ops: MemberOperations;

  constructor(private readonly options: MemberOptions) {
    this.id = options.id;
    this.profile = options.profile;
    this.module = openModule({
      ...options.module,
      libraryParameters: options.module.libraryParameters ?? options.profile.libraryParameters?.replace('{dir}', options.moduleDir ?? ''),
    });
    const api = (): pk.PKCS11 => this.module.api;
    const calls = callSet(this.module, options.profile.callMode, slowLane, options.id, options.profile.slowOperations);
    this.connection = new MemberConnection(this.module, options, { connected: (t, k) => this.connected(t, k), dropped: (r) => this.dropped(r) });
    this.session = new MemberSessions(this.connection, options.profile, options);
    // nested templates reach the real library only (a fake one injected by unit tests has none)
    const templates =
      options.profile.unwrapTemplate && !options.module.library ? (): TemplateCalls => templateCalls(this.module.spec.path) : (): undefined => undefined;
    this.domainKeys = new MemberDomainKeys(this, this.session, calls, api, templates);
    this.sealing = new MemberSealing(options.tokenLabel, options.profile, this.session, this.domainKeys, calls, api, options);
    this.ops = new MemberOperations(this, this.session, this.sealing, calls, api);
  }

  private connected(token: TokenSlot, keeper: Handle): void {
    this.sealing.clear(false);
    this.session.attach(token.maxSessions, keeper);
    this.capabilities = deriveCapabilities(this.readMechanisms(), this.profile);
    this.domainKeys.refresh(keeper);
  }

  private dropped(reason: string): void {
    this.sealing.clear(false);
    this.session.detach(reason);
  }

  private readMechanisms(): Map<number, MechanismFacts> {
    const api = this.module.api;
    const out = new Map<number, MechanismFacts>();
    for (const mech of api.C_GetMechanismList(this.connection.slot)) {
      const info = api.C_GetMechanismInfo(this.connection.slot, mech);
      out.set(mech, { flags: info.flags, minKeySize: info.minKeySize, maxKeySize: info.maxKeySize });
    }
    return out;
  }

  // ---- connection and health facts -------------------------------------------------------------

  get tokenLabel(): string {
    return this.options.tokenLabel;
  }

  get state(): MemberState {
    return this.connection.state;
  }

  get lastError(): string {
    return this.connection.lastError;
  }

  get resets(): number {
    return this.connection.resets;
  }

  /** The cluster's health monitor (member-health.ts) grades a connected member; UNAVAILABLE is only fail()'s and close()'s. */
  grade(state: 'ACTIVE' | 'DEGRADED'): void {
    if (this.connection.state !== 'UNAVAILABLE') this.connection.state = state;
  }

  get recentErrors(): number {
    return this.session.recentErrors;
  }

  set recentErrors(n: number) {
    this.session.recentErrors = n;
  }

  get operations(): number {
    return this.session.operations;
  }

  get onOperation(): ((e: OperationEvent) => void) | undefined {
    return this.session.onOperation;
  }

  set onOperation(fn: ((e: OperationEvent) => void) | undefined) {
    this.session.onOperation = fn;
  }

  get sessions(): { open: number; busy: number; cap: number; waiting: number } {
    return this.session.stats;
  }

  get cachedHandles(): number {
    return this.sealing.cachedHandles;
  }

  /** Initialises the module if needed, finds the token, logs in, reads capabilities and domain keys. */
  connect(): void {
    this.connection.connect();
  }

  close(): void {
    this.connection.close(() => this.sealing.clear(true));
  }

  /** Marks the member failed and starts re-initialising its module with exponential backoff. */
  fail(reason: string): void {
    this.connection.fail(reason);
  }

  /** Runs `fn` on a pooled session; failures are classified and handled as the profile says. */
  withSession<T>(operation: MemberOperation, fn: (s: Handle) => T | Promise<T>): Promise<T> {
    return this.session.withSession(operation, fn);
  }

  // ---- domain keys and the ceremony ------------------------------------------------------------

  /** The keys of the cluster's current generation (or of the token's only one when the cluster named none). */
  get domain(): DomainKeys | undefined {
    return this.domainKeys.keys;
  }

  get domainProblem(): string | undefined {
    return this.domainKeys.problem;
  }

  /** Every complete generation on the token, by id (hex), as last read. */
  get generations(): ReadonlyMap<string, DomainKeys> {
    return this.domainKeys.generations;
  }

  /** Generations (hex) of which the token holds a broken set (a copy interrupted half-way). */
  get brokenGenerations(): ReadonlySet<string> {
    return this.domainKeys.broken;
  }

  get currentGeneration(): Buffer | undefined {
    return this.domainKeys.current;
  }

  /** Set by the cluster (from the store): new material is sealed under it. */
  set currentGeneration(generation: Buffer | undefined) {
    this.domainKeys.current = generation;
  }

  holds(generation: Buffer): boolean {
    return this.domainKeys.holds(generation);
  }

  /** Reads the token's generations again (another process may have made or destroyed one). */
  refreshGenerations(): Promise<void> {
    return this.domainKeys.reread();
  }

  /** Removes the domain keys of `generation`, or without it of every generation. */
  removeDomainKeys(generation?: Buffer): Promise<void> {
    return this.domainKeys.remove(generation);
  }

  /** `wrapWithTrusted` defaults to the profile's: copies then need the sending token's SO (ceremony.ts). */
  generateDomainKeys(id: Buffer, wrapWithTrusted?: boolean): Promise<DomainKeys> {
    return this.domainKeys.generate(id, wrapWithTrusted);
  }

  createTransportKey(): Promise<TransportKey> {
    return this.domainKeys.createTransportKey();
  }

  /** Wraps the domain keys (of `generation`, else the current ones) under a transport key; `via.trusted` is that key made CKA_TRUSTED by trustTransportKeys. */
  exportDomainKeys(modulus: Buffer, exponent: Buffer, generation?: Buffer, via: { trusted?: Handle } = {}): Promise<ExportedDomainKeys> {
    return this.domainKeys.export(modulus, exponent, generation, via.trusted);
  }

  /** Whether every domain-key object of the token is non-extractable; undefined without domain keys. */
  get domainLocked(): boolean | undefined {
    return this.domainKeys.locked;
  }

  /** Non-extractable but still modifiable where the profile's lock seals them: locked by an older version, `kmsctl cluster lock` finishes it. */
  get domainLockUnfinished(): boolean {
    return this.domainKeys.lockUnfinished;
  }

  /** Sets CKA_EXTRACTABLE=false on every domain-key object and reads it back; true if anything changed. */
  lockDomainKeys(): Promise<boolean> {
    return this.domainKeys.lock();
  }

  /** The ceremony's one Security Officer login on this (sending) token: marks the transport keys CKA_TRUSTED. */
  trustTransportKeys(soPin: string, transports: readonly { modulus: Buffer; exponent: Buffer }[]): Promise<Handle[]> {
    return this.asSecurityOfficer(soPin, (so) => this.domainKeys.trustTransportKeys(so, transports));
  }

  /**
   * The SO login logs the user of this process out of this token; SoftHSM2 then invalidates
   * private-object handles and destroys private session objects, so cached unwrapped keys are
   * dropped and the domain keys found again, whatever happened.
   */
  private asSecurityOfficer<T>(soPin: string, fn: (so: Handle) => T): Promise<T> {
    return this.session.withKeeper('login', (s) => {
      try {
        return this.connection.asSecurityOfficer(s, soPin, fn);
      } finally {
        this.sealing.clear(false);
        if (this.connection.state !== 'UNAVAILABLE') this.domainKeys.refresh(s);
      }
    });
  }

  /** Whether the current generation's KEK has CKA_UNWRAP_TEMPLATE on this token; undefined without domain keys. */
  get domainUnwrapTemplate(): boolean | undefined {
    return this.domainKeys.keys?.unwrapTemplate;
  }

  /** Whether generation `generation`'s KEK has CKA_UNWRAP_TEMPLATE here (its re-wrap then needs the SO-trusted key). */
  unwrapTemplateOn(generation: Buffer): boolean {
    return this.domainKeys.generations.get(generation.toString('hex'))?.unwrapTemplate === true;
  }

  /** rotate-domain: one SO login makes the trusted session key the re-wrap of templated records goes through (kept until dropRewrapKey). */
  async trustRewrapKey(soPin: string): Promise<void> {
    this.dropRewrapKey();
    const key = await this.asSecurityOfficer(soPin, (so) => this.domainKeys.trustedRewrapKey(so));
    this.sealing.rewrapKey = key;
  }

  /** Destroys the re-wrap key (the end of a walk); best effort, it dies with the process anyway. */
  dropRewrapKey(): void {
    const key = this.sealing.rewrapKey;
    this.sealing.rewrapKey = undefined;
    if (key !== undefined) this.session.destroyObject(key);
  }

  importDomainKeys(transport: { privateKey: Handle; publicKey: Handle }, wrapped: ExportedDomainKeys): Promise<DomainKeys> {
    return this.domainKeys.import(transport, wrapped);
  }

  domainFingerprint(algorithm: WrapAlgorithm, generation?: Buffer): Promise<Buffer> {
    return this.domainKeys.fingerprint(algorithm, generation);
  }

  /** HMAC-SHA256 for `purpose` under the MAC key of `generation`, else of the current one. */
  domainMac(purpose: string, data: Buffer, generation?: Buffer): Promise<Buffer> {
    return this.fresh(() => this.domainKeys.mac(purpose, data, generation));
  }

  /**
   * `op`, and once more after the domain keys are found again by label and CKA_ID, if it met a
   * stale object handle: `kmsctl cluster lock` (another process) replaces each domain key by a
   * sealed copy and destroys the original, so the handles this member found at login go invalid.
   */
  private fresh<T>(op: () => Promise<T>): Promise<T> {
    const run = (): Promise<T> => {
      try {
        return op();
      } catch (e) {
        return Promise.reject(e);
      }
    };
    return run().catch(async (e: unknown) => {
      if (!isStaleHandle(e) || this.domainKeys.generations.size === 0) throw e;
      await this.domainKeys.reread();
      return run();
    });
  }

  // ---- sealed material -------------------------------------------------------------------------

  rebindLegacy(material: WrappedMaterial, binding: MaterialBinding): Promise<WrappedMaterial> {
    return this.fresh(() => this.sealing.rebindLegacy(material, binding));
  }

  /** The record re-wrapped under generation `target` inside this member (see MemberSealing.rewrap). */
  rewrap(material: WrappedMaterial, target: Buffer): Promise<WrappedMaterial> {
    return this.fresh(() => this.sealing.rewrap(material, target));
  }

  /** Runs `fn` on a pooled session with the unwrapped (cached) handle of `material`. */
  withKey<T>(material: WrappedMaterial, operation: MemberOperation, fn: (s: Handle, key: Handle) => T | Promise<T>): Promise<T> {
    return this.fresh(() => this.sealing.withKey(material, operation, fn));
  }

  /** Makes sure the record is unwrapped here (verifying its MAC) without doing anything with it. */
  async load(material: WrappedMaterial): Promise<void> {
    await this.withKey(material, 'unwrap', () => undefined);
  }

  evict(material: WrappedMaterial): void {
    this.sealing.evict(material);
  }

  // ---- operations ------------------------------------------------------------------------------

  /** `wrap`: the cluster's common wrap algorithm (default: this member's first). */
  generate(spec: KeySpec, binding: MaterialBinding, wrap?: WrapAlgorithm): Promise<WrappedMaterial> {
    return this.fresh(() => this.ops.generate(spec, binding, wrap));
  }

  random(length: number): Promise<Buffer> {
    return this.ops.random(length);
  }

  encryptGcm(material: WrappedMaterial, plaintext: Buffer, aad: Buffer): Promise<GcmResult> {
    return this.fresh(() => this.ops.encryptGcm(material, plaintext, aad));
  }

  decryptGcm(material: WrappedMaterial, input: GcmResult, aad: Buffer): Promise<Buffer> {
    return this.fresh(() => this.ops.decryptGcm(material, input, aad));
  }

  sign(material: WrappedMaterial, algorithm: SigningAlgorithm, input: { message: Buffer } | { digest: Buffer }): Promise<Buffer> {
    return this.fresh(() => this.ops.sign(material, algorithm, input));
  }

  verify(spki: Buffer, spec: KeySpec, algorithm: SigningAlgorithm, input: { message: Buffer } | { digest: Buffer }, signature: Buffer): Promise<boolean> {
    return this.ops.verify(spki, spec, algorithm, input, signature);
  }

  rsaDecrypt(material: WrappedMaterial, padding: RsaPadding, ciphertext: Buffer): Promise<Buffer> {
    return this.fresh(() => this.ops.rsaDecrypt(material, padding, ciphertext));
  }

  importAes(
    wrappingKey: WrappedMaterial,
    padding: RsaPadding,
    encrypted: Buffer,
    binding: MaterialBinding,
    wrap?: WrapAlgorithm,
  ): Promise<{ material: WrappedMaterial; checkValue: Buffer }> {
    return this.fresh(() => this.ops.importAes(wrappingKey, padding, encrypted, binding, wrap));
  }

  probe(canary: WrappedMaterial | undefined): Promise<number> {
    return this.fresh(() => this.ops.probe(canary));
  }
}
