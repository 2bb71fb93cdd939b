import { progressBar } from '../../src/cli/progress';

describe('kmsctl progress bar', () => {
  test('through a pipe: one line per tenth, the last at 100%', () => {
    const lines: string[] = [];
    const bar = progressBar((t) => lines.push(t), false, 're-wrapping');
    for (let done = 0; done <= 250; done++) bar(done, 250);
    expect(lines).toHaveLength(11);
    expect(lines[0]).toBe(`re-wrapping [${'.'.repeat(30)}] 0/250 (0%)\n`);
    expect(lines[10]).toBe(`re-wrapping [${'#'.repeat(30)}] 250/250 (100%)\n`);
  });

  test('on a terminal: redrawn in place, the end always drawn and closed by a newline', () => {
    const out: string[] = [];
    const bar = progressBar((t) => out.push(t), true, 're-wrapping');
    for (let done = 0; done <= 1000; done++) bar(done, 1000);
    expect(out.length).toBeLessThan(50);
    expect(out.every((t) => t.startsWith('\r'))).toBe(true);
    expect(out[out.length - 1]).toBe(`\rre-wrapping [${'#'.repeat(30)}] 1000/1000 (100%)\n`);
  });

  test('nothing to do shows as done', () => {
    const lines: string[] = [];
    progressBar((t) => lines.push(t), false, 'x')(0, 0);
    expect(lines).toEqual([`x [${'#'.repeat(30)}] 0/0 (100%)\n`]);
  });
});
