/**
 * Which actions of the Tencent KMS API 2019-01-18 this server serves, which it knows but refuses
 * (UnsupportedOperation), and which it has never heard of (InvalidAction). The 69 SDK actions are
 * the served ones (ACTION_SCHEMAS) plus UNSUPPORTED_ACTIONS.
 */
import { ACTION_SCHEMAS, ServedAction } from './params';

/** SDK actions answered UnsupportedOperation: post-quantum, KMS-hosted data keys, white-box (reference §1). */
export const UNSUPPORTED_ACTIONS = [
  'PostQuantumCryptoEncrypt', 'PostQuantumCryptoDecrypt', 'PostQuantumCryptoSign', 'PostQuantumCryptoVerify',
  'ImportDataKey', 'DescribeDataKey', 'DescribeDataKeys', 'ListDataKeys', 'ListDataKeyDetail', 'EnableDataKey', 'EnableDataKeys',
  'DisableDataKey', 'DisableDataKeys', 'ScheduleDataKeyDeletion', 'CancelDataKeyDeletion', 'UpdateDataKeyName',
  'UpdateDataKeyDescription', 'GetDataKeyPlaintext', 'GetDataKeyCiphertextBlob',
  'CreateWhiteBoxKey', 'DeleteWhiteBoxKey', 'DescribeWhiteBoxKey', 'DescribeWhiteBoxKeyDetails', 'DescribeWhiteBoxDecryptKey',
  'DescribeWhiteBoxServiceStatus', 'DescribeWhiteBoxDeviceFingerprints', 'OverwriteWhiteBoxDeviceFingerprints', 'EnableWhiteBoxKey',
  'EnableWhiteBoxKeys', 'DisableWhiteBoxKey', 'DisableWhiteBoxKeys', 'EncryptByWhiteBox',
] as const;

export type UnsupportedAction = (typeof UNSUPPORTED_ACTIONS)[number];

export const SERVED_ACTIONS = Object.keys(ACTION_SCHEMAS) as ServedAction[];

const SERVED = new Set<string>(SERVED_ACTIONS);
const UNSUPPORTED = new Set<string>(UNSUPPORTED_ACTIONS);

export function isServedAction(action: string): action is ServedAction {
  return SERVED.has(action);
}

export function isUnsupportedAction(action: string): action is UnsupportedAction {
  return UNSUPPORTED.has(action);
}

/** Not an action of the API at all (names are case-sensitive): answer InvalidAction. */
export function isUnknownAction(action: string): boolean {
  return !SERVED.has(action) && !UNSUPPORTED.has(action);
}

/**
 * Actions whose exact repeat (same signature, action and region) is served rather than refused as a
 * replay: reads with no effect, no secret and no fresh cryptographic output, whose answer a replayer
 * could have read off the first one. Clients poll these (describe, change, describe again) within a
 * second with byte-identical requests. Everything else gets one use per signature (docs/security.md §1).
 */
export const REPEATABLE_ACTIONS: ReadonlySet<string> = new Set<ServedAction>([
  'DescribeKey', 'DescribeKeys', 'ListKeys', 'ListKeyDetail', 'GetKeyRotationStatus', 'GetPublicKey', 'GetServiceStatus', 'GetRegions', 'ListAlgorithms',
]);
