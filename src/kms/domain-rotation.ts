/**
 * A new domain generation for a cluster (`kmsctl cluster rotate-domain`): made in one member and
 * copied to every other, made current, then every wrapped record of the cluster (key versions and
 * import wrapping keys) re-wrapped under it inside the HSM, and the old generation destroyed on
 * every member once nothing names it. On the cluster whose domain MAC key also seals other things
 * (the shared one: authority rows, the audit chain), those are re-sealed by the same walk through
 * `SealedUnderDomain` targets, and the old generation goes only when their census is empty too.
 *
 * Resumable: each step is recorded in the cluster's domain state (domain-state.ts) before the next
 * begins, and a record already under the current generation is recognised by the generation it
 * names, so a run killed anywhere is finished by the next run (or by the lease holder's background
 * jobs) without re-doing anything. One walker at a time per cluster (a store lease). Ciphertexts
 * stay decryptable throughout: they name the key version, whose record is rewritten, never removed.
 */
import { NamedError } from '../common/errors';
import { randomBytes } from 'node:crypto';
import type { HsmCluster, SoPinProvider } from '../hsm/cluster';
import { WrappedMaterial } from '../hsm/material';
import { ConflictError, KeyNotFoundError, KeyPatch, KeyRef, MetadataStore } from '../store/store';
import { DomainState, DomainStateError, loadDomainState, saveDomainState } from './domain-state';

export type RotationEvent =
  | { phase: 'generation'; generation: string; detail: string }
  | { phase: 'rewrap'; done: number; total: number }
  | { phase: 'reseal'; what: string; done: number; total: number }
  | { phase: 'destroy'; generation: string; members: string[] };

export interface RotationOptions {
  progress?: (e: RotationEvent) => void;
  /** Only finish a rotation already under way; never start one. */
  resumeOnly?: boolean;
  /** How long to wait for another walker's lease (a crashed run's lease expires by itself). */
  leaseWaitMs?: number;
  /**
   * The sending token's Security Officer PIN, asked for once: the new generation is then made
   * CKA_WRAP_WITH_TRUSTED and copied under SO-trusted transport keys (without it, it is copied as
   * before and protected from the lock on).
   */
  soPin?: SoPinProvider;
  /**
   * On the cluster whose MAC key seals more than key material: how long after the new generation is
   * current the last census may run at the earliest (default SETTLE_MS), so that every node has
   * switched to it first and nothing it seals under the old one afterwards is left behind.
   */
  settleMs?: number;
}

export interface RotationReport {
  cluster: string;
  /** Undefined when resumeOnly found nothing to do. */
  generation?: string;
  retired?: string;
  resumed: boolean;
  rewrapped: number;
  /** Items re-sealed under the new generation besides key material, by what they are (the shared cluster's). */
  resealed: Record<string, number>;
  destroyedOn: string[];
  ms: number;
}

/**
 * Something else the cluster's domain MAC key seals (the shared cluster's: authority rows, the audit
 * chain), re-sealed by the same walk. Each item names the generation it is sealed under (or is told
 * it), so that the census finds what still needs the retiring one and the re-seal skips what is done.
 */
export interface SealedUnderDomain {
  /** The MAC purpose it is sealed under (`authority-row`, `audit-link`): the shared cluster rotates only with every one of them covered. */
  readonly purpose: string;
  /** What it is, for progress lines and errors. */
  readonly what: string;
  /** Items per generation (hex; `legacy` for items made before generations were named). */
  census(): Promise<Map<string, number>>;
  /** Re-seals under the current generation what is not under it (each verified first, compare-and-set); `done(n)` after each write. */
  reseal(done: (n: number) => void, renew: () => Promise<void>): Promise<number>;
}

/** What the shared cluster's domain MAC key seals besides key material (and its own domain state). */
export const SHARED_MAC_PURPOSES = { 'authority-row': 'the authority rows', 'audit-link': 'the audit chain' } as const;

/** A rotation that cannot run here (the cluster holds other MACs, or another walker holds the lease). */
export class DomainRotationError extends NamedError {}

/** Another walker (a kmsctl run, another node) holds the cluster's rotation lease. */
export class RotationBusyError extends DomainRotationError {}

