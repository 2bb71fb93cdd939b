/**
 * npm run bench:api — Encrypt, Decrypt and GenerateDataKey (32-byte plaintext) against one KMS node
 * as `make run` builds it (SQLite, SoftHSM2, TC3 signatures checked, policy evaluated, audit written),
 * driven by autocannon at 32 connections, and in the same run a bare node:http server that parses the
 * same JSON body and answers a body of the same size. Both servers run in their own processes.
 * Prints req/s, p50 and p99 of each; the last line is the Encrypt/echo throughput ratio. The figures
 * also go to docs/bench-results/api.json (for `npm run bench:report`).
 */
import { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEV_CREDENTIALS, initDev } from '../src/cli/dev-init';
import { BENCH_RATE_LIMIT, call, Creds, drive, freePort, machineLine, patchConfig, ROOT, Row, signed, start, startKms, stop } from './bench-server';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kms-bench-api-'));
  const children: ChildProcess[] = [];
  try {
    await initDev(dir, () => undefined);
    patchConfig(dir, { rateLimit: BENCH_RATE_LIMIT });
    const creds = JSON.parse(readFileSync(join(dir, DEV_CREDENTIALS), 'utf8')) as Creds;
    const nodeArgs = (process.env.BENCH_KMS_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const kms = await startKms(dir, nodeArgs);
    children.push(kms.child);
    const kmsPort = kms.port;
    const { KeyId } = (await call(kmsPort, creds, 'CreateKey', { Alias: 'bench' })) as { KeyId: string };
    const plaintext = Buffer.alloc(32, 7).toString('base64');
    const { CiphertextBlob } = (await call(kmsPort, creds, 'Encrypt', { KeyId, Plaintext: plaintext })) as { CiphertextBlob: string };
    const encryptAnswer = JSON.stringify({ Response: { CiphertextBlob, KeyId, RequestId: '00000000-0000-0000-0000-000000000000' } }).length;
    const echoPort = await freePort();
    children.push((await start([join(__dirname, 'bench-echo-server.js'), String(echoPort), String(encryptAnswer)], (b) => b.includes('ready'))).child);

    const encrypt = signed(kmsPort, creds, 'Encrypt', { KeyId, Plaintext: plaintext });
    const run = (name: string, port: number, request: typeof encrypt) => drive(name, port, () => request, SECONDS, CONNECTIONS);
    // warm-up: JIT, handle caches, audit tables
    await run('warm-up', kmsPort, encrypt);
    if (process.env.BENCH_ONLY_ENCRYPT) {
      console.log(JSON.stringify(await run('KMS Encrypt', kmsPort, encrypt)));
      return;
    }
    const rows: Row[] = [];
    rows.push(await run('node:http echo (same body, same answer size)', echoPort, encrypt));
    rows.push(await run('KMS Encrypt', kmsPort, encrypt));
    rows.push(await run('KMS Decrypt', kmsPort, signed(kmsPort, creds, 'Decrypt', { CiphertextBlob })));
    rows.push(await run('KMS GenerateDataKey (AES_256)', kmsPort, signed(kmsPort, creds, 'GenerateDataKey', { KeyId, KeySpec: 'AES_256' })));
    // the breakdown: the same pipeline (HTTP, TC3, IAM, rate limit, policy, audit, log) without the key (GetRegions), with one HSM call and no key (GenerateRandom)
    rows.push(await run('KMS GetRegions (pipeline only: no key, no HSM)', kmsPort, signed(kmsPort, creds, 'GetRegions', {})));
    rows.push(await run('KMS GenerateRandom 32 bytes (pipeline + one HSM call)', kmsPort, signed(kmsPort, creds, 'GenerateRandom', { NumberOfBytes: 32 })));

    const machine = machineLine();
    console.log(`machine: ${machine}; ${CONNECTIONS} connections, ${SECONDS} s each, servers in their own processes`);
    console.log('| target | req/s | p50 ms | p99 ms | errors |');
    console.log('|---|---:|---:|---:|---:|');
    for (const r of rows) console.log(`| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.errors} |`);
    const ratio = rows[1].rps / rows[0].rps;
    mkdirSync(join(ROOT, 'docs', 'bench-results'), { recursive: true });
    writeFileSync(join(ROOT, 'docs', 'bench-results', 'api.json'), JSON.stringify({ date: new Date().toISOString(), machine, connections: CONNECTIONS, seconds: SECONDS, rows, ratio }, null, 2) + '\n');
    console.log(`api-encrypt/node-http-echo ratio: ${ratio.toFixed(2)}`);
  } finally {
    await Promise.all(children.map(stop));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
