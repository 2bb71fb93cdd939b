/**
 * Member health on real SoftHSM2 tokens, one failure at a time, each member its own module instance
 * (own library copy, own SOFTHSM2_CONF). How each failure is made:
 * - device error: the member's module is finalised (C_Finalize) and its token directory moved away;
 * - session error: C_EncryptInit and C_DecryptInit of member A's real module are wrapped so that
 *   they first close the session on the token (C_CloseSession): SoftHSM2 itself answers
 *   CKR_SESSION_HANDLE_INVALID;
 * - slow probe: a subclass of HsmMember that waits before its (real) probe;
 * - probe failure: every session of A is closed on the token (C_CloseAllSessions) while no traffic
 *   runs, so the next probe meets CKR_SESSION_HANDLE_INVALID.
 */
import { renameSync } from 'node:fs';
import * as pk from 'pkcs11js';
import { HsmCluster } from '../../src/hsm/cluster';
import { MaterialBinding, WrappedMaterial } from '../../src/hsm/material';
import { HsmMember, MemberOptions } from '../../src/hsm/member';
import { sleep, within } from '../support/poll';
import { TokenLab } from '../support/tokens';

const bind = (keyId: string): MaterialBinding => ({ clusterId: 'mh', keyId, keyVersion: 1, usage: 'ENCRYPT_DECRYPT' });

/** Waits `probeDelayMs` before its real probe: a member that answers slowly. */
class SlowProbeMember extends HsmMember {
  probeDelayMs = 0;
  override async probe(canary: WrappedMaterial): Promise<number> {
    await sleep(this.probeDelayMs);
    return super.probe(canary);
  }
}

interface Pair {
  lab: TokenLab;
  a: HsmMember;
  b: HsmMember;
  cluster: HsmCluster;
  key: WrappedMaterial;
}

async function pair(
  options: { probeCacheMs: number; degradedLatencyMs?: number; probeIntervalMs?: number },
  aOverrides: Partial<MemberOptions> = {},
  make?: (o: MemberOptions) => HsmMember,
): Promise<Pair> {
  const lab = new TokenLab();
  const [a] = lab.softhsm('a', ['tok-a'], aOverrides, undefined, make);
  const [b] = lab.softhsm('b', ['tok-b']);
  const cluster = new HsmCluster({ id: 'mh', kind: 'dedicated', owners: ['1001'], members: [a, b], probeIntervalMs: 0, ...options });
  cluster.start();
  await cluster.initDomain({ soPin: lab.soPins });
  const key = await cluster.generate('AES_256', bind('k1'));
  return { lab, a, b, cluster, key };
}

/** `n` encrypt+decrypt round trips one after another through the cluster. */
async function traffic(p: Pair, n: number): Promise<{ ok: number; failed: string[] }> {
  const out = { ok: 0, failed: [] as string[] };
  for (let i = 0; i < n; i++) {
    try {
      const pt = Buffer.from(`round trip ${i}`);
      const sealed = await p.cluster.encrypt(p.key, bind('k1'), pt, Buffer.alloc(0));
      if ((await p.cluster.decrypt(p.key, bind('k1'), sealed, Buffer.alloc(0))).equals(pt)) out.ok++;
      else out.failed.push('wrong plaintext');
    } catch (e) {
      out.failed.push((e as Error).message);
    }
  }
  return out;
}

async function reported(p: Pair): Promise<{ cluster: string; a: { state: string; detail: string }; b: { state: string; detail: string } }> {
  const h = await p.cluster.health();
  const find = (m: HsmMember) => h.members.find((x) => x.id === m.id)!;
  return { cluster: h.state, a: find(p.a), b: find(p.b) };
}

/** Makes `m` fail at the device: its module finalised underneath it, its token directory gone. Returns the undo. */
function loseDevice(p: Pair, m: HsmMember, name: string): () => void {
  const dir = p.lab.tokenDir(name);
  renameSync(dir, `${dir}.gone`);
  m.module.api.C_Finalize();
  return () => renameSync(`${dir}.gone`, dir);
}

