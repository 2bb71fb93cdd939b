/**
 * `p`, or what `late()` gives (or throws) if `p` has not settled within `ms`. The timer never outlives
 * the race. Used wherever a caller must get an answer while a store client is still retrying.
 */
export function withDeadline<T, L>(p: Promise<T>, ms: number, late: () => L): Promise<T | L> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<L>((resolve, reject) => {
    timer = setTimeout(() => {
      try {
        resolve(late());
      } catch (e) {
        reject(e);
      }
    }, ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}
