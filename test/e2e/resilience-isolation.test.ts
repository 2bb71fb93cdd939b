/**
 * Resilience: dedicated isolation. With the server as its own process (`node dist/src/main.js`, the
 * development installation: shared pool `default`, dedicated cluster `cls-dev-dedicated`), the
 * shared pool is saturated (SHARED_CONCURRENCY concurrent Encrypts on shared-pool keys) while
 * Encrypt on a dedicated-cluster key runs at low concurrency. Both p99s are printed, with the
 * dedicated key's p99 on an idle server for comparison; nothing is asserted about time. Asserted:
 * every dedicated request succeeds, and the dedicated members did the dedicated work and only that:
 * their HSM encrypt counters in /metrics grew by the number of dedicated requests (plus health
 * probes: the scrape's and the background ones), so no dedicated request was served by the shared pool and no shared request
 * by the dedicated members. The phases are bounded in time (IDLE_MS, BUSY_MS), not in requests.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DEV_DEDICATED_CLUSTER } from '../../src/cli/dev-init';
import { DEFAULT_HEALTH_POLICY } from '../../src/hsm/member-health';
import { sleep, within } from '../support/poll';
import { b64, devInstall, getText, metricSum, percentile, sdk, ServerProcess, SOAK } from '../support/resilience-lab';
import type { LoadSpec } from '../support/resilience-load';
import type { Credentials, KmsClient } from '../support/server';
import { report } from '../support/report';

const SHARED_CONCURRENCY = 64;
const DEDICATED_CONCURRENCY = 2;
/** How long the dedicated key is measured on an idle server, then with the shared pool saturated. */
const IDLE_MS = SOAK ? 10_000 : 2_000;
const BUSY_MS = SOAK ? 120_000 : 6_000;

interface Members {
  cluster: string;
  members: string[];
}

