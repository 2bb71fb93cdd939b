/**
 * The hosted data key's state machine and the only writer of its states: one table saying, for
 * every state and action, whether the action is allowed, where it leads and why it is refused. A
 * data-key update can only carry a `DataKeyTableState`, which only `nextDataKeyState` and
 * `initialDataKeyState` return. The API layer maps refusal reasons to Tencent codes in its one table.
 */
import { DataKeyState, DataKeyTableState } from '../common/data-key-states';

export { DATA_KEY_STATES, DataKeyState, DataKeyTableState } from '../common/data-key-states';

export const DATA_KEY_ACTIONS = [
  'EnableDataKey',
  'DisableDataKey',
  'ScheduleDataKeyDeletion',
  'CancelDataKeyDeletion',
  'GetDataKeyPlaintext',
  'GetDataKeyCiphertextBlob',
  'UpdateMetadata',
  'Describe',
] as const;
export type DataKeyAction = (typeof DATA_KEY_ACTIONS)[number];

/** Why an action is refused; each maps to exactly one API error code. */
export type DataKeyRefusal = 'DataKeyDisabled' | 'DataKeyPendingDelete' | 'StateNotSupported' | 'NotPendingDelete';

export type DataKeyTransition = { allowed: true; to?: DataKeyState } | { allowed: false; reason: DataKeyRefusal };

const ok = (to?: DataKeyState): DataKeyTransition => ({ allowed: true, to });
const no = (reason: DataKeyRefusal): DataKeyTransition => ({ allowed: false, reason });
const state = no('StateNotSupported');
const deleting = no('DataKeyPendingDelete');

/** As for CMKs, deletion is scheduled from Disabled only and a cancelled deletion leaves the key Disabled. */
const TABLE: Record<DataKeyState, Record<DataKeyAction, DataKeyTransition>> = {
  Enabled: {
    EnableDataKey: ok(),
    DisableDataKey: ok('Disabled'),
    ScheduleDataKeyDeletion: state,
    CancelDataKeyDeletion: no('NotPendingDelete'),
    GetDataKeyPlaintext: ok(),
    GetDataKeyCiphertextBlob: ok(),
    UpdateMetadata: ok(),
    Describe: ok(),
  },
  Disabled: {
    EnableDataKey: ok('Enabled'),
    DisableDataKey: ok(),
    ScheduleDataKeyDeletion: ok('PendingDelete'),
    CancelDataKeyDeletion: no('NotPendingDelete'),
    GetDataKeyPlaintext: no('DataKeyDisabled'),
    GetDataKeyCiphertextBlob: no('DataKeyDisabled'),
    UpdateMetadata: ok(),
    Describe: ok(),
  },
  PendingDelete: {
    EnableDataKey: state,
    DisableDataKey: state,
    ScheduleDataKeyDeletion: state,
    CancelDataKeyDeletion: ok('Disabled'),
    GetDataKeyPlaintext: deleting,
    GetDataKeyCiphertextBlob: deleting,
    UpdateMetadata: state,
    Describe: ok(),
  },
};

/** Where a hosted data key starts. */
export function initialDataKeyState(): DataKeyTableState {
  return 'Enabled' as DataKeyTableState;
}

/** What `action` does to a data key in `from`. */
export function dataKeyTransition(from: DataKeyState, action: DataKeyAction): DataKeyTransition {
  return TABLE[from][action];
}

/** The state after an allowed action (unchanged when the table names none or refuses). */
export function nextDataKeyState(from: DataKeyState, action: DataKeyAction): DataKeyTableState {
  const t = TABLE[from][action];
  return (t.allowed && t.to ? t.to : from) as DataKeyTableState;
}
