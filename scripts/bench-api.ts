/**
 * npm run bench:api — Encrypt, Decrypt and GenerateDataKey (32-byte plaintext) against one KMS node
 * as `make run` builds it (SQLite, SoftHSM2, TC3 signatures checked, policy evaluated, audit written),
 * driven by autocannon at 32 connections, and in the same run a bare node:http server that parses the
 * same JSON body and answers a body of the same size. Both servers run in their own processes.
 * The KMS runs twice on the same installation: as one process (workers: 1, the like-for-like
 * comparison with the one-process echo server, and the per-request breakdown), then with
 * `workers: auto` (BENCH_WORKERS overrides), as a production node would. Prints req/s, p50 and p99
 * of each; the last line is the Encrypt/echo throughput ratio of the production configuration. The
 * figures also go to docs/bench-results/api.json (for `npm run bench:report`).
 */
import { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { initDev } from '../src/cli/dev-init';
import { DEV_CREDENTIALS } from '../src/common/data-dir';
import {
  BENCH_RATE_LIMIT,
  call,
  Creds,
  drive,
  freePort,
  freshlySigned,
  machineLine,
  patchConfig,
  ROOT,
  Row,
  SignedRequest,
  start,
  startKms,
  stop,
} from './bench-server';

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
    process.env.KMS_WORKERS = '1';
    let kms = await startKms(dir, nodeArgs);
    children.push(kms.child);
    let kmsPort = kms.port;
    const { KeyId } = (await call(kmsPort, creds, 'CreateKey', { Alias: 'bench' })) as { KeyId: string };
    const plaintext = Buffer.alloc(32, 7).toString('base64');
    const { CiphertextBlob } = (await call(kmsPort, creds, 'Encrypt', { KeyId, Plaintext: plaintext })) as { CiphertextBlob: string };
    const encryptAnswer = JSON.stringify({ Response: { CiphertextBlob, KeyId, RequestId: '00000000-0000-0000-0000-000000000000' } }).length;
    const echoPort = await freePort();
    children.push((await start([join(__dirname, 'bench-echo-server.js'), String(echoPort), String(encryptAnswer)], (b) => b.includes('ready'))).child);

    if (process.env.BENCH_REPLAY) {
      await stop(kms.child);
      await replayComparison(dir, creds, KeyId, plaintext, nodeArgs, children);
      return;
    }
    const signed = freshlySigned;
    const encrypt = signed(kmsPort, creds, 'Encrypt', { KeyId, Plaintext: plaintext });
    const run = (name: string, port: number, request: () => SignedRequest) => drive(name, port, request, SECONDS, CONNECTIONS);
    // warm-up: JIT, handle caches, audit tables
    await run('warm-up', kmsPort, encrypt);
    if (process.env.BENCH_ONLY_ENCRYPT) {
      console.log(JSON.stringify(await run('KMS Encrypt', kmsPort, encrypt)));
      return;
    }
    const rows: Row[] = [];
    const echo = await run('node:http echo (same body, same answer size)', echoPort, encrypt);
    rows.push(echo);
    const single = await run('KMS Encrypt (workers: 1)', kmsPort, encrypt);
    rows.push(single);
    rows.push(await run('KMS Decrypt (workers: 1)', kmsPort, signed(kmsPort, creds, 'Decrypt', { CiphertextBlob })));
    rows.push(await run('KMS GenerateDataKey AES_256 (workers: 1)', kmsPort, signed(kmsPort, creds, 'GenerateDataKey', { KeyId, KeySpec: 'AES_256' })));
    // the breakdown: the same pipeline (HTTP, TC3, IAM, rate limit, policy, audit, log) without the key (GetRegions), with one HSM call and no key (GenerateRandom)
    rows.push(await run('KMS GetRegions, pipeline only: no key, no HSM (workers: 1)', kmsPort, signed(kmsPort, creds, 'GetRegions', {})));
    rows.push(
      await run('KMS GenerateRandom 32 bytes, pipeline + one HSM call (workers: 1)', kmsPort, signed(kmsPort, creds, 'GenerateRandom', { NumberOfBytes: 32 })),
    );

    // the same installation as a production node: one worker process per CPU
    await stop(kms.child);
    const workersSetting = process.env.BENCH_WORKERS ?? 'auto';
    process.env.KMS_WORKERS = workersSetting;
    kms = await startKms(dir, nodeArgs);
    children.push(kms.child);
    kmsPort = kms.port;
    const workers = workersSetting === 'auto' ? availableParallelism() : Number(workersSetting);
    const tag = `(workers: ${workersSetting} = ${workers})`;
    const sign = (action: string, params: object) => signed(kmsPort, creds, action, params);
    await run('warm-up', kmsPort, sign('Encrypt', { KeyId, Plaintext: plaintext }));
    const production = await run(`KMS Encrypt ${tag}`, kmsPort, sign('Encrypt', { KeyId, Plaintext: plaintext }));
    rows.push(production);
    rows.push(await run(`KMS Decrypt ${tag}`, kmsPort, sign('Decrypt', { CiphertextBlob })));
    rows.push(await run(`KMS GenerateDataKey AES_256 ${tag}`, kmsPort, sign('GenerateDataKey', { KeyId, KeySpec: 'AES_256' })));

    const machine = machineLine();
    console.log(`machine: ${machine}; ${CONNECTIONS} connections, ${SECONDS} s each, servers and load generator in their own processes on this machine`);
    console.log('| target | req/s | p50 ms | p99 ms | errors |');
    console.log('|---|---:|---:|---:|---:|');
    for (const r of rows) console.log(`| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.errors} |`);
    const ratioSingle = single.rps / echo.rps;
    const ratio = production.rps / echo.rps;
    mkdirSync(join(ROOT, 'docs', 'bench-results'), { recursive: true });
    writeFileSync(
      join(ROOT, 'docs', 'bench-results', 'api.json'),
      JSON.stringify({ date: new Date().toISOString(), machine, connections: CONNECTIONS, seconds: SECONDS, workers, rows, ratio, ratioSingle }, null, 2) +
        '\n',
    );
    console.log(`api-encrypt (workers: 1)/node-http-echo ratio: ${ratioSingle.toFixed(2)}`);
    console.log(`api-encrypt/node-http-echo ratio: ${ratio.toFixed(2)}`);
  } finally {
    await Promise.all(children.map(stop));
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * BENCH_REPLAY=1: Encrypt with the replay cache on and off (tc3.replayCache), in one process and
 * with workers: auto (where each claim is a question to the supervisor), same installation, same
 * run. Every request is freshly signed in both (BENCH_SECONDS defaults to 4 here).
 */
async function replayComparison(dir: string, creds: Creds, KeyId: string, plaintext: string, nodeArgs: string[], children: ChildProcess[]): Promise<void> {
  const seconds = Number(process.env.BENCH_SECONDS ?? 4);
  const rows: Row[] = [];
  for (const workers of ['1', process.env.BENCH_WORKERS ?? 'auto']) {
    for (const replayCache of [true, false]) {
      patchConfig(dir, { tc3: { replayCache } });
      process.env.KMS_WORKERS = workers;
      const kms = await startKms(dir, nodeArgs);
      children.push(kms.child);
      const encrypt = freshlySigned(kms.port, creds, 'Encrypt', { KeyId, Plaintext: plaintext });
      await drive('warm-up', kms.port, encrypt, 2, CONNECTIONS);
      rows.push(await drive(`KMS Encrypt (workers: ${workers}, replay cache ${replayCache ? 'on' : 'off'})`, kms.port, encrypt, seconds, CONNECTIONS));
      await stop(kms.child);
    }
  }
  console.log(`machine: ${machineLine()}; ${CONNECTIONS} connections, ${seconds} s each`);
  console.log('| target | req/s | p50 ms | p99 ms | errors |');
  console.log('|---|---:|---:|---:|---:|');
  for (const r of rows) console.log(`| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.errors} |`);
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
