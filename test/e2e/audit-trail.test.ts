/**
 * The audit trail as an operator meets it: kmsctl as a real process on a development installation
 * (real SoftHSM2 tokens, the SQLite file), its output read through a pipe.
 */
import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { readAnchors } from '../../src/audit/anchors';
import { EPOCH_EVENT } from '../../src/audit/chained-audit-log';
import { hashEvent } from '../../src/audit/chain';
import { NewAuditEvent, STORED_FIELDS, StoredAuditEvent } from '../../src/audit/event';
import { initDev } from '../../src/cli/dev-init';
import { AuditConfig, loadServerConfig, ServerConfig } from '../../src/config';
import { openServices, Services } from '../../src/services';

const KMSCTL = join(__dirname, '..', '..', 'src', 'cli', 'kmsctl.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function sh(script: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile('/bin/bash', ['-c', script], { encoding: 'utf8', timeout: 120_000, maxBuffer: 256 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') return reject(error);
      resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
}

const EVENTS = 30_000;

describe('kmsctl output through a pipe', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-audit-e2e-'));
  const kmsctl = `'${process.execPath}' '${KMSCTL}' --data-dir '${dir}'`;

  beforeAll(async () => {
    await initDev(dir, () => undefined);
    const s = await openServices(loadServerConfig(dir), { log: () => undefined, jobs: false });
    try {
      for (let i = 0; i < EVENTS; i++) {
        s.audit.append({
          eventName: 'Encrypt',
          accountUin: '100',
          subAccountUin: '100',
          secretId: 'AKIDpipe',
          sourceIp: '10.0.0.1',
          region: 'ap-guangzhou',
          requestId: `req-${i}`,
          resource: 'key/*',
          errorCode: '',
        });
      }
      await s.audit.flush();
    } finally {
      await s.close();
    }
  }, 300_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('audit export | wc -l counts every event', async () => {
    const r = await sh(`${kmsctl} audit export | wc -l`);
    expect(r.code).toBe(0);
    expect(Number(r.stdout.trim())).toBe(EVENTS);
    expect(r.stderr).toMatch(/events exported/);
  }, 120_000);

  test('audit export through a reader that counts bytes slowly gets the same bytes as a file', async () => {
    const file = join(dir, 'export.jsonl');
    await sh(`${kmsctl} audit export > '${file}'`);
    const slow = `'${process.execPath}' -e "let n=0;process.stdin.on('data',(d)=>{n+=d.length;process.stdin.pause();setTimeout(()=>process.stdin.resume(),1)}).on('end',()=>console.log(n))"`;
    const piped = await sh(`${kmsctl} audit export | ${slow}`);
    const whole = await sh(`wc -c < '${file}'`);
    expect(Number(piped.stdout.trim())).toBe(Number(whole.stdout.trim()));
  }, 120_000);

  test('a reader that stops early (| head -1) ends kmsctl quietly with exit 0', async () => {
    const r = await sh(`set -o pipefail 2>/dev/null || exit 99; ${kmsctl} audit export | head -1 > /dev/null`);
    expect(r.code).toBe(0);
    expect(r.stderr).not.toMatch(/EPIPE|Error/);
  }, 120_000);

  test('audit query --limit 1000 and help arrive whole through a pipe', async () => {
    const q = await sh(`${kmsctl} audit query --limit 1000 | cat`);
    expect((JSON.parse(q.stdout) as { events: unknown[] }).events).toHaveLength(1000);
    const h = await sh(`${kmsctl} help | cat`);
    expect(h.stdout).toContain('audit export');
  }, 120_000);
});

const event = (i: number, time?: number): NewAuditEvent => ({
  eventName: 'Decrypt',
  accountUin: '100',
  subAccountUin: '100',
  secretId: 'AKIDtrail',
  sourceIp: '10.0.0.2',
  region: 'ap-guangzhou',
  requestId: `trail-${i}`,
  resource: 'key/*',
  errorCode: '',
  time,
});

