/** Pure validation rules of the key lifecycle, each returning a reason or undefined. */

const ALIAS = /^[A-Za-z0-9][A-Za-z0-9_-]{0,59}$/;

/** 1-60 letters/digits/"_"/"-", first a letter or digit; "kms-" (any case) is reserved for cloud products. */
export function aliasProblem(alias: unknown, cloudProduct = false): string | undefined {
  if (typeof alias !== 'string' || alias.length === 0) return 'alias is required';
  if (!ALIAS.test(alias)) return 'alias must be 1-60 letters, digits, "_" or "-", starting with a letter or digit';
  if (!cloudProduct && alias.toLowerCase().startsWith('kms-')) return 'alias must not start with "kms-": the prefix is reserved for cloud products';
  return undefined;
}

export const ROTATE_DAYS = { min: 7, max: 365, default: 365 } as const;
export const PENDING_WINDOW_DAYS = { min: 7, max: 30 } as const;
export const MAX_DESCRIPTION_BYTES = 1024;

export function rotateDaysProblem(days: unknown): string | undefined {
  if (days === undefined) return undefined;
  if (!Number.isInteger(days) || (days as number) < ROTATE_DAYS.min || (days as number) > ROTATE_DAYS.max) {
    return `rotateDays must be an integer from ${ROTATE_DAYS.min} to ${ROTATE_DAYS.max}`;
  }
  return undefined;
}

export function pendingWindowProblem(days: unknown): string | undefined {
  if (!Number.isInteger(days) || (days as number) < PENDING_WINDOW_DAYS.min || (days as number) > PENDING_WINDOW_DAYS.max) {
    return `pendingWindowDays must be an integer from ${PENDING_WINDOW_DAYS.min} to ${PENDING_WINDOW_DAYS.max}`;
  }
  return undefined;
}

export function descriptionProblem(description: unknown): string | undefined {
  if (description === undefined) return undefined;
  if (typeof description !== 'string') return 'description must be a string';
  if (Buffer.byteLength(description, 'utf8') > MAX_DESCRIPTION_BYTES) return `description must be at most ${MAX_DESCRIPTION_BYTES} bytes`;
  return undefined;
}

export const TAG_LIMITS = { keyChars: 127, valueChars: 255, perKey: 50 } as const;
/** Cloud-resource bindings a key may have (ours: the reference gives none). */
export const MAX_BINDINGS_PER_KEY = 100;

export interface Tag {
  key: string;
  value: string;
}

/** Tags as a list of pairs; a duplicated key is its own problem (TagKeysDuplicated). */
export function tagsProblem(tags: readonly Tag[]): { duplicated?: string; invalid?: string } {
  const seen = new Set<string>();
  if (tags.length > TAG_LIMITS.perKey) return { invalid: `a key has at most ${TAG_LIMITS.perKey} tags` };
  for (const t of tags) {
    if (typeof t.key !== 'string' || t.key.length === 0 || t.key.length > TAG_LIMITS.keyChars) {
      return { invalid: `tagKey must be 1-${TAG_LIMITS.keyChars} characters` };
    }
    if (typeof t.value !== 'string' || t.value.length > TAG_LIMITS.valueChars) {
      return { invalid: `tagValue of ${JSON.stringify(t.key)} must be a string of at most ${TAG_LIMITS.valueChars} characters` };
    }
    if (seen.has(t.key)) return { duplicated: t.key };
    seen.add(t.key);
  }
  return {};
}

/** Hosted data keys: names as aliases (no prefix is reserved), descriptions of at most 100 bytes (reference §1a). */
const DATA_KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,59}$/;
export const MAX_DATA_KEY_DESCRIPTION_BYTES = 100;

export function dataKeyNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string' || name.length === 0) return 'dataKeyName is required';
  if (!DATA_KEY_NAME.test(name)) return 'dataKeyName must be 1-60 letters, digits, "_" or "-", starting with a letter or digit';
  return undefined;
}

export function dataKeyDescriptionProblem(description: unknown): string | undefined {
  if (description === undefined) return undefined;
  if (typeof description !== 'string') return 'description must be a string';
  if (Buffer.byteLength(description, 'utf8') > MAX_DATA_KEY_DESCRIPTION_BYTES) return `description must be at most ${MAX_DATA_KEY_DESCRIPTION_BYTES} bytes`;
  return undefined;
}
