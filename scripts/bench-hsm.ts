/**
 * npm run bench:hsm — AES-256-GCM encrypt of 32 bytes through the HSM layer's public API
 * (cluster.encrypt on a cached key) versus a raw pkcs11js sync loop on the same token, in one run.
 * Both paths make the same PKCS#11 calls per operation: C_GenerateRandom (96-bit IV from the
 * HSM's RNG), C_EncryptInit (GCM), C_Encrypt.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pk from 'pkcs11js';
import { HsmCluster } from '../src/hsm/cluster';
import { HsmMember } from '../src/hsm/member';
import { loadProfiles } from '../src/hsm/profile';

const ROOT = join(__dirname, '..', '..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

function opsPerSecond(run: (deadline: bigint) => number): number {
  const start = process.hrtime.bigint();
  const n = run(start + BigInt(Math.round(SECONDS * 1e9)));
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

async function asyncOpsPerSecond(op: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(SECONDS * 1e9));
  let n = 0;
  while (process.hrtime.bigint() < deadline) {
    for (let i = 0; i < 100; i++) await op();
    n += 100;
  }
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kms-bench-'));
  try {
    const conf = execFileSync(join(ROOT, 'softhsm', 'make-tokens.sh'), [join(dir, 't'), 'bench'], { encoding: 'utf8' }).trim();
    const lib = join(dir, 'libsofthsm2.so');
    copyFileSync('/usr/lib/softhsm/libsofthsm2.so', lib);
    const member = new HsmMember({
      id: 'bench',
      profile: loadProfiles(join(ROOT, 'hsm-profiles')).get('softhsm2')!,
      module: { path: lib, env: { SOFTHSM2_CONF: conf } },
      tokenLabel: 'bench',
      pin: readFileSync(join(dir, 't', 'pins', 'bench.pin'), 'utf8'),
    });
    const cluster = new HsmCluster({ id: 'bench', kind: 'shared', owners: [], members: [member] });
    cluster.start();
    await cluster.initDomain();
    const binding = { clusterId: 'bench', keyId: 'k', keyVersion: 1, usage: 'ENCRYPT_DECRYPT' };
    const key = await cluster.generate('AES_256', binding);
    const plaintext = Buffer.alloc(32, 7);
    const aad = Buffer.alloc(0);

    const api = member.module.api;
    const session = api.C_OpenSession(member.module.findToken('bench').slot, pk.CKF_SERIAL_SESSION | pk.CKF_RW_SESSION);
    const rawKey = api.C_GenerateKey(session, { mechanism: pk.CKM_AES_KEY_GEN }, [
      { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY }, { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES }, { type: pk.CKA_TOKEN, value: false },
      { type: pk.CKA_VALUE_LEN, value: 32 }, { type: pk.CKA_ENCRYPT, value: true }, { type: pk.CKA_SENSITIVE, value: true }, { type: pk.CKA_EXTRACTABLE, value: false },
    ]);
    const raw = (deadline: bigint): number => {
      let n = 0;
      while (process.hrtime.bigint() < deadline) {
        for (let i = 0; i < 100; i++) {
          const iv = api.C_GenerateRandom(session, Buffer.alloc(12));
          api.C_EncryptInit(session, { mechanism: pk.CKM_AES_GCM, parameter: { type: pk.CK_PARAMS_AES_GCM, iv, aad, ivBits: 96, tagBits: 128 } as pk.AesGCM }, rawKey);
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
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    const rawOps = median(rows.map((r) => r[0]));
    const layerOps = median(rows.map((r) => r[1]));
    console.log(`machine: ${require('node:os').cpus().length} cpu, node ${process.version}, SoftHSM2 (sync profile), ${ROUNDS} rounds x ${SECONDS}s, median`);
    rows.forEach(([r, l], i) => console.log(`round ${i + 1}: raw pkcs11js ${r.toFixed(0)} ops/s, hsm layer ${l.toFixed(0)} ops/s`));
    console.log(`raw pkcs11js sync loop (GenerateRandom+EncryptInit+Encrypt): ${rawOps.toFixed(0)} ops/s`);
    console.log(`hsm layer cluster.encrypt (cached key):                      ${layerOps.toFixed(0)} ops/s`);
    api.C_CloseSession(session);
    // For information: the async call mode (what a network-HSM profile uses) on the same token.
    const asyncMember = new HsmMember({
      id: 'bench-async',
      profile: { ...loadProfiles(join(ROOT, 'hsm-profiles')).get('softhsm2')!, callMode: 'async' },
      module: { path: lib, env: { SOFTHSM2_CONF: conf } },
      tokenLabel: 'bench',
      pin: readFileSync(join(dir, 't', 'pins', 'bench.pin'), 'utf8'),
    });
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
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
