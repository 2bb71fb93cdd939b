/**
 * Resilience: a member of the shared HSM pool is lost under load. The development installation's
 * shared pool is rebuilt with its two members as separate module instances (own token directory,
 * own SOFTHSM2_CONF, own copy of the library); the server runs Encrypt/Decrypt from the official
 * SDK at concurrency 8 while member A's module is finalised underneath it and its token directory
 * renamed away. At least 99.9% of the requests succeed, /readyz and /metrics say DEGRADED, and when
 * the token returns the member is used again (its operation count in /metrics grows).
 */
import { mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadServerConfig } from '../../src/config';
import type { HsmCluster } from '../../src/hsm/cluster';
import type { HsmMember } from '../../src/hsm/member';
import { RunningServer, startServer } from '../../src/server';
import { within } from '../support/poll';
import { b64, devInstall, getText, metric, metricSum, sdk, SOAK, splitSharedPool } from '../support/resilience-lab';
import type { Credentials, KmsClient, SdkError } from '../support/server';
import { report } from '../support/report';

const CONCURRENCY = 8;
/** Requests (Encrypt and Decrypt each count one) per loss; the member is lost a quarter of the way in. */
const OPS = SOAK ? 20_000 : 2_400;
const CYCLES = SOAK ? 3 : 1;
const OPS_AFTER_RETURN = SOAK ? 4_000 : 400;

describe('HSM member loss: a two-member shared pool (separate module instances) loses one member under load', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-resilience-hsm-'));
  let server: RunningServer;
  let creds: Credentials;
  let client: KmsClient;
  let shared: HsmCluster;
  let a: HsmMember;
  let b: HsmMember;
  let tokensA: string;
  const keys: string[] = [];

  beforeAll(async () => {
    creds = await devInstall(dir);
    const split = splitSharedPool(dir);
    tokensA = split.first.tokens;
    server = await startServer(loadServerConfig(dir, { KMS_PORT: '0' }), () => undefined);
    shared = server.services.clusters.find((c) => c.kind === 'shared')!;
    [a, b] = shared.members;
    expect([a.id, b.id]).toEqual([split.first.member, split.second.member]);
    client = sdk(server.port, creds);
    for (let i = 0; i < 4; i++) keys.push((await client.CreateKey({ Alias: `member-loss-${i}` })).KeyId as string);
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  /** Encrypt + Decrypt round trips, `concurrency` at a time, until `ops` requests were made; `at(i)` runs before request i. */
  async function load(ops: number, at?: (i: number) => void): Promise<{ ok: number; failed: Map<string, number> }> {
    let next = 0;
    let ok = 0;
    const failed = new Map<string, number>();
    const fail = (e: unknown) => {
      const code = (e as SdkError).code ?? (e as Error).message;
      failed.set(code, (failed.get(code) ?? 0) + 1);
    };
    const worker = async () => {
      while (next < ops) {
        const i = next;
        next += 2;
        at?.(i);
        at?.(i + 1);
        const plaintext = b64(`round trip ${i}`);
        let blob: string;
        try {
          blob = (await client.Encrypt({ KeyId: keys[i % keys.length], Plaintext: plaintext })).CiphertextBlob as string;
          ok++;
        } catch (e) {
          fail(e);
          fail(new Error('no ciphertext to decrypt'));
          continue;
        }
        try {
          if ((await client.Decrypt({ CiphertextBlob: blob })).Plaintext === plaintext) ok++;
          else fail(new Error('wrong plaintext'));
        } catch (e) {
          fail(e);
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    return { ok, failed };
  }

  const opsOf = async (member: HsmMember): Promise<number> =>
    metricSum((await getText(`${server.ops!.url}/metrics`)).body, 'kms_hsm_operation_duration_seconds_count', {
      cluster: shared.id,
      member: member.id,
      outcome: 'ok',
    });

  test(
    `>= 99.9% of ${OPS} requests succeed while member A is lost; DEGRADED on /readyz and /metrics; A serves again when it returns`,
    async () => {
      expect(a.module).not.toBe(b.module);
      const ready = await getText(`${server.ops!.url}/readyz`);
      expect(JSON.parse(ready.body)).toMatchObject({ ready: true, clusters: { [shared.id]: 'ACTIVE' } });

      for (let cycle = 1; cycle <= CYCLES; cycle++) {
        const result = await load(OPS, (i) => {
          if (i === Math.floor(OPS / 4)) {
            renameSync(tokensA, `${tokensA}.gone`);
            a.module.api.C_Finalize(); // the device goes away underneath the server
          }
        });
        const failures = [...result.failed.values()].reduce((x, y) => x + y, 0);
        const why = failures ? ` (${[...result.failed].map(([k, v]) => `${k}: ${v}`).join(', ')})` : '';
        report(
          `member loss ${cycle}: ${result.ok}/${OPS} requests succeeded (${((result.ok / OPS) * 100).toFixed(2)}%) while member ${a.id} was lost; ${failures} failed${why}`,
        );
        expect(result.ok / OPS).toBeGreaterThanOrEqual(0.999);

        // degraded, still ready (B serves), and both say so
        expect(a.state).toBe('UNAVAILABLE');
        const degraded = await getText(`${server.ops!.url}/readyz`);
        expect(degraded.status).toBe(200);
        expect(JSON.parse(degraded.body)).toMatchObject({ ready: true, clusters: { [shared.id]: 'DEGRADED' } });
        const metrics = (await getText(`${server.ops!.url}/metrics`)).body;
        expect(metric(metrics, `kms_hsm_cluster_health{cluster="${shared.id}"}`)).toBe(1);
        expect(metric(metrics, `kms_hsm_member_health{cluster="${shared.id}",member="${a.id}"}`)).toBe(0);
        expect(metric(metrics, `kms_hsm_member_health{cluster="${shared.id}",member="${b.id}"}`)).toBe(2);

        // the token comes back: the member reconnects by itself and takes work again
        renameSync(`${tokensA}.gone`, tokensA);
        await within(30_000, () => a.state === 'ACTIVE', `member ${a.id} ACTIVE again`);
        const before = await opsOf(a);
        const after = await load(OPS_AFTER_RETURN);
        expect(after.ok).toBe(OPS_AFTER_RETURN);
        const grown = (await opsOf(a)) - before;
        report(`member loss ${cycle}: member ${a.id} back; it did ${grown} of the operations of the next ${OPS_AFTER_RETURN} requests`);
        expect(grown).toBeGreaterThan(0);
        await within(
          15_000,
          async () => JSON.parse((await getText(`${server.ops!.url}/readyz`)).body).clusters[shared.id] === 'ACTIVE',
          'cluster ACTIVE on /readyz',
        );
        expect(metric((await getText(`${server.ops!.url}/metrics`)).body, `kms_hsm_cluster_health{cluster="${shared.id}"}`)).toBe(2);
      }
    },
    SOAK ? 900_000 : 60_000,
  );
});
