/**
 * The audit trail as an operator meets it: kmsctl as a real process on a development installation
 * (real SoftHSM2 tokens, the SQLite file), its output read through a pipe.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initDev } from '../../src/cli/dev-init';
import { loadServerConfig } from '../../src/config';
import { openServices } from '../../src/services';

const KMSCTL = join(__dirname, '..', '..', 'src', 'cli', 'kmsctl.js');

interface Run { code: number; stdout: string; stderr: string }

function sh(script: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile('/bin/sh', ['-c', script], { encoding: 'utf8', timeout: 120_000, maxBuffer: 256 * 1024 * 1024 }, (error, stdout, stderr) => {
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
        s.audit.append({ eventName: 'Encrypt', accountUin: '100', subAccountUin: '100', secretId: 'AKIDpipe', sourceIp: '10.0.0.1', region: 'ap-guangzhou', requestId: `req-${i}`, resource: 'key/*', errorCode: '' });
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
    expect(Number(r.stdout.trim())).toBeGreaterThanOrEqual(EVENTS);
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

  test('audit query --limit 1000 and help arrive whole through a pipe', async () => {
    const q = await sh(`${kmsctl} audit query --limit 1000 | cat`);
    expect((JSON.parse(q.stdout) as { events: unknown[] }).events).toHaveLength(1000);
    const h = await sh(`${kmsctl} help | cat`);
    expect(h.stdout).toContain('audit export');
  }, 120_000);
});
