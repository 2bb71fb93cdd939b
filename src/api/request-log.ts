/**
 * Structured logs, one JSON line per event, written in batches: lines gathered during one turn of
 * the event loop go out in one write (a write per request cost ~7% of an Encrypt's CPU time). With
 * `maxWrite` a batch is cut at line boundaries into writes of at most that many bytes: worker
 * processes sharing one stdout use PIPE_BUF (4096), the size a pipe writes whole, so lines of two
 * workers never interleave.
 */
export const PIPE_BUF = 4096;

export class LineLog {
  private lines: string[] = [];
  private scheduled = false;

  constructor(
    private readonly write: (chunk: string) => void = (c) => process.stdout.write(c),
    private readonly maxWrite = Infinity,
  ) {}

  readonly line = (entry: Record<string, unknown>): void => {
    this.lines.push(JSON.stringify(entry));
    if (this.lines.length >= 512) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  };

  flush(): void {
    this.scheduled = false;
    if (this.lines.length === 0) return;
    const lines = this.lines;
    this.lines = [];
    if (this.maxWrite === Infinity) {
      this.write(lines.join('\n') + '\n');
      return;
    }
    let chunk = '';
    for (const l of lines) {
      const next = l + '\n';
      if (chunk !== '' && Buffer.byteLength(chunk) + Buffer.byteLength(next) > this.maxWrite) {
        this.write(chunk);
        chunk = '';
      }
      chunk += next;
    }
    this.write(chunk);
  }
}
