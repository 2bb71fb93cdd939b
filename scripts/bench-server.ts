/**
 * Shared pieces of the API-level benchmarks: start a KMS server (or the echo baseline) in its own
 * process, sign requests as the SDK does, drive them with autocannon, read a process's memory.
 */
import autocannon from 'autocannon';
import { ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { createHash, createHmac } from 'node:crypto';
import { canonicalRequest, signingKey, signTc3, stringToSign, utcDate } from '../src/api/tc3';

export const ROOT = join(__dirname, '..', '..');
export const MAIN = join(ROOT, 'dist', 'src', 'main.js');

export interface Creds {
  Uin: number;
  SecretId: string;
  SecretKey: string;
}

export interface SignedRequest {
  method: 'POST';
  path: string;
  headers: Record<string, string>;
  body: string;
}

export interface Row {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Spawns `node args`, resolves when stdout satisfies `ready`, with the milliseconds that took. */
export function start(args: string[], ready: (out: string) => boolean, env: NodeJS.ProcessEnv = process.env): Promise<{ child: ChildProcess; ms: number }> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    let done = false;
    child.stdout.on('data', (d: Buffer) => {
      if (done) return;
      buf += d.toString();
      if (ready(buf)) {
        done = true;
        resolve({ child, ms: Number(process.hrtime.bigint() - t0) / 1e6 });
      }
    });
    child.once('exit', (code) => {
      if (!done) reject(new Error(`${args.join(' ')} exited with ${code}`));
    });
  });
}

/** A KMS server process on `dataDir` and a free port; `ms` is spawn → "listening". */
export async function startKms(dataDir: string, nodeArgs: string[] = []): Promise<{ child: ChildProcess; ms: number; port: number }> {
  const port = await freePort();
  const s = await start([...nodeArgs, MAIN, '--data-dir', dataDir], (b) => b.includes('listening'), { ...process.env, KMS_PORT: String(port) });
  return { ...s, port };
}

export function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

export function signed(port: number, creds: Creds, action: string, params: object): SignedRequest {
  const body = JSON.stringify(params);
  const timestamp = Math.floor(Date.now() / 1000);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    host: `127.0.0.1:${port}`,
    'x-tc-action': action,
    'x-tc-version': '2019-01-18',
    'x-tc-region': 'ap-guangzhou',
    'x-tc-timestamp': String(timestamp),
  };
  headers.authorization = signTc3({ secretId: creds.SecretId, secretKey: creds.SecretKey, service: '127', timestamp, headers, body: Buffer.from(body) });
  return { method: 'POST', path: '/', headers, body };
}

/**
 * A request per call, each with a signature of its own: a signature serves once (docs/security.md
 * §1), so replaying one signed request would measure refusals. Each carries a signed sequence header
 * (`x-bench-seq`), the body unchanged.
 */
export function freshlySigned(port: number, creds: Creds, action: string, params: object): () => SignedRequest {
  const body = JSON.stringify(params);
  const payloadHash = createHash('sha256').update(body).digest('hex');
  const host = `127.0.0.1:${port}`;
  const secretKey = Buffer.from(creds.SecretKey, 'utf8');
  // the signing key is derived once a day, as an SDK could: the generator pays one HMAC per request, not five
  let day = '';
  let key: Buffer = Buffer.alloc(0);
  let seq = 0;
  return () => {
    const timestamp = Math.floor(Date.now() / 1000);
    const date = utcDate(timestamp);
    if (date !== day) {
      day = date;
      key = signingKey(secretKey, date, '127');
    }
    const n = String(seq++);
    const canonical = canonicalRequest({
      method: 'POST',
      path: '/',
      query: '',
      payloadHash,
      headers: [
        ['content-type', 'application/json'],
        ['host', '127.0.0.1'],
        ['x-bench-seq', n],
      ],
    });
    const signature = createHmac('sha256', key)
      .update(stringToSign(timestamp, date, '127', canonical))
      .digest('hex');
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      host,
      'x-tc-action': action,
      'x-tc-version': '2019-01-18',
      'x-tc-region': 'ap-guangzhou',
      'x-tc-timestamp': String(timestamp),
      'x-bench-seq': n,
      authorization: `TC3-HMAC-SHA256 Credential=${creds.SecretId}/${date}/127/tc3_request, SignedHeaders=content-type;host;x-bench-seq, Signature=${signature}`,
    };
    return { method: 'POST', path: '/', headers, body };
  };
}

export async function call(port: number, creds: Creds, action: string, params: object): Promise<Record<string, unknown>> {
  const r = signed(port, creds, action, params);
  const res = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: r.headers, body: r.body });
  const out = (await res.json()) as { Response: Record<string, unknown> & { Error?: { Code: string } } };
  if (out.Response.Error) throw new Error(`${action}: ${out.Response.Error.Code}`);
  return out.Response;
}

/** autocannon at `connections` for `seconds`; each request is `next()` (a fixed one, or one picked per request). */
export async function drive(name: string, port: number, next: () => SignedRequest, seconds: number, connections: number): Promise<Row> {
  let bodyErrors = 0;
  const result = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections,
    duration: seconds,
    pipelining: 1,
    requests: [
      {
        setupRequest: (req) => ({ ...req, ...next() }),
        onResponse: (_status: number, body: string) => {
          if (body.includes('"Error"')) bodyErrors++;
        },
      },
    ],
  });
  return { name, rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.non2xx + bodyErrors };
}

/** Resident memory of a process (MiB), from /proc. */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

export function machineLine(): string {
  const cpu = cpus();
  return `${cpu.length} vCPU (${cpu[0]?.model.trim() ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux, node ${process.version}, SoftHSM2 (Debian softhsm2), SQLite (better-sqlite3, WAL)`;
}

/** Changes `<dataDir>/kms.yaml` (e.g. no key quota, a rate limit the benchmark does not hit). */
export function patchConfig(dataDir: string, patch: Record<string, unknown>): void {
  const file = join(dataDir, 'kms.yaml');
  const doc = parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  writeFileSync(file, stringify({ ...doc, ...patch }), { mode: 0o600 });
}

/** A rate limit far above what one node serves: still checked on every request, never refused here. */
export const BENCH_RATE_LIMIT = { perSecond: 1_000_000, burst: 10_000_000 };
