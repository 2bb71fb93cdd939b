/**
 * docs/security.md §2, "The store cannot grant what policy did not": someone who can write the
 * SQLite file (the server stopped, so nothing is cached) changes who owns a key, inserts or rewrites
 * a policy attachment, re-enables a disabled API key or moves a sub-account to another tenant. After
 * the restart every one of those rows is refused (FailedOperation, an alarm raised), never obeyed.
 * Through the official SDK against a running server on real SoftHSM2 tokens.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { loadServerConfig } from '../../src/config';
import { startServer } from '../../src/server';
import { codeOf, Credentials, ServerLab } from '../support/server';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const ALLOW_ALL = JSON.stringify({ version: '2.0', statement: [{ effect: 'allow', action: ['kms:*'], resource: ['*'] }] });

/** A ServerLab that can stop and start its server on the same data directory. */
class RestartableLab extends ServerLab {
  async restart(): Promise<void> {
    await this.server.close();
    this.server = await startServer(loadServerConfig(this.dir, { KMS_PORT: '0' }), (l) => this.logs.push(l));
  }

  /** Runs `fn` on the database file while the server is stopped, then starts it again. */
  async tamper(fn: (db: Database.Database) => void): Promise<void> {
    await this.server.close();
    const db = new Database(join(this.dir, 'kms.db'));
    try {
      fn(db);
    } finally {
      db.close();
      this.server = await startServer(loadServerConfig(this.dir, { KMS_PORT: '0' }), (l) => this.logs.push(l));
    }
  }

  integrityAlarms(): Array<{ keyId: string; ownerUin: string; detail?: string }> {
    return this.server.services.kms.alarms.list().filter((a) => a.kind === 'StoreIntegrity');
  }
}

