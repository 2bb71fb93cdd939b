/** A figure a test reports (a count, a duration, a seed to replay): one line on the test process's stdout. */
export function report(line: string): void {
  process.stdout.write(`${line}\n`);
}
