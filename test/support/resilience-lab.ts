/**
 * Pieces shared by the resilience tests (test/e2e/resilience-*.test.ts): a development installation
 * whose kms.yaml a test may rewrite, the server as a child process (`node dist/src/main.js`) that can
 * be killed with SIGKILL, the official SDK client, /metrics and /readyz, and small statistics.
 *
 * KMS_SOAK=1 (`make soak`) selects the longer variants; `make test` runs the short ones.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, get as httpGet } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parse, stringify } from 'yaml';
import { initDev } from '../../src/cli/dev-init';
import { DEV_CREDENTIALS } from '../../src/common/data-dir';
import { within } from './poll';
import { Credentials, KmsClient, patient, SdkError } from './server';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const tencentcloud = require('tencentcloud-sdk-nodejs') as { kms: { v20190118: { Client: new (config: object) => KmsClient } } };

/** Longer runs under `make soak`. */
export const SOAK = process.env.KMS_SOAK === '1';

export const b64 = (s: string | Buffer): string => (typeof s === 'string' ? Buffer.from(s) : s).toString('base64');

/** 'Success' or the code (else the message) an SDK call ended with. */
export const outcome = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'Success',
    (e: SdkError) => e.code ?? e.message,
  );

export function getText(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { agent: false, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within 10 s`)));
    req.on('error', reject);
  });
}

/** The value of one Prometheus series (`name{labels}`; labels in the order the exposition prints them), undefined if absent. */
export function metric(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Sum of every series of `name` whose labels contain all of `labels` (e.g. operations of one member). */
export function metricSum(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map([...m[2].matchAll(/([a-zA-Z_]+)="([^"]*)"/g)].map((x) => [x[1], x[2]] as const));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum += Number(m[3]);
  }
  return sum;
}

/** The p-th percentile (0..100) of `values`, nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** The SDK client, patient (test/support/server.ts `patient`: one signature serves once). */
export function sdk(port: number, creds: Pick<Credentials, 'SecretId' | 'SecretKey'>, reqTimeoutSeconds = 30): KmsClient {
  return patient(
    new tencentcloud.kms.v20190118.Client({
      credential: { secretId: creds.SecretId, secretKey: creds.SecretKey },
      region: 'ap-guangzhou',
      profile: { httpProfile: { endpoint: `127.0.0.1:${port}`, protocol: 'http://', agent: new Agent({ keepAlive: true }), reqTimeout: reqTimeoutSeconds } },
    }),
  );
}

export function editConfig(dir: string, edit: (doc: Record<string, unknown>) => void): void {
  const file = join(dir, 'kms.yaml');
  const doc = parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(doc);
  writeFileSync(file, stringify(doc), { mode: 0o600 });
}

interface MemberDoc {
  id: string;
  module: string;
  env: { SOFTHSM2_CONF: string };
  [k: string]: unknown;
}
interface ClusterDoc {
  id: string;
  kind: string;
  members: MemberDoc[];
  [k: string]: unknown;
}

/** `make run`'s installation in `dir`; returns the development root credentials. */
export async function devInstall(dir: string): Promise<Credentials> {
  await initDev(dir, () => undefined);
  // the tests drive far more than 1000 requests a second, make more than 200 keys at one account and
  // more than 4 of its key pairs at once; neither the rate limit, the key quota nor the cap on expensive requests is under test
  editConfig(dir, (doc) => {
    doc.rateLimit = { perSecond: 1_000_000, burst: 10_000_000 };
    doc.maxKeysPerRegion = 0;
    doc.limits = { expensivePerTenant: 0 };
  });
  return JSON.parse(readFileSync(join(dir, DEV_CREDENTIALS), 'utf8')) as Credentials;
}

/**
 * The development shared pool has two members on one module instance (one SOFTHSM2_CONF, one
 * library copy). This gives its second member a module instance of its own: a copy of the token
 * set (tokens, domain keys included, and PIN files) with its own softhsm2.conf and its own copy of
 * the library, so one member's module can be finalised and its token directory taken away without
 * touching the other. Returns the token directories of both members.
 */
export function splitSharedPool(dir: string): { first: { member: string; tokens: string }; second: { member: string; tokens: string } } {
  const from = join(dir, 'softhsm', 'shared');
  const to = join(dir, 'softhsm', 'shared-2');
  cpSync(from, to, { recursive: true });
  const conf = readFileSync(join(from, 'softhsm2.conf'), 'utf8').split(join(from, 'tokens')).join(join(to, 'tokens'));
  writeFileSync(join(to, 'softhsm2.conf'), conf, { mode: 0o600 });
  let first = '';
  let second = '';
  editConfig(dir, (doc) => {
    const shared = (doc.clusters as ClusterDoc[]).find((c) => c.kind === 'shared')!;
    const m = shared.members[1];
    m.module = join(to, 'libsofthsm2.so');
    m.env = { SOFTHSM2_CONF: join(to, 'softhsm2.conf') };
    m.pin = { file: join(to, 'pins', `${String(m.token)}.pin`) };
    first = shared.members[0].id;
    second = m.id;
  });
  return { first: { member: first, tokens: join(from, 'tokens') }, second: { member: second, tokens: join(to, 'tokens') } };
}

/** `node dist/src/main.js --data-dir DIR` on a free port, as an operator runs it. */
export class ServerProcess {
  port = 0;
  /** The operations listener (/metrics, /readyz). */
  opsPort = 0;
  readonly lines: Array<Record<string, unknown>> = [];
  private child: ChildProcess | undefined;
  private stderr = '';
  private exited: Promise<void> = Promise.resolve();

  constructor(private readonly dir: string) {}

  /** Starts it and resolves once it listens (bounded by `boundMs`); with `openFiles`, under `ulimit -n openFiles`. */
  async start(boundMs = 30_000, openFiles?: number): Promise<void> {
    const main = join(__dirname, '..', '..', 'src', 'main.js');
    const env = { ...process.env, KMS_PORT: '0' };
    const stdio: ['ignore', 'pipe', 'pipe'] = ['ignore', 'pipe', 'pipe'];
    this.opsPort = 0;
    const child =
      openFiles === undefined
        ? spawn(process.execPath, [main, '--data-dir', this.dir], { env, stdio })
        : spawn('bash', ['-c', `ulimit -n ${openFiles} && exec "$0" "$@"`, process.execPath, main, '--data-dir', this.dir], { env, stdio });
    this.child = child;
    this.stderr = '';
    this.exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    let port = 0;
    createInterface({ input: child.stdout }).on('line', (l) => {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(l) as Record<string, unknown>;
      } catch {
        line = { text: l };
      }
      this.lines.push(line);
      const m = typeof line.msg === 'string' ? /^KMS listening on http:\/\/127\.0\.0\.1:(\d+)$/.exec(line.msg) : null;
      if (m) port = Number(m[1]);
      const ops = typeof line.msg === 'string' ? /^KMS operations on http:\/\/127\.0\.0\.1:(\d+)$/.exec(line.msg) : null;
      if (ops) this.opsPort = Number(ops[1]);
    });
    await within(
      boundMs,
      () => {
        if (child.exitCode !== null) throw new Error(`main.js exited with ${child.exitCode}: ${this.stderr}`);
        return port !== 0 && this.opsPort !== 0;
      },
      'server start',
    );
    this.port = port;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Resolves with the exit code (or signal) once the process has ended. */
  async ended(): Promise<number | string | null> {
    await this.exited;
    return this.child?.exitCode ?? this.child?.signalCode ?? null;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Where /metrics and /readyz are served. */
  get opsUrl(): string {
    return `http://127.0.0.1:${this.opsPort}`;
  }

  /** What the process wrote to stderr since it started. */
  get errors(): string {
    return this.stderr;
  }

  /** kill -9 (no drain, no flush); resolves once the process is gone. */
  async kill9(): Promise<void> {
    if (!this.running) return;
    this.child!.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM (drain and close), SIGKILL if it has not ended after 15 s. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.child!.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.exited,
      new Promise<void>((r) => {
        timer = setTimeout(r, 15_000);
      }),
    ]);
    clearTimeout(timer);
    await this.kill9();
  }
}
