import { randomUUID } from 'node:crypto';
import { isUuid } from '../../../src/common/ids';

describe('isUuid: the one UUID rule', () => {
  test('every id randomUUID makes passes', () => {
    for (let i = 0; i < 100; i++) expect(isUuid(randomUUID())).toBe(true);
  });

  test.each([
    ['upper case', randomUUID().toUpperCase()],
    ['no dashes', randomUUID().replace(/-/g, '')],
    ['braces', `{${randomUUID()}}`],
    ['a trailing newline', `${randomUUID()}\n`],
    ['a non-hex letter', `g${randomUUID().slice(1)}`],
    ['empty', ''],
  ])('%s is refused', (_name, v) => {
    expect(isUuid(v)).toBe(false);
  });
});
