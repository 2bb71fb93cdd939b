/**
 * The names of the CMK states, below every layer that stores or reasons about them. Which action or
 * event leads from one to another is the state machine's (src/kms/key-state.ts), the only maker of
 * a `TableState`.
 */
export const KEY_STATES = ['Enabled', 'Disabled', 'PendingDelete', 'PendingImport', 'Archived'] as const;
export type KeyState = (typeof KEY_STATES)[number];

declare const fromTable: unique symbol;
/** A state one of the state machine's tables returned: the only kind `KeyPatch.keyState` accepts. */
export type TableState = KeyState & { readonly [fromTable]: true };