describe('device error: member A loses its device', () => {
  let p: Pair;
  beforeAll(async () => (p = await pair({ probeCacheMs: 0 })));
  afterAll(() => p.lab.cleanup());

  test('the operation that met the error is retried on B; A is UNAVAILABLE, gets no traffic, and serves again after recovery', async () => {
    expect((await reported(p)).cluster).toBe('ACTIVE');
    const restore = loseDevice(p, p.a, 'a');
    const [aBefore, bBefore] = [p.a.operations, p.b.operations];
    expect(await traffic(p, 20)).toEqual({ ok: 20, failed: [] });
    // A was tried (its error is recorded) and every one of the 40 operations was served by B
    expect(p.a.state).toBe('UNAVAILABLE');
    expect(p.a.lastError).toMatch(/CKR_/);
    expect(p.a.operations).toBe(aBefore);
    expect(p.b.operations - bBefore).toBe(40);
    const h = await reported(p);
    expect([h.cluster, h.a.state, h.b.state]).toEqual(['DEGRADED', 'UNAVAILABLE', 'ACTIVE']);

    restore();
    await within(10_000, () => p.a.state === 'ACTIVE');
    const back = p.a.operations;
    expect(await traffic(p, 20)).toEqual({ ok: 20, failed: [] });
    expect(p.a.operations).toBeGreaterThan(back);
    expect((await reported(p)).cluster).toBe('ACTIVE');
  });
});

describe('session errors: SoftHSM2 answers CKR_SESSION_HANDLE_INVALID to member A', () => {
  let p: Pair;
  beforeAll(async () => (p = await pair({ probeCacheMs: 60_000 })));
  afterAll(() => p.lab.cleanup());

  test('each is retried on B; three make A DEGRADED; DEGRADED A serves only while no member is ACTIVE; a good probe makes it ACTIVE', async () => {
    expect((await reported(p)).cluster).toBe('ACTIVE');
    const api = p.a.module.api;
    const [realEncryptInit, realDecryptInit] = [api.C_EncryptInit.bind(api), api.C_DecryptInit.bind(api)];
    const realClose = api.C_CloseSession.bind(api);
    let inject = 3;
    const closingFirst = (init: (s: pk.Handle, mech: pk.Mechanism, key: pk.Handle) => void) => (s: pk.Handle, mech: pk.Mechanism, key: pk.Handle) => {
      if (inject > 0) {
        inject--;
        realClose(s);
      }
      return init(s, mech, key);
    };
    api.C_EncryptInit = closingFirst(realEncryptInit);
    api.C_DecryptInit = closingFirst(realDecryptInit);
    try {
      for (let i = 0; i < 40 && inject > 0; i++) expect(await traffic(p, 1)).toEqual({ ok: 1, failed: [] });
    } finally {
      api.C_EncryptInit = realEncryptInit;
      api.C_DecryptInit = realDecryptInit;
    }
    expect(inject).toBe(0);
    expect(p.a.recentErrors).toBe(3);
    expect(p.a.state).toBe('DEGRADED');
    const h = await reported(p);
    expect([h.cluster, h.a.state, h.b.state]).toEqual(['DEGRADED', 'DEGRADED', 'ACTIVE']);
    expect(h.a.detail).toMatch(/3 session or device errors/);

    // ACTIVE first: B takes everything
    const aBefore = p.a.operations;
    expect(await traffic(p, 20)).toEqual({ ok: 20, failed: [] });
    expect(p.a.operations).toBe(aBefore);

    // no ACTIVE member left: the DEGRADED one serves (the first attempt on B is retried on A)
    const restoreB = loseDevice(p, p.b, 'b');
    expect(await traffic(p, 20)).toEqual({ ok: 20, failed: [] });
    expect(p.b.state).toBe('UNAVAILABLE');
    expect(p.a.operations - aBefore).toBe(40);
    restoreB();
    await within(10_000, () => p.b.state === 'ACTIVE');

    p.cluster.invalidateProbes();
    const after = await reported(p);
    expect([after.cluster, after.a.state, after.b.state]).toEqual(['ACTIVE', 'ACTIVE', 'ACTIVE']);
    expect(p.a.recentErrors).toBe(0);
    const again = p.a.operations;
    expect(await traffic(p, 20)).toEqual({ ok: 20, failed: [] });
    expect(p.a.operations).toBeGreaterThan(again);
  });
});

