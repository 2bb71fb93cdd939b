/**
 * npm run bench:slow-queue — the HSM layer on SoftHSM2, in one process: AES-GCM encrypt of 32 bytes
 * (cluster.encrypt, CONCURRENCY at a time, for SECONDS) on a two-member shared pool and on a
 * one-member dedicated cluster, idle and while LOAD (8) loops keep RSA-4096 generations
 * (cluster.generate) in flight on the shared pool. Each member is its own token and library copy.
 * Prints p50/p99, the generations served, and the shared pool's slow queue (depth and running count
 * sampled every 100 ms; refusals). Figures only, nothing asserted.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { HsmCluster } from '../src/hsm/cluster';
import { SlowQueueFullError } from '../src/hsm/errors';
import { HsmMember } from '../src/hsm/member';
import { loadProfiles } from '../src/hsm/profile';
import { slowLane } from '../src/hsm/thread-lane';
import { ROOT } from './bench-support';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const LOAD = Number(process.env.BENCH_LOAD ?? 8);
const CONCURRENCY = 2;

/** One line of docs/bench-results/slow-queue.json (rendered by bench:report). */
export interface SlowQueueRow {
  where: string;
  idleP50: number;
  idleP99: number;
  loadedP50: number;
  loadedP99: number;
  served: number;
  refused: number;
  maxQueued: number;
  maxRunning: number;
}

const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

function members(dir: string, name: string, labels: string[]): HsmMember[] {
  const conf = execFileSync(join(ROOT, 'softhsm', 'make-tokens.sh'), [join(dir, name), ...labels], { encoding: 'utf8' }).trim();
  const lib = join(dir, name, 'libsofthsm2.so');
  copyFileSync('/usr/lib/softhsm/libsofthsm2.so', lib);
  const profile = loadProfiles(join(ROOT, 'hsm-profiles')).get('softhsm2')!;
  return labels.map(
    (label) =>
      new HsmMember({
        id: label,
        profile,
        module: { path: lib, env: { SOFTHSM2_CONF: conf } },
        tokenLabel: label,
        pin: readFileSync(join(dir, name, 'pins', `${label}.pin`), 'utf8'),
      }),
  );
}

async function cluster(id: string, kind: 'shared' | 'dedicated', ms: HsmMember[]): Promise<HsmCluster> {
  const c = new HsmCluster({ id, kind, owners: kind === 'dedicated' ? ['1001'] : [], members: ms, probeIntervalMs: 0 });
  c.start();
  await c.initDomain();
  return c;
}

async function encrypts(c: HsmCluster, seconds: number): Promise<number[]> {
  const binding = { clusterId: c.id, keyId: 'bench', keyVersion: 1, usage: 'ENCRYPT_DECRYPT' };
  const key = await c.generate('AES_256', binding);
  const ms: number[] = [];
  const end = Date.now() + seconds * 1000;
  const worker = async (): Promise<void> => {
    while (Date.now() < end) {
      const t = process.hrtime.bigint();
      await c.encrypt(key, binding, Buffer.alloc(32, 1), Buffer.alloc(0));
      ms.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return ms;
}

/** LOAD loops of RSA-4096 generations on `c` until `stop()`; a full queue is retried after 20 ms. */
function generations(c: HsmCluster): { stop: () => Promise<{ served: number; refused: number; maxQueued: number; maxRunning: number }> } {
  const out = { served: 0, refused: 0, maxQueued: 0, maxRunning: 0 };
  let running = true;
  let n = 0;
  const sampler = setInterval(() => {
    out.maxQueued = Math.max(out.maxQueued, c.slow.queued);
    out.maxRunning = Math.max(out.maxRunning, c.slow.running);
  }, 100);
  const loop = async (): Promise<void> => {
    while (running) {
      try {
        await c.generate('RSA_4096', { clusterId: c.id, keyId: `rsa-${n++}`, keyVersion: 1, usage: 'SIGN_VERIFY' });
        out.served++;
      } catch (e) {
        if (!(e instanceof SlowQueueFullError)) throw e;
        out.refused++;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
  const loops = Array.from({ length: LOAD }, loop);
  return { stop: async () => ((running = false), await Promise.all(loops), clearInterval(sampler), out) };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kms-bench-slow-queue-'));
  try {
    const shared = await cluster('shared', 'shared', members(dir, 'shared', ['shared-a', 'shared-b']));
    const dedicated = await cluster('dedicated', 'dedicated', members(dir, 'dedicated', ['dedicated-a']));
    for (const c of [shared, dedicated]) await encrypts(c, 0.5);
    console.log(
      `machine: ${cpus().length} cpu, node ${process.version}, SoftHSM2 (sync profile); UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? 'default (4)'}; ` +
        `lane places ${slowLane.places}; shared slow queue running ${shared.slow.limits.running}, queued ${shared.slow.limits.queued}`,
    );
    console.log(`cluster.encrypt at concurrency ${CONCURRENCY}, ${SECONDS} s per phase; load: ${LOAD} concurrent RSA-4096 generations on the shared pool`);
    const f = (x: number) => x.toFixed(2);
    const rows: SlowQueueRow[] = [];
    for (const [where, c] of [
      ['shared pool', shared],
      ['dedicated cluster', dedicated],
    ] as const) {
      const idle = await encrypts(c, SECONDS);
      const gen = generations(shared);
      await new Promise((r) => setTimeout(r, 500));
      const loaded = await encrypts(c, SECONDS);
      const load = await gen.stop();
      const [i50, i99, l50, l99] = [percentile(idle, 50), percentile(idle, 99), percentile(loaded, 50), percentile(loaded, 99)];
      rows.push({
        where,
        idleP50: i50,
        idleP99: i99,
        loadedP50: l50,
        loadedP99: l99,
        served: load.served,
        refused: load.refused,
        maxQueued: load.maxQueued,
        maxRunning: load.maxRunning,
      });
      console.log(
        `encrypt on the ${where}: idle p50/p99 ${f(i50)}/${f(i99)} ms (${idle.length} ops); while generating ${f(l50)}/${f(l99)} ms (${loaded.length} ops); ` +
          `ratio p99 ${(l99 / i99).toFixed(2)}; RSA-4096 served ${load.served}, refused ${load.refused}; shared queue at most ${load.maxQueued} waiting, ${load.maxRunning} running`,
      );
    }
    const machine =
      `${cpus().length} cpu, node ${process.version}, SoftHSM2 (sync profile), ` +
      `lane places ${slowLane.places}, slow queue running ${shared.slow.limits.running} / queued ${shared.slow.limits.queued}`;
    const result = { date: new Date().toISOString(), machine, seconds: SECONDS, load: LOAD, concurrency: CONCURRENCY, rows };
    writeFileSync(join(ROOT, 'docs', 'bench-results', 'slow-queue.json'), `${JSON.stringify(result, null, 2)}\n`);
    shared.close();
    dedicated.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
