import { LineLog } from '../../../src/api/request-log';

describe('LineLog', () => {
  test('lines of one event-loop turn go out in one write, in order, one JSON document per line', async () => {
    const writes: string[] = [];
    const log = new LineLog((c) => writes.push(c));
    log.line({ a: 1 });
    log.line({ b: 'two' });
    expect(writes).toEqual([]);
    await new Promise((r) => setImmediate(r));
    expect(writes).toEqual(['{"a":1}\n{"b":"two"}\n']);
  });

  test('a full batch is written at once; flush writes the rest', () => {
    const writes: string[] = [];
    const log = new LineLog((c) => writes.push(c));
    for (let i = 0; i < 513; i++) log.line({ i });
    expect(writes).toHaveLength(1);
    expect(writes[0].split('\n')).toHaveLength(513);
    log.flush();
    expect(writes[1]).toBe('{"i":512}\n');
    log.flush();
    expect(writes).toHaveLength(2);
  });
});

describe('LineLog with maxWrite (workers sharing one stdout)', () => {
  test.each<[string, number[], number, number[]]>([
    // line lengths (bytes, newline included), limit, expected write sizes
    ['lines that fit go out together', [10, 10, 10], 40, [30]],
    ['a batch is cut at line boundaries', [10, 10, 10], 25, [20, 10]],
    ['exactly the limit is one write', [20, 20], 40, [40]],
    ['a line longer than the limit goes alone, whole', [10, 100, 10], 50, [10, 100, 10]],
  ])('%s', (_name, lengths, limit, expected) => {
    const writes: string[] = [];
    const log = new LineLog((c) => writes.push(c), limit);
    // {"p":"xxx"} is 10 bytes + the newline for 3 x's: pad to the wanted length
    for (const n of lengths) log.line({ p: 'x'.repeat(n - 9) });
    log.flush();
    expect(writes.map((w) => Buffer.byteLength(w))).toEqual(expected);
    expect(writes.every((w) => w.endsWith('\n'))).toBe(true);
    expect(
      writes
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as unknown),
    ).toHaveLength(lengths.length);
  });
});
