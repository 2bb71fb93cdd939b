/** Shared pieces of the benchmark scripts: a one-token SoftHSM2 cluster in a temp dir, timing loops, medians. */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { HsmCluster } from '../src/hsm/cluster';
import { HsmMember } from '../src/hsm/member';
import { HsmProfile, loadProfiles } from '../src/hsm/profile';

export const ROOT = join(__dirname, '..', '..');
export const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
export const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

export interface BenchToken {
  dir: string;
  lib: string;
  conf: string;
  pin: string;
  member(id: string, profile?: HsmProfile): HsmMember;
  cleanup(): void;
}

/** A SoftHSM2 token labelled "bench" in its own temp dir, with a private copy of the library. */
export function benchToken(): BenchToken {
  const dir = mkdtempSync(join(tmpdir(), 'kms-bench-'));
  const conf = execFileSync(join(ROOT, 'softhsm', 'make-tokens.sh'), [join(dir, 't'), 'bench'], { encoding: 'utf8' }).trim();
  const lib = join(dir, 'libsofthsm2.so');
  copyFileSync('/usr/lib/softhsm/libsofthsm2.so', lib);
  const pin = readFileSync(join(dir, 't', 'pins', 'bench.pin'), 'utf8');
  const softhsm = loadProfiles(join(ROOT, 'hsm-profiles')).get('softhsm2')!;
  return {
    dir,
    lib,
    conf,
    pin,
    member: (id, profile = softhsm) => new HsmMember({ id, profile, module: { path: lib, env: { SOFTHSM2_CONF: conf } }, tokenLabel: 'bench', pin }),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A started one-member cluster with domain keys. */
export async function benchCluster(token: BenchToken, id = 'bench'): Promise<{ cluster: HsmCluster; member: HsmMember }> {
  const member = token.member(id);
  const cluster = new HsmCluster({ id, kind: 'shared', owners: [], members: [member] });
  cluster.start();
  await cluster.initDomain();
  return { cluster, member };
}

export function opsPerSecond(run: (deadline: bigint) => number): number {
  const start = process.hrtime.bigint();
  const n = run(start + BigInt(Math.round(SECONDS * 1e9)));
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

/** Sequential awaits of `op` for SECONDS, in batches of 100. */
export async function asyncOpsPerSecond(op: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(SECONDS * 1e9));
  let n = 0;
  while (process.hrtime.bigint() < deadline) {
    for (let i = 0; i < 100; i++) await op();
    n += 100;
  }
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

export const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

export function machine(): string {
  return `${cpus().length} cpu, node ${process.version}, SoftHSM2 (sync profile), ${ROUNDS} rounds x ${SECONDS}s, median`;
}
