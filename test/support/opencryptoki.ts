import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..', '..');
export const OCK_SCRIPT = join(ROOT, 'softhsm', 'opencryptoki-token.sh');
const SCRIPT = OCK_SCRIPT;
/** openCryptoki 3.8 has one swtok per machine: test files (jest workers, other checkouts) take turns. */
const LOCK = join(tmpdir(), 'kms-opencryptoki-swtok.lock');
export const OCK_LABEL = 'kms-ock';
export const OCK_LOCK_WAIT_MS = 240_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function tryLock(): number | undefined {
  try {
    mkdirSync(LOCK);
    writeFileSync(join(LOCK, 'pid'), String(process.pid));
    return undefined;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    const holder = Number(readFileSync(join(LOCK, 'pid'), { encoding: 'utf8', flag: 'a+' }) || 0);
    if (holder && !alive(holder)) {
      rmSync(LOCK, { recursive: true, force: true });
      return tryLock();
    }
    return holder;
  }
}

/** Waits for the machine's swtok (at most OCK_LOCK_WAIT_MS); returns the function that releases it. */
export async function lockSwtok(): Promise<() => void> {
  const end = Date.now() + OCK_LOCK_WAIT_MS;
  for (let holder = tryLock(); holder !== undefined; holder = tryLock()) {
    if (holder === process.pid) throw new Error(`openCryptoki's swtok is locked by this very process: an earlier test did not release it (lock ${LOCK})`);
    if (Date.now() > end) throw new Error(`openCryptoki's swtok has been in use by process ${holder} for over ${OCK_LOCK_WAIT_MS / 1000} s (lock ${LOCK})`);
    await sleep(200);
  }
  return () => rmSync(LOCK, { recursive: true, force: true });
}

/** The machine's openCryptoki software token, freshly initialised for one lab; `release()` wipes it and stops pkcsslotd. */
export class OpenCryptokiToken {
  private constructor(
    readonly library: string,
    readonly pin: string,
    /** The token's SO PIN (kept for tests, as KMS_KEEP_SO_PINS keeps it). */
    readonly soPin: string,
    private readonly unlock: () => void,
  ) {}

  static async acquire(dir: string): Promise<OpenCryptokiToken> {
    const unlock = await lockSwtok();
    try {
      const env = { ...process.env, KMS_KEEP_SO_PINS: join(dir, 'so-pins') };
      const library = execFileSync(SCRIPT, ['start', dir, OCK_LABEL], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env }).trim();
      const read = (file: string) => readFileSync(join(dir, file), 'utf8');
      return new OpenCryptokiToken(library, read(join('pins', `${OCK_LABEL}.pin`)), read(join('so-pins', `${OCK_LABEL}.so-pin`)), unlock);
    } catch (e) {
      unlock();
      const stderr = (e as { stderr?: string }).stderr?.trim();
      throw new Error(`openCryptoki test token could not be set up: ${stderr || (e as Error).message}`);
    }
  }

  /** Stops pkcsslotd (the token's sessions die with it, as when an HSM is unplugged). */
  stopDaemon(): void {
    execFileSync(SCRIPT, ['daemon-stop'], { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  /** Starts pkcsslotd again on the same token. */
  startDaemon(): void {
    execFileSync(SCRIPT, ['daemon-start'], { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  release(): void {
    try {
      execFileSync(SCRIPT, ['stop'], { stdio: ['ignore', 'ignore', 'pipe'] });
    } finally {
      this.unlock();
    }
  }
}
