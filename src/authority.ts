/**
 * Authority rows (key ownership, API keys, policy attachments) are MACed inside the shared
 * cluster's HSMs (purpose `authority-row`), and key material is bound to its owner (KMR2). This is
 * the wiring, and the one-time start-up migration of an installation made before either existed:
 * it re-MACs every KMR1 material record under the owner and region its key's row names (the old
 * MAC is checked inside the HSM first), gives every key row its ownership MAC, and every API key and
 * policy row its row MAC (and each sub-account the MAC of its set of policies), then sets a marker so that it never runs again. It trusts the store
 * once, at that moment: an owner changed in the store before the migration would be sealed in. A
 * log line says so. After it, an unsealed row or a KMR1 record is refused.
 */
import type { HsmCluster } from './hsm/cluster';
import { DomainKeyError } from './hsm/errors';
import { WrappedMaterial } from './hsm/material';
import type { IdentityStore, PolicyAttachment } from './iam/identity-store';
import { apiKeyBytes, policyBytes, policySetBytes } from './iam/sealed-identity-store';
import { IdentitySeals } from './iam/identity-seals';
import type { Tamper } from './iam/sealed-identity-store';
import type { SealedUnderDomain } from './kms/domain-rotation';
import { binding } from './kms/key-access';
import { OwnershipSeals } from './kms/ownership-seals';
import { wrappingBinding } from './kms/key-import';
import { ownershipMac } from './kms/sealed-store';
import { GenerationalAuthenticator, GenerationalMac, generationalAuthenticator, RowAuthenticator } from './store/row-mac';
import { ConflictError, KeyPatch, KeyRecord, KeyVersion, MetadataStore } from './store/store';

export const AUTHORITY_PURPOSE = 'authority-row';
export const AUTHORITY_MARKER = 'authority-rows-v1';
/** The service key's account and region (service-key.ts), which no tenant listing names. */
const SYSTEM_SCOPES: ReadonlyArray<readonly [string, string]> = [['0', 'kms-internal']];

/** Authority-row MACs under the shared cluster's domain MAC key, each naming its generation (rotate-domain re-seals them). */
export function clusterAuthenticator(shared: HsmCluster): GenerationalAuthenticator {
  return generationalAuthenticator(sharedMacKey(shared, AUTHORITY_PURPOSE));
}

/**
 * The shared cluster's domain MAC key for one purpose, by generation. A generation no member is
 * known to hold (made by a kmsctl run since the tokens were read) makes it read the tokens again, at
 * most once a second, so that rows re-sealed by another process verify here too.
 */
export function sharedMacKey(shared: HsmCluster, purpose: string): GenerationalMac {
  let readAt = 0;
  const ids = () => shared.heldGenerations().map((g) => g.toString('hex'));
  return {
    current() {
      const g = shared.currentGeneration;
      if (!g) throw new DomainKeyError(`cluster ${shared.id} has no current domain generation (no reachable member holds domain keys)`);
      return g.toString('hex');
    },
    async held(generation) {
      if (generation !== undefined && !ids().includes(generation) && Date.now() - readAt >= 1_000) {
        readAt = Date.now();
        await shared.refreshGenerations();
      }
      return ids();
    },
    macUnder: (generation, data) => shared.generationMac(Buffer.from(generation, 'hex'), purpose, data),
  };
}

/** The authority rows for the shared cluster's rotate-domain walk: every key's ownership MAC, and the identity rows. */
export function authoritySeals(
  store: MetadataStore,
  identities: IdentityStore,
  auth: GenerationalAuthenticator,
  clusters: readonly HsmCluster[],
  onTamper: (t: Tamper) => void,
): SealedUnderDomain[] {
  const keys = new OwnershipSeals(store, auth, () => clusters.map((c) => c.id));
  const rows = new IdentitySeals(identities, auth, onTamper);
  return [
    { purpose: AUTHORITY_PURPOSE, what: 'key ownership MACs', census: () => keys.census(), reseal: (done, renew) => keys.reseal(done, renew) },
    { purpose: AUTHORITY_PURPOSE, what: 'identity rows', census: () => rows.census(), reseal: (done, renew) => rows.reseal(done, renew) },
  ];
}

export interface MigrationInput {
  store: MetadataStore;
  identities: IdentityStore;
  auth: RowAuthenticator;
  clusters: readonly HsmCluster[];
  regions: readonly string[];
  log: (line: Record<string, unknown>) => void;
}

export interface MigrationReport {
  keys: number;
  materials: number;
  apiKeys: number;
  policies: number;
  /** Rows that already carried a MAC (none on a genuine pre-upgrade installation). */
  alreadySealed: number;
  ms: number;
}

