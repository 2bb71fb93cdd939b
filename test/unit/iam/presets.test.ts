import { PolicyError } from '../../../src/iam/errors';
import { evaluate, parsePolicy } from '../../../src/iam/policy';
import { PRESET_NAMES, PresetName, instantiatePreset, isPresetName, presetTemplate } from '../../../src/iam/presets';
import { actionName, collectionResource, keyResource } from '../../../src/iam/resources';

const TENANT = '100000000001';
const ME = '200000000005';
const OTHER = '200000000006';
const KEY_ID = '0b1c6a4e-1f5a-4d63-9a7c-3f0e6b1c2d3e';
const mine = keyResource({ region: 'ap-guangzhou', tenantUin: TENANT, creatorUin: ME, keyId: KEY_ID });
const theirs = keyResource({ region: 'ap-guangzhou', tenantUin: TENANT, creatorUin: OTHER, keyId: KEY_ID });
const rootKey = keyResource({ region: 'ap-guangzhou', tenantUin: TENANT, creatorUin: TENANT, keyId: KEY_ID });
const collection = collectionResource('ap-guangzhou', TENANT);

function decision(preset: PresetName, action: string, resource: string): string {
  return evaluate({ action: actionName(action), resource, context: {} }, [instantiatePreset(preset, { uin: ME, tenantUin: TENANT })]);
}