export const ROTATION_LEASE_MS = 15_000;
/** Two job ticks (jobs.ts, 5 s): every node applies the stored current generation on its tick. */
export const SETTLE_MS = 10_000;
const PAGE = 200;
/** Keys re-wrapped at once: the HSM work is short AES unwraps and wraps, on several sessions. */
const PARALLEL = 8;
/** Walks before giving up on records still under the retiring generation (a node that had not yet switched). */
const ROUNDS = 3;
const CAS_ATTEMPTS = 5;

export const rotationLease = (clusterId: string): string => `kms-domain-rotation:${clusterId}`;

interface Walk {
  cluster: HsmCluster;
  current: Buffer;
  done: number;
  total: number;
  progress: (e: RotationEvent) => void;
  renew: () => Promise<void>;
}

export class DomainRotation {
  constructor(
    private readonly store: MetadataStore,
    private readonly clusters: readonly HsmCluster[],
    private readonly node: string,
    /** The cluster whose domain MAC key also MACs the audit chain and authority rows: rotated only with `sealed` covering them. */
    private readonly macCluster?: string,
    private readonly sealed: readonly SealedUnderDomain[] = [],
  ) {}

  /** Whether a rotation of the cluster is under way (its state names a next or retiring generation). */
  async unfinished(clusterId: string): Promise<boolean> {
    const s = await loadDomainState(this.store, this.cluster(clusterId));
    return s !== undefined && (s.state.next !== undefined || s.state.retiring !== undefined);
  }

  async rotate(clusterId: string, o: RotationOptions = {}): Promise<RotationReport> {
    const started = Date.now();
    const cluster = this.cluster(clusterId);
    const sealed = clusterId === this.macCluster ? this.sealed : [];
    const uncovered = Object.entries(SHARED_MAC_PURPOSES).filter(([p]) => clusterId === this.macCluster && !sealed.some((s) => s.purpose === p));
    if (uncovered.length > 0) {
      throw new DomainRotationError(
        `cluster ${clusterId} also MACs ${uncovered.map(([p, what]) => `${what} (${p})`).join(' and ')} under its domain MAC key, which this process cannot re-seal: it cannot rotate its domain here (docs/security.md)`,
      );
    }
    const progress = o.progress ?? (() => undefined);
    const lease = rotationLease(clusterId);
    await this.takeLease(lease, o.leaseWaitMs ?? 2 * ROTATION_LEASE_MS);
    try {
      const stored = await loadDomainState(this.store, cluster);
      let revision = stored?.revision ?? 0;
      let state: DomainState = stored?.state ?? { current: this.onlyGeneration(cluster) };
      const resumed = state.next !== undefined || state.retiring !== undefined;
      const report: RotationReport = { cluster: clusterId, resumed, rewrapped: 0, resealed: {}, destroyedOn: [], ms: 0 };
      if (!resumed && o.resumeOnly) return { ...report, ms: Date.now() - started };
      if (!resumed) {
        // refused before anything is made: a generation whose records could not be re-wrapped would be left half-done
        if (!o.soPin) await cluster.trustRewrapKeys(Buffer.from(state.current, 'hex'), undefined);
        // recorded before any key exists, so a crash right after leaves a generation the next run finishes, not an orphan
        state = { current: state.current, next: randomBytes(16).toString('hex') };
        revision = await saveDomainState(this.store, cluster, revision, state);
      }
      if (state.next !== undefined) {
        const next = Buffer.from(state.next, 'hex');
        const made = await cluster.newGeneration(next, { soPin: o.soPin });
        progress({
          phase: 'generation',
          generation: state.next,
          detail: `${made.generated ? 'made in' : 'already in'} ${made.source}${made.copiedTo.length ? `, copied to ${made.copiedTo.join(', ')}` : ''}`,
        });
        state = { current: state.next, retiring: state.current };
        revision = await saveDomainState(this.store, cluster, revision, state);
      }
      const current = Buffer.from(state.current, 'hex');
      await cluster.useGeneration(current);
      report.generation = state.current;
      if (state.retiring !== undefined) {
        report.retired = state.retiring;
        const renew = () => this.renew(lease);
        const settled = Date.now() + (sealed.length > 0 ? (o.settleMs ?? SETTLE_MS) : 0);
        // on the shared cluster the nodes keep sealing (audit links, rows) under the old generation until their tick: a last pass once they all switched
        for (let pass = 0; pass < (sealed.length > 0 ? 2 : 1); pass++) {
          if (pass > 0) await this.waitUntil(settled, renew);
          report.rewrapped += await this.rewrapAll(cluster, current, state.retiring, progress, renew, o.soPin);
          for (const s of sealed)
            report.resealed[s.what] = (report.resealed[s.what] ?? 0) + (await this.resealAll(s, state.current, state.retiring, progress, renew));
        }
        report.destroyedOn = await cluster.destroyGeneration(Buffer.from(state.retiring, 'hex'));
        progress({ phase: 'destroy', generation: state.retiring, members: report.destroyedOn });
        await saveDomainState(this.store, cluster, revision, { current: state.current });
      }
      return { ...report, ms: Date.now() - started };
    } finally {
      await this.store.releaseLease(lease, this.node).catch(() => undefined);
    }
  }

