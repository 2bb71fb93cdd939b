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
