/**
 * npm run bench:isolation — one tenant's expensive requests versus another tenant's Encrypt.
 * A development installation (`kmsctl init --dev`) is served by `node dist/src/main.js` in its own
 * process. Tenant B (the development root) sends Encrypt of 32 bytes, CONCURRENCY at a time, for
 * SECONDS: once with nothing else running, then while tenant A keeps LOAD concurrent expensive
 * requests in flight on the shared pool — CreateKey of RSA key pairs (ASYMMETRIC_DECRYPT_RSA_2048:
 * the API offers no larger RSA key), then GetParametersForImport, each on an External key not asked
 * before (so the wrapping-key reuse does not hide the cost: every one is an RSA-2048 generation) —
 * once with B's key on the shared pool and once on B's dedicated cluster. A's requests refused by
 * the per-tenant cap (RequestLimitExceeded.UinLimitExceeded) or by the shared pool's slow queue
 * (RequestLimitExceeded) are retried after RETRY_MS, as a client backing off would. Figures only,
 * nothing asserted: B's p50/p99 idle and loaded, and loaded/idle ratios.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEV_DEDICATED_CLUSTER, initDev } from '../src/cli/dev-init';
import { DEV_CREDENTIALS } from '../src/common/data-dir';
import { BENCH_RATE_LIMIT, call, Creds, freshlySigned, machineLine, patchConfig, ROOT, SignedRequest, startKms, stop } from './bench-server';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const LOAD = Number(process.env.BENCH_LOAD ?? 8);
const CONCURRENCY = 2;
const RETRY_MS = 20;

interface Phase {
  ms: number[];
  errors: number;
}
/** One line of docs/bench-results/isolation.json (rendered by bench:report). */
export interface IsolationRow {
  where: string;
  phase: string;
  p50: number;
  p99: number;
  requests: number;
  errors: number;
  served?: number;
  capped?: number;
  queueFull?: number;
}
interface Load {
  served: number;
  capped: number;
  queueFull: number;
}
type LoadKind = 'CreateKey' | 'GetParametersForImport';

const signers = new Map<string, () => SignedRequest>();

/** The Response of an action, or its error code. Every request is signed afresh: a signature serves once (replay cache). */
async function answer(port: number, creds: Creds, action: string, params: object): Promise<{ code: string }> {
  const id = `${creds.SecretId}\0${action}\0${JSON.stringify(params)}`;
  let next = signers.get(id);
  if (!next) signers.set(id, (next = freshlySigned(port, creds, action, params)));
  const r = next();
  const res = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: r.headers, body: r.body });
  const out = (await res.json()) as { Response: { Error?: { Code: string } } };
  return { code: out.Response.Error?.Code ?? 'Success' };
}

