import { COLLECTION_ACTIONS, actionName, collectionResource, isCollectionAction, keyResource, parseResource } from '../../../src/iam/resources';

const KEY_ID = '0b1c6a4e-1f5a-4d63-9a7c-3f0e6b1c2d3e';

describe('resource and action names', () => {
  test('a key resource names region, tenant, creator and key', () => {
    expect(keyResource({ region: 'ap-guangzhou', tenantUin: '100000000001', creatorUin: '200000000007', keyId: KEY_ID })).toBe(
      `qcs::kms:ap-guangzhou:uin/100000000001:key/creatorUin/200000000007/${KEY_ID}`,
    );
  });

  test('the collection resource names region and tenant', () => {
    expect(collectionResource('ap-beijing', '100000000001')).toBe('qcs::kms:ap-beijing:uin/100000000001:key/*');
  });

  test('actions are kms:${Action}', () => expect(actionName('Encrypt')).toBe('kms:Encrypt'));

  test.each(['CreateKey', 'ListKeys', 'ListKeyDetail', 'GenerateRandom', 'GetServiceStatus', 'GetRegions', 'ListAlgorithms', 'DescribeKeys'])(
    '%s is a collection action',
    (a) => expect(isCollectionAction(a)).toBe(true),
  );
  test.each(['Encrypt', 'DescribeKey', 'GetPublicKey', 'GetParametersForImport', 'ScheduleKeyDeletion'])('%s names a key', (a) =>
    expect(isCollectionAction(a)).toBe(false),
  );
  test('the list is what the module exports', () => expect(COLLECTION_ACTIONS).toHaveLength(10));

  // [resource, parsed]
  const rows: Array<[string, ReturnType<typeof parseResource>]> = [
    [
      `qcs::kms:ap-guangzhou:uin/100000000001:key/creatorUin/200000000007/${KEY_ID}`,
      { region: 'ap-guangzhou', tenantUin: '100000000001', creatorUin: '200000000007', keyId: KEY_ID },
    ],
    ['qcs::kms:ap-beijing:uin/100000000001:key/*', { region: 'ap-beijing', tenantUin: '100000000001' }],
    [
      `qcs::kms:ap-guangzhou:uin/100000000001:datakey/creatorUin/200000000007/${KEY_ID}`,
      { region: 'ap-guangzhou', tenantUin: '100000000001', creatorUin: '200000000007', keyId: KEY_ID, resourceType: 'datakey' },
    ],
    ['qcs::kms:ap-beijing:uin/100000000001:datakey/*', { region: 'ap-beijing', tenantUin: '100000000001', resourceType: 'datakey' }],
    ['qcs::kms:ap-beijing:uin/100000000001:datakeys/*', undefined],
    ['qcs::kms::uin/100000000001:key/*', { region: '', tenantUin: '100000000001' }],
    ['*', undefined],
    ['qcs::kms:ap-beijing:uin/*:key/*', undefined],
    ['qcs::kms:ap-beijing:uin/100000000001:key/creatorUin/*/*', undefined],
    [`qcs::kms:ap-beijing:uin/100000000001:key/creatorUin/2/${KEY_ID}/extra`, undefined],
    ['qcs::cos:ap-beijing:uin/100000000001:key/*', undefined],
    ['qcs::kms:ap-beijing:uin/100000000001:key/other', undefined],
    ['qcs::kms:ap-beijing:uin/100000000001:key/creatorUin/2/ab?', undefined],
  ];
  test.each(rows)('parse %s', (resource, parsed) => expect(parseResource(resource)).toEqual(parsed));

  test('names round-trip through the parser', () => {
    const k = { region: 'ap-shanghai', tenantUin: '100000000042', creatorUin: '100000000042', keyId: KEY_ID };
    expect(parseResource(keyResource(k))).toEqual(k);
    expect(parseResource(collectionResource('ap-shanghai', '100000000042'))).toEqual({ region: 'ap-shanghai', tenantUin: '100000000042' });
  });
});
