/**
 * Which domain generation of a cluster is current, kept in the store (`putClusterState`) with an
 * HSM MAC. The store, not the tokens, says it: every node reads the same document, and a member that
 * was away during a rotation would otherwise name an older generation. The document is MACed inside
 * the HSM under the MAC key of the generation it names as current, so a document cannot name a
 * generation the cluster never made current under its own key. A replayed older document can only
 * name a generation still on the tokens; new material sealed under it is found by the count taken
 * before that generation is destroyed (domain-rotation.ts), and once destroyed it names nothing.
 */
import { NamedError } from '../common/errors';
import type { HsmCluster } from '../hsm/cluster';
import type { MetadataStore } from '../store/store';

export const DOMAIN_STATE_PURPOSE = 'domain-state';

/** Generation ids in hex. `next`: made (or being made) but not yet current; `retiring`: still on the tokens, being re-wrapped away from. */
export interface DomainState {
  current: string;
  next?: string;
  retiring?: string;
}

export interface StoredDomainState {
  state: DomainState;
  revision: number;
}

/** A domain state document that is malformed, fails its MAC, or names a generation no member holds. */
export class DomainStateError extends NamedError {}

const HEX_ID = /^[0-9a-f]{2,64}$/;

function macInput(clusterId: string, s: DomainState): Buffer {
  return Buffer.from([clusterId, s.current, s.next ?? '', s.retiring ?? ''].join('\0'), 'utf8');
}

function parse(clusterId: string, doc: string): { state: DomainState; mac: Buffer } {
  let raw: unknown;
  try {
    raw = JSON.parse(doc);
  } catch {
    throw new DomainStateError(`the domain state of cluster ${clusterId} is not JSON`);
  }
  const o = raw as Record<string, unknown>;
  const ids = ['current', 'next', 'retiring'].map((f) => o[f]);
  const ok = typeof o.current === 'string' && ids.every((v) => v === undefined || (typeof v === 'string' && HEX_ID.test(v))) && typeof o.mac === 'string';
  if (!ok) throw new DomainStateError(`the domain state of cluster ${clusterId} is malformed`);
  const state: DomainState = { current: o.current as string };
  if (o.next !== undefined) state.next = o.next as string;
  if (o.retiring !== undefined) state.retiring = o.retiring as string;
  return { state, mac: Buffer.from(o.mac as string, 'base64') };
}

/** The cluster's stored state, its MAC checked inside the HSM; undefined when never written (one generation, from before generations). */
export async function loadDomainState(store: MetadataStore, cluster: HsmCluster): Promise<StoredDomainState | undefined> {
  const stored = await store.getClusterState(cluster.id);
  if (!stored) return undefined;
  const { state, mac } = parse(cluster.id, stored.doc);
  const current = Buffer.from(state.current, 'hex');
  // another process (kmsctl cluster rotate-domain) may have made it on the tokens since they were read
  if (!cluster.holdsGeneration(current)) await cluster.refreshGenerations();
  if (!cluster.holdsGeneration(current)) {
    throw new DomainStateError(`the domain state of cluster ${cluster.id} names generation ${state.current} as current, which no reachable member holds`);
  }
  if (!(await cluster.verifyGenerationMac(current, DOMAIN_STATE_PURPOSE, macInput(cluster.id, state), mac))) {
    throw new DomainStateError(`the domain state of cluster ${cluster.id} failed its MAC check: it was altered in the store`);
  }
  return { state, revision: stored.revision };
}

/** Writes `state` over `revision` (compare-and-set), MACed under its current generation; returns the new revision. */
export async function saveDomainState(store: MetadataStore, cluster: HsmCluster, revision: number, state: DomainState): Promise<number> {
  const mac = await cluster.generationMac(Buffer.from(state.current, 'hex'), DOMAIN_STATE_PURPOSE, macInput(cluster.id, state));
  return store.putClusterState(cluster.id, revision, JSON.stringify({ ...state, mac: mac.toString('base64') }));
}

/**
 * Makes every cluster seal under the generation its stored state names: at start-up, then on every
 * job tick (a document whose revision did not change is not read again through the HSM).
 */
export class DomainStates {
  private readonly applied = new Map<string, number>();

  constructor(
    private readonly store: MetadataStore,
    private readonly clusters: readonly HsmCluster[],
  ) {}

  /** Problems per cluster (members away, a bad document): that cluster is tried again on the next call, and meanwhile seals as before. */
  async apply(): Promise<string[]> {
    const problems: string[] = [];
    for (const c of this.clusters) {
      try {
        const stored = await this.store.getClusterState(c.id);
        if (!stored || this.applied.get(c.id) === stored.revision) continue;
        // a new revision may follow a rotation's end: the tokens no longer hold the retired generation
        await c.refreshGenerations();
        const s = await loadDomainState(this.store, c);
        if (!s) continue;
        await c.useGeneration(Buffer.from(s.state.current, 'hex'));
        this.applied.set(c.id, s.revision);
      } catch (e) {
        problems.push(`cluster ${c.id}: ${(e as Error).message}`);
      }
    }
    return problems;
  }
}
