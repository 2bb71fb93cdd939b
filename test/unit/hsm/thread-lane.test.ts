import { lanePlaces, ThreadLane } from '../../../src/hsm/thread-lane';

function gate(): { promise: Promise<string>; open: (v: string) => void } {
  let open!: (v: string) => void;
  const promise = new Promise<string>((resolve) => (open = resolve));
  return { promise, open };
}

describe('ThreadLane: slow calls take at most half the thread pool, members take turns', () => {
  test('places from UV_THREADPOOL_SIZE and the CPUs', () => {
    expect(lanePlaces(undefined, 8)).toBe(2);
    expect(lanePlaces('4', 8)).toBe(2);
    expect(lanePlaces('1', 8)).toBe(1);
    expect(lanePlaces('16', 16)).toBe(8);
    expect(lanePlaces('lots', 8)).toBe(2);
    expect(lanePlaces('0', 8)).toBe(2);
    // one CPU is left to the event loop
    expect(lanePlaces('16', 4)).toBe(3);
    expect(lanePlaces(undefined, 2)).toBe(1);
    expect(lanePlaces(undefined, 1)).toBe(1);
  });

  test('never more than `places` calls at once; a freed place goes to the member that waited, round-robin', async () => {
    const lane = new ThreadLane(2);
    const started: string[] = [];
    const gates = new Map<string, ReturnType<typeof gate>>();
    const call = (owner: string, name: string) =>
      lane.run(owner, () => {
        started.push(name);
        const g = gate();
        gates.set(name, g);
        return g.promise;
      });
    const all = [call('a', 'a1'), call('a', 'a2'), call('a', 'a3'), call('a', 'a4'), call('b', 'b1'), call('a', 'a5')];
    expect(started).toEqual(['a1', 'a2']);
    expect(lane.busy).toBe(2);
    expect(lane.queued).toBe(4);
    gates.get('a1')!.open('a1');
    await all[0];
    await Promise.resolve();
    // a3 waited longest, then b1 gets the next place before a's backlog continues
    expect(started).toEqual(['a1', 'a2', 'a3']);
    gates.get('a2')!.open('a2');
    await all[1];
    await Promise.resolve();
    expect(started).toEqual(['a1', 'a2', 'a3', 'b1']);
    for (const name of ['a3', 'b1']) gates.get(name)!.open(name);
    await Promise.all([all[2], all[4]]);
    await Promise.resolve();
    expect(started).toEqual(['a1', 'a2', 'a3', 'b1', 'a4', 'a5']);
    for (const name of ['a4', 'a5']) gates.get(name)!.open(name);
    expect(await Promise.all(all)).toEqual(['a1', 'a2', 'a3', 'a4', 'b1', 'a5']);
    expect(lane.busy).toBe(0);
    expect(lane.queued).toBe(0);
  });

  test('a call that throws or rejects gives its place back', async () => {
    const lane = new ThreadLane(1);
    await expect(
      lane.run('a', () => {
        throw new Error('sync');
      }),
    ).rejects.toThrow('sync');
    await expect(lane.run('a', () => Promise.reject(new Error('async')))).rejects.toThrow('async');
    expect(await lane.run('a', () => Promise.resolve('ok'))).toBe('ok');
    expect(lane.busy).toBe(0);
  });
});