describe('the HMAC chain, anchors and retention on a development installation', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-audit-e2e-'));
  const kmsctl = (...args: string[]) => sh(`'${process.execPath}' '${KMSCTL}' --data-dir '${dir}' ${args.map((a) => `'${a}'`).join(' ')}`);
  const logs: Array<Record<string, unknown>> = [];
  let base: ServerConfig;
  const serve = (audit: Partial<AuditConfig> = {}): Promise<Services> =>
    openServices({ ...base, audit: { ...base.audit, ...audit } }, { log: (l) => logs.push(l), nodeId: 'trail-node' });
  const messages = () => logs.map((l) => `${String(l.level)} ${String(l.msg)}`);

  beforeAll(async () => {
    await initDev(dir, () => undefined);
    base = loadServerConfig(dir);
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('the server begins the HMAC chain at start-up (once, with a log line) and anchors the head to the configured file', async () => {
    const s = await serve();
    try {
      for (let i = 0; i < 20; i++) s.audit.append(event(i));
    } finally {
      await s.close();
    }
    expect(messages()).toContainEqual(expect.stringMatching(/^info audit: the HMAC-linked chain begins at event 1\b/));
    expect(messages()).toContainEqual('info audit: anchors go to file every 60 s');
    const again = await serve();
    await again.close();
    expect(messages().filter((m) => m.includes('HMAC-linked chain begins'))).toHaveLength(1);
    const anchors = readAnchors(readFileSync(base.audit.anchors?.kind === 'file' ? base.audit.anchors.path : '', 'utf8'));
    expect(anchors.at(-1)?.seq).toBe(21);
    const r = await kmsctl('audit', 'verify', '--anchors', join(dir, 'audit-anchors.jsonl'));
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, checked: 21, hmacFrom: 1 });
    const [marker] = JSON.parse((await kmsctl('audit', 'query', '--event', EPOCH_EVENT.eventName)).stdout).events as Array<{ seq: number }>;
    expect(marker.seq).toBe(1);
  }, 120_000);

  test('without an anchor sink the service says so at start-up', async () => {
    logs.splice(0);
    const s = await serve({ anchors: undefined });
    await s.close();
    expect(messages()).toContainEqual(expect.stringMatching(/^warn audit: no anchor sink configured \(audit\.anchors\)/));
  }, 60_000);

  test('anchors go to a webhook as JSON POSTs, and to a syslog server over UDP', async () => {
    const posted: string[] = [];
    const hook = createServer((req, res) => {
      let body = '';
      req
        .on('data', (d: Buffer) => (body += d.toString()))
        .on('end', () => {
          posted.push(body);
          res.end();
        });
    });
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
    const syslog = createSocket('udp4');
    const datagrams: string[] = [];
    syslog.on('message', (m) => datagrams.push(m.toString()));
    await new Promise<void>((resolve) => syslog.bind(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/anchors`;
      const viaHook = await serve({ anchors: { kind: 'webhook', url } });
      viaHook.audit.append(event(100));
      await viaHook.close();
      const head = await headOf();
      expect(readAnchors(posted.join('\n')).at(-1)).toEqual(head);
      const viaSyslog = await serve({ anchors: { kind: 'syslog', host: '127.0.0.1', port: syslog.address().port } });
      viaSyslog.audit.append(event(101));
      await viaSyslog.close();
      for (let i = 0; i < 50 && datagrams.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(datagrams[datagrams.length - 1]).toMatch(/^<110>1 \S+ \S+ kms-audit \d+ anchor - \{"kind":"kms-audit-anchor"/);
      expect(readAnchors(datagrams.join('\n')).at(-1)).toEqual(await headOf());
    } finally {
      hook.close();
      syslog.close();
    }
  }, 60_000);

  /** The stored head, read by kmsctl. */
  async function headOf(): Promise<{ seq: number; hash: string }> {
    const lines = (await kmsctl('audit', 'export')).stdout.trim().split('\n');
    const last = JSON.parse(lines[lines.length - 1]) as { seq: number; hash: string };
    return { seq: last.seq, hash: last.hash };
  }

  test('events cut off the end of the trail (head moved back, SQLite file edited): verify alone says ok, verify --anchors does not', async () => {
    const s = await serve();
    for (let i = 0; i < 5; i++) s.audit.append(event(200 + i));
    await s.close();
    const { seq } = await headOf();
    const db = new Database(join(dir, 'kms.db'));
    try {
      db.exec('DROP TRIGGER audit_events_no_delete; DROP TRIGGER audit_heads_no_delete');
      db.prepare('DELETE FROM audit_events WHERE seq > ?').run(seq - 3);
      db.prepare('DELETE FROM audit_heads WHERE seq > ?').run(seq - 3);
      db.prepare('INSERT OR IGNORE INTO audit_heads (seq, hash) SELECT seq, hash FROM audit_events WHERE seq = ?').run(seq - 3);
    } finally {
      db.close();
    }
    expect((await kmsctl('audit', 'verify')).code).toBe(0);
    const r = await kmsctl('audit', 'verify', '--anchors', join(dir, 'audit-anchors.jsonl'));
    expect(r.code).toBe(1);
    expect((JSON.parse(r.stdout) as { problems: Array<{ reason: string }> }).problems).toContainEqual({
      seq,
      reason: `the anchored event ${seq} is missing (removed or truncated)`,
    });
  }, 60_000);
  test('kmsctl audit verify exits 1 after an event is removed and every later link and the head are recomputed with SHA-256 in the SQLite file', async () => {
    const db = new Database(join(dir, 'kms.db'));
    try {
      db.exec('DROP TRIGGER IF EXISTS audit_events_no_delete; DROP TRIGGER IF EXISTS audit_events_no_update; DROP TRIGGER IF EXISTS audit_heads_no_delete');
      const rows = db
        .prepare(`SELECT ${STORED_FIELDS.map((f) => `${f.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)} AS ${f}`).join(', ')} FROM audit_events ORDER BY seq`)
        .all() as StoredAuditEvent[];
      const victim = 5;
      const kept = rows.filter((e) => e.seq !== victim);
      let prevHash = kept[victim - 2].hash;
      const forged = kept.slice(victim - 1).map((e, i) => {
        const seq = victim + i;
        const hash = hashEvent(prevHash, e, seq);
        const f = { ...e, seq, prevHash, hash };
        prevHash = hash;
        return f;
      });
      db.transaction(() => {
        db.prepare('DELETE FROM audit_events WHERE seq >= ?').run(victim);
        db.prepare('DELETE FROM audit_heads').run();
        const insert = db.prepare(
          `INSERT INTO audit_events (${STORED_FIELDS.map((f) => f.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)).join(', ')}) VALUES (${STORED_FIELDS.map((f) => `@${f}`).join(', ')})`,
        );
        for (const e of forged) insert.run(e);
        db.prepare('INSERT INTO audit_heads (seq, hash) VALUES (?, ?)').run(forged[forged.length - 1].seq, prevHash);
      })();
    } finally {
      db.close();
    }
    const r = await kmsctl('audit', 'verify');
    expect(r.code).toBe(1);
    expect((JSON.parse(r.stdout) as { problems: Array<{ seq: number; reason: string }> }).problems[0]).toEqual({
      seq: 5,
      reason: expect.stringContaining('plain SHA-256 link after the HMAC chain began at 1'),
    });
  }, 60_000);
});

describe('retention on a development installation', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-audit-e2e-'));
  const kmsctl = (...args: string[]) => sh(`'${process.execPath}' '${KMSCTL}' --data-dir '${dir}' ${args.map((a) => `'${a}'`).join(' ')}`);
  const DAY = 86_400_000;

  beforeAll(() => initDev(dir, () => undefined), 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('the lease holder archives events older than audit.retentionDays as self-verifying files, then removes them; verify starts at the oldest kept event', async () => {
    const config = loadServerConfig(dir);
    const writer = await openServices(config, { log: () => undefined, jobs: false });
    try {
      for (let i = 0; i < 20; i++) writer.audit.append(event(i, Date.now() - (60 - i) * DAY));
      for (let i = 20; i < 40; i++) writer.audit.append(event(i));
      await writer.audit.flush();
    } finally {
      await writer.close();
    }
    const logs: string[] = [];
    const s = await openServices({ ...config, audit: { ...config.audit, retentionDays: 30 } }, { log: (l) => logs.push(String(l.msg)), nodeId: 'retainer' });
    await s.close();
    expect(logs).toContainEqual(expect.stringMatching(/^audit: 20 events older than 30 days archived in /));
    const files = readdirSync(config.audit.archiveDir);
    expect(files).toEqual(['audit-0000000000000001-0000000000000020.jsonl']);
    const archived = join(config.audit.archiveDir, files[0]);
    const r = await kmsctl('audit', 'verify', '--anchors', join(dir, 'audit-anchors.jsonl'));
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, from: 21, checked: 20 });
    const e = await kmsctl('audit', 'verify', '--export', archived);
    expect(e.code).toBe(0);
    expect(JSON.parse(e.stdout)).toMatchObject({ ok: true, checked: 20 });
    expect(readFileSync(archived, 'utf8').split('\n')[0]).toContain('"kind":"kms-audit-export"');
    expect(existsSync(`${archived}.partial`)).toBe(false);
    const exported = (await kmsctl('audit', 'export')).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq: number; prevHash: string });
    const header = JSON.parse(readFileSync(archived, 'utf8').split('\n')[0]) as { last: string };
    expect(exported[0]).toMatchObject({ seq: 21, prevHash: header.last });
    const all = await kmsctl('audit', 'verify', '--archive', config.audit.archiveDir, '--anchors', join(dir, 'audit-anchors.jsonl'));
    expect(all.code).toBe(0);
    expect(JSON.parse(all.stdout)).toMatchObject({ ok: true, from: 1, checked: 40 });
  }, 120_000);
});
