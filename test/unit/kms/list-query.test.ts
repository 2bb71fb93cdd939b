import { listKeyDetailRequest, listKeysRequest } from '../../../src/api/kms-wire';
import type { ActionParams } from '../../../src/api/params';
import { InvalidParameterError } from '../../../src/kms/errors';
import { LIST_KEYS_STATES, listKeyDetailQuery, listKeysQuery, ListRequest } from '../../../src/kms/list-query';

type ListParams = ActionParams<'ListKeyDetail'>;
/** The Tencent parameters as the API layer maps them, then the core's query. */
const detailQuery = (p: ListParams, clusterId: string | undefined) => listKeyDetailQuery('t', 'r', listKeyDetailRequest(p), clusterId);

const base = { ownerUin: 't', region: 'r' };

describe('ListKeyDetail parameters → neutral list request → store query', () => {
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
    const q = detailQuery(params, undefined) as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(expected)) expect([k, q[k]]).toEqual([k, v]);
  });

  test('the cluster filter passes through', () => {
    expect(detailQuery({}, 'cls-1').hsmClusterId).toBe('cls-1');
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
    expect(() => detailQuery(params, undefined)).toThrow(InvalidParameterError);
  });
});

describe('ListKeys parameters → store query', () => {
  test('only Enabled, Disabled and PendingImport keys, oldest first, any usage', () => {
    expect(listKeysQuery('t', 'r', listKeysRequest({ Offset: 5, Limit: 50 }), 'c')).toEqual({
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

describe('the neutral list request', () => {
  test('absent filters mean every usage, state and origin; the usage is queried by its stored code', () => {
    const q = listKeyDetailQuery('t', 'r', {}, undefined);
    expect(q).toEqual({ ...base, offset: 0, limit: 10, order: 'desc', role: 'user' });
    expect(listKeyDetailQuery('t', 'r', { keyUsage: 'rsa-2048-decrypt', keyState: 'Archived', origin: 'EXTERNAL' }, undefined)).toMatchObject({
      keyUsage: 'ASYMMETRIC_DECRYPT_RSA_2048',
      keyStates: ['Archived'],
      origin: 'EXTERNAL',
    });
  });

  test.each<ListRequest>([{ limit: 0 }, { limit: 201 }, { offset: -1 }, { tagFilters: Array.from({ length: 51 }, (_, i) => ({ key: `k${i}` })) }])(
    '%j is refused, naming the field by its core name for the wire to rename',
    (p) => {
      expect(() => listKeyDetailQuery('t', 'r', p, undefined)).toThrow(InvalidParameterError);
      try {
        listKeyDetailQuery('t', 'r', p, undefined);
      } catch (e) {
        expect((e as InvalidParameterError).fields).toHaveLength(1);
        expect((e as Error).message.startsWith((e as InvalidParameterError).fields[0])).toBe(true);
      }
    },
  );
});
