/**
 * The CMK state machine and the only writer of key states: one table saying, for every state and
 * action, whether the action is allowed, where it leads, and why it is refused, and one for the
 * events that move a key without anyone asking (material expiry). A key update can only carry a
 * `TableState`, which only `nextState`, `afterEvent` and `initialState` return. The API layer
 * maps refusal reasons to Tencent error codes in its own single table.
 */
import { KeyState, TableState } from '../common/key-states';

export { KEY_STATES, KeyState, TableState } from '../common/key-states';

export const KEY_ACTIONS = [
  'EnableKey',
  'DisableKey',
  'ScheduleKeyDeletion',
  'CancelKeyDeletion',
  'ArchiveKey',
  'CancelKeyArchive',
  'Encrypt',
  'Decrypt',
  'GenerateDataKey',
  'Sign',
  'Verify',
  'AsymmetricDecrypt',
  'GetPublicKey',
  'EnableKeyRotation',
  'DisableKeyRotation',
  'RotateKey',
  'GetParametersForImport',
  'ImportKeyMaterial',
  'DeleteImportedKeyMaterial',
  'UpdateMetadata',
  'Describe',
] as const;
export type KeyAction = (typeof KEY_ACTIONS)[number];

/** What time does to a key, allowed in every state: ValidTo of imported material has passed. */
export const KEY_EVENTS = ['MaterialExpired'] as const;
export type KeyEvent = (typeof KEY_EVENTS)[number];

/** Why an action is refused; each maps to exactly one API error code. */
export type RefusalReason = 'KeyDisabled' | 'KeyArchived' | 'KeyPendingDelete' | 'StateNotSupported' | 'ShouldBeDisabled' | 'NotPendingDelete';

export type Transition =
  | { allowed: true; to?: KeyState; toWithoutMaterial?: KeyState }
  | { allowed: false; reason: RefusalReason; /** any attempt to use a key pending deletion raises an alarm */ alarm?: boolean };

const ok = (to?: KeyState, toWithoutMaterial?: KeyState): Transition => ({ allowed: true, to, toWithoutMaterial });
const no = (reason: RefusalReason, alarm = false): Transition => ({ allowed: false, reason, alarm });
const deleting = no('KeyPendingDelete', true);
const state = no('StateNotSupported');

