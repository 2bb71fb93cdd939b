import { randomBytes } from 'node:crypto';
import { InvalidImportTokenError } from '../../../src/kms/errors';
import { issueImportToken, readImportToken, tokenHash, wrappingKeyDigest } from '../../../src/kms/import-token';

describe('import tokens', () => {
  const fields = {
    keyId: '0a0b0c0d-0000-4000-8000-000000000001',
    wrappingKeyDigest: wrappingKeyDigest(Buffer.from('wrapping key record')),
    validTo: 1_800_000_000,
  };

  test('carry key id, wrapping-key digest and expiry; a fresh secret each time', () => {
    const a = issueImportToken(fields);
    const b = issueImportToken(fields);
    expect(a.equals(b)).toBe(false);
    expect(tokenHash(a)).not.toBe(tokenHash(b));
    expect(readImportToken(a)).toEqual(fields);
  });

  test.each([
    ['empty', Buffer.alloc(0)],
    ['not a token', Buffer.from('!!!!')],
    ['other magic', Buffer.from('XXXX' + 'a'.repeat(80))],
    ['too long', Buffer.alloc(1500, 65)],
  ])('%s is refused', (_name, token) => {
    expect(() => readImportToken(token)).toThrow(InvalidImportTokenError);
  });

  test('a truncated or extended token is refused', () => {
    const t = issueImportToken(fields);
    expect(() => readImportToken(t.subarray(0, t.length - 1))).toThrow(InvalidImportTokenError);
    expect(() => readImportToken(Buffer.concat([t, randomBytes(3)]))).toThrow(InvalidImportTokenError);
  });
});
