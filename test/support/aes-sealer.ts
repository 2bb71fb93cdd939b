/**
 * TEST DOUBLE for the server's SecretSealer, which seals with a key held in the HSMs: here AES-256-GCM
 * under a random key in process memory, so identity tests need no tokens. It counts its calls so
 * tests can see what the IamService caches.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'crypto';
import type { SecretSealer } from '../../src/iam/iam-service';

export class AesGcmTestSealer implements SecretSealer {
  private readonly key = randomBytes(32);
  seals = 0;
  opens = 0;

  async seal(plain: Buffer): Promise<Buffer> {
    this.seals++;
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]);
  }

  async open(sealed: Buffer): Promise<Buffer> {
    this.opens++;
    const decipher = createDecipheriv('aes-256-gcm', this.key, sealed.subarray(0, 12));
    decipher.setAuthTag(sealed.subarray(12, 28));
    return Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]);
  }
}
