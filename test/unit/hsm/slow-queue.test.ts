import { SlowQueueFullError } from '../../../src/hsm/errors';
import { SlowQueue } from '../../../src/hsm/slow-queue';
import { rejection } from '../../support/rejection';

function gate(): { promise: Promise<string>; open: (v: string) => void; fail: (e: Error) => void } {
  let open!: (v: string) => void;
  let fail!: (e: Error) => void;
  const promise = new Promise<string>((resolve, reject) => ((open = resolve), (fail = reject)));
  return { promise, open, fail };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('SlowQueue: a bounded FIFO per cluster in front of slow operations', () => {
  test('`running` at once, `queued` waiting in order, the next one refused at once with SlowQueueFullError', async () => {
    const q = new SlowQueue('c1', { running: 2, queued: 2 });
    const gates = Array.from({ length: 5 }, gate);
    const started: number[] = [];
    const runs = gates.map((g, i) => q.run(() => (started.push(i), g.promise)));
    expect(started).toEqual([0, 1]);
    expect([q.running, q.queued]).toEqual([2, 2]);
    const refused = await rejection(runs[4]);
    expect(refused).toBeInstanceOf(SlowQueueFullError);
    expect((refused as SlowQueueFullError).errorClass).toBe('busy');
    expect((refused as SlowQueueFullError).cluster).toBe('c1');
    expect(q.refused).toBe(1);

    gates[1].open('one');
    await expect(runs[1]).resolves.toBe('one');
    await tick();
    expect(started).toEqual([0, 1, 2]);
    expect([q.running, q.queued]).toEqual([2, 1]);
    gates[0].fail(new Error('failed op'));
    await expect(runs[0]).rejects.toThrow('failed op');
    await tick();
    expect(started).toEqual([0, 1, 2, 3]);
    expect([q.running, q.queued]).toEqual([2, 0]);
    gates[2].open('two');
    gates[3].open('three');
    await expect(Promise.all([runs[2], runs[3]])).resolves.toEqual(['two', 'three']);
    expect([q.running, q.queued]).toEqual([0, 0]);
  });

  test('queued: 0 refuses whatever cannot start at once; an operation that throws synchronously frees its place', async () => {
    const q = new SlowQueue('c2', { running: 1, queued: 0 });
    await expect(
      q.run(() => {
        throw new Error('sync throw');
      }),
    ).rejects.toThrow('sync throw');
    expect(q.running).toBe(0);
    const g = gate();
    const first = q.run(() => g.promise);
    await expect(q.run(() => Promise.resolve('never'))).rejects.toBeInstanceOf(SlowQueueFullError);
    g.open('done');
    await expect(first).resolves.toBe('done');
    await expect(q.run(() => Promise.resolve('again'))).resolves.toBe('again');
  });
});
