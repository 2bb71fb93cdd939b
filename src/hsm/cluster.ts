import { timingSafeEqual } from 'node:crypto';
import { Capabilities, intersectCapabilities, KeySpec, RsaPadding, SigningAlgorithm } from './capabilities';
import { DomainKeyError, MaterialIntegrityError, UnsupportedError } from './errors';
import { MaterialBinding, sameBinding, WrappedMaterial } from './material';
export type { CeremonyOptions, CeremonyResult, LockResult, SoPinProvider, SoPinRequest } from './ceremony';
import {
  addMember,
  CeremonyOptions,
  CeremonyResult,
  destroyGeneration,
  initDomain,
  lockDomain,
  LockResult,
  newGeneration,
  type SoPinProvider,
  templatedOn,
  trustRewrapKeys,
} from './ceremony';
import { ClusterHealth, ClusterKind, clusterState, memberHealth, protectionWarnings } from './cluster-health';
export type { ClusterHealth, ClusterKind, MemberHealth } from './cluster-health';
import { GcmResult, HsmMember } from './member';
import { Canary, ClusterHealthMonitor, DEFAULT_HEALTH_POLICY, HealthPolicy } from './member-health';
import type { WrapAlgorithm } from './profile';
import { MemberRouter } from './routing';
import { verifyInSoftware } from './signature';
import { SlowQueue, SlowQueueLimits } from './slow-queue';
import { slowLane } from './thread-lane';

export interface ClusterOptions {
  id: string;
  kind: ClusterKind;
  /** Tenant ids owning a dedicated cluster; empty for the shared pool. */
  owners: string[];
  members: HsmMember[];
  /** How long a member's probe result is reused. */
  probeCacheMs?: number;
  /** A probe slower than this marks the member DEGRADED. */
  degradedLatencyMs?: number;
  /** Session- or device-level errors since the last good probe that make a member DEGRADED. */
  degradedErrors?: number;
  /** Background probes this often; 0: only when health() is asked. */
  probeIntervalMs?: number;
  /** The bounded queue in front of slow operations (see SlowQueue). */
  slowQueue?: Partial<SlowQueueLimits>;
}

/** Slow operations admitted at once per cluster: enough to keep the process's lane busy. */
export const DEFAULT_SLOW_RUNNING = Math.max(2, 2 * slowLane.places);
export const DEFAULT_SLOW_QUEUED = 32;

const CANARY_BINDING = (clusterId: string): MaterialBinding => ({
  clusterId,
  keyId: 'kms-health-canary',
  keyVersion: 0,
  usage: 'HEALTH_PROBE',
  owner: 'kms-health',
});

/**
 * A pool of HSM members that hold the same domain keys. Any healthy member serves any key (ACTIVE
 * ones first, DEGRADED ones only when no member is ACTIVE); an operation that meets a failure of
 * the member (device or session level) is retried once on another. Slow operations queue in the
 * cluster's bounded SlowQueue. Nothing here is shared with other clusters.
 */
export class HsmCluster {
  readonly id: string;
  readonly kind: ClusterKind;
  readonly owners: readonly string[];
  readonly members: readonly HsmMember[];
  /** Slow operations (key-pair generation, signing, RSA decryption, import unwrap) pass through it. */
  readonly slow: SlowQueue;
  /** The one judge of the members' health: routing and health() read the state it sets. */
  readonly monitor: ClusterHealthMonitor;
  private readonly router: MemberRouter;
  private canary: Promise<WrappedMaterial | undefined> | undefined;
  private current: Buffer | undefined;

