import { bindSecret, isSecretId, newSecretId, newSecretKey, unbindSecret } from '../../../src/iam/credentials';
import { IamIntegrityError, IamInputError } from '../../../src/iam/errors';
import { checkPolicyName, checkTenantName, checkUserName } from '../../../src/iam/names';

describe('credentials', () => {
  test('SecretId is AKID + 32 letters and digits; SecretKey 32 letters and digits; all distinct', () => {
    const ids = Array.from({ length: 200 }, newSecretId);
    const keys = Array.from({ length: 200 }, newSecretKey);
    for (const id of ids) expect(id).toMatch(/^AKID[A-Za-z0-9]{32}$/);
    for (const k of keys) expect(k).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(new Set([...ids, ...keys]).size).toBe(400);
    expect(ids.every(isSecretId)).toBe(true);
  });

  test('every character of the alphabet turns up (uniform draw, not hex)', () => {
    const seen = new Set(Array.from({ length: 300 }, newSecretKey).join(''));
    expect(seen.size).toBe(62);
  });

  test.each(['', 'AKID', `akid${'a'.repeat(32)}`, `AKID${'a'.repeat(31)}`, `AKID${'a'.repeat(33)}`, `AKID${'a'.repeat(31)}-`])('%j is not a SecretId', (s) => {
    expect(isSecretId(s)).toBe(false);
  });

  test('a sealed secret opens only for the key and account it was bound to', () => {
    const binding = { secretId: newSecretId(), ownerUin: '200000000001', tenantUin: '100000000001' };
    const secret = newSecretKey();
    const plain = bindSecret(binding, secret);
    expect(unbindSecret(binding, plain).toString()).toBe(secret);
    for (const other of [
      { ...binding, secretId: newSecretId() },
      { ...binding, ownerUin: '200000000002' },
      { ...binding, tenantUin: '100000000002' },
    ]) {
      expect(() => unbindSecret(other, plain)).toThrow(IamIntegrityError);
    }
    expect(() => unbindSecret(binding, plain.subarray(0, plain.length - secret.length))).toThrow(IamIntegrityError);
  });

  test('the integrity error names the SecretId, not the secret', () => {
    const binding = { secretId: newSecretId(), ownerUin: '1', tenantUin: '1' };
    const secret = newSecretKey();
    try {
      unbindSecret({ ...binding, ownerUin: '2' }, bindSecret(binding, secret));
    } catch (e) {
      expect((e as Error).message).toContain(binding.secretId);
      expect((e as Error).message).not.toContain(secret);
    }
    expect.assertions(2);
  });
});

describe('names', () => {
  test.each(['acme', 'Acme Corp', 'Société Générale', 'a', 'x'.repeat(64), 'ops@acme.example', '数据中心'])('tenant name %j is accepted', (n) => {
    expect(() => checkTenantName(n)).not.toThrow();
  });
  test.each(['', ' acme', 'acme ', 'x'.repeat(65), 'a\nb', 'a/b', 'a:b'])('tenant name %j is refused', (n) => {
    expect(() => checkTenantName(n)).toThrow(IamInputError);
  });
  test.each(['alice', 'ci-bot_1', 'a.b@c+d=e,f', 'x'.repeat(64)])('sub-account name %j is accepted', (n) => expect(() => checkUserName(n)).not.toThrow());
  test.each(['', 'al ice', 'x'.repeat(65), 'ali/ce', 'élise'])('sub-account name %j is refused', (n) => expect(() => checkUserName(n)).toThrow(IamInputError));
  test.each(['policy', 'QcloudKMSFullAccess', 'x'.repeat(128)])('policy name %j is accepted', (n) => expect(() => checkPolicyName(n)).not.toThrow());
  test.each(['', 'my policy', 'x'.repeat(129)])('policy name %j is refused', (n) => expect(() => checkPolicyName(n)).toThrow(IamInputError));
});
