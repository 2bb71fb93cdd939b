/**
 * npm run bench:audit — audit append throughput (group commits, 200 events a batch) and verify
 * throughput with the links MACed inside SoftHSM2 (the shipped path) against a software HMAC in
 * the process (what a plain SHA-256 chain costs, within a few microseconds), on SQLite and Redis.
 * Prints figures; asserts nothing.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditLog } from '../src/audit/audit-log';
import type { LinkMac } from '../src/audit/link-mac';
import { RedisAuditLog } from '../src/audit/redis-audit-log';
import { SqliteAuditLog } from '../src/audit/sqlite-audit-log';
import { startRedis } from '../test/support/redis';
import { benchCluster, benchToken, machine } from './bench-support';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 20_000);

const event = (i: number) => ({
  eventName: 'Encrypt',
  accountUin: '100',
  subAccountUin: '100',
  secretId: 'AKIDbench',
  sourceIp: '10.0.0.1',
  region: 'ap-guangzhou',
  requestId: `bench-${i}`,
  resource: 'key/*',
  errorCode: '',
});

async function measure(name: string, open: () => Promise<AuditLog>): Promise<void> {
  const log = await open();
  try {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < EVENTS; i++) log.append(event(i));
    await log.flush();
    const t1 = process.hrtime.bigint();
    const r = await log.verify();
    const t2 = process.hrtime.bigint();
    const rate = (ns: bigint) => Math.round(EVENTS / (Number(ns) / 1e9));
    process.stdout.write(
      `${name.padEnd(34)} append ${String(rate(t1 - t0)).padStart(7)} events/s   verify ${String(rate(t2 - t1)).padStart(7)} events/s  (ok: ${r.ok})\n`,
    );
  } finally {
    await log.close();
  }
}

async function main(): Promise<void> {
  const token = benchToken();
  const dir = mkdtempSync(join(tmpdir(), 'kms-bench-audit-'));
  try {
    const { cluster } = await benchCluster(token);
    const hsm: LinkMac = { mac: (d) => cluster.mac('audit-link', d) };
    const key = randomBytes(32);
    const software: LinkMac = { mac: async (d) => createHmac('sha256', key).update(d).digest() };
    process.stdout.write(`${machine()}; ${EVENTS} events per run\n`);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 5000; i++) await hsm.mac(Buffer.alloc(300, i));
    process.stdout.write(`HSM domain MAC (300 bytes)           ${Math.round(5000 / (Number(process.hrtime.bigint() - t0) / 1e9))} MACs/s\n`);
    let n = 0;
    for (const [macName, mac] of [
      ['software HMAC (≈ plain SHA-256)', software],
      ['SoftHSM2 HMAC', hsm],
    ] as const) {
      await measure(`sqlite, ${macName}`, async () => new SqliteAuditLog(join(dir, `a${n++}.db`), { linkMac: mac }));
      const redis = await startRedis({ persistent: false });
      try {
        await measure(`redis, ${macName}`, () => RedisAuditLog.open({ port: redis.port, linkMac: mac, allowVolatile: true }));
      } finally {
        await redis.stop();
      }
    }
    cluster.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
    token.cleanup();
  }
}

void main();