  constructor(options: ClusterOptions) {
    if (options.members.length === 0) throw new DomainKeyError(`cluster ${options.id} has no members`);
    this.id = options.id;
    this.kind = options.kind;
    this.owners = options.owners;
    this.members = options.members;
    this.slow = new SlowQueue(options.id, {
      running: options.slowQueue?.running ?? DEFAULT_SLOW_RUNNING,
      queued: options.slowQueue?.queued ?? DEFAULT_SLOW_QUEUED,
    });
    const policy: HealthPolicy = {
      degradedErrors: options.degradedErrors ?? DEFAULT_HEALTH_POLICY.degradedErrors,
      degradedLatencyMs: options.degradedLatencyMs ?? DEFAULT_HEALTH_POLICY.degradedLatencyMs,
      probeCacheMs: options.probeCacheMs ?? DEFAULT_HEALTH_POLICY.probeCacheMs,
      probeIntervalMs: options.probeIntervalMs ?? DEFAULT_HEALTH_POLICY.probeIntervalMs,
    };
    this.monitor = new ClusterHealthMonitor(options.members, policy, () => this.canaryKey());
    this.router = new MemberRouter(this.id, this.members, this.monitor, () => this.refreshGenerations());
  }

  /** Connects every member (members that cannot connect start recovering in the background) and starts the probes. */
  start(): void {
    for (const m of this.members) {
      try {
        m.connect();
      } catch (e) {
        m.fail((e as Error).message);
      }
    }
    const holders = this.members.filter((m) => m.generations.size > 0);
    const shared = (a: HsmMember, b: HsmMember) => [...a.generations.keys()].some((g) => b.generations.has(g));
    // mid-rotation, members may hold one generation more or less; none in common means another domain
    if (holders.some((a) => holders.some((b) => !shared(a, b))))
      throw new DomainKeyError(`members of cluster ${this.id} hold different domain keys: run the ceremony again or fix the configuration`);
    this.monitor.start();
  }

  /** The generation new material is sealed under: the one the store names, else the only one the tokens hold. */
  get currentGeneration(): Buffer | undefined {
    if (this.current) return this.current;
    const held = this.heldGenerations();
    return held.length === 1 ? held[0] : undefined;
  }

  /** Every generation some member holds (as last read from the tokens). */
  heldGenerations(): Buffer[] {
    const ids = new Set(this.members.flatMap((m) => [...m.generations.keys()]));
    return [...ids].map((id) => Buffer.from(id, 'hex'));
  }

  holdsGeneration(generation: Buffer): boolean {
    return this.members.some((m) => m.holds(generation));
  }

  /** Reads every reachable member's generations again (another process may have made or destroyed one). */
  async refreshGenerations(): Promise<void> {
    await Promise.all(this.members.filter((m) => m.state !== 'UNAVAILABLE').map((m) => m.refreshGenerations().catch(() => undefined)));
  }

  /** From now on new material is sealed under `generation` (members that do not hold it yet serve only older records). */
  async useGeneration(generation: Buffer): Promise<void> {
    if (this.current?.equals(generation)) return;
    if (this.members.some((m) => m.state !== 'UNAVAILABLE' && !m.holds(generation))) await this.refreshGenerations();
    if (!this.holdsGeneration(generation)) throw new DomainKeyError(`no member of cluster ${this.id} holds domain generation ${generation.toString('hex')}`);
    this.current = Buffer.from(generation);
    for (const m of this.members) m.currentGeneration = this.current;
    this.canary = undefined;
    this.invalidateProbes();
  }

  close(): void {
    this.monitor.stop();
    for (const m of this.members) m.close();
  }

  /** What every member can do (members never connected count as unknown and are skipped). */
  get capabilities(): Capabilities {
    return intersectCapabilities(this.members.flatMap((m) => (m.capabilities ? [m.capabilities] : [])));
  }

  /**
   * Runs `op` on a healthy member holding `generation` (a record's; else the current one) and
   * `also`, retried once on another member when the failure is the member's (see MemberRouter).
   */
  run<T>(op: (m: HsmMember) => Promise<T>, generation?: Buffer, also?: Buffer): Promise<T> {
    return this.router.run(op, generation, also);
  }

