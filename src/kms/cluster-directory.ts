import type { HsmCluster } from '../hsm/cluster';
import { about, InvalidHsmClusterError, quoted } from './errors';

/** The tenant-facing view of the configured HSM clusters: one shared pool, dedicated clusters per owner. */
export class ClusterDirectory {
  readonly shared: HsmCluster;
  private readonly byId = new Map<string, HsmCluster>();

  constructor(clusters: readonly HsmCluster[]) {
    const shared = clusters.filter((c) => c.kind === 'shared');
    if (shared.length !== 1) throw new Error(`exactly one shared cluster is required, found ${shared.length}`);
    this.shared = shared[0];
    for (const c of clusters) this.byId.set(c.id, c);
  }

  get all(): HsmCluster[] {
    return [...this.byId.values()];
  }

  /** The cluster holding a key (undefined if configuration no longer has it). */
  get(id: string): HsmCluster | undefined {
    return this.byId.get(id);
  }

  usableBy(tenant: string, cluster: HsmCluster): boolean {
    return cluster.kind === 'shared' || cluster.owners.includes(tenant);
  }

  /** The tenant's dedicated clusters. */
  dedicatedOf(tenant: string): HsmCluster[] {
    return this.all.filter((c) => c.kind === 'dedicated' && c.owners.includes(tenant));
  }

  /** Where a new key goes: the shared pool unless the tenant names one of its own dedicated clusters. */
  forCreate(tenant: string, requested: string | undefined): HsmCluster {
    if (requested === undefined || requested === '' || requested === 'default') return this.shared;
    return this.owned(tenant, requested);
  }

  /** A list filter: undefined (empty) means every cluster, `default` the shared pool. */
  forList(tenant: string, requested: string | undefined): string | undefined {
    if (requested === undefined || requested === '') return undefined;
    if (requested === 'default') return this.shared.id;
    return this.owned(tenant, requested).id;
  }

  /** What KeyMetadata reports: empty for the shared pool (as the Tencent API does), the id otherwise. */
  reportedId(clusterId: string): string {
    return clusterId === this.shared.id ? '' : clusterId;
  }

  private owned(tenant: string, id: string): HsmCluster {
    const c = this.byId.get(id);
    // another tenant's cluster is reported exactly like a missing one
    if (!c || !this.usableBy(tenant, c))
      throw new InvalidHsmClusterError(`hsmClusterId ${quoted(id)} is not a cluster this account can use`, about('hsmClusterId'));
    return c;
  }
}