/** Runs the migration unless its marker is set; undefined when there was nothing to do. */
export async function migrateAuthority(input: MigrationInput): Promise<MigrationReport | undefined> {
  if (await input.identities.hasMarker(AUTHORITY_MARKER)) return undefined;
  const started = Date.now();
  const report: MigrationReport = { keys: 0, materials: 0, apiKeys: 0, policies: 0, alreadySealed: 0, ms: 0 };
  const tenants = (await input.identities.listTenants()).map((t) => t.uin);
  const scopes = [...SYSTEM_SCOPES, ...tenants.flatMap((t) => input.regions.map((r) => [t, r] as const))];
  for (const [owner, region] of scopes) await migrateKeys(input, owner, region, report);
  for (const tenant of tenants) await migrateIdentities(input, tenant, report);
  await input.identities.setMarker(AUTHORITY_MARKER);
  report.ms = Date.now() - started;
  if (report.keys + report.apiKeys + report.policies === 0) {
    input.log({ level: 'info', msg: `authority migration: nothing to seal (a new installation); from now on an unsealed row or KMR1 record is refused` });
    return report;
  }
  input.log({
    level: 'warn',
    msg:
      `authority migration: the store was trusted once, now: sealed ${report.keys} key records (${report.materials} KMR1 material records re-bound to their owners), ` +
      `${report.apiKeys} API keys and ${report.policies} policy attachments in ${report.ms} ms; from now on an unsealed row or KMR1 record is refused`,
  });
  if (report.alreadySealed > 0) {
    input.log({
      level: 'warn',
      msg: `authority migration: ${report.alreadySealed} rows were sealed already, yet the migration marker was missing (an interrupted migration, or the marker was removed from the store)`,
    });
  }
  return report;
}

async function migrateKeys(input: MigrationInput, ownerUin: string, region: string, report: MigrationReport): Promise<void> {
  for (let offset = 0; ; offset += 200) {
    const page = await input.store.listKeys({ ownerUin, region, offset, limit: 200, order: 'asc' });
    for (const r of page.keys) await migrateKey(input, r, report);
    if (offset + 200 >= page.total) return;
  }
}

async function migrateKey(input: MigrationInput, r: KeyRecord, report: MigrationReport, retry = true): Promise<void> {
  const cluster = input.clusters.find((c) => c.id === r.hsmClusterId);
  if (!cluster) throw new Error(`authority migration: key ${r.keyId} is in HSM cluster ${r.hsmClusterId}, which is not configured here`);
  const patch: KeyPatch = {};
  const versions = await Promise.all(r.versions.map((v) => rebound(cluster, r, v)));
  if (versions.some((v, i) => v !== r.versions[i])) {
    patch.versions = versions;
    report.materials += versions.filter((v, i) => v !== r.versions[i]).length;
  }
  const ip = r.importParameters;
  if (ip) {
    const wrapping = WrappedMaterial.fromBuffer(ip.wrappingKey);
    if (wrapping.legacy) {
      patch.importParameters = { ...ip, wrappingKey: (await cluster.rebindLegacy(wrapping, wrappingBinding(r))).toBuffer() };
      report.materials++;
    }
  }
  if (r.authority === undefined) patch.authority = await ownershipMac(input.auth, r);
  else report.alreadySealed++;
  if (Object.keys(patch).length === 0) return;
  try {
    await input.store.updateKey(r.ownerUin, r.keyId, r.revision, patch);
    report.keys++;
  } catch (e) {
    // another node migrating (or serving) at the same moment: take the key as it is now, once more
    const now = e instanceof ConflictError && retry ? await input.store.getKey(r.ownerUin, r.keyId) : undefined;
    if (!now) throw e;
    await migrateKey(input, now, report, false);
  }
}

async function rebound(cluster: HsmCluster, r: KeyRecord, v: KeyVersion): Promise<KeyVersion> {
  const m = WrappedMaterial.fromBuffer(v.material);
  if (!m.legacy) return v;
  return { ...v, material: (await cluster.rebindLegacy(m, binding(r, v.version))).toBuffer() };
}

async function migrateIdentities(input: MigrationInput, tenantUin: string, report: MigrationReport): Promise<void> {
  const { identities, auth } = input;
  const users = await identities.listUsers(tenantUin);
  for (const owner of [tenantUin, ...users.map((u) => u.uin)]) {
    for (const k of await identities.listApiKeys(owner)) {
      if (k.mac) {
        report.alreadySealed++;
        continue;
      }
      await identities.setApiKeyStatus(k.secretId, k.status, await auth.mac(apiKeyBytes(k)));
      report.apiKeys++;
    }
  }
  for (const u of users) {
    const sealed: PolicyAttachment[] = [];
    for (const p of await identities.listPolicies(u.uin)) {
      if (p.mac) {
        report.alreadySealed++;
        sealed.push(p);
        continue;
      }
      const mac = await auth.mac(policyBytes(u.uin, p));
      await identities.attachPolicy(u.uin, { ...p, mac });
      sealed.push({ ...p, mac });
      report.policies++;
    }
    if (u.policiesMac) report.alreadySealed++;
    else await identities.setPolicySetMac(u.uin, { expected: null, next: await auth.mac(policySetBytes(u.uin, sealed)) });
  }
}
