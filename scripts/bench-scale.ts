/**
 * npm run bench:scale — what 100,000 CMKs cost. One development installation (SQLite, SoftHSM2, two
 * members in the shared pool), measured twice in the same run: with 10 keys, then after creating
 * 100,000 (progress bar). Each time: server start-up (spawn → listening) and resident memory,
 * Encrypt at 32 connections with the key chosen at random per request (TC3-signed, policy, audit,
 * as in production), ListKeyDetail latency at offset 0 and deep in the list. Prints a table; the
 * figures go to docs/bench-results/scale.json, and docs/benchmarks.md + the chart are rebuilt.
 * BENCH_KEYS (default 100000), BENCH_SECONDS (default 10) and BENCH_CONNECTIONS (default 32) change the size;
 * BENCH_KEEP=1 keeps the data directory (its path is printed).
 *
 * Then LookUpEvents over BENCH_AUDIT_EVENTS (default 1,000,000) stored audit events on SQLite:
 * appended in bulk through the installation's audit log (group commits, links MACed in SoftHSM2),
 * then looked up in process through the CloudAudit wire mapping (`lookUpEventsAction`, no HTTP):
 * an EventName filter on the first page and on a page deep in the range, p50/p99 of LOOKUP_CALLS
 * calls each, to docs/bench-results/lookup.json. BENCH_PART=lookup runs only this part.
 */
import { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lookUpEventsAction } from '../src/api/cloudaudit-wire';
import { initDev } from '../src/cli/dev-init';
import { DEV_CREDENTIALS } from '../src/common/data-dir';
import { loadServerConfig } from '../src/config';
import { openServices } from '../src/services';
import { writeReport } from './bench-report';
import {
  BENCH_RATE_LIMIT,
  call,
  Creds,
  drive,
  machineLine,
  patchConfig,
  ROOT,
  Row,
  freshlySigned,
  rssMiB,
  SignedRequest,
  startKms,
  stop,
} from './bench-server';

