/**
 * The server process: `node dist/src/main.js [--data-dir DIR]` (what `make run` starts). Loads
 * <data dir>/kms.yaml and serves the API: in this process (workers: 1), or from `workers` worker
 * processes under this one as their supervisor (node:cluster; workers/supervisor.ts).
 */
import cluster from 'node:cluster';
import { LineLog } from './api/request-log';
import { dataDirOf } from './common/data-dir';
import { loadServerConfig } from './config';
import { startServer } from './server';
import { supervise } from './workers/supervisor';
import { runWorker } from './workers/worker';

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const dataDir = dataDirOf(argValue('--data-dir'));
  const config = loadServerConfig(dataDir);
  if (cluster.isWorker) {
    await runWorker(config, Number(process.env.KMS_WORKER_INDEX ?? 0));
    return;
  }
  const lines = new LineLog();
  const server = config.workers > 1 ? await supervise(config, lines.line) : await startServer(config, lines.line);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      lines.line({ level: 'info', msg: `${signal}: draining requests and shutting down` });
      const exit = (code: number) => () => (lines.flush(), process.exit(code));
      server.close().then(exit(0), exit(1));
    });
  }
}

if (require.main === module) {
  main().catch((e: Error) => {
    process.stderr.write(`kms: ${e.message}\n`);
    process.exit(1);
  });
}
