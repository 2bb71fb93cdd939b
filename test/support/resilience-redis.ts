/**
 * A private redis-server for the resilience tests that can be killed with SIGKILL and started again
 * on the same port and directory: AOF on, fsync of every write (appendfsync always), so every write
 * Redis acknowledged survives the kill.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const REDIS_SERVER = existsSync('/usr/bin/redis-server') ? '/usr/bin/redis-server' : 'redis-server';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** True when something answers PING with PONG on the port (a Redis still loading its AOF answers -LOADING: false). */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    const done = (v: boolean) => {
      sock.destroy();
      resolve(v);
    };
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.once('data', (d) => done(d.toString().startsWith('+PONG')));
    sock.once('error', () => done(false));
    sock.setTimeout(2000, () => done(false));
  });
}

export class DurableRedis {
  readonly dir = mkdtempSync(join(tmpdir(), 'kms-resilience-redis-'));
  port = 0;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  /** Starts redis-server (a free port the first time, the same port and directory afterwards); resolves when it answers PING. */
  async start(): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) throw new Error('redis-server is running already');
    if (this.port === 0) this.port = await freePort();
    const args = [
      '--port',
      String(this.port),
      '--bind',
      '127.0.0.1',
      '--dir',
      this.dir,
      '--daemonize',
      'no',
      '--appendonly',
      'yes',
      '--appendfsync',
      'always',
      '--save',
      '',
      '--logfile',
      join(this.dir, 'redis.log'),
    ];
    // the port was just released by the killed server: a bind failure is retried until the deadline
    const deadline = Date.now() + 15_000;
    for (;;) {
      const child = spawn(REDIS_SERVER, args, { stdio: 'ignore' });
      this.child = child;
      this.exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      while (!(await ping(this.port))) {
        if (child.exitCode !== null || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      if (child.exitCode === null && (await ping(this.port))) return;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`redis-server did not start on port ${this.port}: ${this.log().slice(-500)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** kill -9: no shutdown, no final save; resolves once the process is gone. */
  async kill9(): Promise<void> {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  log(): string {
    const file = join(this.dir, 'redis.log');
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  /** Stops the server (SIGKILL: its data is thrown away with the directory). */
  async stop(): Promise<void> {
    await this.kill9();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
