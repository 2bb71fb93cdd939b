/**
 * Load generator for the dedicated-isolation test, in a process of its own so that the load's
 * client-side work (SDK signing, sockets) does not slow the client that measures. Spec in the
 * environment (KMS_LOAD_SPEC, JSON: port, SecretId, SecretKey, concurrency, keys); Encrypts on the
 * keys with the official SDK, `concurrency` at a time, until a line arrives on stdin; then prints
 * one JSON line {"ms": [latencies], "failed": n} and exits.
 */
import { createInterface } from 'node:readline';
import { b64, sdk } from './resilience-lab';

export interface LoadSpec {
  port: number;
  SecretId: string;
  SecretKey: string;
  concurrency: number;
  keys: string[];
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.env.KMS_LOAD_SPEC ?? '') as LoadSpec;
  const client = sdk(spec.port, spec);
  const ms: number[] = [];
  let failed = 0;
  let stop = false;
  createInterface({ input: process.stdin }).once('line', () => (stop = true));
  const worker = async (w: number) => {
    for (let i = 0; !stop; i++) {
      const t = process.hrtime.bigint();
      try {
        await client.Encrypt({ KeyId: spec.keys[(w + i) % spec.keys.length], Plaintext: b64(`shared payload ${w} ${i}`.padEnd(32, '!').slice(0, 32)) });
        ms.push(Number(process.hrtime.bigint() - t) / 1e6);
      } catch {
        failed++;
      }
    }
  };
  process.stdout.write('started\n');
  await Promise.all(Array.from({ length: spec.concurrency }, (_, w) => worker(w)));
  process.stdout.write(JSON.stringify({ ms, failed }) + '\n', () => process.exit(0));
}

main().catch((e: Error) => {
  process.stderr.write(`load generator failed: ${e.message}\n`);
  process.exit(3);
});
