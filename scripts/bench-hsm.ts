/**
 * npm run bench:hsm — AES-256-GCM encrypt of 32 bytes through the HSM layer's public API
 * (cluster.encrypt on a cached key) versus a raw pkcs11js sync loop on the same token, in one run.
 * Both paths make the same PKCS#11 calls per operation: C_GenerateRandom (96-bit IV from the
 * HSM's RNG), C_EncryptInit (GCM), C_Encrypt.
 */
import { join } from 'node:path';
import * as pk from 'pkcs11js';
import { loadProfiles } from '../src/hsm/profile';
import { asyncOpsPerSecond, benchCluster, benchToken, machine, median, opsPerSecond, ROOT, ROUNDS, SECONDS } from './bench-support';

async function main(): Promise<void> {
  const token = benchToken();
  try {
    const { cluster, member } = await benchCluster(token);
    const binding = { clusterId: 'bench', keyId: 'k', keyVersion: 1, usage: 'ENCRYPT_DECRYPT' };
    const key = await cluster.generate('AES_256', binding);
    const plaintext = Buffer.alloc(32, 7);
    const aad = Buffer.alloc(0);

    const api = member.module.api;
    const session = api.C_OpenSession(member.module.findToken('bench').slot, pk.CKF_SERIAL_SESSION | pk.CKF_RW_SESSION);
    const rawKey = api.C_GenerateKey(session, { mechanism: pk.CKM_AES_KEY_GEN }, [
      { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
      { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
      { type: pk.CKA_TOKEN, value: false },
      { type: pk.CKA_VALUE_LEN, value: 32 },
      { type: pk.CKA_ENCRYPT, value: true },
      { type: pk.CKA_SENSITIVE, value: true },
      { type: pk.CKA_EXTRACTABLE, value: false },
    ]);
    const raw = (deadline: bigint): number => {
      let n = 0;
      while (process.hrtime.bigint() < deadline) {
        for (let i = 0; i < 100; i++) {
          const iv = api.C_GenerateRandom(session, Buffer.alloc(12));
          api.C_EncryptInit(
            session,
            { mechanism: pk.CKM_AES_GCM, parameter: { type: pk.CK_PARAMS_AES_GCM, iv, aad, ivBits: 96, tagBits: 128 } as pk.AesGCM },
            rawKey,
          );
          api.C_Encrypt(session, plaintext, Buffer.alloc(48));
        }
        n += 100;
      }
      return n;
    };
    const layer = () => cluster.encrypt(key, binding, plaintext, aad);

    // warm up both paths (JIT, handle cache)
    for (let i = 0; i < 2000; i++) await layer();
    raw(process.hrtime.bigint() + 200_000_000n);

    const rows: Array<[number, number]> = [];
    for (let r = 0; r < ROUNDS; r++) rows.push([opsPerSecond(raw), await asyncOpsPerSecond(layer)]);
    const rawOps = median(rows.map((r) => r[0]));
    const layerOps = median(rows.map((r) => r[1]));
    console.log(`machine: ${machine()}`);
    rows.forEach(([r, l], i) => console.log(`round ${i + 1}: raw pkcs11js ${r.toFixed(0)} ops/s, hsm layer ${l.toFixed(0)} ops/s`));
    console.log(`raw pkcs11js sync loop (GenerateRandom+EncryptInit+Encrypt): ${rawOps.toFixed(0)} ops/s`);
    console.log(`hsm layer cluster.encrypt (cached key):                      ${layerOps.toFixed(0)} ops/s`);
    api.C_CloseSession(session);
    // For information: the async call mode (what a network-HSM profile uses) on the same token.
    const asyncMember = token.member('bench-async', { ...loadProfiles(join(ROOT, 'hsm-profiles')).get('softhsm2')!, callMode: 'async' });
    asyncMember.connect();
    for (const concurrency of [1, 8]) {
      const start = process.hrtime.bigint();
      const deadline = start + BigInt(Math.round(SECONDS * 1e9));
      let n = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (process.hrtime.bigint() < deadline) {
            await asyncMember.encryptGcm(key, plaintext, aad);
            n++;
          }
        }),
      );
      console.log(`info: async call mode, concurrency ${concurrency}: ${(n / (Number(process.hrtime.bigint() - start) / 1e9)).toFixed(0)} ops/s`);
    }
    asyncMember.close();
    cluster.close();
    member.module.finalize();
    console.log(`hsm-layer/raw-pkcs11js ratio: ${(layerOps / rawOps).toFixed(2)}`);
  } finally {
    token.cleanup();
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
