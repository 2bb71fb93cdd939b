/**
 * npm run bench:api — Encrypt, Decrypt and GenerateDataKey (32-byte plaintext) against one KMS node
 * as `make run` builds it (SQLite, SoftHSM2, TC3 signatures checked, policy evaluated, audit written),
 * driven by autocannon at 32 connections, and in the same run a bare node:http server that parses the
 * same JSON body and answers a body of the same size. Both servers run in their own processes.
 * Prints req/s, p50 and p99 of each; the last line is the Encrypt/echo throughput ratio.
 */
import autocannon from 'autocannon';
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { signTc3 } from '../src/api/tc3';
import { DEV_CREDENTIALS, initDev } from '../src/cli/dev-init';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const ROOT = join(__dirname, '..', '..');

interface Creds { SecretId: string; SecretKey: string }

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function start(args: string[], ready: (line: string) => boolean, env: NodeJS.ProcessEnv = process.env): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      if (ready(buf)) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)));
  });
}

function signed(port: number, creds: Creds, action: string, params: object): { method: 'POST'; path: string; headers: Record<string, string>; body: string } {
  const body = JSON.stringify(params);
  const timestamp = Math.floor(Date.now() / 1000);
  const headers: Record<string, string> = {
    'content-type': 'application/json', host: `127.0.0.1:${port}`, 'x-tc-action': action, 'x-tc-version': '2019-01-18',
    'x-tc-region': 'ap-guangzhou', 'x-tc-timestamp': String(timestamp),
  };
  headers.authorization = signTc3({ secretId: creds.SecretId, secretKey: creds.SecretKey, service: '127', timestamp, headers, body: Buffer.from(body) });
  return { method: 'POST', path: '/', headers, body };
}

async function call(port: number, creds: Creds, action: string, params: object): Promise<Record<string, unknown>> {
  const r = signed(port, creds, action, params);
  const res = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: r.headers, body: r.body });
  const out = (await res.json()) as { Response: Record<string, unknown> & { Error?: { Code: string } } };
  if (out.Response.Error) throw new Error(`${action}: ${out.Response.Error.Code}`);
  return out.Response;
}

interface Row { name: string; rps: number; p50: number; p99: number; errors: number; non2xx: number; bodyErrors: number }

async function drive(name: string, port: number, request: ReturnType<typeof signed>): Promise<Row> {
  let bodyErrors = 0;
  const result = await autocannon({
    url: `http://127.0.0.1:${port}`, connections: CONNECTIONS, duration: SECONDS, pipelining: 1,
    requests: [{ ...request, onResponse: (_status: number, body: string) => { if (body.includes('"Error"')) bodyErrors++; } }],
  });
  return { name, rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors, non2xx: result.non2xx, bodyErrors };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kms-bench-api-'));
  const children: ChildProcess[] = [];
  try {
    await initDev(dir, () => undefined);
    const creds = JSON.parse(readFileSync(join(dir, DEV_CREDENTIALS), 'utf8')) as Creds;
    const kmsPort = await freePort();
    const nodeArgs = (process.env.BENCH_KMS_NODE_ARGS ?? '').split(' ').filter(Boolean);
    children.push(await start([...nodeArgs, join(ROOT, 'dist', 'src', 'main.js'), '--data-dir', dir], (b) => b.includes('listening'), { ...process.env, KMS_PORT: String(kmsPort) }));
    const { KeyId } = (await call(kmsPort, creds, 'CreateKey', { Alias: 'bench' })) as { KeyId: string };
    const plaintext = Buffer.alloc(32, 7).toString('base64');
    const { CiphertextBlob } = (await call(kmsPort, creds, 'Encrypt', { KeyId, Plaintext: plaintext })) as { CiphertextBlob: string };
    const encryptAnswer = JSON.stringify({ Response: { CiphertextBlob, KeyId, RequestId: '00000000-0000-0000-0000-000000000000' } }).length;
    const echoPort = await freePort();
    children.push(await start([join(__dirname, 'bench-echo-server.js'), String(echoPort), String(encryptAnswer)], (b) => b.includes('ready')));

    const encrypt = signed(kmsPort, creds, 'Encrypt', { KeyId, Plaintext: plaintext });
    // warm-up: JIT, handle caches, audit tables
    await drive('warm-up', kmsPort, encrypt);
    const rows: Row[] = [];
    if (process.env.BENCH_ONLY_ENCRYPT) {
      console.log(JSON.stringify(await drive('KMS Encrypt', kmsPort, encrypt)));
      return;
    }
    rows.push(await drive('node:http echo (same body, same answer size)', echoPort, encrypt));
    rows.push(await drive('KMS Encrypt', kmsPort, encrypt));
    rows.push(await drive('KMS Decrypt', kmsPort, signed(kmsPort, creds, 'Decrypt', { CiphertextBlob })));
    rows.push(await drive('KMS GenerateDataKey (AES_256)', kmsPort, signed(kmsPort, creds, 'GenerateDataKey', { KeyId, KeySpec: 'AES_256' })));

    console.log(`machine: ${cpus().length} cpu (${cpus()[0]?.model ?? '?'}), node ${process.version}, SoftHSM2, SQLite, ${CONNECTIONS} connections, ${SECONDS} s each, servers in their own processes`);
    console.log('| target | req/s | p50 ms | p99 ms | errors |');
    console.log('|---|---:|---:|---:|---:|');
    for (const r of rows) console.log(`| ${r.name} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.errors + r.non2xx + r.bodyErrors} |`);
    const echo = rows[0];
    const enc = rows[1];
    console.log(`api-encrypt/node-http-echo ratio: ${(enc.rps / echo.rps).toFixed(2)}`);
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
