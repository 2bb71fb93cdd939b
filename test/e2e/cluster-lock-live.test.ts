/**
 * Issue 12 §1: `kmsctl cluster lock` on an installation whose server is running. The lock replaces
 * every domain key by a sealed copy (CKA_MODIFIABLE=false) and destroys the original, so the
 * handles the server found at start-up go invalid; the server finds the keys again by CKA_ID and
 * goes on serving, without a restart: new keys (sealed under the KEK), new data keys, decryption of
 * what was encrypted before, the audit trail's MACs.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { ServerLab } from '../support/server';

const REPO = join(__dirname, '..', '..', '..');
const KMSCTL = join(REPO, 'dist', 'src', 'cli', 'kmsctl.js');
const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('kmsctl cluster lock while the server runs', () => {
  const lab = new ServerLab();
  const kmsctl = (...args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
      execFile(process.execPath, [KMSCTL, '--data-dir', lab.dir, ...args], { cwd: REPO, encoding: 'utf8', timeout: 120_000 }, (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') return reject(error);
        resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
      });
    });

  beforeAll(() => lab.start({}, { lock: false }), 60_000);
  afterAll(() => lab.stop());

  test('requests made after the lock succeed without a restart; status shows the members locked', async () => {
    const kms = lab.client();
    const { KeyId } = (await kms.CreateKey({ Alias: 'before-lock' })) as { KeyId: string };
    const before = (await kms.Encrypt({ KeyId, Plaintext: b64('sealed before the lock') })) as { CiphertextBlob: string };
    expect((await kmsctl('cluster', 'status')).stdout).toMatch(/shared-a .*domain keys unlocked \(kmsctl cluster lock\)/);

    const lock = await kmsctl('cluster', 'lock', '--cluster', 'default');
    expect({ code: lock.code, stderr: lock.stderr }).toEqual({ code: 0, stderr: '' });
    expect(lock.stdout).toMatch(/domain keys locked .* on shared-a, shared-b/);

    // a new key is sealed under the KEK (its old handle destroyed by the lock), its first use unwraps under it
    const fresh = (await kms.CreateKey({ Alias: 'after-lock' })) as { KeyId: string };
    const after = (await kms.Encrypt({ KeyId: fresh.KeyId, Plaintext: b64('sealed after the lock') })) as { CiphertextBlob: string };
    expect(Buffer.from(((await kms.Decrypt({ CiphertextBlob: after.CiphertextBlob })) as { Plaintext: string }).Plaintext, 'base64').toString()).toBe(
      'sealed after the lock',
    );
    expect(Buffer.from(((await kms.Decrypt({ CiphertextBlob: before.CiphertextBlob })) as { Plaintext: string }).Plaintext, 'base64').toString()).toBe(
      'sealed before the lock',
    );
    const dataKey = (await kms.GenerateDataKey({ KeyId, KeySpec: 'AES_256' })) as { Plaintext: string };
    expect(Buffer.from(dataKey.Plaintext, 'base64')).toHaveLength(32);
    expect((await kmsctl('cluster', 'status')).stdout).toMatch(/shared-a .*domain keys locked;/);
  }, 120_000);
});