const KEYS = Number(process.env.BENCH_KEYS ?? 100_000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const LIST_CALLS = 200;
const LIST_LIMIT = 100;
const CREATE_CONCURRENCY = 8;
const AUDIT_EVENTS = Number(process.env.BENCH_AUDIT_EVENTS ?? 1_000_000);
const LOOKUP_CALLS = 200;
/** Appended between flushes (the log buffers at most 100,000 events). */
const AUDIT_CHUNK = 50_000;

export interface ScalePhase {
  keys: number;
  startupMs: number;
  rssStartMiB: number;
  rssAfterLoadMiB: number;
  encrypt: Row;
  listFirst: { offset: number; p50: number; p99: number };
  listDeep: { offset: number; p50: number; p99: number };
}

const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const round = (x: number): number => Math.round(x * 100) / 100;

function progressBar(done: number, total: number, t0: number, what = 'creating keys'): void {
  // on a terminal the bar is redrawn in place; in a log, one line per tenth
  if (!process.stderr.isTTY && done !== total && Math.floor((done * 10) / total) === Math.floor(((done - 500) * 10) / total)) return;
  const width = 40;
  const filled = Math.round((done / total) * width);
  const rate = done / ((Date.now() - t0) / 1000 || 1);
  const eta = rate > 0 ? Math.round((total - done) / rate) : 0;
  process.stderr.write(
    `${process.stderr.isTTY ? '\r' : ''}  ${what} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${rate.toFixed(0)}/s eta ${eta}s   ${process.stderr.isTTY ? '' : '\n'}`,
  );
  if (done === total && process.stderr.isTTY) process.stderr.write('\n');
}

/** Creates `n` keys through the KMS core on the data directory (the server is stopped meanwhile). */
async function createKeys(dir: string, creds: Creds, n: number, offset: number): Promise<{ keyIds: string[]; perSecond: number }> {
  const services = await openServices(loadServerConfig(dir, {}), { log: () => undefined, jobs: false });
  const caller = { tenant: String(creds.Uin), uin: String(creds.Uin), region: 'ap-guangzhou' };
  const keyIds: string[] = [];
  const t0 = Date.now();
  let next = 0;
  try {
    const worker = async (): Promise<void> => {
      while (next < n) {
        const i = next++;
        keyIds.push((await services.kms.lifecycle.createKey(caller, { alias: `scale-${offset + i}` })).keyId);
        if (keyIds.length % 500 === 0 || keyIds.length === n) progressBar(keyIds.length, n, t0);
      }
    };
    await Promise.all(Array.from({ length: CREATE_CONCURRENCY }, worker));
  } finally {
    await services.close();
  }
  return { keyIds, perSecond: n / ((Date.now() - t0) / 1000) };
}

async function listLatency(port: number, creds: Creds, offset: number): Promise<{ offset: number; p50: number; p99: number }> {
  const ms: number[] = [];
  for (let i = 0; i < LIST_CALLS; i++) {
    const t0 = process.hrtime.bigint();
    const r = (await call(port, creds, 'ListKeyDetail', { Offset: offset, Limit: LIST_LIMIT })) as { KeyMetadatas: unknown[] };
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (i === 0 && offset === 0 && r.KeyMetadatas.length === 0) throw new Error('ListKeyDetail returned no keys');
  }
  return { offset, p50: round(percentile(ms, 50)), p99: round(percentile(ms, 99)) };
}

/** Starts the server on `dir`, measures everything with `keyIds` in use, stops it. */
async function measure(dir: string, creds: Creds, keyIds: string[], total: number): Promise<ScalePhase> {
  const kms = await startKms(dir);
  const children: ChildProcess[] = [kms.child];
  try {
    const rssStartMiB = round(rssMiB(kms.child.pid!));
    const plaintext = Buffer.alloc(32, 7).toString('base64');
    // one signer per key, each request signed afresh (a signature serves once: docs/security.md §1)
    const signers: Array<() => SignedRequest> = keyIds.map((KeyId) => freshlySigned(kms.port, creds, 'Encrypt', { KeyId, Plaintext: plaintext }));
    const pick = () => signers[Math.floor(Math.random() * signers.length)]();
    await drive('warm-up', kms.port, pick, Math.max(3, SECONDS / 2), CONNECTIONS);
    const encrypt = await drive(`Encrypt, ${keyIds.length} keys at random`, kms.port, pick, SECONDS, CONNECTIONS);
    const listFirst = await listLatency(kms.port, creds, 0);
    const listDeep = await listLatency(kms.port, creds, Math.max(0, total - LIST_LIMIT));
    return { keys: total, startupMs: round(kms.ms), rssStartMiB, rssAfterLoadMiB: round(rssMiB(kms.child.pid!)), encrypt, listFirst, listDeep };
  } finally {
    await Promise.all(children.map(stop));
  }
}

/** The event mix: mostly data-plane calls, a few key changes, in one tenant (90%) and another. */
const MIX: Array<[string, number]> = [
  ['Encrypt', 40],
  ['Decrypt', 30],
  ['GenerateDataKey', 12],
  ['DescribeKey', 8],
  ['ListKeys', 5],
  ['CreateKey', 3],
  ['UpdateAlias', 1.9],
  ['ScheduleKeyDeletion', 0.1],
];
const eventNameOf = (i: number): string => {
  let x = (i * 7919) % 1000;
  for (const [name, share] of MIX) {
    x -= share * 10;
    if (x < 0) return name;
  }
  return 'Encrypt';
};

interface LookupFigure {
  name: string;
  p50: number;
  p99: number;
  events: number;
}

async function fillAudit(dir: string, tenant: string, t0: number, spacingMs: number): Promise<{ perSecond: number; bytes: number }> {
  const services = await openServices(loadServerConfig(dir, {}), { log: () => undefined, jobs: false });
  const started = Date.now();
  try {
    for (let i = 0; i < AUDIT_EVENTS; i++) {
      const own = i % 10 !== 9;
      services.audit.append({
        time: t0 + i * spacingMs,
        eventName: eventNameOf(i),
        accountUin: own ? tenant : '200000000001',
        subAccountUin: own ? tenant : '200000000001',
        secretId: `AKIDbench${i % 4}`,
        sourceIp: `10.0.${i % 250}.${i % 200}`,
        region: 'ap-guangzhou',
        requestId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
        resource: `7c1e2a54-0000-4000-8000-${String(i % 5000).padStart(12, '0')}`,
        errorCode: i % 50 === 0 ? 'ResourceUnavailable.CmkDisabled' : '',
      });
      if ((i + 1) % AUDIT_CHUNK === 0 || i + 1 === AUDIT_EVENTS) {
        await services.audit.flush();
        progressBar(i + 1, AUDIT_EVENTS, started, 'appending audit events');
      }
    }
  } finally {
    await services.close();
  }
  const db = join(dir, 'kms.db');
  const bytes = ['', '-wal'].reduce((n, ext) => n + (existsSync(db + ext) ? statSync(db + ext).size : 0), 0);
  return { perSecond: AUDIT_EVENTS / ((Date.now() - started) / 1000), bytes };
}

async function lookupLatency(
  audit: Parameters<typeof lookUpEventsAction>[0],
  tenant: string,
  name: string,
  body: Record<string, unknown>,
): Promise<LookupFigure> {
  const ms: number[] = [];
  let events = 0;
  for (let i = 0; i < LOOKUP_CALLS; i++) {
    const t = process.hrtime.bigint();
    const r = await lookUpEventsAction(audit, { tenant }, body);
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
    events = r.Events.length;
  }
  if (events === 0) throw new Error(`${name}: LookUpEvents returned no events`);
  return { name, p50: round(percentile(ms, 50)), p99: round(percentile(ms, 99)), events };
}

/** LookUpEvents over AUDIT_EVENTS stored events (EventName filter; first page, a page deep in the range, a NextToken page). */
async function lookupBench(dir: string, tenant: string): Promise<void> {
  const t0 = Date.UTC(2026, 0, 1);
  const spacingMs = Math.max(1, Math.floor((30 * 86_400_000) / AUDIT_EVENTS));
  console.log(`LookUpEvents: appending ${AUDIT_EVENTS} audit events through the audit log (group commits, links MACed in SoftHSM2)`);
  const fill = await fillAudit(dir, tenant, t0, spacingMs);
  console.log(`appended at ${fill.perSecond.toFixed(0)} events/s; database ${(fill.bytes / 2 ** 20).toFixed(0)} MiB`);
  const services = await openServices(loadServerConfig(dir, {}), { log: () => undefined, jobs: false });
  try {
    const sec = (ms: number): number => Math.floor(ms / 1000);
    const all = { StartTime: sec(t0), EndTime: sec(t0 + AUDIT_EVENTS * spacingMs) };
    const deep = { StartTime: sec(t0), EndTime: sec(t0 + Math.floor(AUDIT_EVENTS * 0.05) * spacingMs) };
    const named = (value: string) => ({ LookupAttributes: [{ AttributeKey: 'EventName', AttributeValue: value }], MaxResults: 50 });
    const second = await lookUpEventsAction(services.audit, { tenant }, { ...deep, ...named('Decrypt') });
    const figures = [
      await lookupLatency(services.audit, tenant, 'EventName=Decrypt (30%), first page (newest 50)', { ...all, ...named('Decrypt') }),
      await lookupLatency(services.audit, tenant, 'EventName=Decrypt, a page deep in the range (EndTime at 5%)', { ...deep, ...named('Decrypt') }),
      await lookupLatency(services.audit, tenant, 'EventName=Decrypt, the next page by NextToken (deep)', {
        ...deep,
        ...named('Decrypt'),
        NextToken: second.NextToken,
      }),
      await lookupLatency(services.audit, tenant, 'EventName=ScheduleKeyDeletion (0.1%), first page', { ...all, ...named('ScheduleKeyDeletion') }),
      await lookupLatency(services.audit, tenant, 'EventName=ScheduleKeyDeletion, a page deep in the range', { ...deep, ...named('ScheduleKeyDeletion') }),
      await lookupLatency(services.audit, tenant, 'no attribute, first page', { ...all, MaxResults: 50 }),
      await lookupLatency(services.audit, tenant, 'ReadOnly=false (checked on the events), first page', {
        ...all,
        MaxResults: 50,
        LookupAttributes: [{ AttributeKey: 'ReadOnly', AttributeValue: 'false' }],
      }),
    ];
    console.log(`| LookUpEvents over ${AUDIT_EVENTS} events, MaxResults 50, in process | p50 ms | p99 ms | events |`);
    console.log('|---|---:|---:|---:|');
    for (const f of figures) console.log(`| ${f.name} | ${f.p50} | ${f.p99} | ${f.events} |`);
    mkdirSync(join(ROOT, 'docs', 'bench-results'), { recursive: true });
    const result = {
      date: new Date().toISOString(),
      machine: machineLine(),
      events: AUDIT_EVENTS,
      appendPerSecond: round(fill.perSecond),
      dbBytes: fill.bytes,
      calls: LOOKUP_CALLS,
      figures,
    };
    writeFileSync(join(ROOT, 'docs', 'bench-results', 'lookup.json'), JSON.stringify(result, null, 2) + '\n');
  } finally {
    await services.close();
  }
}

function table(phases: ScalePhase[]): string[] {
  const [a, b] = phases;
  const row = (name: string, f: (p: ScalePhase) => number | string, ratio = true): string => {
    const x = f(a);
    const y = f(b);
    const r = ratio && typeof x === 'number' && typeof y === 'number' && x > 0 ? (y / x).toFixed(2) : '';
    return `| ${name} | ${x} | ${y} | ${r} |`;
  };
  return [
    `| measure | ${a.keys} keys | ${b.keys} keys | ratio |`,
    '|---|---:|---:|---:|',
    row('Encrypt req/s (key at random, 32 connections)', (p) => Math.round(p.encrypt.rps)),
    row('Encrypt p50 ms', (p) => p.encrypt.p50),
    row('Encrypt p99 ms', (p) => p.encrypt.p99),
    row('Encrypt errors', (p) => p.encrypt.errors, false),
    row(`ListKeyDetail p50 ms, offset 0, Limit ${LIST_LIMIT}`, (p) => p.listFirst.p50),
    row(`ListKeyDetail p99 ms, offset 0, Limit ${LIST_LIMIT}`, (p) => p.listFirst.p99),
    row(`ListKeyDetail p50 ms, deepest page (offset ${b.listDeep.offset} at ${b.keys})`, (p) => p.listDeep.p50),
    row(`ListKeyDetail p99 ms, deepest page`, (p) => p.listDeep.p99),
    row('start-up ms (spawn → listening)', (p) => p.startupMs),
    row('resident memory MiB after start-up', (p) => p.rssStartMiB),
    row('resident memory MiB after the Encrypt load', (p) => p.rssAfterLoadMiB),
  ];
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kms-bench-scale-'));
  try {
    await initDev(dir, () => undefined);
    patchConfig(dir, { maxKeysPerRegion: 0, rateLimit: BENCH_RATE_LIMIT });
    const creds = JSON.parse(readFileSync(join(dir, DEV_CREDENTIALS), 'utf8')) as Creds;
    if (process.env.BENCH_PART === 'lookup') return await lookupBench(dir, String(creds.Uin));
    const few = await createKeys(dir, creds, 10, 0);
    console.log(`phase 1: ${few.keyIds.length} keys`);
    const small = await measure(dir, creds, few.keyIds, few.keyIds.length);
    console.log(
      `phase 2: creating ${KEYS - few.keyIds.length} more keys through the KMS core (${CREATE_CONCURRENCY} at a time; HSM generate + wrap + MAC, one SQLite write each)`,
    );
    const many = await createKeys(dir, creds, KEYS - few.keyIds.length, few.keyIds.length);
    console.log(`created at ${many.perSecond.toFixed(0)} keys/s`);
    const all = [...few.keyIds, ...many.keyIds];
    const large = await measure(dir, creds, all, all.length);

    const machine = machineLine();
    const lines = table([small, large]);
    console.log(`machine: ${machine}; ${CONNECTIONS} connections, ${SECONDS} s per Encrypt run, ${LIST_CALLS} ListKeyDetail calls per figure`);
    for (const l of lines) console.log(l);
    mkdirSync(join(ROOT, 'docs', 'bench-results'), { recursive: true });
    const result = {
      date: new Date().toISOString(),
      machine,
      connections: CONNECTIONS,
      seconds: SECONDS,
      createPerSecond: round(many.perSecond),
      phases: [small, large],
    };
    writeFileSync(join(ROOT, 'docs', 'bench-results', 'scale.json'), JSON.stringify(result, null, 2) + '\n');
    writeReport();
    console.log(`encrypt-${KEYS}-keys/encrypt-10-keys ratio: ${(large.encrypt.rps / small.encrypt.rps).toFixed(2)}`);
    await lookupBench(dir, String(creds.Uin));
  } finally {
    if (process.env.BENCH_KEEP) console.log(`data directory kept: ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((e: Error) => {
    console.error(e.stack ?? e.message);
    process.exit(1);
  });
}
