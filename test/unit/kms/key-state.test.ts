import { KEY_ACTIONS, KEY_STATES, KeyAction, KeyState, nextState, RefusalReason, transition } from '../../../src/kms/key-state';

// Every state x every action, written out: [state, action, expected next state | refusal reason].
type Expect = KeyState | `refused:${RefusalReason}`;
const EXPECTED: Record<KeyState, Record<KeyAction, Expect>> = {
  Enabled: {
    EnableKey: 'Enabled',
    DisableKey: 'Disabled',
    ScheduleKeyDeletion: 'refused:ShouldBeDisabled',
    CancelKeyDeletion: 'refused:NotPendingDelete',
    ArchiveKey: 'Archived',
    CancelKeyArchive: 'refused:StateNotSupported',
    Encrypt: 'Enabled',
    Decrypt: 'Enabled',
    GenerateDataKey: 'Enabled',
    Sign: 'Enabled',
    Verify: 'Enabled',
    AsymmetricDecrypt: 'Enabled',
    GetPublicKey: 'Enabled',
    EnableKeyRotation: 'Enabled',
    DisableKeyRotation: 'Enabled',
    RotateKey: 'Enabled',
    GetParametersForImport: 'Enabled',
    ImportKeyMaterial: 'Enabled',
    DeleteImportedKeyMaterial: 'PendingImport',
    UpdateMetadata: 'Enabled',
    Describe: 'Enabled',
  },
  Disabled: {
    EnableKey: 'Enabled',
    DisableKey: 'Disabled',
    ScheduleKeyDeletion: 'PendingDelete',
    CancelKeyDeletion: 'refused:NotPendingDelete',
    ArchiveKey: 'Archived',
    CancelKeyArchive: 'refused:StateNotSupported',
    Encrypt: 'refused:KeyDisabled',
    Decrypt: 'refused:KeyDisabled',
    GenerateDataKey: 'refused:KeyDisabled',
    Sign: 'refused:KeyDisabled',
    Verify: 'refused:KeyDisabled',
    AsymmetricDecrypt: 'refused:KeyDisabled',
    GetPublicKey: 'refused:KeyDisabled',
    EnableKeyRotation: 'Disabled',
    DisableKeyRotation: 'Disabled',
    RotateKey: 'refused:KeyDisabled',
    GetParametersForImport: 'Disabled',
    ImportKeyMaterial: 'refused:StateNotSupported',
    DeleteImportedKeyMaterial: 'PendingImport',
    UpdateMetadata: 'Disabled',
    Describe: 'Disabled',
  },
  PendingDelete: {
    EnableKey: 'refused:StateNotSupported',
    DisableKey: 'refused:StateNotSupported',
    ScheduleKeyDeletion: 'refused:StateNotSupported',
    CancelKeyDeletion: 'Disabled',
    ArchiveKey: 'refused:StateNotSupported',
    CancelKeyArchive: 'refused:StateNotSupported',
    Encrypt: 'refused:KeyPendingDelete',
    Decrypt: 'refused:KeyPendingDelete',
    GenerateDataKey: 'refused:KeyPendingDelete',
    Sign: 'refused:KeyPendingDelete',
    Verify: 'refused:KeyPendingDelete',
    AsymmetricDecrypt: 'refused:KeyPendingDelete',
    GetPublicKey: 'refused:KeyPendingDelete',
    EnableKeyRotation: 'refused:StateNotSupported',
    DisableKeyRotation: 'refused:StateNotSupported',
    RotateKey: 'refused:KeyPendingDelete',
    GetParametersForImport: 'refused:StateNotSupported',
    ImportKeyMaterial: 'refused:StateNotSupported',
    DeleteImportedKeyMaterial: 'refused:StateNotSupported',
    UpdateMetadata: 'refused:StateNotSupported',
    Describe: 'PendingDelete',
  },
  PendingImport: {
    EnableKey: 'refused:StateNotSupported',
    DisableKey: 'refused:StateNotSupported',
    ScheduleKeyDeletion: 'PendingDelete',
    CancelKeyDeletion: 'refused:NotPendingDelete',
    ArchiveKey: 'refused:StateNotSupported',
    CancelKeyArchive: 'refused:StateNotSupported',
    Encrypt: 'refused:StateNotSupported',
    Decrypt: 'refused:StateNotSupported',
    GenerateDataKey: 'refused:StateNotSupported',
    Sign: 'refused:StateNotSupported',
    Verify: 'refused:StateNotSupported',
    AsymmetricDecrypt: 'refused:StateNotSupported',
    GetPublicKey: 'refused:StateNotSupported',
    EnableKeyRotation: 'refused:StateNotSupported',
    DisableKeyRotation: 'refused:StateNotSupported',
    RotateKey: 'refused:StateNotSupported',
    GetParametersForImport: 'PendingImport',
    ImportKeyMaterial: 'Enabled',
    DeleteImportedKeyMaterial: 'refused:StateNotSupported',
    UpdateMetadata: 'PendingImport',
    Describe: 'PendingImport',
  },
  Archived: {
    EnableKey: 'refused:StateNotSupported',
    DisableKey: 'refused:StateNotSupported',
    ScheduleKeyDeletion: 'PendingDelete',
    CancelKeyDeletion: 'refused:NotPendingDelete',
    ArchiveKey: 'refused:KeyArchived',
    CancelKeyArchive: 'Enabled',
    Encrypt: 'refused:KeyArchived',
    Decrypt: 'Archived',
    GenerateDataKey: 'refused:KeyArchived',
    Sign: 'refused:KeyArchived',
    Verify: 'Archived',
    AsymmetricDecrypt: 'refused:KeyArchived',
    GetPublicKey: 'Archived',
    EnableKeyRotation: 'refused:KeyArchived',
    DisableKeyRotation: 'Archived',
    RotateKey: 'refused:KeyArchived',
    GetParametersForImport: 'refused:StateNotSupported',
    ImportKeyMaterial: 'refused:StateNotSupported',
    DeleteImportedKeyMaterial: 'refused:StateNotSupported',
    UpdateMetadata: 'Archived',
    Describe: 'Archived',
  },
};