const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function encrypts(port: number, b: Creds, keyId: string, seconds: number): Promise<Phase> {
  const phase: Phase = { ms: [], errors: 0 };
  const end = Date.now() + seconds * 1000;
  const worker = async (): Promise<void> => {
    while (Date.now() < end) {
      const t = process.hrtime.bigint();
      const { code } = await answer(port, b, 'Encrypt', { KeyId: keyId, Plaintext: Buffer.alloc(32, 1).toString('base64') });
      if (code === 'Success') phase.ms.push(Number(process.hrtime.bigint() - t) / 1e6);
      else phase.errors++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return phase;
}

/** LOAD loops of `kind` on tenant A's keys (shared pool), each asking for a fresh generation, until `stop()`. */
function generations(port: number, a: Creds, phase: string, kind: LoadKind): { stop: () => Promise<Load> } {
  const load: Load = { served: 0, capped: 0, queueFull: 0 };
  let running = true;
  let n = 0;
  const once = async (keyId: string | undefined): Promise<{ code: string; keyId?: string }> => {
    if (kind === 'CreateKey') return answer(port, a, 'CreateKey', { Alias: `bench-rsa-${phase}-${n++}`, KeyUsage: 'ASYMMETRIC_DECRYPT_RSA_2048' });
    keyId ??= (await call(port, a, 'CreateKey', { Alias: `bench-ext-${phase}-${n++}`, Type: 2 })).KeyId as string;
    return {
      ...(await answer(port, a, 'GetParametersForImport', { KeyId: keyId, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' })),
      keyId,
    };
  };
  const loop = async (): Promise<void> => {
    let keyId: string | undefined;
    while (running) {
      const r = await once(keyId);
      keyId = r.keyId;
      if (r.code === 'Success') {
        load.served++;
        keyId = undefined;
      } else if (r.code === 'RequestLimitExceeded.UinLimitExceeded' || r.code === 'RequestLimitExceeded') {
        if (r.code === 'RequestLimitExceeded') load.queueFull++;
        else load.capped++;
        await new Promise((res) => setTimeout(res, RETRY_MS));
      } else {
        throw new Error(`${kind}: ${r.code}`);
      }
    }
  };
  const loops = Array.from({ length: LOAD }, loop);
  return { stop: async () => ((running = false), await Promise.all(loops), load) };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kms-bench-isolation-'));
  try {
    await initDev(dir, () => undefined);
    patchConfig(dir, { rateLimit: BENCH_RATE_LIMIT, maxKeysPerRegion: 0 });
    const b = JSON.parse(readFileSync(join(dir, DEV_CREDENTIALS), 'utf8')) as Creds;
    const kmsctl = join(ROOT, 'dist', 'src', 'cli', 'kmsctl.js');
    const a = JSON.parse(
      execFileSync(process.execPath, [kmsctl, 'tenant', 'create', '--name', 'bench-a', '--json', '--data-dir', dir], { encoding: 'utf8' }),
    ) as Creds;
    const server = await startKms(dir);
    try {
      const shared = (await call(server.port, b, 'CreateKey', { Alias: 'bench-b-shared' })).KeyId as string;
      const dedicated = (await call(server.port, b, 'CreateKey', { Alias: 'bench-b-dedicated', HsmClusterId: DEV_DEDICATED_CLUSTER })).KeyId as string;
      for (const k of [shared, dedicated]) await encrypts(server.port, b, k, 0.5);
      console.log(`machine: ${machineLine()}; UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? 'default (4)'}`);
      console.log(
        `tenant B Encrypt at concurrency ${CONCURRENCY}, ${SECONDS} s per phase; ` +
          `tenant A: ${LOAD} concurrent RSA-2048 CreateKey, then ${LOAD} GetParametersForImport on fresh External keys, on the shared pool`,
      );
      const f = (x: number) => x.toFixed(1);
      const rows: IsolationRow[] = [];
      for (const [where, key] of [
        ['shared pool', shared],
        ['dedicated cluster', dedicated],
      ] as const) {
        const idle = await encrypts(server.port, b, key, SECONDS);
        const [i50, i99] = [percentile(idle.ms, 50), percentile(idle.ms, 99)];
        rows.push({ where, phase: 'idle', p50: i50, p99: i99, requests: idle.ms.length, errors: idle.errors });
        console.log(`B on the ${where}, idle: Encrypt p50/p99 ${f(i50)}/${f(i99)} ms (${idle.ms.length} requests, ${idle.errors} errors)`);
        for (const kind of ['CreateKey', 'GetParametersForImport'] as const) {
          const gen = generations(server.port, a, `${where.replace(' ', '-')}-${kind}`, kind);
          await new Promise((r) => setTimeout(r, 500));
          const loaded = await encrypts(server.port, b, key, SECONDS);
          const load = await gen.stop();
          const [l50, l99] = [percentile(loaded.ms, 50), percentile(loaded.ms, 99)];
          rows.push({
            where,
            phase: kind,
            p50: l50,
            p99: l99,
            requests: loaded.ms.length,
            errors: loaded.errors,
            served: load.served,
            capped: load.capped,
            queueFull: load.queueFull,
          });
          console.log(
            `B on the ${where}, while A runs ${LOAD} ${kind}: Encrypt p50/p99 ${f(l50)}/${f(l99)} ms (${loaded.ms.length} requests, ${loaded.errors} errors); ` +
              `ratio p50 ${(l50 / i50).toFixed(2)}, p99 ${(l99 / i99).toFixed(2)}; ` +
              `A: ${load.served} generations served, ${load.capped} refused by the per-tenant cap, ${load.queueFull} by the slow queue`,
          );
        }
      }
      const result = { date: new Date().toISOString(), machine: machineLine(), seconds: SECONDS, load: LOAD, concurrency: CONCURRENCY, rows };
      writeFileSync(join(ROOT, 'docs', 'bench-results', 'isolation.json'), `${JSON.stringify(result, null, 2)}\n`);
    } finally {
      await stop(server.child);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
