/**
 * The fuzzer's server: a development installation (what `make run` makes) in a temp dir, served
 * in-process on a free loopback port, and a raw HTTP client that signs requests with TC3 exactly
 * like the Go SDK (host with port, service `kms`) and then lets the caller break them.
 *
 * Differences from ServerLab: the per-account rate limit is raised in kms.yaml (thousands of
 * requests in a few seconds would otherwise be answered RequestLimitExceeded, which is a correct
 * answer but stops the fuzzer from reaching anything past the limiter), and server log lines are
 * inspected as they arrive (secrets, InternalError reports) and never kept, so the heap the
 * fuzzer measures is the server's, not a growing array of log lines.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { signTc3 } from '../../src/api/tc3';
import { initDev } from '../../src/cli/dev-init';
import { CONFIG_FILE, DEV_CREDENTIALS } from '../../src/common/data-dir';
import { loadServerConfig } from '../../src/config';
import { RunningServer, startServer } from '../../src/server';
import type { Credentials, KmsClient } from './server';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const tencentcloud = require('tencentcloud-sdk-nodejs') as { kms: { v20190118: { Client: new (config: object) => KmsClient } } };

export const API_VERSION = '2019-01-18';
export const REGION = 'ap-guangzhou';

/** What one fuzzed call sends. Everything optional defaults to a correctly signed request. */
export interface RawCall {
  action: string;
  body: Buffer;
  creds?: Pick<Credentials, 'SecretId' | 'SecretKey'>;
  /** X-TC-Timestamp (unix seconds) the request is signed for. */
  timestamp?: number;
  /** Header changes after signing (undefined deletes the header). */
  headers?: Record<string, string | undefined>;
  /** Replaces the Authorization header computed by signTc3. */
  authorization?: (signed: string) => string | undefined;
  /** The body actually sent (after signing). */
  sent?: Buffer;
  /** Headers signed besides content-type and host. */
  extraSignedHeaders?: string[];
  /** Header values set before signing (and signed when they are signed headers). */
  preHeaders?: Record<string, string>;
}

export interface RawAnswer {
  status: number;
  text: string;
}

export interface Envelope {
  Response: { Error?: { Code: unknown; Message: unknown }; RequestId: unknown; [k: string]: unknown };
}

export class FuzzLab {
  readonly dir = mkdtempSync(join(tmpdir(), 'kms-fuzz-'));
  server!: RunningServer;
  root!: Credentials;
  /** Strings that must never appear in a log line (SecretKeys). */
  readonly secrets: string[] = [];
  /** Log lines seen, log lines that carried a secret, and the server's own InternalError reports (first few kept). */
  logLines = 0;
  readonly leakedInLogs: string[] = [];
  readonly internalErrors: Array<Record<string, unknown>> = [];
  internalErrorCount = 0;
  /** The last few log lines (for checks on one request; never more than 50 kept). */
  readonly recent: Array<Record<string, unknown>> = [];
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 8 });

  async start(): Promise<void> {
    await initDev(this.dir, () => undefined);
    const file = join(this.dir, CONFIG_FILE);
    const doc = parseDocument(readFileSync(file, 'utf8'));
    doc.set('rateLimit', { perSecond: 1_000_000, burst: 10_000_000 });
    // likewise the per-address limit on failed authentications, and the replay cache: the fuzzer sends thousands
    // of failing requests from one address and may send one case twice in a second (both have their own tests)
    doc.set('preAuthLimit', { perSecond: 1_000_000, burst: 10_000_000 });
    doc.set('tc3', { replayCache: false });
    writeFileSync(file, doc.toString());
    this.root = JSON.parse(readFileSync(join(this.dir, DEV_CREDENTIALS), 'utf8')) as Credentials;
    this.secrets.push(this.root.SecretKey);
    this.server = await startServer(loadServerConfig(this.dir, { KMS_PORT: '0' }), (line) => this.onLog(line));
  }

  private onLog(line: Record<string, unknown>): void {
    this.logLines++;
    this.recent.push(line);
    if (this.recent.length > 50) this.recent.shift();
    const text = JSON.stringify(line);
    for (const s of this.secrets) if (text.includes(s)) this.leakedInLogs.push(`${String(line.action ?? line.msg ?? '')}`.slice(0, 80));
    if (line.level === 'error') {
      this.internalErrorCount++;
      if (this.internalErrors.length < 20) this.internalErrors.push(line);
    }
  }

  client(creds: Pick<Credentials, 'SecretId' | 'SecretKey'> = this.root, region = REGION): KmsClient {
    return new tencentcloud.kms.v20190118.Client({
      credential: { secretId: creds.SecretId, secretKey: creds.SecretKey },
      region,
      profile: { httpProfile: { endpoint: `127.0.0.1:${this.server.port}`, protocol: 'http://', agent: new Agent({ keepAlive: true }), reqTimeout: 30 } },
    });
  }

  /** Signs (Go SDK style) and sends; resolves with the HTTP status and the raw answer. */
  send(call: RawCall): Promise<RawAnswer> {
    const creds = call.creds ?? this.root;
    const timestamp = call.timestamp ?? Math.floor(Date.now() / 1000);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      host: `127.0.0.1:${this.server.port}`,
      'x-tc-action': call.action,
      'x-tc-version': API_VERSION,
      'x-tc-region': REGION,
      'x-tc-timestamp': String(timestamp),
      ...call.preHeaders,
    };
    const signed = signTc3({
      secretId: creds.SecretId,
      secretKey: creds.SecretKey,
      service: 'kms',
      timestamp,
      headers,
      body: call.body,
      hostWithPort: true,
      extraSignedHeaders: call.extraSignedHeaders,
    });
    const authorization = call.authorization ? call.authorization(signed) : signed;
    if (authorization !== undefined) headers.authorization = authorization;
    for (const [k, v] of Object.entries(call.headers ?? {})) {
      if (v === undefined) delete headers[k];
      else headers[k] = v;
    }
    const sent = call.sent ?? call.body;
    return this.post(headers, sent);
  }

  post(headers: Record<string, string>, body: Buffer): Promise<RawAnswer> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: this.server.port,
          method: 'POST',
          path: '/',
          agent: this.agent,
          headers: { ...headers, 'content-length': String(body.length) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  /** GET a path: /healthz of the API listener, anything else (readyz, metrics) of the operations listener. */
  get(path: string): Promise<RawAnswer> {
    const port = path === '/healthz' ? this.server.port : this.server.ops!.port;
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method: 'GET', path, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  async stop(): Promise<void> {
    this.agent.destroy();
    await this.server?.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
