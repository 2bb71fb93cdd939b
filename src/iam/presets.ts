/**
 * Preset policies, attached by name. Each is a template: `${uin}` stands for the sub-account it is
 * attached to and `${tenantUin}` for its root account, substituted when the policy is evaluated.
 *
 * QcloudKMSReadOnlyAccess lists its Get actions instead of `kms:Get*`: GetParametersForImport is
 * the first step of importing key material (it creates an import token and a wrapping key), so it
 * is a write, not a read; a future Get action is not granted until it is added here.
 * GenerateDataKey and GenerateRandom are not reads either.
 */
import { Policy } from './policy';
import { Principal } from './principal';

export const PRESET_NAMES = ['QcloudKMSFullAccess', 'QcloudKMSReadOnlyAccess', 'QcloudKMSCreatorFullAccess'] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

const TEMPLATES: Record<PresetName, Policy> = {
  QcloudKMSFullAccess: {
    version: '2.0',
    statement: [{ effect: 'allow', action: 'kms:*', resource: '*' }],
  },
  QcloudKMSReadOnlyAccess: {
    version: '2.0',
    statement: [
      {
        effect: 'allow',
        action: ['kms:Describe*', 'kms:List*', 'kms:GetKeyRotationStatus', 'kms:GetPublicKey', 'kms:GetServiceStatus', 'kms:GetRegions'],
        resource: '*',
      },
    ],
  },
  QcloudKMSCreatorFullAccess: {
    version: '2.0',
    statement: [
      { effect: 'allow', action: 'kms:*', resource: 'qcs::kms:*:uin/${tenantUin}:key/creatorUin/${uin}/*' },
      { effect: 'allow', action: 'kms:*', resource: 'qcs::kms:*:uin/${tenantUin}:datakey/creatorUin/${uin}/*' },
      {
        effect: 'allow',
        action: ['kms:CreateKey', 'kms:List*', 'kms:GetServiceStatus', 'kms:GetRegions', 'kms:ListAlgorithms', 'kms:GenerateRandom'],
        resource: 'qcs::kms:*:uin/${tenantUin}:key/*',
      },
      { effect: 'allow', action: 'kms:List*', resource: 'qcs::kms:*:uin/${tenantUin}:datakey/*' },
    ],
  },
};

export function isPresetName(name: string): name is PresetName {
  return (PRESET_NAMES as readonly string[]).includes(name);
}

/** The preset as written, with its `${uin}` / `${tenantUin}` placeholders (a copy). */
export function presetTemplate(name: PresetName): Policy {
  return structuredClone(TEMPLATES[name]);
}

/** The preset for one principal. */
export function instantiatePreset(name: PresetName, principal: Pick<Principal, 'uin' | 'tenantUin'>): Policy {
  const text = JSON.stringify(TEMPLATES[name]).replaceAll('${uin}', principal.uin).replaceAll('${tenantUin}', principal.tenantUin);
  return JSON.parse(text) as Policy;
}
