/**
 * Connections and bodies (docs/security.md §7), against real servers: the server process under
 * `ulimit -n 1024` with 1,100 idle connections opened at it (real clients are served again within
 * 30 s and it never fails with EMFILE), the per-address cap, header and keep-alive timeouts, and a
 * 50 MiB body against a 1 MiB limit (the socket is closed long before the body is through).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent } from 'node:http';
import { connect, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { loadServerConfig } from '../../src/config';
import { RunningServer, startServer } from '../../src/server';
import { within } from '../support/poll';
import { devInstall, editConfig, outcome, ServerProcess } from '../support/resilience-lab';
import type { Credentials, KmsClient } from '../support/server';
import { report } from '../support/report';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const tencentcloud = require('tencentcloud-sdk-nodejs') as { kms: { v20190118: { Client: new (config: object) => KmsClient } } };

const MiB = 1024 * 1024;

/** An SDK client on a fresh connection each call, from `localAddress`, giving up on a call after 5 s. */
function freshClient(port: number, creds: Credentials, localAddress = '127.0.0.1'): KmsClient {
  return new tencentcloud.kms.v20190118.Client({
    credential: { secretId: creds.SecretId, secretKey: creds.SecretKey },
    region: 'ap-guangzhou',
    profile: { httpProfile: { endpoint: `127.0.0.1:${port}`, protocol: 'http://', agent: new Agent({ keepAlive: false, localAddress }), reqTimeout: 5 } },
  });
}

/** A socket to the server from `localAddress`; resolves once connected. */
function open(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Resolves true once the server has closed `s` (end or close), false if it is still open after `boundMs`. */
function closedWithin(s: Socket, boundMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (s.destroyed || s.readableEnded) return resolve(true);
    const timer = setTimeout(() => resolve(false), boundMs);
    const done = (): void => (clearTimeout(timer), resolve(true));
    s.once('end', done);
    s.once('close', done);
    s.on('error', () => undefined);
    s.resume();
  });
}

/**
 * Opens `count` idle connections (spread over source addresses 127.0.0.2..) from a child process
 * with a higher open-file limit of its own; resolves with it once every attempt has connected or
 * failed, and how many connected.
 */
async function idleSockets(port: number, count: number): Promise<{ connected: number; stop: () => void }> {
  const script = `
    const net = require('node:net');
    const [port, count] = process.argv.slice(1).map(Number);
    let settled = 0, connected = 0;
    const done = () => { if (++settled === count) console.log(JSON.stringify({ connected })); };
    for (let i = 0; i < count; i++) {
      const s = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.' + (2 + (i % 5)) }, () => { connected++; done(); });
      s.on('error', done);
    }
    setInterval(() => {}, 1000);`;
  const child = spawn('bash', ['-c', 'ulimit -n 4096 && exec "$0" -e "$1" "$2" "$3"', process.execPath, script, String(port), String(count)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`socket opener exited with ${code}`)));
  });
  return { connected: (JSON.parse(line) as { connected: number }).connected, stop: () => child.kill('SIGKILL') };
}

describe('the server process under ulimit -n 1024, default connection limits', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-conn-'));
  const server = new ServerProcess(dir);
  let creds: Credentials;

  beforeAll(async () => {
    creds = await devInstall(dir);
    await server.start(60_000, 1024);
  }, 90_000);

  afterAll(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('1,100 idle connections: an SDK client is served again within 30 s; no EMFILE, the server still runs', async () => {
    const keyId = (await freshClient(server.port, creds).CreateKey({ Alias: 'conn-key' })).KeyId as string;
    const idle = await idleSockets(server.port, 1_100);
    try {
      let last = '';
      const served = async () => (last = await outcome(freshClient(server.port, creds).Encrypt({ KeyId: keyId, Plaintext: 'aGVsbG8=' }))) === 'Success';
      const ms = await within(30_000, served, () => `an SDK client served (last answer: ${last})`, 250);
      report(`connections: ${idle.connected} of 1100 idle sockets connected; SDK client served again after ${ms} ms`);
      expect(last).toBe('Success');
    } finally {
      idle.stop();
    }
    expect(server.errors).not.toMatch(/EMFILE/);
    expect(server.running).toBe(true);
    expect(await outcome(freshClient(server.port, creds).GetRegions())).toBe('Success');
  }, 60_000);
});

