export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The one polling helper of the tests: checks `cond` every `everyMs` until it holds and resolves with the
 * milliseconds that took; after `boundMs` it fails naming `what` (a function: evaluated at the failure).
 */
export async function within(
  boundMs: number,
  cond: () => boolean | Promise<boolean>,
  what: string | (() => string) = 'condition',
  everyMs = 25,
): Promise<number> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > boundMs) throw new Error(`${typeof what === 'string' ? what : what()} not reached within ${boundMs} ms`);
    await sleep(everyMs);
  }
  return Date.now() - start;
}
