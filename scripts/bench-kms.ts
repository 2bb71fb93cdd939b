/**
 * npm run bench:kms — Encrypt of 32 bytes through the KMS core (key lookup in the record cache,
 * state check, blob header and AAD, usage counting; embedded SQLite store) versus the HSM layer's
 * cluster.encrypt on the same key material, in one run. The ratio is what the domain layer costs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WrappedMaterial } from '../src/hsm/material';
import { Kms } from '../src/kms/service';
import { SqliteMetadataStore } from '../src/store/sqlite/store';
import { asyncOpsPerSecond, benchCluster, benchToken, machine, median, ROUNDS } from './bench-support';

async function main(): Promise<void> {
  const token = benchToken();
  const dir = mkdtempSync(join(tmpdir(), 'kms-bench-store-'));
  try {
    const { cluster } = await benchCluster(token);
    const store = new SqliteMetadataStore(join(dir, 'kms.db'));
    const kms = new Kms({ store, clusters: [cluster], deploymentId: Buffer.alloc(16, 1) });
    const caller = { tenant: '1001', uin: '1001', region: 'ap-guangzhou' };
    const { keyId: KeyId } = await kms.lifecycle.createKey(caller, { alias: 'bench' });
    const record = (await store.getKey(caller.tenant, KeyId))!;
    const material = WrappedMaterial.fromBuffer(record.versions[0].material);
    const binding = { clusterId: cluster.id, keyId: KeyId, keyVersion: 1, usage: 'ENCRYPT_DECRYPT', owner: caller.tenant, scope: caller.region };
    const plaintext = Buffer.alloc(32, 7);
    const aad = Buffer.alloc(64, 1);
    const layer = () => cluster.encrypt(material, binding, plaintext, aad);
    const core = () => kms.envelope.encrypt(caller, { keyId: KeyId, plaintext });
    for (let i = 0; i < 2000; i++) {
      await layer();
      await core();
    }
    const rows: Array<[number, number]> = [];
    for (let r = 0; r < ROUNDS; r++) rows.push([await asyncOpsPerSecond(layer), await asyncOpsPerSecond(core)]);
    const layerOps = median(rows.map((r) => r[0]));
    const coreOps = median(rows.map((r) => r[1]));
    console.log(`machine: ${machine()}`);
    rows.forEach(([l, c], i) => console.log(`round ${i + 1}: hsm layer ${l.toFixed(0)} ops/s, kms core ${c.toFixed(0)} ops/s`));
    console.log(`hsm layer cluster.encrypt:        ${layerOps.toFixed(0)} ops/s`);
    console.log(`kms core Encrypt (SQLite store):  ${coreOps.toFixed(0)} ops/s`);
    await kms.close();
    await store.close();
    cluster.close();
    console.log(`kms-encrypt/hsm-layer ratio: ${(coreOps / layerOps).toFixed(2)}`);
  } finally {
    token.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