describe('a store written outside the service grants nothing (SQLite)', () => {
  const lab = new RestartableLab();
  let other: Credentials;

  beforeAll(async () => {
    await lab.start();
    other = await lab.server.services.iam.createTenant('other-tenant');
  }, 60_000);

  afterAll(() => lab.stop());

  test('a key whose owner is changed to another tenant in the SQLite file is refused to that tenant (Encrypt, Decrypt, DescribeKey, ListKeys) and an alarm is raised', async () => {
    const root = lab.client();
    const keyId = (await root.CreateKey({ Alias: 'owned-by-root' })).KeyId as string;
    const blob = (await root.Encrypt({ KeyId: keyId, Plaintext: b64('tenant A secret') })).CiphertextBlob as string;

    await lab.tamper((db) => {
      db.prepare("UPDATE keys SET owner_uin = ?, doc = json_set(doc, '$.ownerUin', ?) WHERE key_id = ?").run(String(other.Uin), String(other.Uin), keyId);
    });

    const thief = lab.client(other);
    expect(await codeOf(thief.DescribeKey({ KeyId: keyId }))).toBe('FailedOperation');
    expect(await codeOf(thief.Encrypt({ KeyId: keyId, Plaintext: b64('x') }))).toBe('FailedOperation');
    expect(await codeOf(thief.Decrypt({ CiphertextBlob: blob }))).toBe('FailedOperation');
    expect(await codeOf(thief.ListKeys({}))).toBe('FailedOperation');
    // the rightful owner loses the key (the store can destroy), it is not granted to anyone
    expect(await codeOf(lab.client().DescribeKey({ KeyId: keyId }))).toBe('ResourceUnavailable.CmkNotFound');
    expect(lab.integrityAlarms().some((a) => a.keyId === keyId && a.ownerUin === String(other.Uin))).toBe(true);
  });

  test("an attachment inserted into the SQLite file gives a sub-account nothing; another sub-account's row copied over, MAC and all, is refused too", async () => {
    const tenant = String(lab.root.Uin);
    const nobody = await lab.server.services.iam.createUser(tenant, 'no-policies');
    const reader = await lab.server.services.iam.createUser(tenant, 'reader', { preset: 'QcloudKMSReadOnlyAccess' });
    const admin = await lab.server.services.iam.createUser(tenant, 'admin', { preset: 'QcloudKMSFullAccess' });
    expect(await codeOf(lab.client(nobody).CreateKey({ Alias: 'not-allowed' }))).toBe('UnauthorizedOperation');
    await expect(lab.client(reader).ListKeys({})).resolves.not.toThrow();

    await lab.tamper((db) => {
      db.prepare('INSERT INTO iam_policies (user_uin, name, preset, document, attached_at) VALUES (?, ?, NULL, ?, ?)').run(
        String(nobody.Uin),
        'full',
        ALLOW_ALL,
        1,
      );
      // the reader's attachment becomes a copy of the admin's (full access), MAC included where there is one
      const columns = (db.prepare('PRAGMA table_info(iam_policies)').all() as Array<{ name: string }>).map((c) => c.name).filter((c) => c !== 'user_uin');
      db.prepare('DELETE FROM iam_policies WHERE user_uin = ?').run(String(reader.Uin));
      db.prepare(`INSERT INTO iam_policies (user_uin, ${columns.join(', ')}) SELECT ?, ${columns.join(', ')} FROM iam_policies WHERE user_uin = ?`).run(
        String(reader.Uin),
        String(admin.Uin),
      );
    });

    expect(await codeOf(lab.client(nobody).CreateKey({ Alias: 'granted-by-the-store' }))).toBe('FailedOperation');
    expect(await codeOf(lab.client(reader).CreateKey({ Alias: 'granted-by-the-store-2' }))).toBe('FailedOperation');
    expect(lab.integrityAlarms().map((a) => a.ownerUin)).toEqual(expect.arrayContaining([String(nobody.Uin), String(reader.Uin)]));
  });

  test('a deny attachment deleted from the SQLite file does not lift the deny: the set of attachments is refused', async () => {
    const tenant = String(lab.root.Uin);
    const keyId = (await lab.client().CreateKey({ Alias: 'denied-decrypt' })).KeyId as string;
    const blob = (await lab.client().Encrypt({ KeyId: keyId, Plaintext: b64('not for the sub-account') })).CiphertextBlob;
    const user = await lab.server.services.iam.createUser(tenant, 'denied', { preset: 'QcloudKMSFullAccess' });
    await lab.server.services.iam.attachPolicy(String(user.Uin), 'no-decrypt', {
      version: '2.0',
      statement: [{ effect: 'deny', action: ['kms:Decrypt'], resource: ['*'] }],
    });
    expect(await codeOf(lab.client(user).Decrypt({ CiphertextBlob: blob }))).toBe('UnauthorizedOperation');

    await lab.tamper((db) => {
      db.prepare("DELETE FROM iam_policies WHERE user_uin = ? AND name = 'no-decrypt'").run(String(user.Uin));
    });

    expect(await codeOf(lab.client(user).Decrypt({ CiphertextBlob: blob }))).toBe('FailedOperation');
    expect(lab.integrityAlarms().some((a) => a.ownerUin === String(user.Uin) && /set of policies/.test(a.detail ?? ''))).toBe(true);
    // through the service, attachments still change (and the set's MAC with them)
    const fresh = await lab.server.services.iam.createUser(tenant, 'changes-through-the-service', { preset: 'QcloudKMSReadOnlyAccess' });
    await lab.server.services.iam.attachPolicy(String(fresh.Uin), 'extra', 'QcloudKMSFullAccess');
    await lab.server.services.iam.detachPolicy(String(fresh.Uin), 'QcloudKMSReadOnlyAccess');
    await expect(lab.client(fresh).ListKeys({})).resolves.not.toThrow();
  });

  test('an API key disabled by the service and re-enabled in the SQLite file stays refused', async () => {
    const user = await lab.server.services.iam.createUser(String(lab.root.Uin), 'to-be-disabled', { preset: 'QcloudKMSFullAccess' });
    await expect(lab.client(user).ListKeys({})).resolves.not.toThrow();
    await lab.server.services.iam.disableApiKey(user.SecretId);
    expect(await codeOf(lab.client(user).ListKeys({}))).toMatch(/^AuthFailure/);

    await lab.tamper((db) => {
      db.prepare("UPDATE iam_api_keys SET status = 'active' WHERE secret_id = ?").run(user.SecretId);
    });

    expect(await codeOf(lab.client(user).ListKeys({}))).toBe('FailedOperation');
    expect(lab.integrityAlarms().some((a) => a.ownerUin === String(user.Uin))).toBe(true);
  });

  test('a sub-account moved to another tenant in the SQLite file (membership and key rows) is refused with an alarm', async () => {
    const user = await lab.server.services.iam.createUser(String(lab.root.Uin), 'to-be-moved', { preset: 'QcloudKMSFullAccess' });
    await expect(lab.client(user).ListKeys({})).resolves.not.toThrow();

    await lab.tamper((db) => {
      db.pragma('foreign_keys = ON');
      db.prepare('UPDATE iam_users SET tenant_uin = ? WHERE uin = ?').run(String(other.Uin), String(user.Uin));
      db.prepare('UPDATE iam_api_keys SET tenant_uin = ? WHERE owner_uin = ?').run(String(other.Uin), String(user.Uin));
    });

    expect(await codeOf(lab.client(user).ListKeys({}))).toBe('FailedOperation');
    expect(lab.integrityAlarms().some((a) => a.ownerUin === String(user.Uin))).toBe(true);
  });

  test('restarts do not re-trust the store: the tampered rows of the tests above are still refused', async () => {
    const before = lab.logs.length;
    await lab.restart();
    const logs = lab.logs.slice(before).filter((l) => typeof l.msg === 'string' && l.msg.startsWith('authority migration'));
    expect(logs).toHaveLength(0);
    expect(await codeOf(lab.client(other).ListKeys({}))).toBe('FailedOperation');
    // untouched keys and accounts keep working
    const root = lab.client();
    const keyId = (await root.CreateKey({ Alias: 'after-the-attacks' })).KeyId as string;
    const blob = (await root.Encrypt({ KeyId: keyId, Plaintext: b64('still fine') })).CiphertextBlob;
    await expect(root.Decrypt({ CiphertextBlob: blob })).resolves.toMatchObject({ Plaintext: b64('still fine') });
  });
});
