/** A progress bar on stderr: redrawn in place on a terminal, a line every tenth (and at the end) otherwise. */
export function progressBar(write: (text: string) => void, tty: boolean, label: string): (done: number, total: number) => void {
  let lastTenth = -1;
  let lastDraw = 0;
  return (done, total) => {
    const fraction = total === 0 ? 1 : Math.min(1, done / total);
    const text = `${label} ${bar(fraction)} ${done}/${total} (${Math.floor(fraction * 100)}%)`;
    if (tty) {
      const now = Date.now();
      if (done < total && now - lastDraw < 100) return;
      lastDraw = now;
      write(`\r${text}${done >= total ? '\n' : ''}`);
      return;
    }
    const tenth = Math.floor(fraction * 10);
    if (tenth === lastTenth) return;
    lastTenth = tenth;
    write(`${text}\n`);
  };
}

function bar(fraction: number, width = 30): string {
  const full = Math.round(fraction * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}
