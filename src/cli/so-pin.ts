/**
 * Where kmsctl gets a token's Security Officer PIN for the ceremony: `--so-pin-file PATH` (a file
 * holding the PIN, or a directory of `<token label>.so-pin` files, like dev-so-pins/), else a
 * prompt on the terminal without echo. The PIN is used for one C_Login(CKU_SO) and never stored.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { SoPinProvider, SoPinRequest } from '../hsm/cluster';
import { SoPinError } from '../hsm/errors';
import { UsageError } from './args';

function readPinFile(file: string): string {
  if (!existsSync(file)) throw new SoPinError(`SO PIN file ${file} does not exist`);
  if ((statSync(file).mode & 0o077) !== 0) throw new SoPinError(`SO PIN file ${file} must not be readable by group or others (chmod 600)`);
  const pin = readFileSync(file, 'utf8').trim();
  if (!pin) throw new SoPinError(`SO PIN file ${file} is empty`);
  return pin;
}

/** A file holds one PIN for every token asked about; a directory holds `<token label>.so-pin` per token. */
export function soPinsFromPath(path: string): SoPinProvider {
  return async (request: SoPinRequest) =>
    existsSync(path) && statSync(path).isDirectory() ? readPinFile(join(path, `${request.token}.so-pin`)) : readPinFile(path);
}

function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(question);
  return new Promise((resolve, reject) => {
    let pin = '';
    const finish = (error?: Error): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (error) reject(error);
      else resolve(pin);
    };
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003' || ch === '\u0004') return finish(new UsageError('SO PIN entry cancelled'));
        pin = ch === '\u007f' || ch === '\b' ? pin.slice(0, -1) : pin + ch;
      }
    };
    stdin.setRawMode(true);
    stdin.setEncoding('utf8');
    stdin.on('data', onData);
    stdin.resume();
  });
}

/** Asks on the terminal (no echo); without one, a clear error naming --so-pin-file. */
export const soPinPrompt: SoPinProvider = async (request) => {
  if (!process.stdin.isTTY) {
    throw new UsageError(
      `the Security Officer PIN of token "${request.token}" (member ${request.member}) is needed for the ceremony: run kmsctl on a terminal, or pass --so-pin-file PATH`,
    );
  }
  const pin = await promptHidden(`SO PIN of token "${request.token}" (member ${request.member}), used once for this ceremony and not kept: `);
  if (!pin) throw new SoPinError(`no SO PIN given for token "${request.token}"`);
  return pin;
};

export function soPinSource(path: string | undefined): SoPinProvider {
  return path === undefined ? soPinPrompt : soPinsFromPath(path);
}
