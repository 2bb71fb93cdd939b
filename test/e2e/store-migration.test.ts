/**
 * An installation made before authority rows were MACed and material was bound to its owner (API
 * key and policy rows without MACs, identity schema 1, key rows without an ownership MAC, KMR1
 * material records) migrates once at start-up, says so in a log line, and keeps working: keys made
 * before still decrypt, sign and import. After the migration a KMR1 record is refused.
 *
 * The old installation is made from a new one: its rows are stripped of their MACs and its material
 * records rewritten in the KMR1 format, with KMR1 MACs computed inside the real SoftHSM2 token under
 * the domain MAC key (as the code before KMR2 computed them).
 */
import Database from 'better-sqlite3';
import { constants, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import * as pk from 'pkcs11js';
import { loadServerConfig } from '../../src/config';
import type { HsmCluster } from '../../src/hsm/cluster';
import { WrappedMaterial } from '../../src/hsm/material';
import { startServer } from '../../src/server';
import { codeOf, Credentials, ServerLab } from '../support/server';
import { report } from '../support/report';

const b64 = (s: string) => Buffer.from(s).toString('base64');
/** Keys of one tenant beside the four above (the per-region quota is 200). */
const EXTRA_KEYS = 190;

/** The KMR1 record of the same wrapped key: binding without owner and scope, MACed inside the HSM as before. */
async function legacyRecord(clusters: readonly HsmCluster[], material: Buffer): Promise<Buffer> {
  const m = WrappedMaterial.fromBuffer(material);
  const { clusterId, keyId, keyVersion, usage } = m.binding;
  const member = clusters.find((c) => c.id === clusterId)!.members[0];
  const body = WrappedMaterial.macInput(m.spec, { clusterId, keyId, keyVersion, usage }, m.domainId, m.wrapped, m.publicKey, 1);
  const mac = await member.withSession('mac', (s) => {
    member.module.api.C_SignInit(s, { mechanism: pk.CKM_SHA256_HMAC }, member.domain!.mac);
    return Buffer.from(member.module.api.C_Sign(s, body, Buffer.alloc(32)));
  });
  return new WrappedMaterial(m.spec, { clusterId, keyId, keyVersion, usage }, m.domainId, m.wrapped, m.publicKey, mac, 1).toBuffer();
}

interface Downgrade {
  versions: Array<{ keyId: string; version: number; material: Buffer }>;
  wrappingKeys: Array<{ keyId: string; wrappingKey: string }>;
}

/** KMR1 versions of every material record (computed while the server runs: its HSM sessions are used). */
async function legacyMaterial(dbFile: string, clusters: readonly HsmCluster[]): Promise<Downgrade> {
  const db = new Database(dbFile, { readonly: true });
  try {
    const rows = db.prepare('SELECT key_id, version, material FROM key_versions').all() as Array<{ key_id: string; version: number; material: Buffer }>;
    const docs = db.prepare("SELECT key_id, json_extract(doc, '$.importParameters.wrappingKey') AS wk FROM keys WHERE wk IS NOT NULL").all() as Array<{
      key_id: string;
      wk: string;
    }>;
    return {
      versions: await Promise.all(rows.map(async (r) => ({ keyId: r.key_id, version: r.version, material: await legacyRecord(clusters, r.material) }))),
      wrappingKeys: await Promise.all(
        docs.map(async (d) => ({ keyId: d.key_id, wrappingKey: (await legacyRecord(clusters, Buffer.from(d.wk, 'base64'))).toString('base64') })),
      ),
    };
  } finally {
    db.close();
  }
}

/** What the database looked like before: no MAC columns (identity schema 1), no ownership MACs, no marker, KMR1 material. */
function writeOldInstallation(db: Database.Database, old: Downgrade): void {
  db.transaction(() => {
    db.exec('ALTER TABLE iam_api_keys DROP COLUMN mac; ALTER TABLE iam_policies DROP COLUMN mac; ALTER TABLE iam_users DROP COLUMN policies_mac');
    db.exec("UPDATE iam_meta SET value = 1 WHERE name = 'schema'; DELETE FROM iam_meta WHERE name LIKE 'marker:%'");
    db.exec("UPDATE keys SET doc = json_remove(doc, '$.authority')");
    const version = db.prepare('UPDATE key_versions SET material = ? WHERE key_id = ? AND version = ?');
    for (const v of old.versions) version.run(v.material, v.keyId, v.version);
    const wrapping = db.prepare("UPDATE keys SET doc = json_set(doc, '$.importParameters.wrappingKey', ?) WHERE key_id = ?");
    for (const w of old.wrappingKeys) wrapping.run(w.wrappingKey, w.keyId);
  })();
}

describe('an installation from before authority MACs and KMR2 migrates at start-up', () => {
  const lab = new ServerLab();
  const dbFile = () => join(lab.dir, 'kms.db');
  const restart = async (between?: () => void) => {
    await lab.server.close();
    between?.();
    lab.server = await startServer(loadServerConfig(lab.dir, { KMS_PORT: '0' }), (l) => lab.logs.push(l));
  };
  const made: Record<string, string> = {};
  let reader: Credentials;
  let disabled: Credentials;
  let importToken: string;
  let importKey: string;
  let old: Downgrade;

  beforeAll(async () => {
    await lab.start();
    const c = lab.client();
    made.sym = (await c.CreateKey({ Alias: 'before-sym' })).KeyId as string;
    made.blob = (await c.Encrypt({ KeyId: made.sym, Plaintext: b64('made before the upgrade') })).CiphertextBlob as string;
    made.dedicated = (await c.CreateKey({ Alias: 'before-dedicated', HsmClusterId: 'cls-dev-dedicated' })).KeyId as string;
    made.dedicatedBlob = (await c.Encrypt({ KeyId: made.dedicated, Plaintext: b64('dedicated before') })).CiphertextBlob as string;
    made.ecc = (await c.CreateKey({ Alias: 'before-ecc', KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_ECC' })).KeyId as string;
    made.ext = (await c.CreateKey({ Alias: 'before-byok', Type: 2 })).KeyId as string;
    const p = await c.GetParametersForImport({ KeyId: made.ext, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' });
    importToken = p.ImportToken as string;
    importKey = p.PublicKey as string;
    const tenant = String(lab.root.Uin);
    reader = await lab.server.services.iam.createUser(tenant, 'old-reader', { preset: 'QcloudKMSReadOnlyAccess' });
    disabled = await lab.server.services.iam.createUser(tenant, 'old-disabled', { preset: 'QcloudKMSFullAccess' });
    await lab.server.services.iam.disableApiKey(disabled.SecretId);
    const caller = { tenant, uin: tenant, region: 'ap-guangzhou' };
    for (let i = 0; i < EXTRA_KEYS; i++) await lab.server.services.kms.lifecycle.createKey(caller, { alias: `bulk-${i}` });
    old = await legacyMaterial(dbFile(), lab.server.services.clusters);
  }, 180_000);

  afterAll(() => lab.stop());

  test('the first start-up re-binds every KMR1 record and seals every row, once, with a log line', async () => {
    const before = lab.logs.length;
    await restart(() => {
      const db = new Database(dbFile());
      try {
        writeOldInstallation(db, old);
      } finally {
        db.close();
      }
    });
    const lines = lab.logs.slice(before).filter((l) => typeof l.msg === 'string' && l.msg.startsWith('authority migration: the store was trusted once'));
    expect(lines).toHaveLength(1);
    report(`migration: ${String(lines[0].msg)}`);
    const db = new Database(dbFile(), { readonly: true });
    try {
      const formats = db.prepare('SELECT DISTINCT substr(CAST(material AS TEXT), 1, 4) AS f FROM key_versions').all() as Array<{ f: string }>;
      expect(formats.map((r) => r.f)).toEqual(['KMR2']);
      expect(db.prepare("SELECT count(*) AS n FROM keys WHERE json_extract(doc, '$.authority') IS NULL").get()).toEqual({ n: 0 });
      expect(db.prepare('SELECT count(*) AS n FROM iam_api_keys WHERE mac IS NULL').get()).toEqual({ n: 0 });
    } finally {
      db.close();
    }
  });

  test('keys made before still decrypt, sign and take their import; accounts, policies and a disabled key are as they were', async () => {
    const c = lab.client();
    await expect(c.Decrypt({ CiphertextBlob: made.blob })).resolves.toMatchObject({ Plaintext: b64('made before the upgrade') });
    await expect(c.Decrypt({ CiphertextBlob: made.dedicatedBlob })).resolves.toMatchObject({ Plaintext: b64('dedicated before') });
    const sig = await c.SignByAsymmetricKey({ KeyId: made.ecc, Algorithm: 'ECC_P256_R1', Message: b64('signed after') });
    await expect(
      c.VerifyByAsymmetricKey({ KeyId: made.ecc, Algorithm: 'ECC_P256_R1', Message: b64('signed after'), SignatureValue: sig.Signature }),
    ).resolves.toMatchObject({ SignatureValid: true });
    const wrapped = publicEncrypt(
      {
        key: createPublicKey({ key: Buffer.from(importKey, 'base64'), format: 'der', type: 'spki' }),
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: 'sha1',
      },
      randomBytes(32),
    );
    await c.ImportKeyMaterial({ KeyId: made.ext, ImportToken: importToken, EncryptedKeyMaterial: wrapped.toString('base64') });
    await expect(c.Encrypt({ KeyId: made.ext, Plaintext: b64('imported after') })).resolves.not.toThrow();
    expect((await c.ListKeys({ Limit: 200 })).TotalCount).toBeGreaterThanOrEqual(EXTRA_KEYS + 4);
    await expect(lab.client(reader).DescribeKey({ KeyId: made.sym })).resolves.not.toThrow();
    expect(await codeOf(lab.client(reader).Encrypt({ KeyId: made.sym, Plaintext: b64('x') }))).toBe('UnauthorizedOperation');
    expect(await codeOf(lab.client(disabled).ListKeys({}))).toMatch(/^AuthFailure/);
  });

  test('after the migration a KMR1 record put back into the store is refused, and no start-up migrates it again', async () => {
    const before = lab.logs.length;
    const sym = old.versions.find((v) => v.keyId === made.sym)!;
    await restart(() => {
      const db = new Database(dbFile());
      try {
        db.prepare('UPDATE key_versions SET material = ? WHERE key_id = ? AND version = ?').run(sym.material, sym.keyId, sym.version);
      } finally {
        db.close();
      }
    });
    expect(lab.logs.slice(before).filter((l) => typeof l.msg === 'string' && l.msg.startsWith('authority migration'))).toHaveLength(0);
    expect(await codeOf(lab.client().Decrypt({ CiphertextBlob: made.blob }))).toBe('FailedOperation');
    expect(lab.server.services.kms.alarms.list(made.sym).map((a) => a.kind)).toContain('StoreIntegrity');
  });
});
