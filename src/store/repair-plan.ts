/**
 * The one repair planner. A backend describes a key's derived data twice, as entries (name ->
 * value): what its record implies (from `indexFacts`; none for a key that no longer exists) and
 * what the backend found. The plan is the difference: entries to remove (found, not implied),
 * then entries to write (implied, and absent or different), each with the finding that reports it.
 * How an entry is named and written (a column, a tag row, a set member, a hash field) is the backend's.
 */
export type EntryValue = string | number | null;
export type Entries = ReadonlyMap<string, EntryValue>;

export type RepairStep =
  { kind: 'remove'; entry: string; found: EntryValue } | { kind: 'write'; entry: string; found: EntryValue | undefined; want: EntryValue };

/** Removals first: an entry dropped for one key may be the one written for another (an alias). */
export function planRepair(want: Entries | undefined, found: Entries): RepairStep[] {
  const steps: RepairStep[] = [];
  for (const [entry, value] of found) if (!want?.has(entry)) steps.push({ kind: 'remove', entry, found: value });
  for (const [entry, value] of want ?? []) {
    const has = found.has(entry);
    if (!has || found.get(entry) !== value) steps.push({ kind: 'write', entry, found: has ? found.get(entry) : undefined, want: value });
  }
  return steps;
}

/** The finding of a step on key `keyId`; `label` names the entry for a reader. */
export function describeStep(keyId: string, step: RepairStep, label: string = step.entry): string {
  if (step.kind === 'remove') return `key ${keyId}: ${label} is not implied by any record; removed`;
  if (step.found === undefined) return `key ${keyId}: ${label} was missing; written ${JSON.stringify(step.want)}`;
  return `key ${keyId}: ${label} was ${JSON.stringify(step.found)}, re-derived ${JSON.stringify(step.want)}`;
}

/** Removals of every plan before any write, keeping each plan's order otherwise. */
export function removalsFirst<T extends { step: RepairStep }>(planned: readonly T[]): T[] {
  return [...planned.filter((p) => p.step.kind === 'remove'), ...planned.filter((p) => p.step.kind === 'write')];
}
