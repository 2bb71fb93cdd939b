/** The bounded queue of slow operations per cluster, filled with real RSA-4096 generations on SoftHSM2. */
import { Metrics } from '../../src/api/metrics';
import { HsmCluster } from '../../src/hsm/cluster';
import { SlowQueueFullError } from '../../src/hsm/errors';
import { MaterialBinding, WrappedMaterial } from '../../src/hsm/material';
import { Alarms } from '../../src/kms/alarms';
import { TokenLab } from '../support/tokens';

const bind = (keyId: string, usage = 'SIGN_VERIFY'): MaterialBinding => ({ clusterId: 'sq', keyId, keyVersion: 1, usage });

/** The value of `name` for cluster "sq" in the registry's text exposition. */
async function gauge(metrics: Metrics, name: string): Promise<number> {
  const text = await metrics.registry.getSingleMetricAsString(name);
  const line = text.split('\n').find((l) => l.startsWith(`${name}{cluster="sq"}`));
  if (!line) throw new Error(`${name} has no series for cluster sq:\n${text}`);
  return Number(line.split(' ').pop());
}

describe('slow queue: one running, two waiting, the rest refused at once', () => {
  let lab: TokenLab;
  let cluster: HsmCluster;
  let metrics: Metrics;

  beforeAll(async () => {
    lab = new TokenLab();
    const members = lab.softhsm('sq', ['tok-sq']);
    cluster = new HsmCluster({ id: 'sq', kind: 'shared', owners: [], members, probeIntervalMs: 0, slowQueue: { running: 1, queued: 2 } });
    cluster.start();
    await cluster.initDomain();
    metrics = new Metrics({ clusters: [cluster], alarms: new Alarms() });
  });
  afterAll(() => lab.cleanup());

  test('five RSA-4096 generations: three served in turn, two refused with SlowQueueFullError; depth and running count in /metrics; AES work does not queue', async () => {
    const aes = await cluster.generate('AES_256', bind('aes', 'ENCRYPT_DECRYPT'));
    const gens = Array.from({ length: 5 }, (_, i) => cluster.generate('RSA_4096', bind(`rsa-${i}`)));
    const settled = Promise.allSettled(gens);
    expect([cluster.slow.running, cluster.slow.queued]).toEqual([1, 2]);
    expect(await gauge(metrics, 'kms_hsm_slow_running')).toBe(1);
    expect(await gauge(metrics, 'kms_hsm_slow_queue_depth')).toBe(2);
    expect(await gauge(metrics, 'kms_hsm_slow_queue_limit')).toBe(2);

    // the queue is in front of slow work only: Encrypt and the health probe are served meanwhile
    const sealed = await cluster.encrypt(aes, bind('aes', 'ENCRYPT_DECRYPT'), Buffer.from('not queued'), Buffer.alloc(0));
    expect((await cluster.decrypt(aes, bind('aes', 'ENCRYPT_DECRYPT'), sealed, Buffer.alloc(0))).toString()).toBe('not queued');
    expect((await cluster.health()).state).toBe('ACTIVE');

    const results = await settled;
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
    const served = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    expect(refused).toHaveLength(2);
    expect(refused.every((e) => e instanceof SlowQueueFullError && e.errorClass === 'busy')).toBe(true);
    // the refused are the last two asked: first come, first served
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'rejected']);
    expect(served.map((m: WrappedMaterial) => [m.spec, m.publicKey.length > 500])).toEqual([
      ['RSA_4096', true],
      ['RSA_4096', true],
      ['RSA_4096', true],
    ]);
    expect(await gauge(metrics, 'kms_hsm_slow_refused_total')).toBe(2);
    expect(await gauge(metrics, 'kms_hsm_slow_queue_depth')).toBe(0);
    expect(await gauge(metrics, 'kms_hsm_slow_running')).toBe(0);

    // the queue has room again
    const again = await cluster.sign(served[0], bind('rsa-0'), 'RSA_PKCS1_SHA_256', { message: Buffer.from('m') });
    expect(again.length).toBe(512);
  });
});
