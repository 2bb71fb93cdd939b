/**
 * The names of a hosted data key's states, below every layer that stores or reasons about them.
 * Which action leads from one to another is the data-key state machine's
 * (src/kms/data-key-state.ts), the only maker of a `DataKeyTableState`.
 */
export const DATA_KEY_STATES = ['Enabled', 'Disabled', 'PendingDelete'] as const;
export type DataKeyState = (typeof DATA_KEY_STATES)[number];

declare const fromDataKeyTable: unique symbol;
/** A state the data-key state machine returned: the only kind `DataKeyPatch.keyState` accepts. */
export type DataKeyTableState = DataKeyState & { readonly [fromDataKeyTable]: true };