const rows = KEY_STATES.flatMap((s) => KEY_ACTIONS.map((a) => [s, a, EXPECTED[s][a]] as const));

describe('key state machine: every state x every action', () => {
  test('the table covers 5 states x 21 actions', () => expect(rows).toHaveLength(105));

  test.each(rows)('%s + %s -> %s', (state, action, expected) => {
    const t = transition(state, action);
    if (expected.startsWith('refused:')) {
      expect(t.allowed).toBe(false);
      if (!t.allowed) expect(t.reason).toBe(expected.slice('refused:'.length));
      expect(nextState(state, action, true)).toBe(state);
    } else {
      expect(t.allowed).toBe(true);
      expect(nextState(state, action, true)).toBe(expected);
    }
  });
});

describe('special rules', () => {
  test('every refused use of a key pending deletion raises an alarm; nothing else does', () => {
    for (const [state, action] of rows) {
      const t = transition(state, action);
      const alarm = !t.allowed && t.alarm === true;
      expect(alarm).toBe(state === 'PendingDelete' && !t.allowed && t.reason === 'KeyPendingDelete');
    }
  });

  test('cancelling the deletion of a key that never received material returns it to PendingImport', () => {
    expect(nextState('PendingDelete', 'CancelKeyDeletion', false)).toBe('PendingImport');
    expect(nextState('PendingDelete', 'CancelKeyDeletion', true)).toBe('Disabled');
  });

  test('archived keys decrypt but do not encrypt, and cannot turn rotation on', () => {
    expect(transition('Archived', 'Decrypt').allowed).toBe(true);
    expect(transition('Archived', 'Encrypt').allowed).toBe(false);
    expect(transition('Archived', 'EnableKeyRotation').allowed).toBe(false);
  });
});