describe('dedicated isolation: a saturated shared pool and a dedicated cluster', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-resilience-isolation-'));
  const server = new ServerProcess(dir);
  let creds: Credentials;
  let shared: KmsClient;
  let dedicated: KmsClient;
  const sharedKeys: string[] = [];
  let dedicatedKey = '';

  beforeAll(async () => {
    creds = await devInstall(dir);
    await server.start();
    shared = sdk(server.port, creds);
    dedicated = sdk(server.port, creds);
    for (let i = 0; i < 4; i++) sharedKeys.push((await shared.CreateKey({ Alias: `isolation-shared-${i}` })).KeyId as string);
    dedicatedKey = (await dedicated.CreateKey({ Alias: 'isolation-dedicated', HsmClusterId: DEV_DEDICATED_CLUSTER })).KeyId as string;
    expect((await dedicated.DescribeKey({ KeyId: dedicatedKey })).KeyMetadata).toMatchObject({ HsmClusterId: DEV_DEDICATED_CLUSTER });
    // warm: every key's handle on every member of its cluster (round robin), the health canaries made
    for (let i = 0; i < 8; i++) {
      // distinct plaintexts: a signature serves once (docs/security.md §1)
      for (const k of sharedKeys) await shared.Encrypt({ KeyId: k, Plaintext: b64(`warm ${i}`) });
      await dedicated.Encrypt({ KeyId: dedicatedKey, Plaintext: b64(`warm ${i}`) });
    }
  }, 60_000);

  afterAll(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  /** Successful HSM encrypt operations per cluster/member, from /metrics. */
  async function snapshot(): Promise<{ encrypts: Map<string, number>; groups: Members[] }> {
    const text = (await getText(`${server.opsUrl}/metrics`)).body;
    const groups: Members[] = [];
    for (const cluster of ['default', DEV_DEDICATED_CLUSTER]) {
      const members = [...new Set([...text.matchAll(new RegExp(`^kms_hsm_member_health\\{cluster="${cluster}",member="([^"]+)"\\}`, 'gm'))].map((m) => m[1]))];
      groups.push({ cluster, members });
    }
    const encrypts = new Map<string, number>();
    for (const g of groups) {
      for (const m of g.members) {
        encrypts.set(
          `${g.cluster}/${m}`,
          metricSum(text, 'kms_hsm_operation_duration_seconds_count', { cluster: g.cluster, member: m, operation: 'encrypt', outcome: 'ok' }),
        );
      }
    }
    return { encrypts, groups };
  }

  /** Encrypts on the dedicated key for `duration` ms, DEDICATED_CONCURRENCY at a time; latencies in ms and failures. */
  async function dedicatedRun(duration: number): Promise<{ ms: number[]; failed: string[] }> {
    const ms: number[] = [];
    const failed: string[] = [];
    const end = Date.now() + duration;
    let n = 0;
    const worker = async () => {
      while (Date.now() < end) {
        const t = process.hrtime.bigint();
        try {
          await dedicated.Encrypt({ KeyId: dedicatedKey, Plaintext: b64(`dedicated payload ${String(n++).padStart(14, '0')}`) });
          ms.push(Number(process.hrtime.bigint() - t) / 1e6);
        } catch (e) {
          failed.push((e as Error).message);
        }
      }
    };
    await Promise.all(Array.from({ length: DEDICATED_CONCURRENCY }, worker));
    return { ms, failed };
  }

  test(
    `dedicated Encrypt while ${SHARED_CONCURRENCY} concurrent Encrypts saturate the shared pool: all succeed, served by the dedicated members only`,
    async () => {
      const idle = await dedicatedRun(IDLE_MS);
      expect(idle.failed).toEqual([]);

      const before = await snapshot();
      const snapshotAt = Date.now();
      // the shared load comes from a process of its own: its client-side work does not slow the measuring client
      const spec: LoadSpec = { port: server.port, SecretId: creds.SecretId, SecretKey: creds.SecretKey, concurrency: SHARED_CONCURRENCY, keys: sharedKeys };
      const loader = spawn(process.execPath, [join(__dirname, '..', 'support', 'resilience-load.js')], {
        env: { ...process.env, KMS_LOAD_SPEC: JSON.stringify(spec) },
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      const lines: string[] = [];
      createInterface({ input: loader.stdout }).on('line', (l) => lines.push(l));
      let busy: { ms: number[]; failed: string[] };
      let seconds: number;
      try {
        await within(30_000, () => lines.includes('started'), 'the load generator');
        await sleep(1_000); // the shared load is up before the dedicated requests start
        const started = Date.now();
        busy = await dedicatedRun(BUSY_MS);
        seconds = (Date.now() - started) / 1000;
        loader.stdin.write('stop\n');
        await within(30_000, () => lines.length > 1, "the load generator's result");
      } finally {
        if (loader.exitCode === null) loader.kill('SIGKILL');
      }
      const { ms: sharedMs, failed: sharedFailed } = JSON.parse(lines[1]) as { ms: number[]; failed: number };
      const after = await snapshot();
      // one background probe per member per interval, one for the 'before' scrape (each is one encrypt)
      const probes = Math.ceil((Date.now() - snapshotAt) / DEFAULT_HEALTH_POLICY.probeIntervalMs) + 2;

      const f = (x: number) => x.toFixed(1);
      report(
        `dedicated isolation: dedicated-cluster Encrypt p50/p99 idle ${f(percentile(idle.ms, 50))}/${f(percentile(idle.ms, 99))} ms; ` +
          `with the shared pool saturated ${f(percentile(busy.ms, 50))}/${f(percentile(busy.ms, 99))} ms (${busy.ms.length} requests at concurrency ${DEDICATED_CONCURRENCY}); ` +
          `shared-pool Encrypt p50/p99 ${f(percentile(sharedMs, 50))}/${f(percentile(sharedMs, 99))} ms ` +
          `(${sharedMs.length} requests at concurrency ${SHARED_CONCURRENCY}, ~${Math.round(sharedMs.length / (seconds + 1))}/s, ${sharedFailed} failed)`,
      );
      expect(busy.failed).toEqual([]);
      expect(busy.ms.length).toBeGreaterThan(0);
      expect(sharedMs.length).toBeGreaterThan(0);

      const [sharedPool, dedicatedCluster] = before.groups;
      expect(sharedPool.members.length).toBe(2);
      expect(dedicatedCluster.members.length).toBe(2);
      const grew = (g: Members, m: string) => after.encrypts.get(`${g.cluster}/${m}`)! - before.encrypts.get(`${g.cluster}/${m}`)!;
      const total = (g: Members) => g.members.reduce((n, m) => n + grew(g, m), 0);
      report(
        `dedicated isolation: HSM encrypt operations during the run: shared pool ${total(sharedPool)} (${sharedMs.length} shared requests answered), ` +
          `dedicated cluster ${total(dedicatedCluster)} (${busy.ms.length} dedicated requests)`,
      );
      // Each Encrypt is one HSM encrypt on some member of its key's cluster. The dedicated members did
      // every dedicated one (so none went to the shared pool, which could not have unwrapped the key
      // anyway), and nothing of the shared load: the only extra encrypts are health probes, of the
      // 'before' scrape (run after its histogram was read; concurrent health() calls share one round)
      // and the background ones, every probeIntervalMs.
      expect(total(dedicatedCluster)).toBeGreaterThanOrEqual(busy.ms.length);
      expect(total(dedicatedCluster)).toBeLessThanOrEqual(busy.ms.length + probes * dedicatedCluster.members.length);
      for (const m of dedicatedCluster.members) expect(grew(dedicatedCluster, m)).toBeGreaterThan(0);
      expect(total(sharedPool)).toBeGreaterThanOrEqual(sharedMs.length);
    },
    SOAK ? 600_000 : 60_000,
  );
});
