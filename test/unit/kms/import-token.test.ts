import { randomBytes } from 'node:crypto';
import { InvalidImportTokenError } from '../../../src/kms/errors';
import { issueImportToken, readImportToken, tokenHash, wrappingKeyDigest } from '../../../src/kms/import-token';

describe('import tokens', () => {
  const fields = { keyId: '0a0b0c0d-0000-4000-8000-000000000001', wrappingKeyDigest: wrappingKeyDigest(Buffer.from('wrapping key record')), validTo: 1_800_000_000 };

  test('carry key id, wrapping-key digest and expiry; a fresh secret each time', () => {
    const a = issueImportToken(fields);
    const b = issueImportToken(fields);
    expect(a).not.toBe(b);
    expect(tokenHash(a)).not.toBe(tokenHash(b));
    expect(readImportToken(a)).toEqual(fields);
  });

  test.each([
    ['empty', ''],
    ['not base64', '!!!!'],
    ['other magic', Buffer.from('XXXX' + 'a'.repeat(80)).toString('base64')],
    ['too long', 'A'.repeat(2000)],
  ])('%s is refused', (_name, token) => {
    expect(() => readImportToken(token)).toThrow(InvalidImportTokenError);
  });

  test('a truncated or extended token is refused', () => {
    const t = Buffer.from(issueImportToken(fields), 'base64');
    expect(() => readImportToken(t.subarray(0, t.length - 1).toString('base64'))).toThrow(InvalidImportTokenError);
    expect(() => readImportToken(Buffer.concat([t, randomBytes(3)]).toString('base64'))).toThrow(InvalidImportTokenError);
  });
});
