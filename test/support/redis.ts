/**
 * Starts a private redis-server on a free port in a temporary directory; stop() kills it and removes
 * the directory. Optionally with `requirepass` (AUTH) and TLS only (`--port 0 --tls-port`, a CA and
 * server certificate made here with openssl for 127.0.0.1/localhost; `tls.ca` is the CA's PEM file).
 */
import { ChildProcess, execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import * as tls from 'tls';

export interface RedisServer {
  port: number;
  password?: string;
  tls?: { ca: string };
  stop(): Promise<void>;
}

export interface RedisServerOptions {
  persistent: boolean;
  /** Sets requirepass: clients must AUTH. */
  password?: string;
  /** Serves TLS only (no plain port). */
  tls?: boolean;
}

/** A CA and a server certificate (127.0.0.1, localhost) signed by it, in `dir`. */
function makeCertificates(dir: string): { ca: string; cert: string; key: string } {
  const f = (name: string) => path.join(dir, name);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=kms-test-ca', '-keyout', f('ca.key'), '-out', f('ca.pem'));
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', f('server.key'), '-out', f('server.csr'));
  fs.writeFileSync(f('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ssl(
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    f('san.ext'),
    '-out',
    f('server.pem'),
  );
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') };
}

const REDIS_SERVER = fs.existsSync('/usr/bin/redis-server') ? '/usr/bin/redis-server' : 'redis-server';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function ping(port: number, password?: string, ca?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock: net.Socket = ca ? tls.connect({ port, host: '127.0.0.1', ca: fs.readFileSync(ca) }) : net.connect(port, '127.0.0.1');
    let seen = '';
    sock.once(ca ? 'secureConnect' : 'connect', () => sock.write(`${password ? `AUTH ${password}\r\n` : ''}PING\r\n`));
    sock.on('data', (d) => {
      seen += d.toString();
      if (seen.includes('+PONG') || seen.includes('-')) {
        sock.destroy();
        resolve(seen.includes('+PONG'));
      }
    });
    sock.once('error', () => {
      sock.destroy();
      resolve(false);
    });
  });
}

export async function startRedis(opts: RedisServerOptions): Promise<RedisServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kms-redis-'));
  const port = await freePort();
  const certs = opts.tls ? makeCertificates(dir) : undefined;
  const listen = certs
    ? [
        '--port',
        '0',
        '--tls-port',
        String(port),
        '--tls-cert-file',
        certs.cert,
        '--tls-key-file',
        certs.key,
        '--tls-ca-cert-file',
        certs.ca,
        '--tls-auth-clients',
        'no',
      ]
    : ['--port', String(port)];
  const args = [
    ...listen,
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--daemonize',
    'no',
    '--save',
    opts.persistent ? '3600 1' : '',
    '--appendonly',
    opts.persistent ? 'yes' : 'no',
    '--logfile',
    path.join(dir, 'redis.log'),
    ...(opts.password ? ['--requirepass', opts.password] : []),
  ];
  const child: ChildProcess = spawn(REDIS_SERVER, args, { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 10_000;
  while (!(await ping(port, opts.password, certs?.ca))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      const log = fs.existsSync(path.join(dir, 'redis.log')) ? fs.readFileSync(path.join(dir, 'redis.log'), 'utf8') : '';
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`redis-server did not start on port ${port}: ${log.slice(-500)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    ...(opts.password ? { password: opts.password } : {}),
    ...(certs ? { tls: { ca: certs.ca } } : {}),
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          exited,
          new Promise((r) => {
            timer = setTimeout(r, 5000);
          }),
        ]);
        clearTimeout(timer);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
