/**
 * TLS (docs/security.md §9 "TLS"), with a certificate made by openssl: the key file is refused at
 * start-up when group or others may read it (as PIN files are); TLS 1.2 with ECDHE and an AEAD
 * cipher, and TLS 1.3, are served; RSA key exchange, CBC ciphers and TLS 1.1 are not; a handshake
 * gets as long as headers do.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { connect, ConnectionOptions } from 'node:tls';
import { join } from 'node:path';
import { loadServerConfig, ServerConfigError } from '../../src/config';
import { startServer } from '../../src/server';
import { editConfig } from '../support/resilience-lab';
import { rejection } from '../support/rejection';
import { ServerLab } from '../support/server';
import { initDev } from '../../src/cli/dev-init';

/** The protocol and cipher a handshake with `options` settled on, or the error it failed with. */
function handshake(port: number, options: ConnectionOptions): Promise<{ protocol?: string | null; cipher?: string; error?: string }> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options }, () => {
      const out = { protocol: s.getProtocol(), cipher: s.getCipher().name };
      s.destroy();
      resolve(out);
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
  });
}

describe('TLS', () => {
  const lab = new ServerLab();
  const key = (): string => join(lab.dir, 'tls', 'key.pem');

  beforeAll(async () => {
    await initDev(lab.dir, () => undefined);
    const tls = join(lab.dir, 'tls');
    execFileSync('mkdir', ['-m', '700', '-p', tls]);
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-days',
        '2',
        '-keyout',
        key(),
        '-out',
        join(tls, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    editConfig(lab.dir, (doc) => {
      doc.tls = { cert: 'tls/cert.pem', key: 'tls/key.pem' };
      doc.connections = { headersTimeoutMs: 1_000 };
    });
  }, 60_000);
  afterAll(() => lab.stop());

  test('a key file readable by group or others is refused at start-up, naming the file', async () => {
    for (const mode of [0o640, 0o604]) {
      chmodSync(key(), mode);
      const e = await rejection(startServer(loadServerConfig(lab.dir, { KMS_PORT: '0' }), () => undefined));
      expect(e).toBeInstanceOf(ServerConfigError);
      expect(e.message).toBe(`TLS key file ${key()} must not be readable by group or others (chmod 600)`);
    }
  });

  describe('with the key file 0600', () => {
    beforeAll(async () => {
      chmodSync(key(), 0o600);
      lab.server = await startServer(loadServerConfig(lab.dir, { KMS_PORT: '0' }), () => undefined);
    }, 60_000);

    test('TLS 1.3 by default; TLS 1.2 with ECDHE and AES-GCM or ChaCha20-Poly1305', async () => {
      expect(await handshake(lab.server.port, {})).toMatchObject({ protocol: 'TLSv1.3' });
      for (const cipher of ['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305']) {
        expect(await handshake(lab.server.port, { maxVersion: 'TLSv1.2', ciphers: cipher })).toEqual({ protocol: 'TLSv1.2', cipher });
      }
    });

    test.each([
      ['RSA key exchange (no forward secrecy), AEAD', 'AES128-GCM-SHA256'],
      ['RSA key exchange, CBC', 'AES256-SHA256'],
      ['ECDHE, CBC with HMAC-SHA256', 'ECDHE-RSA-AES128-SHA256'],
      ['ECDHE, CBC with HMAC-SHA1', 'ECDHE-RSA-AES256-SHA'],
      ['finite-field DHE, AEAD', 'DHE-RSA-AES128-GCM-SHA256'],
    ])('TLS 1.2 offering only %s (%s) is refused', async (_what, cipher) => {
      expect(await handshake(lab.server.port, { maxVersion: 'TLSv1.2', ciphers: cipher })).toHaveProperty('error');
    });

    test('headersTimeoutMs 1000: a connection that never starts its handshake is closed', async () => {
      const s = netConnect({ host: '127.0.0.1', port: lab.server.port });
      await new Promise<void>((resolve) => s.once('connect', () => resolve()));
      const closed = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 6_000);
        s.once('close', () => (clearTimeout(timer), resolve(true)));
        s.on('error', () => undefined);
        s.resume();
      });
      s.destroy();
      expect(closed).toBe(true);
    });

    test('TLS 1.1 is refused', async () => {
      expect(await handshake(lab.server.port, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' })).toHaveProperty('error');
    });
  });
});
