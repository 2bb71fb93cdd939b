import { timingSafeEqual } from 'node:crypto';
import { Capabilities, intersectCapabilities, KeySpec, RsaPadding, SigningAlgorithm } from './capabilities';
import { ClusterUnavailableError, DomainKeyError, HsmError, MaterialIntegrityError, MemberUnavailableError, UnsupportedError } from './errors';
import { MaterialBinding, sameBinding, WrappedMaterial } from './material';
import { addMember, addMemberFrom, CeremonyResult, initDomain } from './ceremony';
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
  /** Domain generations (hex) on the member's token, as last read. */
  generations: string[];
}

export interface ClusterHealth {
  id: string;
  kind: ClusterKind;
  state: MemberState;
  members: MemberHealth[];
  /** The generation new material is sealed under (hex), if known. */
  generation?: string;
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
  private current: Buffer | undefined;
  private reread: Promise<void> | undefined;
  private rereadAt = 0;
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
    const holders = this.members.filter((m) => m.generations.size > 0);
    const shared = (a: HsmMember, b: HsmMember) => [...a.generations.keys()].some((g) => b.generations.has(g));
    // mid-rotation, members may hold one generation more or less; none in common means another domain
    if (holders.some((a) => holders.some((b) => !shared(a, b)))) throw new DomainKeyError(`members of cluster ${this.id} hold different domain keys: run the ceremony again or fix the configuration`);
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
    for (const m of this.members) m.close();
  }

  /** What every member can do (members never connected count as unknown and are skipped). */
  get capabilities(): Capabilities {
    return intersectCapabilities(this.members.flatMap((m) => (m.capabilities ? [m.capabilities] : [])));
  }

  private usable(): HsmMember[] {
    return this.members.filter((m) => m.state !== 'UNAVAILABLE' && m.domain);
  }

  /**
   * Round-robin over ACTIVE members, else DEGRADED ones, holding generation `generation` (hex; else
   * the current one) and `also` if given; allocation-free (hot path).
   */
  private pick(exclude?: HsmMember, generation?: string, also?: string): HsmMember {
    const n = this.members.length;
    let fallback: HsmMember | undefined;
    for (let i = 0; i < n; i++) {
      this.next = (this.next + 1) % n;
      const m = this.members[this.next];
      if (m === exclude || m.state === 'UNAVAILABLE' || !(generation ? m.generations.has(generation) : m.domain) || (also && !m.generations.has(also))) continue;
      if (m.state === 'ACTIVE') return m;
      fallback ??= m;
    }
    if (fallback) return fallback;
    throw new ClusterUnavailableError(this.id);
  }

  /**
   * Runs `op` on a healthy member holding `generation` (a record's; else the current one) and
   * `also`; on a device-level failure, once more on another member.
   */
  run<T>(op: (m: HsmMember) => Promise<T>, generation?: Buffer, also?: Buffer): Promise<T> {
    const g = generation?.toString('hex');
    const a = also?.toString('hex');
    const unknown = (id: string | undefined) => id !== undefined && !this.members.some((m) => m.generations.has(id));
    // a generation made by another process (kmsctl cluster rotate-domain) since the tokens were read: read them again, once
    if (unknown(g) || unknown(a)) return this.rereadSometimes().then(() => this.runOnce(op, g, a));
    return this.runOnce(op, g, a);
  }

  /** At most one re-read a second, shared: records naming a generation nobody holds cannot make the tokens busy. */
  private rereadSometimes(): Promise<void> {
    const now = Date.now();
    if (!this.reread || now - this.rereadAt >= 1_000) {
      this.rereadAt = now;
      this.reread = this.refreshGenerations();
    }
    return this.reread;
  }

  private runOnce<T>(op: (m: HsmMember) => Promise<T>, generation?: string, also?: string): Promise<T> {
    let first: HsmMember;
    try {
      first = this.pick(undefined, generation, also);
    } catch (e) {
      return Promise.reject(e);
    }
    return op(first).catch((e: unknown) => {
      const deviceLevel = e instanceof MemberUnavailableError || (e instanceof HsmError && e.errorClass === 'device');
      if (!deviceLevel) throw e;
      let second: HsmMember;
      try {
        second = this.pick(first, generation, also);
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
    return this.run((m) => m.encryptGcm(material, plaintext, aad), material.domainId);
  }

  async decrypt(material: WrappedMaterial, expected: MaterialBinding, input: GcmResult, aad: Buffer): Promise<Buffer> {
    this.check(material, expected);
    return this.run((m) => m.decryptGcm(material, input, aad), material.domainId);
  }

  async sign(material: WrappedMaterial, expected: MaterialBinding, algorithm: SigningAlgorithm, input: { message: Buffer } | { digest: Buffer }): Promise<Buffer> {
    this.check(material, expected);
    this.require(this.capabilities.signing, algorithm);
    return this.run((m) => m.sign(material, algorithm, input), material.domainId);
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
    return this.run((m) => m.rsaDecrypt(material, padding, ciphertext), material.domainId);
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
    return this.verifyGenerationMac(undefined, purpose, data, mac);
  }

  /** HMAC-SHA256 for `purpose` under the MAC key of `generation` (the domain state's own MAC), else of the current one. */
  generationMac(generation: Buffer | undefined, purpose: string, data: Buffer): Promise<Buffer> {
    return this.run((m) => m.domainMac(purpose, data, generation), generation);
  }

  async verifyGenerationMac(generation: Buffer | undefined, purpose: string, data: Buffer, mac: Buffer): Promise<boolean> {
    const expected = await this.generationMac(generation, purpose, data);
    return mac.length === expected.length && timingSafeEqual(mac, expected);
  }

  /** The record re-wrapped and re-MACed (same binding) under the current generation, inside one member; as is when already under it. */
  rewrap(material: WrappedMaterial): Promise<WrappedMaterial> {
    const target = this.currentGeneration;
    if (!target) return Promise.reject(new DomainKeyError(`cluster ${this.id} has no current domain generation`));
    if (material.domainId.equals(target)) return Promise.resolve(material);
    if (material.binding.clusterId !== this.id) return Promise.reject(new MaterialIntegrityError(`key material of cluster ${material.binding.clusterId} cannot be re-wrapped on cluster ${this.id}`));
    return this.run((m) => m.rewrap(material, target), material.domainId, target);
  }

  /**
   * Generation `generation` on every member (rotate-domain): made inside the first member holding
   * it or, if none does, inside the first member, then copied into every member lacking it (members
   * with no keys at all included) by the ceremony's copy. Safe to re-run.
   */
  async newGeneration(generation: Buffer): Promise<{ generated: boolean; source: string; copiedTo: string[] }> {
    this.requireAllReachable('make a domain generation');
    await this.refreshGenerations();
    let source = this.members.find((m) => m.holds(generation));
    const generated = !source;
    if (!source) {
      source = this.members[0];
      if (source.brokenGenerations.has(generation.toString('hex'))) await source.removeDomainKeys(generation);
      await source.generateDomainKeys(generation);
    }
    const copiedTo: string[] = [];
    for (const m of this.members) {
      if (m !== source && (await addMemberFrom(source, m, generation))) copiedTo.push(m.id);
    }
    return { generated, source: source.id, copiedTo };
  }

  /** Destroys generation `generation` on every member holding it (never the current one); the members it was destroyed on. */
  async destroyGeneration(generation: Buffer): Promise<string[]> {
    if (this.currentGeneration?.equals(generation)) throw new DomainKeyError(`generation ${generation.toString('hex')} is cluster ${this.id}'s current one`);
    this.requireAllReachable('destroy a domain generation (it would stay on the others)');
    await this.refreshGenerations();
    const on: string[] = [];
    for (const m of this.members) {
      if (!m.holds(generation) && !m.brokenGenerations.has(generation.toString('hex'))) continue;
      await m.removeDomainKeys(generation);
      on.push(m.id);
    }
    return on;
  }

  private requireAllReachable(what: string): void {
    const unreachable = this.members.filter((m) => m.state === 'UNAVAILABLE');
    if (unreachable.length) throw new DomainKeyError(`cannot ${what} while members are unavailable: ${unreachable.map((m) => `${m.id} (${m.lastError})`).join('; ')}`);
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
    return this.run((m) => m.importAes(wrappingKey, padding, encrypted, binding), wrappingKey.domainId, this.currentGeneration);
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
        generations: [...m.generations.keys()],
      });
    }
    const up = members.filter((m) => m.state !== 'UNAVAILABLE').length;
    const state: MemberState = up === 0 ? 'UNAVAILABLE' : members.every((m) => m.state === 'ACTIVE') ? 'ACTIVE' : 'DEGRADED';
    return { id: this.id, kind: this.kind, state, members, generation: this.currentGeneration?.toString('hex') };
  }

  /** Forces the next health() to probe again. */
  invalidateProbes(): void {
    this.probes.clear();
  }

  /** Domain-key ceremony (`kmsctl cluster init`): see ceremony.ts. Safe to re-run. */
  async initDomain(): Promise<CeremonyResult> {
    const result = await initDomain(this.id, this.members);
    this.canary = undefined;
    return result;
  }

  /** `kmsctl cluster add-member`: copies the domain keys into `member` (already one of this cluster's members). */
  addMember(member: HsmMember): Promise<boolean> {
    return addMember(this.id, this.members, member);
  }
}
