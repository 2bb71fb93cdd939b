/**
 * Ending a CLI process without losing output: on a pipe, process.stdout writes are asynchronous,
 * and process.exit() drops whatever the reader has not taken yet. A write's callback runs once its
 * data (and every earlier write's) is handed to the OS, so an empty write on each stream marks the end.
 */
import type { Writable } from 'node:stream';

function drained(stream: Writable): Promise<void> {
  if (stream.destroyed || stream.writableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    stream.once('error', () => resolve());
    stream.write('', () => resolve());
  });
}

/** A reader that went away (`kmsctl audit export | head`) ends the process quietly instead of crashing it. */
export function quietOnClosedPipe(stream: Writable, exit: (code: number) => void = (code) => process.exit(code)): void {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') exit(0);
    else throw e;
  });
}

/** Exits with `code` once stdout and stderr have been drained. */
export async function exitWhenDrained(code: number): Promise<never> {
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  process.exit(code);
}
