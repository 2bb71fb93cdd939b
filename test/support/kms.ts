import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HsmCluster } from '../../src/hsm/cluster';
import { HsmMember } from '../../src/hsm/member';
import { Caller } from '../../src/kms/key-access';
import { ManualClock } from '../../src/common/clock';
import { Kms, KmsOptions } from '../../src/kms/service';
import { SqliteMetadataStore } from '../../src/store/sqlite/store';
import type { MetadataStore } from '../../src/store/store';
import { TokenLab } from './tokens';

export const DEPLOYMENT = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
export const REGION = 'ap-guangzhou';
export const alice: Caller = { tenant: '1001', uin: '1001', region: REGION };
export const aliceSub: Caller = { tenant: '1001', uin: '1001001', region: REGION };
export const bob: Caller = { tenant: '2001', uin: '2001', region: REGION };

/** HSM clusters for KMS tests: a shared pool of two SoftHSM2 tokens and a dedicated one-token cluster owned by bob. */
export class KmsLab {
  readonly tokens = new TokenLab();
  readonly dir = mkdtempSync(join(tmpdir(), 'kms-core-test-'));
  readonly shared: HsmCluster;
  readonly dedicated: HsmCluster;
  readonly clusters: HsmCluster[];
  private readonly kmss: Kms[] = [];
  private readonly stores: MetadataStore[] = [];

  constructor(extra: (tokens: TokenLab) => HsmCluster[] = () => []) {
    const members: HsmMember[] = this.tokens.softhsm('shared', ['pool-a', 'pool-b']);
    this.shared = new HsmCluster({ id: 'cls-shared', kind: 'shared', owners: [], members, probeCacheMs: 0 });
    this.dedicated = new HsmCluster({
      id: 'cls-bob',
      kind: 'dedicated',
      owners: [bob.tenant],
      members: this.tokens.softhsm('bob', ['bob-a']),
      probeCacheMs: 0,
    });
    this.clusters = [this.shared, this.dedicated, ...extra(this.tokens)];
  }

  /** A started lab and one Kms on its SQLite store: the usual fixture of a test file. */
  static async open(over: Partial<KmsOptions> = {}): Promise<{ lab: KmsLab; kms: Kms }> {
    const lab = new KmsLab();
    await lab.start();
    return { lab, kms: lab.kms(lab.sqlite(), over) };
  }

  async start(): Promise<void> {
    for (const c of this.clusters) {
      c.start();
      await c.initDomain({ soPin: this.tokens.soPins });
    }
  }

  sqlite(name = 'kms.db'): MetadataStore {
    const s = new SqliteMetadataStore(join(this.dir, name));
    this.stores.push(s);
    return s;
  }

  kms(store: MetadataStore, over: Partial<KmsOptions> = {}): Kms {
    const k = new Kms({ store, clusters: this.clusters, deploymentId: DEPLOYMENT, clock: new ManualClock(Date.UTC(2026, 10, 23)), ...over });
    this.kmss.push(k);
    return k;
  }

  async cleanup(): Promise<void> {
    for (const k of this.kmss) await k.close().catch(() => undefined);
    for (const s of this.stores) await s.close().catch(() => undefined);
    for (const c of this.clusters) c.close();
    this.tokens.cleanup();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
