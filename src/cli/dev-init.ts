/**
 * `kmsctl init --dev` (what `make run` does first): a complete development installation under the
 * data directory — SoftHSM2 tokens for the shared pool and for the dedicated cluster
 * `cls-dev-dedicated` (two members each), kms.yaml, domain keys, the service key, and the
 * development root account, whose credentials go to dev-credentials.json (0600). A second run
 * finds kms.yaml and changes nothing.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { CONFIG_FILE, DEV_ALARMS_LOG, DEV_AUDIT_ANCHORS, DEV_CREDENTIALS, DEV_SO_PINS, DEV_SOFTHSM_DIR, SQLITE_FILE } from '../common/data-dir';
import { loadServerConfig } from '../config';
import { openServices } from '../services';
import { soPinsFromPath } from './so-pin';

export const DEV_DEDICATED_CLUSTER = 'cls-dev-dedicated';
const ROOT = join(__dirname, '..', '..', '..');
const SOFTHSM_LIB = '/usr/lib/softhsm/libsofthsm2.so';

interface TokenSet {
  dir: string;
  conf: string;
  lib: string;
  labels: string[];
}

/**
 * Tokens with random PINs (0600 files) in their own SOFTHSM2_CONF, and a private copy of the library (one module instance per set).
 * The SO PINs are kept under DEV_SO_PINS (development convenience: whoever reads them can reset the user PINs).
 */
function makeTokens(dataDir: string, name: string, labels: string[]): TokenSet {
  const dir = join(dataDir, DEV_SOFTHSM_DIR, name);
  const env = { ...process.env, KMS_KEEP_SO_PINS: join(dataDir, DEV_SO_PINS) };
  const conf = execFileSync(join(ROOT, 'softhsm', 'make-tokens.sh'), [dir, ...labels], { encoding: 'utf8', env }).trim();
  const lib = join(dir, 'libsofthsm2.so');
  if (!existsSync(lib)) copyFileSync(SOFTHSM_LIB, lib);
  // the token directories are 0700 already (make-tokens.sh); the sets and their parent are owner-only too
  for (const d of [join(dataDir, DEV_SOFTHSM_DIR), dir]) chmodSync(d, 0o700);
  return { dir, conf, lib, labels };
}

function clusterYaml(id: string, kind: 'shared' | 'dedicated', owners: string[], set: TokenSet): object {
  return {
    id,
    kind,
    ...(kind === 'dedicated' ? { owners } : {}),
    members: set.labels.map((label) => ({
      id: label,
      profile: 'softhsm2',
      module: set.lib,
      env: { SOFTHSM2_CONF: set.conf },
      token: label,
      pin: { file: join(set.dir, 'pins', `${label}.pin`) },
    })),
  };
}

function writeConfig(dataDir: string, deploymentId: string, shared: TokenSet, dedicated: TokenSet, owners: string[]): void {
  const doc = {
    listen: { host: '127.0.0.1', port: 8080 },
    deploymentId,
    regions: ['ap-guangzhou', 'ap-shanghai', 'ap-beijing'],
    store: { kind: 'sqlite', path: SQLITE_FILE },
    maxKeysPerRegion: 200,
    rateLimit: { perSecond: 1000, burst: 2000 },
    alarms: { log: DEV_ALARMS_LOG },
    audit: { anchors: { file: DEV_AUDIT_ANCHORS }, anchorIntervalSeconds: 60 },
    clusters: [clusterYaml('default', 'shared', [], shared), clusterYaml(DEV_DEDICATED_CLUSTER, 'dedicated', owners, dedicated)],
  };
  writeFileSync(
    join(dataDir, CONFIG_FILE),
    `# Development configuration written by "kmsctl init --dev". PINs are in 0600 files, never here.\n${stringify(doc)}`,
    { mode: 0o600 },
  );
}

export interface DevInitResult {
  created: boolean;
  credentialsFile: string;
}

/** `lock: false` leaves the domain keys unlocked (tests of `kmsctl cluster lock` on a running server); the default locks them. */
export async function initDev(dataDirArg: string, progress: (msg: string) => void, options: { lock?: boolean } = {}): Promise<DevInitResult> {
  const dataDir = resolve(dataDirArg);
  const credentialsFile = join(dataDir, DEV_CREDENTIALS);
  if (existsSync(join(dataDir, CONFIG_FILE))) return { created: false, credentialsFile };
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  progress('making SoftHSM2 tokens for the shared pool and cls-dev-dedicated (2 members each)');
  const shared = makeTokens(dataDir, 'shared', ['shared-a', 'shared-b']);
  const dedicated = makeTokens(dataDir, 'dedicated', ['dedicated-a', 'dedicated-b']);
  progress(`development only: the tokens' SO PINs are kept in ${join(dataDir, DEV_SO_PINS)} (0600); production tokens keep none`);
  const deploymentId = randomBytes(16).toString('hex');
  // The dedicated cluster's owner is the development root account, made below: until then the internal account 0.
  writeConfig(dataDir, deploymentId, shared, dedicated, ['0']);
  const config = loadServerConfig(dataDir, {});
  const log = (l: Record<string, unknown>) => progress(String(l.msg ?? JSON.stringify(l)));
  // the development set-up is locked from the start: the ceremony's SO logins use the kept SO PINs
  const services = await openServices(config, {
    log,
    jobs: false,
    domainCeremony: progress,
    domainLock: options.lock,
    soPin: soPinsFromPath(join(dataDir, DEV_SO_PINS)),
  });
  try {
    progress('creating the development root account');
    const creds = await services.iam.createTenant('dev-root');
    writeConfig(dataDir, deploymentId, shared, dedicated, [String(creds.Uin)]);
    writeFileSync(credentialsFile, JSON.stringify(creds, null, 2) + '\n', { mode: 0o600 });
    chmodSync(credentialsFile, 0o600);
  } finally {
    await services.close();
  }
  return { created: true, credentialsFile };
}
