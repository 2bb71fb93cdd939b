import { withDeadline } from '../../src/common/deadline';

const after = <T>(ms: number, value: T, fail = false): Promise<T> =>
  new Promise((resolve, reject) => setTimeout(() => (fail ? reject(new Error(String(value))) : resolve(value)), ms));

describe('withDeadline', () => {
  test.each<[string, () => Promise<unknown>, string]>([
    ['an answer in time wins', () => withDeadline(after(5, 'answer'), 200, () => 'late'), 'answer'],
    ['a late answer loses to the late value', () => withDeadline(after(200, 'answer'), 5, () => 'late'), 'late'],
    [
      'a failure in time is the failure',
      () => withDeadline(after(5, 'broken', true), 200, () => 'late').catch((e: Error) => `rejected ${e.message}`),
      'rejected broken',
    ],
    [
      'late() may throw: the race rejects',
      () =>
        withDeadline(after(200, 'answer'), 5, (): never => {
          throw new Error('too slow');
        }).catch((e: Error) => `rejected ${e.message}`),
      'rejected too slow',
    ],
  ])('%s', async (_name, run, expected) => {
    expect(await run()).toBe(expected);
  });

  test('the timer is cleared once the promise settles (nothing keeps the process alive)', async () => {
    const spy = jest.spyOn(global, 'clearTimeout');
    await withDeadline(Promise.resolve(1), 60_000, () => 0);
    expect(spy).toHaveBeenCalled();
    spy.mockRestore();
  });
});