describe('slow probe: member A answers its probe late', () => {
  let p: Pair;
  beforeAll(async () => (p = await pair({ probeCacheMs: 0, degradedLatencyMs: 500 }, {}, (o) => new SlowProbeMember(o))));
  afterAll(() => p.lab.cleanup());

  test('A is DEGRADED (the state health() reports is the one routing uses) and gets no traffic while B is ACTIVE; a prompt probe brings it back', async () => {
    const a = p.a as SlowProbeMember;
    a.probeDelayMs = 800;
    const h = await reported(p);
    expect([h.cluster, h.a.state, h.b.state]).toEqual(['DEGRADED', 'DEGRADED', 'ACTIVE']);
    expect(h.a.detail).toMatch(/^probe \d+\.\d ms \(over 500 ms\)$/);
    expect(a.state).toBe('DEGRADED');
    const aBefore = a.operations;
    expect(await traffic(p, 20)).toEqual({ ok: 20, failed: [] });
    expect(a.operations).toBe(aBefore);

    a.probeDelayMs = 0;
    const back = await reported(p);
    expect([back.cluster, back.a.state]).toEqual(['ACTIVE', 'ACTIVE']);
    const served = a.operations;
    expect(await traffic(p, 20)).toEqual({ ok: 20, failed: [] });
    expect(a.operations).toBeGreaterThan(served);
  });
});

describe('background probes: nobody asks for health()', () => {
  let p: Pair;
  beforeAll(async () => (p = await pair({ probeCacheMs: 0, degradedLatencyMs: 500, probeIntervalMs: 100 }, {}, (o) => new SlowProbeMember(o))));
  afterAll(() => p.lab.cleanup());

  test("a slow member becomes DEGRADED and a prompt one ACTIVE again on the monitor's own probes; close() stops them", async () => {
    const a = p.a as SlowProbeMember;
    expect(a.state).toBe('ACTIVE');
    a.probeDelayMs = 800;
    await within(15_000, () => a.state === 'DEGRADED');
    a.probeDelayMs = 0;
    await within(15_000, () => a.state === 'ACTIVE');
    p.cluster.close();
    await sleep(300); // a round in flight finishes
    const probed = p.cluster.monitor.lastProbe(a)!.at;
    await sleep(500);
    expect(p.cluster.monitor.lastProbe(a)!.at).toBe(probed);
  });
});

describe('probe failure: every session of member A closed on the token while it has no traffic', () => {
  let p: Pair;
  // a long first backoff keeps A down long enough to see the routing
  beforeAll(async () => (p = await pair({ probeCacheMs: 0 }, { backoffMs: [1_500, 3_000] })));
  afterAll(() => p.lab.cleanup());

  test('the failed probe makes A UNAVAILABLE in health() and in routing, and starts its recovery; A serves again after reconnecting', async () => {
    expect((await reported(p)).cluster).toBe('ACTIVE');
    const resets = p.a.resets;
    p.a.module.api.C_CloseAllSessions(p.a.module.findToken(p.a.tokenLabel).slot);
    const h = await reported(p);
    expect([h.cluster, h.a.state, h.b.state]).toEqual(['DEGRADED', 'UNAVAILABLE', 'ACTIVE']);
    expect(h.a.detail).toMatch(/health probe failed: .*CKR_SESSION_HANDLE_INVALID/);
    expect(p.a.state).toBe('UNAVAILABLE');
    const aBefore = p.a.operations;
    expect(await traffic(p, 20)).toEqual({ ok: 20, failed: [] });
    expect(p.a.operations).toBe(aBefore);

    await within(15_000, () => p.a.state === 'ACTIVE');
    expect(p.a.resets).toBe(resets + 1);
    expect((await reported(p)).a.state).toBe('ACTIVE');
    expect(await traffic(p, 20)).toEqual({ ok: 20, failed: [] });
    expect(p.a.operations).toBeGreaterThan(aBefore);
  });
});