  /** Records per generation (hex) over every key of the cluster; read from the store only. */
  async census(clusterId: string, afterPage?: () => Promise<void>): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    await this.eachKey(
      clusterId,
      async (ref) => {
        const r = await this.store.getKey(ref.ownerUin, ref.keyId);
        for (const m of r ? records(r) : []) {
          const g = WrappedMaterial.fromBuffer(m).domainId.toString('hex');
          counts.set(g, (counts.get(g) ?? 0) + 1);
        }
      },
      afterPage,
    );
    return counts;
  }

  /**
   * Re-wraps until a census finds nothing under `retiring`; ROUNDS walks at most. Records under a
   * KEK with CKA_UNWRAP_TEMPLATE go through an SO-trusted session key, made (one SO login per such
   * member) only when there is something to re-wrap, and destroyed after the walk.
   */
  private async rewrapAll(
    cluster: HsmCluster,
    current: Buffer,
    retiring: string,
    progress: (e: RotationEvent) => void,
    renew: () => Promise<void>,
    soPin?: SoPinProvider,
  ): Promise<number> {
    let rewrapped = 0;
    let trusted = false;
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const before = await this.census(cluster.id, renew);
        const total = [...before].filter(([g]) => g !== current.toString('hex')).reduce((n, [, c]) => n + c, 0);
        if (total === 0) return rewrapped;
        if (!trusted) {
          await cluster.trustRewrapKeys(Buffer.from(retiring, 'hex'), soPin);
          trusted = true;
        }
        const walk: Walk = { cluster, current, done: 0, total, progress, renew };
        progress({ phase: 'rewrap', done: 0, total });
        await this.eachKey(cluster.id, (ref) => this.rewrapKey(walk, ref), renew);
        rewrapped += walk.done;
      }
    } finally {
      if (trusted) cluster.dropRewrapKeys();
    }
    const left = (await this.census(cluster.id, renew)).get(retiring) ?? 0;
    if (left > 0)
      throw new DomainRotationError(
        `${left} records of cluster ${cluster.id} still name generation ${retiring} after ${ROUNDS} walks (a node still sealing under it?): it was not destroyed; run again`,
      );
    return rewrapped;
  }

  /** Re-seals until a census finds nothing under another generation than `current`; ROUNDS walks at most. */
  private async resealAll(
    s: SealedUnderDomain,
    current: string,
    retiring: string,
    progress: (e: RotationEvent) => void,
    renew: () => Promise<void>,
  ): Promise<number> {
    let resealed = 0;
    const others = async () => [...(await s.census())].filter(([g]) => g !== current).reduce((n, [, c]) => n + c, 0);
    for (let round = 0; round < ROUNDS; round++) {
      const total = await others();
      if (total === 0) return resealed;
      let done = 0;
      progress({ phase: 'reseal', what: s.what, done, total });
      resealed += await s.reseal((n) => {
        done += n;
        progress({ phase: 'reseal', what: s.what, done, total });
      }, renew);
    }
    const left = await others();
    if (left > 0)
      throw new DomainRotationError(
        `${left} ${s.what} still name another generation than ${current} after ${ROUNDS} walks (a node still sealing under ${retiring}?): it was not destroyed; run again`,
      );
    return resealed;
  }

  /** Re-wraps the key's records not under `current` and writes them over the revision read (re-read on a concurrent change). */
  private async rewrapKey(walk: Walk, ref: KeyRef): Promise<void> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const r = await this.store.getKey(ref.ownerUin, ref.keyId);
      if (!r || r.hsmClusterId !== walk.cluster.id) return;
      let n = 0;
      const again = async (bytes: Buffer): Promise<Buffer> => {
        const m = WrappedMaterial.fromBuffer(bytes);
        if (m.domainId.equals(walk.current)) return bytes;
        n++;
        return (await walk.cluster.rewrap(m)).toBuffer();
      };
      const patch: KeyPatch = {};
      const versions = await Promise.all(r.versions.map(async (v) => ({ ...v, material: await again(v.material) })));
      if (n > 0) patch.versions = versions;
      const ip = r.importParameters;
      if (ip) {
        const wrappingKey = await again(ip.wrappingKey);
        if (wrappingKey !== ip.wrappingKey) patch.importParameters = { ...ip, wrappingKey };
      }
      if (n === 0) return;
      try {
        await this.store.updateKey(r.ownerUin, r.keyId, r.revision, patch);
        walk.done += n;
        walk.progress({ phase: 'rewrap', done: walk.done, total: walk.total });
        return;
      } catch (e) {
        if (e instanceof KeyNotFoundError) return;
        if (!(e instanceof ConflictError)) throw e;
      }
    }
    throw new DomainRotationError(`key ${ref.keyId} kept changing during its re-wrap (${CAS_ATTEMPTS} attempts): run again`);
  }

  private async eachKey(clusterId: string, fn: (ref: KeyRef) => Promise<void>, afterPage?: () => Promise<void>): Promise<void> {
    for (let cursor: string | undefined = ''; cursor !== undefined;) {
      const page = await this.store.clusterKeys(clusterId, cursor, PAGE);
      for (let i = 0; i < page.keys.length; i += PARALLEL) {
        // a failure stops the walk once the keys in flight have settled, so nothing runs on after it
        const failed = (await Promise.allSettled(page.keys.slice(i, i + PARALLEL).map(fn))).find((r) => r.status === 'rejected');
        if (failed) throw failed.reason;
      }
      await afterPage?.();
      cursor = page.cursor;
    }
  }

  private cluster(id: string): HsmCluster {
    const c = this.clusters.find((x) => x.id === id);
    if (!c) throw new DomainRotationError(`no cluster ${id} (configured: ${this.clusters.map((x) => x.id).join(', ')})`);
    return c;
  }

  /** Before any rotation the tokens hold one generation, and it is the current one. */
  private onlyGeneration(cluster: HsmCluster): string {
    const held = cluster.heldGenerations();
    if (held.length === 0) throw new DomainStateError(`no reachable member of cluster ${cluster.id} holds domain keys: run cluster init first`);
    if (held.length !== 1)
      throw new DomainStateError(`cluster ${cluster.id} holds ${held.length} domain generations and no stored state says which is current`);
    return held[0].toString('hex');
  }

  /** Sleeps until `at`, renewing the lease at least every third of its time. */
  private async waitUntil(at: number, renew: () => Promise<void>): Promise<void> {
    while (Date.now() < at) {
      await new Promise((r) => setTimeout(r, Math.min(at - Date.now(), ROTATION_LEASE_MS / 3)));
      await renew();
    }
  }

  private async takeLease(lease: string, waitMs: number): Promise<void> {
    const deadline = Date.now() + waitMs;
    while (!(await this.store.acquireLease(lease, this.node, ROTATION_LEASE_MS))) {
      if (Date.now() >= deadline) throw new RotationBusyError(`another process is rotating this cluster's domain (lease ${lease}); try again later`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  private async renew(lease: string): Promise<void> {
    if (!(await this.store.acquireLease(lease, this.node, ROTATION_LEASE_MS)))
      throw new DomainRotationError(`lost the rotation lease ${lease} to another process`);
  }
}

/** Every wrapped record of a key: its versions' material and its import wrapping key. */
function records(r: { versions: Array<{ material: Buffer }>; importParameters?: { wrappingKey: Buffer } }): Buffer[] {
  return [...r.versions.map((v) => v.material), ...(r.importParameters ? [r.importParameters.wrappingKey] : [])];
}
