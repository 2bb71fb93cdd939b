/**
 * Questions a worker sends its supervisor and the answers it waits for, matched by id. An answer
 * that does not come within the time given fails the question (and frees its place).
 */
export class PendingReplies<T> {
  private readonly waiting = new Map<number, { resolve: (value: T) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private next = 0;

  constructor(
    private readonly what: string,
    private readonly timeoutMs: number,
  ) {}

  /** Sends the question (with its id) and waits for `answer` with that id. */
  ask(send: (id: number) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const id = this.next++;
      const timer = setTimeout(() => (this.waiting.delete(id), reject(new Error(`no ${this.what} within ${this.timeoutMs} ms`))), this.timeoutMs);
      timer.unref();
      this.waiting.set(id, { resolve, reject, timer });
      send(id);
    });
  }

  answer(id: number, result: { value: T } | { error: string }): void {
    const w = this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id);
    clearTimeout(w.timer);
    if ('value' in result) w.resolve(result.value);
    else w.reject(new Error(result.error));
  }
}
