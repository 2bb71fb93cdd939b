import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initDev } from '../../src/cli/dev-init';
import { DEV_CREDENTIALS } from '../../src/common/data-dir';
import { loadServerConfig } from '../../src/config';
import { RunningServer, startServer } from '../../src/server';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const tencentcloud = require('tencentcloud-sdk-nodejs') as { kms: { v20190118: { Client: new (config: object) => KmsClient } } };

export interface Credentials {
  Uin: number;
  SecretId: string;
  SecretKey: string;
}

/** The official SDK client: every action returns the Response object or rejects with `.code`. */
export type KmsClient = Record<string, (params?: object) => Promise<Record<string, unknown>>>;

export interface SdkError {
  code?: string;
  message: string;
  requestId?: string;
}

/** A development installation (make run's) in a temp dir, served on a free loopback port. */
export class ServerLab {
  readonly dir = mkdtempSync(join(tmpdir(), 'kms-e2e-'));
  server!: RunningServer;
  root!: Credentials;
  logs: Array<Record<string, unknown>> = [];

  async start(overrides: Record<string, string> = {}, init: { lock?: boolean } = {}): Promise<void> {
    await initDev(this.dir, () => undefined, init);
    this.root = JSON.parse(readFileSync(join(this.dir, DEV_CREDENTIALS), 'utf8')) as Credentials;
    const config = loadServerConfig(this.dir, { KMS_PORT: '0', ...overrides });
    this.server = await startServer(config, (l) => this.logs.push(l));
  }

  /** The SDK client, patient (see `patient`); `raw` gives the SDK's own, which may repeat a signature. */
  client(creds: Pick<Credentials, 'SecretId' | 'SecretKey'> = this.root, region = 'ap-guangzhou', raw = false): KmsClient {
    const client = new tencentcloud.kms.v20190118.Client({
      credential: { secretId: creds.SecretId, secretKey: creds.SecretKey },
      region,
      profile: { httpProfile: { endpoint: `127.0.0.1:${this.server.port}`, protocol: 'http://', agent: new Agent({ keepAlive: true }), reqTimeout: 30 } },
    });
    return raw ? client : patient(client);
  }

  async stop(): Promise<void> {
    await this.server?.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const nextSecond = () => new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 5));

/**
 * The SDK client, waiting for the next second before a call whose body it already sent in this one.
 * The SDK signs one-second timestamps and not the action, so two calls with one body in one second
 * (DisableKey then EnableKey on one {KeyId}, two GetParametersForImport) are one signature, refused
 * after its first use (docs/security.md §1), as they would be for any client that does not retry.
 */
export function patient(client: KmsClient): KmsClient {
  const sentIn = new Map<string, number>();
  return new Proxy(client, {
    get(target, name: string) {
      const call = target[name];
      if (typeof call !== 'function') return call;
      return async (params?: object) => {
        const body = JSON.stringify(params ?? {});
        if (sentIn.get(body) === Math.floor(Date.now() / 1000)) await nextSecond();
        sentIn.set(body, Math.floor(Date.now() / 1000));
        return call.call(target, params);
      };
    },
  });
}

/** The error code an SDK call rejected with (fails the test if it resolved). */
export async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return (e as SdkError).code;
  }
  throw new Error('the call succeeded, an error was expected');
}
