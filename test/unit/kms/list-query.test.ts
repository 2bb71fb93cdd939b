import { InvalidParameterError } from '../../../src/kms/errors';
import { LIST_KEYS_STATES, listKeyDetailQuery, listKeysQuery, ListParams } from '../../../src/kms/list-query';

const base = { ownerUin: 't', region: 'r' };

describe('ListKeyDetail parameters → store query', () => {
  test.each<[ListParams, object]>([
    [{}, { ...base, offset: 0, limit: 10, order: 'desc', role: 'user', keyUsage: 'ENCRYPT_DECRYPT' }],
    [{ KeyUsage: '' }, { keyUsage: 'ENCRYPT_DECRYPT' }],
    [{ KeyUsage: 'ALL' }, { keyUsage: undefined }],
    [{ KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_ECC' }, { keyUsage: 'ASYMMETRIC_SIGN_VERIFY_ECC' }],
    [{ OrderType: 1 }, { order: 'asc' }],
    [{ OrderType: 0 }, { order: 'desc' }],
    [{ Role: 1 }, { role: 'product' }],
    [{ KeyState: 0 }, { keyStates: undefined }],
    [{ KeyState: 1 }, { keyStates: ['Enabled'] }],
    [{ KeyState: 2 }, { keyStates: ['Disabled'] }],
    [{ KeyState: 3 }, { keyStates: ['PendingDelete'] }],
    [{ KeyState: 4 }, { keyStates: ['PendingImport'] }],
    [{ KeyState: 5 }, { keyStates: ['Archived'] }],
    [{ Origin: 'ALL' }, { origin: undefined }],
    [{ Origin: 'EXTERNAL' }, { origin: 'EXTERNAL' }],
    [{ Origin: 'TENCENT_KMS' }, { origin: 'TENCENT_KMS' }],
    [{ SearchKeyAlias: 'ab' }, { searchAlias: 'ab' }],
    [{ SearchKeyAlias: '' }, { searchAlias: undefined }],
    [
      { Offset: 400, Limit: 200 },
      { offset: 400, limit: 200 },
    ],
    [
      { TagFilters: [{ TagKey: 'a' }, { TagKey: 'b', TagValue: ['1', '2'] }] },
      {
        tagFilters: [
          { key: 'a', values: [] },
          { key: 'b', values: ['1', '2'] },
        ],
      },
    ],
  ])('%j', (params, expected) => {
    const q = listKeyDetailQuery('t', 'r', params, undefined) as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(expected)) expect([k, q[k]]).toEqual([k, v]);
  });

  test('the cluster filter passes through', () => {
    expect(listKeyDetailQuery('t', 'r', {}, 'cls-1').hsmClusterId).toBe('cls-1');
  });

  test.each<ListParams>([
    { Limit: 0 },
    { Limit: 201 },
    { Limit: 1.5 },
    { Offset: -1 },
    { Role: 2 },
    { OrderType: 2 },
    { KeyState: 6 },
    { KeyState: -1 },
    { Origin: 'tencent_kms' },
    { Origin: 'OTHER' },
    { KeyUsage: 'all' },
    { KeyUsage: 'AES' },
  ])('%j is refused', (params) => {
    expect(() => listKeyDetailQuery('t', 'r', params, undefined)).toThrow(InvalidParameterError);
  });
});

describe('ListKeys parameters → store query', () => {
  test('only Enabled, Disabled and PendingImport keys, oldest first, any usage', () => {
    expect(listKeysQuery('t', 'r', { Offset: 5, Limit: 50 }, 'c')).toEqual({
      ...base,
      offset: 5,
      limit: 50,
      order: 'asc',
      role: 'user',
      keyStates: LIST_KEYS_STATES,
      hsmClusterId: 'c',
    });
    expect(LIST_KEYS_STATES).toEqual(['Enabled', 'Disabled', 'PendingImport']);
  });
});
