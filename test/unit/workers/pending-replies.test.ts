import { PendingReplies } from '../../../src/workers/pending-replies';

describe('PendingReplies', () => {
  test("an answer with the question's id settles that question only", async () => {
    const replies = new PendingReplies<string>('answer', 5_000);
    const sent: number[] = [];
    const first = replies.ask((id) => sent.push(id));
    const second = replies.ask((id) => sent.push(id));
    expect(new Set(sent).size).toBe(2);
    replies.answer(sent[1], { value: 'two' });
    replies.answer(sent[0], { error: 'no luck' });
    await expect(second).resolves.toBe('two');
    await expect(first).rejects.toThrow('no luck');
  });

  test('unknown or repeated ids are ignored', async () => {
    const replies = new PendingReplies<number>('answer', 5_000);
    let id = -1;
    const p = replies.ask((i) => (id = i));
    replies.answer(id + 100, { value: 1 });
    replies.answer(id, { value: 2 });
    replies.answer(id, { value: 3 });
    await expect(p).resolves.toBe(2);
  });

  test('no answer in time: the question fails, naming what was awaited', async () => {
    const replies = new PendingReplies<string>('aggregated metrics', 20);
    await expect(replies.ask(() => undefined)).rejects.toThrow('no aggregated metrics within 20 ms');
  });
});