  /** Runs the synchronous checks of an operation, then `go`; a failed check is a rejection, never a throw. */
  private checked<T>(checks: () => void, go: () => Promise<T>): Promise<T> {
    try {
      checks();
    } catch (e) {
      return Promise.reject(e);
    }
    return go();
  }

  private check(material: WrappedMaterial, expected: MaterialBinding): void {
    if (expected.clusterId !== this.id) throw new MaterialIntegrityError(`key material of cluster ${expected.clusterId} cannot be used on cluster ${this.id}`);
    material.assertBinding(expected);
  }

  private checkBinding(binding: MaterialBinding): void {
    if (binding.clusterId !== this.id) throw new MaterialIntegrityError(`binding names cluster ${binding.clusterId}, not ${this.id}`);
  }

  /** Refuses what not every member can do, naming the cluster's limit. */
  private require(list: readonly string[], name: string): void {
    if (!list.includes(name)) throw new UnsupportedError(`${name} is not supported by every HSM of cluster ${this.id} (offered: ${list.join(', ') || 'none'})`);
  }

  /** The wrap algorithm every member has (material made on one member must unwrap on any other). */
  private wrapAlgorithm(): WrapAlgorithm {
    const common = this.capabilities.wrapAlgorithms[0];
    if (!common) {
      const each = this.members.map((m) => `${m.id}: ${m.capabilities?.wrapAlgorithms.join(', ') || 'none'}`).join('; ');
      throw new UnsupportedError(`the HSMs of cluster ${this.id} share no key-wrap mechanism (${each}): no key material can be made`);
    }
    return common;
  }

  /** AES keys are quick; key pairs wait their turn in the slow queue. */
  generate(spec: KeySpec, binding: MaterialBinding): Promise<WrappedMaterial> {
    let wrap: WrapAlgorithm | undefined;
    return this.checked(
      () => {
        this.require(this.capabilities.keySpecs, spec);
        this.checkBinding(binding);
        wrap = this.wrapAlgorithm();
      },
      () => {
        const go = () => this.run((m) => m.generate(spec, binding, wrap));
        return spec === 'AES_256' ? go() : this.slow.run(go);
      },
    );
  }

