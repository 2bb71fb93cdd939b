/**
 * Which actions of the Tencent KMS API 2019-01-18 this server serves, which it knows but refuses
 * (UnsupportedOperation), and which it has never heard of (InvalidAction). The 69 SDK actions are
 * the served ones (ACTION_SCHEMAS) plus UNSUPPORTED_ACTIONS.
 */
import { ACTION_SCHEMAS, ServedAction } from './params';

/** SDK actions answered UnsupportedOperation: post-quantum, white-box (reference §1). */
export const UNSUPPORTED_ACTIONS = [
  'PostQuantumCryptoEncrypt',
  'PostQuantumCryptoDecrypt',
  'PostQuantumCryptoSign',
  'PostQuantumCryptoVerify',
  'CreateWhiteBoxKey',
  'DeleteWhiteBoxKey',
  'DescribeWhiteBoxKey',
  'DescribeWhiteBoxKeyDetails',
  'DescribeWhiteBoxDecryptKey',
  'DescribeWhiteBoxServiceStatus',
  'DescribeWhiteBoxDeviceFingerprints',
  'OverwriteWhiteBoxDeviceFingerprints',
  'EnableWhiteBoxKey',
  'EnableWhiteBoxKeys',
  'DisableWhiteBoxKey',
  'DisableWhiteBoxKeys',
  'EncryptByWhiteBox',
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
 * Reads with no effect, no secret and no fresh cryptographic output: served on a signature used
 * before (a replay, or a re-aim to one of them, reveals key metadata only). The SDKs sign
 * one-second timestamps and not the action, so a client that polls, calls GetServiceStatus({}) then
 * GetRegions({}), or reads back what it just changed sends one signature several times. Everything
 * else gets one use per signature (docs/security.md §1).
 */
export const REPEATABLE_ACTIONS: ReadonlySet<string> = new Set<ServedAction>([
  'DescribeKey',
  'DescribeKeys',
  'ListKeys',
  'ListKeyDetail',
  'GetKeyRotationStatus',
  'GetPublicKey',
  'GetServiceStatus',
  'GetRegions',
  'ListAlgorithms',
  'DescribeDataKey',
  'DescribeDataKeys',
  'ListDataKeys',
  'ListDataKeyDetail',
]);
