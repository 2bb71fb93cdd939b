import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '../../src/cli/args';
import { soPinPrompt, soPinsFromPath } from '../../src/cli/so-pin';
import { SoPinError } from '../../src/hsm/errors';

describe('where kmsctl gets an SO PIN', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kms-so-pin-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const request = { member: 'shared-a', token: 'shared-a' };

  test('--so-pin-file FILE: its content, for every token', async () => {
    writeFileSync(join(dir, 'one'), 'so-secret\n', { mode: 0o600 });
    expect(await soPinsFromPath(join(dir, 'one'))(request)).toBe('so-secret');
    expect(await soPinsFromPath(join(dir, 'one'))({ member: 'x', token: 'other' })).toBe('so-secret');
  });

  test('--so-pin-file DIR: <token>.so-pin inside (the dev-so-pins layout)', async () => {
    mkdirSync(join(dir, 'pins'));
    writeFileSync(join(dir, 'pins', 'shared-a.so-pin'), 'pin-a', { mode: 0o600 });
    expect(await soPinsFromPath(join(dir, 'pins'))(request)).toBe('pin-a');
    await expect(soPinsFromPath(join(dir, 'pins'))({ member: 'b', token: 'shared-b' })).rejects.toThrow(/shared-b\.so-pin does not exist/);
  });

  test('a file readable by others, an empty one, or none: typed errors that name the file, never a PIN', async () => {
    writeFileSync(join(dir, 'open'), 'visible-pin', { mode: 0o644 });
    chmodSync(join(dir, 'open'), 0o644);
    const e = await soPinsFromPath(join(dir, 'open'))(request).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SoPinError);
    expect((e as Error).message).toMatch(/must not be readable by group or others/);
    expect((e as Error).message).not.toContain('visible-pin');
    writeFileSync(join(dir, 'empty'), '', { mode: 0o600 });
    await expect(soPinsFromPath(join(dir, 'empty'))(request)).rejects.toThrow(/is empty/);
    await expect(soPinsFromPath(join(dir, 'absent'))(request)).rejects.toBeInstanceOf(SoPinError);
  });

  test('no terminal and no --so-pin-file: a usage error naming the token and the option', async () => {
    const tty = process.stdin.isTTY;
    Object.defineProperty(process.stdin, 'isTTY', { value: false, configurable: true });
    try {
      const e = await soPinPrompt(request).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(UsageError);
      expect((e as Error).message).toMatch(/Security Officer PIN of token "shared-a".*--so-pin-file PATH/);
    } finally {
      Object.defineProperty(process.stdin, 'isTTY', { value: tty, configurable: true });
    }
  });
});
