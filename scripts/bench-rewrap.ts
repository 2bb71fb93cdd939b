/**
 * npm run bench:rewrap — `DomainRotation.rotate` over BENCH_VERSIONS (default 10,000) AES key
 * versions on a one-token SoftHSM2 cluster and the embedded SQLite store: the census, the walk that
 * re-wraps every version inside the HSM (verify MAC, unwrap, wrap under the new KEK, MAC) and writes
 * it back with compare-and-set, then the census before the old generation is destroyed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kms } from '../src/kms/service';
import { SqliteMetadataStore } from '../src/store/sqlite/store';
import { benchCluster, benchToken, machine } from './bench-support';

const VERSIONS = Number(process.env.BENCH_VERSIONS ?? 10_000);

async function main(): Promise<void> {
  const token = benchToken();
  const dir = mkdtempSync(join(tmpdir(), 'kms-bench-rewrap-'));
  try {
    const { cluster } = await benchCluster(token, 'cls-bench');
    const store = new SqliteMetadataStore(join(dir, 'kms.db'));
    const kms = new Kms({ store, clusters: [cluster], deploymentId: Buffer.alloc(16, 1), maxKeysPerRegion: 0 });
    const caller = { tenant: '1001', uin: '1001', region: 'ap-guangzhou' };
    const made = Date.now();
    for (let i = 0; i < VERSIONS; i += 50) {
      await Promise.all(Array.from({ length: Math.min(50, VERSIONS - i) }, (_, j) => kms.lifecycle.createKey(caller, { alias: `k-${i + j}` })));
    }
    console.log(`machine: ${machine().split(',').slice(0, 3).join(',')}`);
    console.log(`${VERSIONS} keys made in ${((Date.now() - made) / 1000).toFixed(1)} s`);
    let walkStarted = 0;
    let walkEnded = 0;
    const r = await kms.domainRotation.rotate('cls-bench', {
      progress: (e) => {
        if (e.phase === 'rewrap' && e.done === 0) walkStarted = Date.now();
        if (e.phase === 'rewrap' && e.done === e.total) walkEnded = Date.now();
      },
    });
    const walkS = (walkEnded - walkStarted) / 1000;
    console.log(
      `rotate-domain: ${r.rewrapped} versions re-wrapped; whole run ${(r.ms / 1000).toFixed(1)} s (${(r.rewrapped / (r.ms / 1000)).toFixed(0)} versions/s, censuses and generation included)`,
    );
    console.log(`re-wrap walk alone: ${walkS.toFixed(1)} s, ${(r.rewrapped / walkS).toFixed(0)} versions/s`);
    await kms.close();
    await store.close();
    cluster.close();
  } finally {
    token.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