const TABLE: Record<KeyState, Record<KeyAction, Transition>> = {
  Enabled: {
    EnableKey: ok(),
    DisableKey: ok('Disabled'),
    ScheduleKeyDeletion: no('ShouldBeDisabled'),
    CancelKeyDeletion: no('NotPendingDelete'),
    ArchiveKey: ok('Archived'),
    CancelKeyArchive: state,
    Encrypt: ok(),
    Decrypt: ok(),
    GenerateDataKey: ok(),
    Sign: ok(),
    Verify: ok(),
    AsymmetricDecrypt: ok(),
    GetPublicKey: ok(),
    EnableKeyRotation: ok(),
    DisableKeyRotation: ok(),
    RotateKey: ok(),
    GetParametersForImport: ok(),
    ImportKeyMaterial: ok(),
    DeleteImportedKeyMaterial: ok('PendingImport'),
    UpdateMetadata: ok(),
    Describe: ok(),
  },
  Disabled: {
    EnableKey: ok('Enabled'),
    DisableKey: ok(),
    ScheduleKeyDeletion: ok('PendingDelete'),
    CancelKeyDeletion: no('NotPendingDelete'),
    ArchiveKey: ok('Archived'),
    CancelKeyArchive: state,
    Encrypt: no('KeyDisabled'),
    Decrypt: no('KeyDisabled'),
    GenerateDataKey: no('KeyDisabled'),
    Sign: no('KeyDisabled'),
    Verify: no('KeyDisabled'),
    AsymmetricDecrypt: no('KeyDisabled'),
    GetPublicKey: no('KeyDisabled'),
    EnableKeyRotation: ok(),
    DisableKeyRotation: ok(),
    RotateKey: no('KeyDisabled'),
    GetParametersForImport: ok(),
    ImportKeyMaterial: state,
    DeleteImportedKeyMaterial: ok('PendingImport'),
    UpdateMetadata: ok(),
    Describe: ok(),
  },
  PendingDelete: {
    EnableKey: state,
    DisableKey: state,
    ScheduleKeyDeletion: state,
    CancelKeyDeletion: ok('Disabled', 'PendingImport'),
    ArchiveKey: state,
    CancelKeyArchive: state,
    Encrypt: deleting,
    Decrypt: deleting,
    GenerateDataKey: deleting,
    Sign: deleting,
    Verify: deleting,
    AsymmetricDecrypt: deleting,
    GetPublicKey: deleting,
    EnableKeyRotation: state,
    DisableKeyRotation: state,
    RotateKey: deleting,
    GetParametersForImport: state,
    ImportKeyMaterial: state,
    DeleteImportedKeyMaterial: state,
    UpdateMetadata: state,
    Describe: ok(),
  },
  PendingImport: {
    EnableKey: state,
    DisableKey: state,
    ScheduleKeyDeletion: ok('PendingDelete'),
    CancelKeyDeletion: no('NotPendingDelete'),
    ArchiveKey: state,
    CancelKeyArchive: state,
    Encrypt: state,
    Decrypt: state,
    GenerateDataKey: state,
    Sign: state,
    Verify: state,
    AsymmetricDecrypt: state,
    GetPublicKey: state,
    EnableKeyRotation: state,
    DisableKeyRotation: state,
    RotateKey: state,
    GetParametersForImport: ok(),
    ImportKeyMaterial: ok('Enabled'),
    DeleteImportedKeyMaterial: state,
    UpdateMetadata: ok(),
    Describe: ok(),
  },
  Archived: {
    EnableKey: state,
    DisableKey: state,
    ScheduleKeyDeletion: ok('PendingDelete'),
    CancelKeyDeletion: no('NotPendingDelete'),
    ArchiveKey: no('KeyArchived'),
    CancelKeyArchive: ok('Enabled'),
    Encrypt: no('KeyArchived'),
    Decrypt: ok(),
    GenerateDataKey: no('KeyArchived'),
    Sign: no('KeyArchived'),
    Verify: ok(),
    AsymmetricDecrypt: no('KeyArchived'),
    GetPublicKey: ok(),
    EnableKeyRotation: no('KeyArchived'),
    DisableKeyRotation: ok(),
    RotateKey: no('KeyArchived'),
    GetParametersForImport: state,
    ImportKeyMaterial: state,
    DeleteImportedKeyMaterial: state,
    UpdateMetadata: ok(),
    Describe: ok(),
  },
};

/** Expired material is destroyed: a key pending deletion stays so, any other waits for new material. */
const EVENTS: Record<KeyEvent, Record<KeyState, KeyState>> = {
  MaterialExpired: {
    Enabled: 'PendingImport',
    Disabled: 'PendingImport',
    PendingDelete: 'PendingDelete',
    PendingImport: 'PendingImport',
    Archived: 'PendingImport',
  },
};

/** Where a new key starts: an imported (EXTERNAL) key waits for its material. */
export function initialState(external: boolean): TableState {
  return (external ? 'PendingImport' : 'Enabled') as TableState;
}

/** What `action` does to a key in `from`. */
export function transition(from: KeyState, action: KeyAction): Transition {
  return TABLE[from][action];
}

/** The state after an allowed action (unchanged when the table names none); `hasMaterial` decides where a cancelled deletion leads. */
export function nextState(from: KeyState, action: KeyAction, hasMaterial: boolean): TableState {
  const t = TABLE[from][action];
  if (!t.allowed) return from as TableState;
  return ((!hasMaterial && t.toWithoutMaterial) || t.to || from) as TableState;
}

/** The state after `event`. */
export function afterEvent(from: KeyState, event: KeyEvent): TableState {
  return EVENTS[event][from] as TableState;
}
