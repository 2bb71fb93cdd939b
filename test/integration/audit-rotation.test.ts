/**
 * The audit chain across a rotation of the key its links are MACed under, on both backends, the
 * links MACed inside a real SoftHSM2 token: links under the retiring generation verify while it is
 * held; the re-seal checks each under it and seals it under the new one (the start record and the
 * archive files too), so that once the old generation is destroyed the whole trail, its archive and
 * anchors taken before the rotation still verify, and tampering before and after the rotation point
 * is still found.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import Redis from 'ioredis';
import { RetainedRange } from '../../src/audit/audit-log';
import { ChainedAuditLog } from '../../src/audit/chained-audit-log';
import { NewAuditEvent } from '../../src/audit/event';
import { LinkMac } from '../../src/audit/link-mac';
import { RedisAuditLog } from '../../src/audit/redis-audit-log';
import { SqliteAuditLog } from '../../src/audit/sqlite-audit-log';
import { sharedMacKey } from '../../src/authority';
import { HsmCluster } from '../../src/hsm/cluster';
import { RedisServer, startRedis } from '../support/redis';
import { TokenLab } from '../support/tokens';

const tokens = new TokenLab();
const T0 = 1_700_000_000_000;

const event = (i: number): NewAuditEvent => ({
  time: T0 + i * 1000,
  eventName: i % 2 ? 'Encrypt' : 'Decrypt',
  accountUin: '100001',
  subAccountUin: '100001',
  secretId: 'AKIDtest',
  sourceIp: '10.0.0.1',
  region: 'ap-guangzhou',
  requestId: `req-${i}`,
  resource: `key-${i}`,
  errorCode: '',
});

interface Backing {
  open(linkMac: LinkMac): Promise<ChainedAuditLog>;
  /** Changes the stored event's resource behind the log's back. */
  tamper(seq: number): Promise<void>;
  tearDown(): Promise<void>;
}

const backings: Array<{ name: string; setUp: () => Promise<Backing> }> = [
  {
    name: 'sqlite',
    async setUp() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-audit-rot-'));
      const file = path.join(dir, 'audit.db');
      return {
        open: async (linkMac) => new SqliteAuditLog(file, { linkMac }),
        tamper: async (seq) => {
          const db = new Database(file);
          try {
            db.exec('DROP TRIGGER IF EXISTS audit_events_no_update');
            db.prepare("UPDATE audit_events SET resource = 'key-forged' WHERE seq = ?").run(seq);
          } finally {
            db.close();
          }
        },
        tearDown: async () => fs.rmSync(dir, { recursive: true, force: true }),
      };
    },
  },
  {
    name: 'redis',
    async setUp() {
      const server: RedisServer = await startRedis({ persistent: true });
      const raw = new Redis({ port: server.port });
      return {
        open: (linkMac) => RedisAuditLog.open({ port: server.port, linkMac }),
        tamper: async (seq) => {
          const doc = JSON.parse((await raw.hget('kms:audit:events', String(seq))) ?? '{}') as Record<string, unknown>;
          await raw.hset('kms:audit:events', String(seq), JSON.stringify({ ...doc, resource: 'key-forged' }));
        },
        tearDown: async () => {
          raw.disconnect();
          await server.stop();
        },
      };
    },
  },
];

afterAll(() => tokens.cleanup());

describe.each(backings)('the audit chain across a domain rotation, on $name', ({ name, setUp }) => {
  let hsm: HsmCluster;
  let backing: Backing;
  let log: ChainedAuditLog;

  beforeAll(async () => {
    hsm = new HsmCluster({ id: `cls-audit-${name}`, kind: 'shared', owners: [], members: tokens.softhsm(`audit-${name}`, ['rot-a']) });
    hsm.start();
    await hsm.initDomain();
    backing = await setUp();
    log = await backing.open({ mac: (data) => hsm.mac('audit-link', data), generations: sharedMacKey(hsm, 'audit-link') });
  }, 60_000);

  afterAll(async () => {
    await log?.close();
    await backing?.tearDown();
    hsm?.close();
  });

  test('sealed under the new generation: after the old one is destroyed the trail, its archive and old anchors verify; tampering on either side is found', async () => {
    const old = hsm.currentGeneration!.toString('hex');
    for (let i = 0; i < 30; i++) log.append(event(i));
    await log.flush();
    const archived: RetainedRange[] = [];
    expect(await log.retainOlderThan(T0 + 10_000, async (r) => void archived.push(r))).toBe(10);
    const anchorBefore = (await log.head())!;

    const next = randomBytes(16);
    await hsm.newGeneration(next, { lock: false });
    await hsm.useGeneration(next);
    for (let i = 30; i < 40; i++) log.append(event(i));
    await log.flush();
    const archives = archived.map((a) => a.text);

    // both generations held: everything verifies; the census says what still needs the old one
    expect(await log.verify({ archive: archives, anchors: [anchorBefore] })).toMatchObject({ ok: true, problems: [] });
    expect(Object.fromEntries(await log.census(archives))).toEqual({ [old]: 21, [next.toString('hex')]: 10, 'unsealed-archive': 1 });

    const pages: number[] = [];
    expect(await log.reseal(archives, (n) => pages.push(n))).toBe(22);
    expect(pages.reduce((a, b) => a + b, 0)).toBe(22);
    expect(Object.fromEntries(await log.census(archives))).toEqual({ [next.toString('hex')]: 32 });
    // nothing left to do: a second run writes nothing
    expect(await log.reseal(archives, () => undefined)).toBe(0);

    expect(await hsm.destroyGeneration(Buffer.from(old, 'hex'))).toEqual(hsm.members.map((m) => m.id));
    const after = await log.verify({ archive: archives, anchors: [anchorBefore] });
    expect(after).toMatchObject({ ok: true, checked: 40, problems: [] });
    expect(await log.verifyExport(archives[0])).toMatchObject({ ok: true, checked: 10 });
    expect(await log.beginEpoch()).toBeUndefined();

    // tampering before the rotation point (a sealed event) and after it (a link under the new generation)
    await backing.tamper(15);
    await backing.tamper(35);
    const tampered = await log.verify();
    expect(tampered.ok).toBe(false);
    expect(tampered.problems.filter((p) => /does not match its link/.test(p.reason)).map((p) => p.seq)).toEqual([15, 35]);
    const forgedArchive = archives[0].replace('"key-3"', '"key-forged"');
    expect(forgedArchive).not.toBe(archives[0]);
    expect((await log.verifyExport(forgedArchive)).problems.map((p) => p.seq)).toContain(4);
  }, 120_000);
});
