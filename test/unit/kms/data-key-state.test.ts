import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DATA_KEY_ACTIONS,
  DATA_KEY_STATES,
  DataKeyAction,
  DataKeyState,
  dataKeyTransition,
  initialDataKeyState,
  nextDataKeyState,
} from '../../../src/kms/data-key-state';
import type { DataKeyPatch } from '../../../src/store/store';

const SRC = join(__dirname, '..', '..', '..', '..', 'src');
const sources = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));

/** Every cell written out: the state it leads to, or the refusal. */
const EXPECTED: Record<DataKeyState, Record<DataKeyAction, string>> = {
  Enabled: {
    EnableDataKey: 'Enabled',
    DisableDataKey: 'Disabled',
    ScheduleDataKeyDeletion: 'no:StateNotSupported',
    CancelDataKeyDeletion: 'no:NotPendingDelete',
    GetDataKeyPlaintext: 'Enabled',
    GetDataKeyCiphertextBlob: 'Enabled',
    UpdateMetadata: 'Enabled',
    Describe: 'Enabled',
  },
  Disabled: {
    EnableDataKey: 'Enabled',
    DisableDataKey: 'Disabled',
    ScheduleDataKeyDeletion: 'PendingDelete',
    CancelDataKeyDeletion: 'no:NotPendingDelete',
    GetDataKeyPlaintext: 'no:DataKeyDisabled',
    GetDataKeyCiphertextBlob: 'no:DataKeyDisabled',
    UpdateMetadata: 'Disabled',
    Describe: 'Disabled',
  },
  PendingDelete: {
    EnableDataKey: 'no:StateNotSupported',
    DisableDataKey: 'no:StateNotSupported',
    ScheduleDataKeyDeletion: 'no:StateNotSupported',
    CancelDataKeyDeletion: 'Disabled',
    GetDataKeyPlaintext: 'no:DataKeyPendingDelete',
    GetDataKeyCiphertextBlob: 'no:DataKeyPendingDelete',
    UpdateMetadata: 'no:StateNotSupported',
    Describe: 'PendingDelete',
  },
};

describe('the hosted data key state machine', () => {
  const rows = DATA_KEY_STATES.flatMap((s) => DATA_KEY_ACTIONS.map((a) => [s, a, EXPECTED[s][a]] as const));

  test('the table covers 3 states x 8 actions', () => expect(rows).toHaveLength(24));

  test.each(rows)('%s + %s -> %s', (state, action, expected) => {
    const t = dataKeyTransition(state, action);
    expect(t.allowed ? nextDataKeyState(state, action) : `no:${t.reason}`).toBe(expected);
  });

  test('a refused action leaves the state as it was; a new data key starts Enabled', () => {
    expect(nextDataKeyState('PendingDelete', 'EnableDataKey')).toBe('PendingDelete');
    expect(initialDataKeyState()).toBe('Enabled');
  });

  test('a patch takes a state the table returned, never a raw string', () => {
    const read: DataKeyState = 'Enabled';
    // @ts-expect-error a raw string is not a DataKeyTableState
    const raw: DataKeyPatch = { keyState: 'Disabled' };
    // @ts-expect-error nor is a state copied from a record
    const copied: DataKeyPatch = { keyState: read };
    expect([raw.keyState, copied.keyState, nextDataKeyState(read, 'DisableDataKey')]).toEqual(['Disabled', 'Enabled', 'Disabled']);
  });

  test('no module outside data-key-state.ts casts its way to a DataKeyTableState', () => {
    const files = sources(SRC).filter((f) => !f.endsWith(join('kms', 'data-key-state.ts')));
    expect(files.filter((f) => /\bas\s+DataKeyTableState\b|<DataKeyTableState>/.test(readFileSync(f, 'utf8')))).toEqual([]);
  });
});
