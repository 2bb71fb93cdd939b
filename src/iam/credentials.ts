/**
 * API key pairs: a SecretId (`AKID` + 32 letters and digits, public: it names the key) and a
 * SecretKey (32 letters and digits from the CSPRNG, about 190 bits: the signing secret).
 * The SecretKey is sealed together with the identity it belongs to, so a sealed secret moved onto
 * another key record, or a record re-pointed at another account, no longer opens.
 */
import { randomInt } from 'crypto';
import { IamIntegrityError } from './errors';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
export const SECRET_ID = /^AKID[A-Za-z0-9]{32}$/;
const SEAL_FORMAT = 'kms-iam-secret/1';

/** `n` characters drawn uniformly from [A-Za-z0-9] (randomInt rejects biased draws). */
function randomAlphanumeric(n: number): string {
  let out = '';
  for (let i = 0; i < n; i++) out += ALPHABET[randomInt(ALPHABET.length)];
  return out;
}

export function newSecretId(): string {
  return `AKID${randomAlphanumeric(32)}`;
}

export function newSecretKey(): string {
  return randomAlphanumeric(32);
}

export function isSecretId(s: string): boolean {
  return SECRET_ID.test(s);
}

/** Whom a SecretKey belongs to; sealed with it. */
export interface KeyBinding {
  secretId: string;
  ownerUin: string;
  tenantUin: string;
}

function header(b: KeyBinding): string {
  return `${SEAL_FORMAT}\n${b.secretId}\n${b.ownerUin}\n${b.tenantUin}\n`;
}

/** The plaintext to seal: the binding, then the SecretKey. The caller wipes it after sealing. */
export function bindSecret(binding: KeyBinding, secretKey: string): Buffer {
  return Buffer.from(header(binding) + secretKey, 'utf8');
}

/** The SecretKey out of an opened seal, after checking it belongs to `binding`. */
export function unbindSecret(binding: KeyBinding, opened: Buffer): Buffer {
  const expected = Buffer.from(header(binding), 'utf8');
  if (opened.length <= expected.length || !opened.subarray(0, expected.length).equals(expected)) {
    throw new IamIntegrityError(`the sealed secret of API key ${binding.secretId} belongs to another key or account`);
  }
  return Buffer.from(opened.subarray(expected.length));
}
