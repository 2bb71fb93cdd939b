/**
 * npm run bench:rotate-shared — `kmsctl cluster rotate-domain` on the shared pool of a development
 * installation (two SoftHSM2 members, SQLite): BENCH_KEYS keys (default 2,000, over tenants of 200)
 * with a sub-account and its policy per tenant, and BENCH_EVENTS audit events (default 2,000); the
 * rate of each phase of the walk (re-wrap of key versions, re-seal of key ownership MACs, identity
 * rows and audit links), and of the whole run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initDev } from '../src/cli/dev-init';
import { soPinsFromPath } from '../src/cli/so-pin';
import { DEV_SO_PINS } from '../src/common/data-dir';
import { loadServerConfig } from '../src/config';
import type { RotationEvent } from '../src/kms/domain-rotation';
import { openServices } from '../src/services';
import { machine } from './bench-support';

const KEYS = Number(process.env.BENCH_KEYS ?? 2_000);
const EVENTS = Number(process.env.BENCH_EVENTS ?? 2_000);
const PER_TENANT = 200;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kms-bench-rotshared-'));
  try {
    await initDev(dir, () => undefined);
    const s = await openServices(loadServerConfig(dir, { KMS_PORT: '0' }), { log: () => undefined, jobs: false });
    try {
      for (let made = 0, t = 0; made < KEYS; t++) {
        const tenant = await s.iam.createTenant(`bench-${t}`);
        const caller = { tenant: String(tenant.Uin), uin: String(tenant.Uin), region: 'ap-guangzhou' };
        const n = Math.min(PER_TENANT, KEYS - made);
        for (let i = 0; i < n; i += 50)
          await Promise.all(Array.from({ length: Math.min(50, n - i) }, (_, j) => s.kms.lifecycle.createKey(caller, { alias: `k-${i + j}` })));
        const user = await s.iam.createUser(String(tenant.Uin), 'reader', { preset: 'QcloudKMSReadOnlyAccess' });
        await s.iam.attachPolicy(String(user.Uin), 'more', 'QcloudKMSReadOnlyAccess');
        made += n;
      }
      for (let i = 0; i < EVENTS; i++)
        s.audit.append({
          eventName: 'Encrypt',
          accountUin: '100001',
          subAccountUin: '100001',
          secretId: 'AKIDbench',
          sourceIp: '127.0.0.1',
          region: 'ap-guangzhou',
          requestId: `r-${i}`,
          resource: `key-${i}`,
          errorCode: '',
        });
      await s.audit.flush();
      const phases = new Map<string, { start: number; end: number; total: number }>();
      const progress = (e: RotationEvent): void => {
        if (e.phase !== 'rewrap' && e.phase !== 'reseal') return;
        const name = e.phase === 'rewrap' ? 'key versions re-wrapped' : `${e.what} re-sealed`;
        const p = phases.get(name) ?? { start: Date.now(), end: Date.now(), total: e.total };
        if (e.done === e.total) p.end = Date.now();
        phases.set(name, p);
      };
      const r = await s.kms.domainRotation.rotate(s.clusters.find((c) => c.kind === 'shared')!.id, { progress, soPin: soPinsFromPath(join(dir, DEV_SO_PINS)) });
      console.log(`machine: ${machine().split(',').slice(0, 3).join(',')}`);
      const items = r.rewrapped + Object.values(r.resealed).reduce((a, b) => a + b, 0);
      for (const [name, p] of phases) {
        const seconds = Math.max(1, p.end - p.start) / 1000;
        console.log(`${name}: ${p.total} in ${seconds.toFixed(2)} s, ${(p.total / seconds).toFixed(0)}/s`);
      }
      console.log(
        `whole run: ${items} items in ${(r.ms / 1000).toFixed(1)} s, ${(items / (r.ms / 1000)).toFixed(0)} items/s (censuses, new generation and destroy included)`,
      );
      console.log(JSON.stringify(r));
      const verified = await s.audit.verify();
      console.log(`audit verify after: ok=${verified.ok}, ${verified.checked} events`);
    } finally {
      await s.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
