import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEvent, initialState, KEY_EVENTS, KEY_STATES, KeyEvent, KeyState, nextState } from '../../../src/kms/key-state';
import type { KeyPatch } from '../../../src/store/store';

const SRC = join(__dirname, '..', '..', '..', '..', 'src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

describe('the state machine is the only writer of key states', () => {
  test('a patch takes a state the table returned, never a raw string or a state read from a record', () => {
    const read: KeyState = 'Enabled';
    // @ts-expect-error a raw string is not a TableState
    const raw: KeyPatch = { keyState: 'Disabled' };
    // @ts-expect-error nor is a KeyState copied from somewhere
    const copied: KeyPatch = { keyState: read };
    const fromTable: KeyPatch = { keyState: nextState(read, 'DisableKey', true) };
    expect([raw.keyState, copied.keyState, fromTable.keyState]).toEqual(['Disabled', 'Enabled', 'Disabled']);
  });

  test('no module outside key-state.ts casts its way to a TableState', () => {
    const files = sources(SRC);
    expect(files.some((f) => f.endsWith(join('kms', 'key-state.ts')))).toBe(true);
    const casting = files.filter((f) => !f.endsWith(join('kms', 'key-state.ts')) && /\bas\s+TableState\b|<TableState>/.test(readFileSync(f, 'utf8')));
    expect(casting).toEqual([]);
  });
});

describe('events: what time does to a key', () => {
  // [state, event, next state], every cell written out
  const EXPECTED: Record<KeyEvent, Record<KeyState, KeyState>> = {
    MaterialExpired: {
      Enabled: 'PendingImport',
      Disabled: 'PendingImport',
      PendingDelete: 'PendingDelete',
      PendingImport: 'PendingImport',
      Archived: 'PendingImport',
    },
  };
  const rows = KEY_EVENTS.flatMap((e) => KEY_STATES.map((s) => [s, e, EXPECTED[e][s]] as const));

  test('the event table covers 5 states x 1 event', () => expect(rows).toHaveLength(5));

  test.each(rows)('%s + %s -> %s', (state, event, expected) => {
    expect(afterEvent(state, event)).toBe(expected);
  });
});

describe('the transitions that used to be written by hand', () => {
  test('a new key starts Enabled, an imported one PendingImport', () => {
    expect(initialState(false)).toBe('Enabled');
    expect(initialState(true)).toBe('PendingImport');
  });

  test.each(['Disabled', 'PendingImport', 'Archived'] as const)('scheduling the deletion of a %s key leads to PendingDelete', (state) => {
    expect(nextState(state, 'ScheduleKeyDeletion', state !== 'PendingImport')).toBe('PendingDelete');
  });

  test('deleting imported material leads to PendingImport from Enabled and Disabled', () => {
    expect(nextState('Enabled', 'DeleteImportedKeyMaterial', false)).toBe('PendingImport');
    expect(nextState('Disabled', 'DeleteImportedKeyMaterial', false)).toBe('PendingImport');
  });

  test('completing an import enables a key waiting for material and leaves an Enabled one Enabled', () => {
    expect(nextState('PendingImport', 'ImportKeyMaterial', true)).toBe('Enabled');
    expect(nextState('Enabled', 'ImportKeyMaterial', true)).toBe('Enabled');
  });
});