  /** Hot path: the check inline, one closure. */
  encrypt(material: WrappedMaterial, expected: MaterialBinding, plaintext: Buffer, aad: Buffer): Promise<GcmResult> {
    try {
      this.check(material, expected);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.run((m) => m.encryptGcm(material, plaintext, aad), material.domainId);
  }

  decrypt(material: WrappedMaterial, expected: MaterialBinding, input: GcmResult, aad: Buffer): Promise<Buffer> {
    try {
      this.check(material, expected);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.run((m) => m.decryptGcm(material, input, aad), material.domainId);
  }

  sign(material: WrappedMaterial, expected: MaterialBinding, algorithm: SigningAlgorithm, input: { message: Buffer } | { digest: Buffer }): Promise<Buffer> {
    return this.checked(
      () => {
        this.check(material, expected);
        this.require(this.capabilities.signing, algorithm);
      },
      () => this.slow.run(() => this.run((m) => m.sign(material, algorithm, input), material.domainId)),
    );
  }

  /**
   * Verification needs only the public key: done in software where Node can, otherwise (ECDSA over
   * a bare digest) inside the HSM with a session public-key object. No private key is unwrapped.
   */
  verify(material: WrappedMaterial, algorithm: SigningAlgorithm, input: { message: Buffer } | { digest: Buffer }, signature: Buffer): Promise<boolean> {
    let soft: boolean | undefined;
    let spki: Buffer;
    try {
      spki = this.publicKey(material);
      soft = verifyInSoftware(spki, algorithm, input, signature);
    } catch (e) {
      return Promise.reject(e);
    }
    if (soft !== undefined) return Promise.resolve(soft);
    return this.run((m) => m.verify(spki, material.spec, algorithm, input, signature));
  }

  rsaDecrypt(material: WrappedMaterial, expected: MaterialBinding, padding: RsaPadding, ciphertext: Buffer): Promise<Buffer> {
    return this.checked(
      () => {
        this.check(material, expected);
        this.require(this.capabilities.rsaDecrypt, padding);
      },
      () => this.slow.run(() => this.run((m) => m.rsaDecrypt(material, padding, ciphertext), material.domainId)),
    );
  }

  publicKey(material: WrappedMaterial): Buffer {
    if (material.publicKey.length === 0) throw new MaterialIntegrityError(`${material.spec} material has no public key`);
    return material.publicKey;
  }

  random(length: number): Promise<Buffer> {
    return this.run((m) => m.random(length));
  }

  /** HMAC-SHA256 inside the cluster's HSMs under its domain MAC key, separated by `purpose` (see HsmMember.domainMac). */
  mac(purpose: string, data: Buffer): Promise<Buffer> {
    return this.run((m) => m.domainMac(purpose, data));
  }

  /** Whether `mac` is the cluster's MAC of `data` for `purpose` (compared in constant time). */
  verifyMac(purpose: string, data: Buffer, mac: Buffer): Promise<boolean> {
    return this.verifyGenerationMac(undefined, purpose, data, mac);
  }

  /** HMAC-SHA256 for `purpose` under the MAC key of `generation` (the domain state's own MAC), else of the current one. */
  generationMac(generation: Buffer | undefined, purpose: string, data: Buffer): Promise<Buffer> {
    return this.run((m) => m.domainMac(purpose, data, generation), generation);
  }

  verifyGenerationMac(generation: Buffer | undefined, purpose: string, data: Buffer, mac: Buffer): Promise<boolean> {
    return this.generationMac(generation, purpose, data).then((expected) => mac.length === expected.length && timingSafeEqual(mac, expected));
  }

  /** The record re-wrapped and re-MACed (same binding) under the current generation, inside one member; as is when already under it. */
  rewrap(material: WrappedMaterial): Promise<WrappedMaterial> {
    const target = this.currentGeneration;
    if (!target) return Promise.reject(new DomainKeyError(`cluster ${this.id} has no current domain generation`));
    if (material.domainId.equals(target)) return Promise.resolve(material);
    if (material.binding.clusterId !== this.id)
      return Promise.reject(new MaterialIntegrityError(`key material of cluster ${material.binding.clusterId} cannot be re-wrapped on cluster ${this.id}`));
    return this.run((m) => m.rewrap(material, target), material.domainId, target);
  }

  /** Generation `generation` made, copied into every member and locked (rotate-domain): see ceremony.ts. Safe to re-run. */
  newGeneration(generation: Buffer, options: CeremonyOptions = {}): Promise<{ generated: boolean; source: string; copiedTo: string[] }> {
    return newGeneration(this, generation, options);
  }

  /** Members whose KEK of `generation` has CKA_UNWRAP_TEMPLATE: re-wrapping its records there needs their SO (see trustRewrapKeys). */
  templatedOn(generation: Buffer): HsmMember[] {
    return templatedOn(this.members, generation);
  }

  /** Before rotate-domain re-wraps records of `generation`: the SO-trusted session keys the re-wrap goes through (see ceremony.ts). */
  trustRewrapKeys(generation: Buffer, soPin: SoPinProvider | undefined): Promise<string[]> {
    return trustRewrapKeys(this, generation, soPin);
  }

  dropRewrapKeys(): void {
    for (const m of this.members) m.dropRewrapKey();
  }

  /** Destroys generation `generation` on every member holding it (never the current one); the members it was destroyed on. */
  destroyGeneration(generation: Buffer): Promise<string[]> {
    return destroyGeneration(this, generation);
  }

  /** An RSA-2048 key pair generated inside the cluster for wrapping imported material. */
  createImportWrappingKey(binding: MaterialBinding): Promise<WrappedMaterial> {
    return this.generate('RSA_2048', binding);
  }

  importKeyMaterial(
    wrappingKey: WrappedMaterial,
    wrappingBinding: MaterialBinding,
    padding: RsaPadding,
    encrypted: Buffer,
    binding: MaterialBinding,
  ): Promise<{ material: WrappedMaterial; checkValue: Buffer }> {
    let wrap: WrapAlgorithm | undefined;
    return this.checked(
      () => {
        this.check(wrappingKey, wrappingBinding);
        this.require(this.capabilities.importWrapping, padding);
        this.require(this.capabilities.keySpecs, 'AES_256');
        this.checkBinding(binding);
        wrap = this.wrapAlgorithm();
      },
      () => this.slow.run(() => this.run((m) => m.importAes(wrappingKey, padding, encrypted, binding, wrap), wrappingKey.domainId, this.currentGeneration)),
    );
  }

  /**
   * Start-up migration of a KMR1 record (bound to cluster, key, version and usage only) to KMR2
   * under `binding`, which must name the same key version and adds its owner and scope. The old MAC
   * is verified inside the HSM first; the owner and scope are the caller's word.
   */
  rebindLegacy(material: WrappedMaterial, binding: MaterialBinding): Promise<WrappedMaterial> {
    if (!material.legacy) return Promise.reject(new MaterialIntegrityError('only a KMR1 record can be rebound'));
    if (binding.clusterId !== this.id || !sameBinding(material.binding, binding, false)) {
      return Promise.reject(new MaterialIntegrityError('a KMR1 record can only be rebound to the key version it was made for'));
    }
    return this.run((m) => m.rebindLegacy(material, binding), material.domainId);
  }

  /** Drops cached handles of a key version on every member (after crypto-shred). */
  forget(material: WrappedMaterial): void {
    for (const m of this.members) m.evict(material);
  }

  /**
   * The canary the probes use, made once per domain (an AES key generated in the cluster). A cluster
   * without AES-256 (openCryptoki 3.8 has no GCM) is probed with an HMAC under its domain MAC key.
   */
  private canaryKey(): Promise<Canary | undefined> {
    if (!this.capabilities.keySpecs.includes('AES_256')) return Promise.resolve('domain-mac');
    this.canary ??= this.generate('AES_256', CANARY_BINDING(this.id)).catch(() => {
      this.canary = undefined;
      return undefined;
    });
    return this.canary;
  }

  /**
   * The members' states as routing sees them (set by the monitor), after probing any member whose
   * result is older than the cache time with a real GCM round trip on a canary key.
   */
  async health(): Promise<ClusterHealth> {
    await this.monitor.fresh();
    const members = this.members.map((m) => memberHealth(m, this.monitor));
    return {
      id: this.id,
      kind: this.kind,
      state: clusterState(members),
      members,
      generation: this.currentGeneration?.toString('hex'),
      warnings: protectionWarnings(this.members),
    };
  }

  /** What this cluster's members do not protect, stated plainly (see protectionWarnings). */
  get warnings(): string[] {
    return protectionWarnings(this.members);
  }

  /** Forces the next health() to probe again. */
  invalidateProbes(): void {
    this.monitor.invalidate();
  }

  /** Domain-key ceremony (`kmsctl cluster init`): see ceremony.ts. Safe to re-run; locks unless `lock: false`. */
  async initDomain(options: CeremonyOptions = {}): Promise<CeremonyResult> {
    const result = await initDomain(this.id, this.members, options);
    this.canary = undefined;
    return result;
  }

  /** `kmsctl cluster add-member`: copies the domain keys into `member` (already one of this cluster's members); refused once locked. */
  addMember(member: HsmMember, options: CeremonyOptions = {}): Promise<boolean> {
    return addMember(this.id, this.members, member, options);
  }

  /** `kmsctl cluster lock`: domain keys non-extractable on every member, read back. Idempotent. */
  lock(): Promise<LockResult> {
    return lockDomain(this.id, this.members);
  }
}