describe('connection limits and body cut-off (in-process server, small limits)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-conn-small-'));
  let server: RunningServer;
  let creds: Credentials;

  beforeAll(async () => {
    creds = await devInstall(dir);
    editConfig(dir, (doc) => {
      doc.connections = { headersTimeoutMs: 1_000, requestTimeoutMs: 5_000, idleTimeoutMs: 500, perIp: 5 };
      doc.maxBodyBytes = MiB;
    });
    server = await startServer(loadServerConfig(dir, { KMS_PORT: '0' }), () => undefined);
  }, 60_000);

  afterAll(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('perIp 5: a sixth connection from one address is closed at once; another address is served', async () => {
    const held = await Promise.all(Array.from({ length: 5 }, () => open(server.port, '127.0.0.2')));
    try {
      const sixth = await open(server.port, '127.0.0.2');
      expect(await closedWithin(sixth, 3_000)).toBe(true);
      expect(await outcome(freshClient(server.port, creds, '127.0.0.3').GetRegions())).toBe('Success');
      for (const s of held) expect(s.destroyed).toBe(false);
    } finally {
      for (const s of held) s.destroy();
    }
  });

  test('headersTimeoutMs 1000: a connection that never finishes its headers is closed', async () => {
    const s = await open(server.port);
    s.write('POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    expect(await closedWithin(s, 6_000)).toBe(true);
  });

  test('headersTimeoutMs 1000: a connection that sends nothing is closed', async () => {
    const s = await open(server.port);
    expect(await closedWithin(s, 6_000)).toBe(true);
  });

  test('idleTimeoutMs 500: a keep-alive connection idle after its request is closed', async () => {
    const s = await open(server.port);
    s.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n');
    const first = await new Promise<string>((resolve) => s.once('data', (d: Buffer) => resolve(d.toString())));
    expect(first).toMatch(/^HTTP\/1\.1 200/);
    expect(await closedWithin(s, 5_000)).toBe(true);
  });

  /** Writes a body of `total` bytes after `head` as fast as the socket takes it; resolves with the bytes the socket accepted and what came back. */
  function pushBody(head: string, total: number, chunked: boolean): Promise<{ written: number; answer: string }> {
    return new Promise((resolve) => {
      const s = connect({ port: server.port, host: '127.0.0.1' });
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let written = 0;
      let answer = '';
      let over = false;
      const finish = (): void => {
        if (over) return;
        over = true;
        resolve({ written, answer });
      };
      s.on('data', (d: Buffer) => (answer += d.toString()));
      s.on('error', finish);
      s.on('close', finish);
      const pump = (): void => {
        while (!over && written < total) {
          const piece = chunked ? Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]) : chunk;
          written += chunk.length;
          if (!s.write(piece)) return void s.once('drain', pump);
        }
        if (!over && chunked) s.write('0\r\n\r\n');
      };
      s.write(head, pump);
    });
  }

  const headOf = (length?: number): string =>
    'POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-TC-Action: Encrypt\r\nX-TC-Version: 2019-01-18\r\n' +
    `${length === undefined ? 'Transfer-Encoding: chunked' : `Content-Length: ${length}`}\r\n\r\n`;

  test('a 50 MiB body (Content-Length) against a 1 MiB limit: the socket is closed long before 50 MiB are through', async () => {
    const { written, answer } = await pushBody(headOf(50 * MiB), 50 * MiB, false);
    report(
      `body cut-off (Content-Length): the client got ${written} bytes into its socket before the server closed it; answer seen: ${answer.includes('RequestSizeLimitExceeded')}`,
    );
    expect(written).toBeLessThan(16 * MiB);
  }, 30_000);

  test('a 50 MiB chunked body against a 1 MiB limit: the socket is closed long before 50 MiB are through', async () => {
    const { written, answer } = await pushBody(headOf(), 50 * MiB, true);
    report(
      `body cut-off (chunked): the client got ${written} bytes into its socket before the server closed it; answer seen: ${answer.includes('RequestSizeLimitExceeded')}`,
    );
    expect(written).toBeLessThan(16 * MiB);
  }, 30_000);

  test('a declared 50 MiB body, nothing sent: the RequestSizeLimitExceeded envelope, then the server closes the connection', async () => {
    const s = await open(server.port);
    let answer = '';
    s.on('data', (d: Buffer) => (answer += d.toString()));
    s.write(headOf(50 * MiB));
    expect(await closedWithin(s, 5_000)).toBe(true);
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(answer).toMatch(/connection: close/i);
    expect(answer).toContain('"Code":"RequestSizeLimitExceeded"');
  });
});