describe('presets', () => {
  test('every preset is a valid policy, as a template and instantiated', () => {
    for (const name of PRESET_NAMES) {
      expect(() => parsePolicy(presetTemplate(name))).not.toThrow();
      expect(() => parsePolicy(instantiatePreset(name, { uin: ME, tenantUin: TENANT }))).not.toThrow();
    }
  });

  test('the exact statements', () => {
    expect(presetTemplate('QcloudKMSFullAccess').statement).toEqual([{ effect: 'allow', action: 'kms:*', resource: '*' }]);
    expect(presetTemplate('QcloudKMSReadOnlyAccess').statement).toEqual([
      {
        effect: 'allow',
        action: ['kms:Describe*', 'kms:List*', 'kms:GetKeyRotationStatus', 'kms:GetPublicKey', 'kms:GetServiceStatus', 'kms:GetRegions'],
        resource: '*',
      },
    ]);
    expect(instantiatePreset('QcloudKMSCreatorFullAccess', { uin: ME, tenantUin: TENANT }).statement).toEqual([
      { effect: 'allow', action: 'kms:*', resource: `qcs::kms:*:uin/${TENANT}:key/creatorUin/${ME}/*` },
      { effect: 'allow', action: 'kms:*', resource: `qcs::kms:*:uin/${TENANT}:datakey/creatorUin/${ME}/*` },
      {
        effect: 'allow',
        action: ['kms:CreateKey', 'kms:List*', 'kms:GetServiceStatus', 'kms:GetRegions', 'kms:ListAlgorithms', 'kms:GenerateRandom'],
        resource: `qcs::kms:*:uin/${TENANT}:key/*`,
      },
      { effect: 'allow', action: 'kms:List*', resource: `qcs::kms:*:uin/${TENANT}:datakey/*` },
    ]);
  });

  test('templates are copies: changing one does not change the preset', () => {
    presetTemplate('QcloudKMSFullAccess').statement[0].effect = 'deny';
    expect(presetTemplate('QcloudKMSFullAccess').statement[0].effect).toBe('allow');
  });

  test('names', () => {
    expect(PRESET_NAMES.every(isPresetName)).toBe(true);
    expect(isPresetName('QcloudKMSFullAccessX')).toBe(false);
    expect(isPresetName('qcloudkmsfullaccess')).toBe(false);
  });

  test('placeholders are not policy syntax: a custom document naming ${uin} matches only that literal text', () => {
    const doc = parsePolicy(presetTemplate('QcloudKMSCreatorFullAccess'));
    expect(evaluate({ action: 'kms:Encrypt', resource: mine, context: {} }, [doc])).toBe('none');
    expect(() => parsePolicy({ version: '2.0', statement: [{ effect: 'allow', action: 'kms:*', resource: 'key/${uin}' }] })).toThrow(PolicyError);
  });

  // [preset, action, resource, decision]
  const rows: Array<[PresetName, string, string, 'allow' | 'none']> = [
    ['QcloudKMSFullAccess', 'Encrypt', theirs, 'allow'],
    ['QcloudKMSFullAccess', 'ScheduleKeyDeletion', rootKey, 'allow'],
    ['QcloudKMSFullAccess', 'CreateKey', collection, 'allow'],
    ['QcloudKMSFullAccess', 'GenerateRandom', collection, 'allow'],
    ['QcloudKMSReadOnlyAccess', 'DescribeKey', theirs, 'allow'],
    ['QcloudKMSReadOnlyAccess', 'DescribeKeys', collection, 'allow'],
    ['QcloudKMSReadOnlyAccess', 'ListKeys', collection, 'allow'],
    ['QcloudKMSReadOnlyAccess', 'ListKeyDetail', collection, 'allow'],
    ['QcloudKMSReadOnlyAccess', 'ListAlgorithms', collection, 'allow'],
    ['QcloudKMSReadOnlyAccess', 'GetKeyRotationStatus', theirs, 'allow'],
    ['QcloudKMSReadOnlyAccess', 'GetPublicKey', theirs, 'allow'],
    ['QcloudKMSReadOnlyAccess', 'GetServiceStatus', collection, 'allow'],
    ['QcloudKMSReadOnlyAccess', 'GetRegions', collection, 'allow'],
    ['QcloudKMSReadOnlyAccess', 'GetParametersForImport', theirs, 'none'],
    ['QcloudKMSReadOnlyAccess', 'GenerateDataKey', theirs, 'none'],
    ['QcloudKMSReadOnlyAccess', 'GenerateRandom', collection, 'none'],
    ['QcloudKMSReadOnlyAccess', 'Encrypt', theirs, 'none'],
    ['QcloudKMSReadOnlyAccess', 'Decrypt', theirs, 'none'],
    ['QcloudKMSReadOnlyAccess', 'CreateKey', collection, 'none'],
    ['QcloudKMSReadOnlyAccess', 'DisableKey', theirs, 'none'],
    ['QcloudKMSReadOnlyAccess', 'UpdateAlias', theirs, 'none'],
    ['QcloudKMSCreatorFullAccess', 'Encrypt', mine, 'allow'],
    ['QcloudKMSCreatorFullAccess', 'ScheduleKeyDeletion', mine, 'allow'],
    ['QcloudKMSCreatorFullAccess', 'GetParametersForImport', mine, 'allow'],
    ['QcloudKMSCreatorFullAccess', 'Encrypt', theirs, 'none'],
    ['QcloudKMSCreatorFullAccess', 'DescribeKey', theirs, 'none'],
    ['QcloudKMSCreatorFullAccess', 'DisableKey', rootKey, 'none'],
    ['QcloudKMSCreatorFullAccess', 'CreateKey', collection, 'allow'],
    ['QcloudKMSCreatorFullAccess', 'ListKeys', collection, 'allow'],
    ['QcloudKMSCreatorFullAccess', 'ListKeyDetail', collection, 'allow'],
    ['QcloudKMSCreatorFullAccess', 'GetServiceStatus', collection, 'allow'],
    ['QcloudKMSCreatorFullAccess', 'GetRegions', collection, 'allow'],
    ['QcloudKMSCreatorFullAccess', 'ListAlgorithms', collection, 'allow'],
    ['QcloudKMSCreatorFullAccess', 'GenerateRandom', collection, 'allow'],
    ['QcloudKMSCreatorFullAccess', 'CreateKey', collectionResource('ap-guangzhou', '100000000002'), 'none'],
  ];
  test.each(rows)('%s: %s on %s -> %s', (preset, action, resource, expected) => {
    expect(decision(preset, action, resource)).toBe(expected);
  });
});
