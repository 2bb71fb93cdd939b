import { timingSafeEqual } from 'node:crypto';
import { Capabilities, intersectCapabilities, KeySpec, RsaPadding, SigningAlgorithm } from './capabilities';
import { ClusterUnavailableError, DomainKeyError, HsmError, MaterialIntegrityError, MemberUnavailableError, UnsupportedError } from './errors';
import { MaterialBinding, sameBinding, WrappedMaterial } from './material';
export type { CeremonyOptions, CeremonyResult, LockResult, SoPinProvider, SoPinRequest } from './ceremony';
import { addMember, CeremonyOptions, CeremonyResult, initDomain, lockDomain, LockResult } from './ceremony';
import { GcmResult, HsmMember, MemberState } from './member';
import { verifyInSoftware } from './signature';

export type ClusterKind = 'shared' | 'dedicated';

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
}

export interface MemberHealth {
  id: string;
  profile: string;
  verifiedProfile: boolean;
  token: string;
  state: MemberState;
  detail: string;
  probeMs?: number;
  sessions: { open: number; busy: number; cap: number; waiting: number };
  cachedHandles: number;
  resets: number;
  /** The domain keys are non-extractable on this token ('locked'), or not yet ('unlocked'); 'none' without domain keys. */
  domainLock: 'locked' | 'unlocked' | 'none';
  /** False where the implementation ignores the lock (its profile's enforcesNonExtractable). */
  lockEnforced: boolean;
}

export interface ClusterHealth {
  id: string;
  kind: ClusterKind;
  state: MemberState;
  members: MemberHealth[];
}

const CANARY_BINDING = (clusterId: string): MaterialBinding => ({ clusterId, keyId: 'kms-health-canary', keyVersion: 0, usage: 'HEALTH_PROBE', owner: 'kms-health' });

/**
 * A pool of HSM members that hold the same domain keys. Any healthy member serves any key;
 * an operation that meets a device failure on one member is retried once on another.
 * Nothing here is shared with other clusters.
 */
export class HsmCluster {
  readonly id: string;
  readonly kind: ClusterKind;
  readonly owners: readonly string[];
  readonly members: readonly HsmMember[];
  private next = 0;
  private canary: WrappedMaterial | undefined;
  private readonly probes = new Map<string, { at: number; ms?: number; error?: string }>();

  constructor(private readonly options: ClusterOptions) {
    if (options.members.length === 0) throw new DomainKeyError(`cluster ${options.id} has no members`);
    this.id = options.id;
    this.kind = options.kind;
    this.owners = options.owners;
    this.members = options.members;
  }

  /** Connects every member; members that cannot connect start recovering in the background. */
  start(): void {
    for (const m of this.members) {
      try {
        m.connect();
      } catch (e) {
        m.fail((e as Error).message);
      }
    }
    const ids = new Set(this.members.filter((m) => m.domain).map((m) => m.domain!.id.toString('hex')));
    if (ids.size > 1) throw new DomainKeyError(`members of cluster ${this.id} hold different domain keys: run the ceremony again or fix the configuration`);
  }

  close(): void {
    for (const m of this.members) m.close();
  }

  /** What every member can do (members never connected count as unknown and are skipped). */
  get capabilities(): Capabilities {
    return intersectCapabilities(this.members.flatMap((m) => (m.capabilities ? [m.capabilities] : [])));
  }

  private usable(): HsmMember[] {
    return this.members.filter((m) => m.state !== 'UNAVAILABLE' && m.domain);
  }

  /** Round-robin over ACTIVE members, else DEGRADED ones; allocation-free (hot path). */
  private pick(exclude?: HsmMember): HsmMember {
    const n = this.members.length;
    let fallback: HsmMember | undefined;
    for (let i = 0; i < n; i++) {
      this.next = (this.next + 1) % n;
      const m = this.members[this.next];
      if (m === exclude || m.state === 'UNAVAILABLE' || !m.domain) continue;
      if (m.state === 'ACTIVE') return m;
      fallback ??= m;
    }
    if (fallback) return fallback;
    throw new ClusterUnavailableError(this.id);
  }

  /** Runs `op` on a healthy member; on a device-level failure, once more on another member. */
  run<T>(op: (m: HsmMember) => Promise<T>): Promise<T> {
    let first: HsmMember;
    try {
      first = this.pick();
    } catch (e) {
      return Promise.reject(e);
    }
    return op(first).catch((e: unknown) => {
      const deviceLevel = e instanceof MemberUnavailableError || (e instanceof HsmError && e.errorClass === 'device');
      if (!deviceLevel) throw e;
      let second: HsmMember;
      try {
        second = this.pick(first);
      } catch {
        throw e;
      }
      return op(second);
    });
  }

  private check(material: WrappedMaterial, expected: MaterialBinding): void {
    if (expected.clusterId !== this.id) throw new MaterialIntegrityError(`key material of cluster ${expected.clusterId} cannot be used on cluster ${this.id}`);
    material.assertBinding(expected);
  }

  /** Refuses what not every member can do, naming the cluster's limit. */
  private require(list: readonly string[], name: string): void {
    if (!list.includes(name)) throw new UnsupportedError(`${name} is not supported by every HSM of cluster ${this.id} (offered: ${list.join(', ') || 'none'})`);
  }

  async generate(spec: KeySpec, binding: MaterialBinding): Promise<WrappedMaterial> {
    this.require(this.capabilities.keySpecs, spec);
    if (binding.clusterId !== this.id) throw new MaterialIntegrityError(`binding names cluster ${binding.clusterId}, not ${this.id}`);
    return this.run((m) => m.generate(spec, binding));
  }

