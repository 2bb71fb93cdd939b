/**
 * Where retention puts what it removes: one export file per run in a directory, named by its seq
 * range, written to a temporary name, synced and renamed, so a file that exists is complete.
 */
import { mkdir, open, readdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { RetainedRange } from './audit-log';

const pad = (n: number): string => String(n).padStart(16, '0');

export function archiveFileName(range: Pick<RetainedRange, 'from' | 'to'>): string {
  return `audit-${pad(range.from)}-${pad(range.to)}.jsonl`;
}

export function directoryArchive(dir: string): (range: RetainedRange) => Promise<void> {
  return async (range) => {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, archiveFileName(range));
    const temporary = `${file}.partial`;
    const handle = await open(temporary, 'w', 0o600);
    try {
      await handle.writeFile(range.text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
  };
}

/** The texts of the archive files in `dir` (none when it does not exist), by name. */
export async function readArchives(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [];
    throw e;
  });
  const files = names.filter((n) => /^audit-\d{16}-\d{16}\.jsonl$/.test(n)).sort();
  return Promise.all(files.map((n) => readFile(join(dir, n), 'utf8')));
}