  encrypt(material: WrappedMaterial, expected: MaterialBinding, plaintext: Buffer, aad: Buffer): Promise<GcmResult> {
    try {
      this.check(material, expected);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.run((m) => m.encryptGcm(material, plaintext, aad));
  }

  async decrypt(material: WrappedMaterial, expected: MaterialBinding, input: GcmResult, aad: Buffer): Promise<Buffer> {
    this.check(material, expected);
    return this.run((m) => m.decryptGcm(material, input, aad));
  }

  async sign(material: WrappedMaterial, expected: MaterialBinding, algorithm: SigningAlgorithm, input: { message: Buffer } | { digest: Buffer }): Promise<Buffer> {
    this.check(material, expected);
    this.require(this.capabilities.signing, algorithm);
    return this.run((m) => m.sign(material, algorithm, input));
  }

  /**
   * Verification needs only the public key: done in software where Node can, otherwise (ECDSA over
   * a bare digest) inside the HSM with a session public-key object. No private key is unwrapped.
   */
  async verify(material: WrappedMaterial, algorithm: SigningAlgorithm, input: { message: Buffer } | { digest: Buffer }, signature: Buffer): Promise<boolean> {
    const spki = this.publicKey(material);
    const soft = verifyInSoftware(spki, algorithm, input, signature);
    if (soft !== undefined) return soft;
    return this.run((m) => m.verify(spki, material.spec, algorithm, input, signature));
  }

  async rsaDecrypt(material: WrappedMaterial, expected: MaterialBinding, padding: RsaPadding, ciphertext: Buffer): Promise<Buffer> {
    this.check(material, expected);
    this.require(this.capabilities.rsaDecrypt, padding);
    return this.run((m) => m.rsaDecrypt(material, padding, ciphertext));
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
  async verifyMac(purpose: string, data: Buffer, mac: Buffer): Promise<boolean> {
    const expected = await this.mac(purpose, data);
    return mac.length === expected.length && timingSafeEqual(mac, expected);
  }

  /** An RSA-2048 key pair generated inside the cluster for wrapping imported material. */
  createImportWrappingKey(binding: MaterialBinding): Promise<WrappedMaterial> {
    return this.generate('RSA_2048', binding);
  }

  async importKeyMaterial(
    wrappingKey: WrappedMaterial,
    wrappingBinding: MaterialBinding,
    padding: RsaPadding,
    encrypted: Buffer,
    binding: MaterialBinding,
  ): Promise<{ material: WrappedMaterial; checkValue: Buffer }> {
    this.check(wrappingKey, wrappingBinding);
    this.require(this.capabilities.importWrapping, padding);
    if (binding.clusterId !== this.id) throw new MaterialIntegrityError(`binding names cluster ${binding.clusterId}, not ${this.id}`);
    return this.run((m) => m.importAes(wrappingKey, padding, encrypted, binding));
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
    return this.run((m) => m.rebindLegacy(material, binding));
  }

  /** Drops cached handles of a key version on every member (after crypto-shred). */
  forget(material: WrappedMaterial): void {
    for (const m of this.members) m.evict(material);
  }

  /** Probes each member with a real GCM round trip on a canary key, reusing results for a few seconds. */
  async health(): Promise<ClusterHealth> {
    const now = Date.now();
    const cacheMs = this.options.probeCacheMs ?? 5_000;
    const slow = this.options.degradedLatencyMs ?? 250;
    if (!this.canary && this.usable().length > 0) {
      try {
        this.canary = await this.generate('AES_256', CANARY_BINDING(this.id));
      } catch {
        // reported through the members' states below
      }
    }
    const members: MemberHealth[] = [];
    for (const m of this.members) {
      let probe = this.probes.get(m.id);
      if (!probe || now - probe.at >= cacheMs) {
        probe = { at: now };
        if (m.state === 'UNAVAILABLE') probe.error = m.lastError;
        else if (!m.domain) probe.error = m.domainProblem ?? 'no domain keys: run cluster add-member';
        else if (!this.canary) probe.error = 'no canary key could be made';
        else {
          try {
            probe.ms = await m.probe(this.canary);
          } catch (e) {
            probe.error = (e as Error).message;
          }
        }
        this.probes.set(m.id, probe);
        if (probe.error === undefined) m.recentErrors = 0;
      }
      const state: MemberState = probe.error !== undefined || m.state === 'UNAVAILABLE' ? 'UNAVAILABLE' : (probe.ms ?? 0) > slow || m.recentErrors > 0 ? 'DEGRADED' : 'ACTIVE';
      members.push({
        id: m.id,
        profile: m.profile.name,
        verifiedProfile: m.profile.verified,
        token: m.tokenLabel,
        state,
        detail: probe.error ?? (state === 'DEGRADED' ? `probe ${probe.ms?.toFixed(1)} ms, ${m.recentErrors} recent errors` : 'ok'),
        probeMs: probe.ms,
        sessions: m.sessions,
        cachedHandles: m.cachedHandles,
        resets: m.resets,
        domainLock: m.domainLocked === undefined ? 'none' : m.domainLocked ? 'locked' : 'unlocked',
        lockEnforced: m.profile.enforcesNonExtractable,
      });
    }
    const up = members.filter((m) => m.state !== 'UNAVAILABLE').length;
    const state: MemberState = up === 0 ? 'UNAVAILABLE' : members.every((m) => m.state === 'ACTIVE') ? 'ACTIVE' : 'DEGRADED';
    return { id: this.id, kind: this.kind, state, members };
  }

  /** Forces the next health() to probe again. */
  invalidateProbes(): void {
    this.probes.clear();
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
