/**
 * npm run bench:report — rebuilds docs/benchmarks.md and the chart docs/benchmarks.png (drawn as
 * docs/benchmarks.svg, rasterised by rsvg-convert from Debian's librsvg2-bin) from the figures that
 * `npm run bench:api`, `npm run bench:scale`, `npm run bench:isolation` and `npm run bench:slow-queue`
 * wrote to docs/bench-results/. Run by bench:scale.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IsolationRow } from './bench-isolation';
import type { Row } from './bench-server';
import type { SlowQueueRow } from './bench-slow-queue';

const DOCS = join(__dirname, '..', '..', 'docs');

interface ApiResult {
  date: string;
  machine: string;
  connections: number;
  seconds: number;
  rows: Row[];
  ratio: number;
  workers?: number;
  ratioSingle?: number;
}
interface Latency {
  offset: number;
  p50: number;
  p99: number;
}
interface Phase {
  keys: number;
  startupMs: number;
  rssStartMiB: number;
  rssAfterLoadMiB: number;
  encrypt: Row;
  listFirst: Latency;
  listDeep: Latency;
}
interface IsolationResult {
  date: string;
  machine: string;
  seconds: number;
  load: number;
  concurrency: number;
  rows: IsolationRow[];
}
interface SlowQueueResult {
  date: string;
  machine: string;
  seconds: number;
  load: number;
  concurrency: number;
  rows: SlowQueueRow[];
}
interface ScaleResult {
  date: string;
  machine: string;
  connections: number;
  seconds: number;
  createPerSecond: number;
  phases: [Phase, Phase];
}

function load<T>(name: string): T | undefined {
  const file = join(DOCS, 'bench-results', `${name}.json`);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as T) : undefined;
}

const fmt = (n: number): string => n.toLocaleString('en-US', { maximumFractionDigits: 2 });
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

interface Bar {
  label: string;
  values: number[];
}

/** One panel of horizontal bars (one bar per value, series coloured), with a scale of `unit`. */
function panel(x0: number, y0: number, w: number, title: string, unit: string, series: string[], bars: Bar[]): { svg: string; height: number } {
  const colours = ['#2f6db5', '#e08a2c', '#5a9e4b'];
  const labelW = 340;
  const barH = 14;
  const groupH = series.length * barH + 10;
  const max = Math.max(...bars.flatMap((b) => b.values), 1);
  const scale = (w - labelW - 70) / max;
  const out: string[] = [`<text x="${x0}" y="${y0 + 14}" font-size="15" font-weight="bold">${esc(title)}</text>`];
  series.forEach((s, i) => {
    out.push(`<rect x="${x0 + labelW + i * 110}" y="${y0 + 24}" width="10" height="10" fill="${colours[i]}"/>`);
    out.push(`<text x="${x0 + labelW + i * 110 + 14}" y="${y0 + 33}" font-size="11">${esc(s)}</text>`);
  });
  let y = y0 + 46;
  for (const b of bars) {
    out.push(`<text x="${x0 + labelW - 8}" y="${y + (groupH - 10) / 2 + 4}" font-size="12" text-anchor="end">${esc(b.label)}</text>`);
    b.values.forEach((v, i) => {
      const bw = Math.max(1, v * scale);
      out.push(`<rect x="${x0 + labelW}" y="${y + i * barH}" width="${bw.toFixed(1)}" height="${barH - 2}" fill="${colours[i]}"/>`);
      out.push(`<text x="${x0 + labelW + bw + 4}" y="${y + i * barH + 10}" font-size="10">${esc(fmt(v))} ${unit}</text>`);
    });
    y += groupH;
  }
  return { svg: out.join('\n'), height: y - y0 };
}

function chart(api: ApiResult | undefined, scale: ScaleResult | undefined): string {
  const bars: Array<{ label: string; row: Row }> = [];
  for (const r of api?.rows ?? []) bars.push({ label: r.name.replace(' (same body, same answer size)', ''), row: r });
  for (const p of scale?.phases ?? []) bars.push({ label: `KMS Encrypt, ${fmt(p.keys)} keys at random`, row: p.encrypt });
  const width = 1000;
  const top = panel(
    20,
    20,
    width - 40,
    'Throughput (requests per second, higher is better)',
    'req/s',
    ['req/s'],
    bars.map((b) => ({ label: b.label, values: [Math.round(b.row.rps)] })),
  );
  const bottom = panel(
    20,
    40 + top.height,
    width - 40,
    'Latency (milliseconds, lower is better)',
    'ms',
    ['p50', 'p99'],
    bars.map((b) => ({ label: b.label, values: [b.row.p50, b.row.p99] })),
  );
  const height = 60 + top.height + bottom.height + 20;
  const foot = `${api?.connections ?? scale?.connections ?? 32} connections (autocannon); ${esc(api?.machine ?? scale?.machine ?? '')}`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    top.svg,
    bottom.svg,
    `<text x="20" y="${height - 12}" font-size="10" fill="#555">${foot}</text>`,
    '</svg>',
    '',
  ].join('\n');
}

function apiSection(api: ApiResult): string[] {
  return [
    '## API throughput against a bare node:http server (`npm run bench:api`)',
    '',
    `Measured ${api.date.slice(0, 10)}; ${api.connections} connections, ${api.seconds} s per target, each server in its own process, the load generator (autocannon) on the same machine. ` +
      'The KMS node is what `make run` builds (SQLite, SoftHSM2 with two members per cluster) with TC3 signatures checked, policy evaluated, the rate limit checked and every request audited; ' +
      'the baseline parses the same JSON body and answers a body of the same size. ' +
      'The KMS runs first as one process (`workers: 1`: the like-for-like comparison with the one-process baseline, and the per-request breakdown), ' +
      `then as a production node with \`workers: auto\`${api.workers ? ` (${api.workers} worker processes here)` : ''}.`,
    '',
    '| target | req/s | p50 ms | p99 ms | errors |',
    '|---|---:|---:|---:|---:|',
    ...api.rows.map((r) => `| ${r.name} | ${Math.round(r.rps)} | ${r.p50} | ${r.p99} | ${r.errors} |`),
    '',
    ...(api.ratioSingle !== undefined ? [`api-encrypt (workers: 1)/node-http-echo ratio: ${api.ratioSingle.toFixed(2)}`, ''] : []),
    `**api-encrypt/node-http-echo ratio: ${api.ratio.toFixed(2)}** (target 0.50 or better: not met).`,
    '',
    "Where an Encrypt's time goes (one process, CPU profile under this load): PKCS#11 calls into SoftHSM2 (IV from C_GenerateRandom, C_EncryptInit, C_Encrypt) about a quarter; " +
      'the socket writes (writev into the loopback TCP path) about an eighth; the audit trail (event, hash chain, SQLite group commit) about a tenth; ' +
      'TC3 verification (HMAC chain, canonical request) under a tenth; HTTP parsing, JSON, the envelope, metrics and the log line the rest, none above 4%. ' +
      'GetRegions (no key, no HSM) costs about 60% of an Encrypt; the echo baseline does none of it. One Node process cannot get nearer the baseline than its per-request CPU allows; ' +
      'worker processes add cores (here two vCPUs, shared with the load generator; a larger machine gives them more to use, which this machine cannot measure).',
    '',
  ];
}

function scaleSection(s: ScaleResult): string[] {
  const [a, b] = s.phases;
  const row = (name: string, f: (p: Phase) => number, ratio = true): string =>
    `| ${name} | ${fmt(f(a))} | ${fmt(f(b))} | ${ratio && f(a) > 0 ? (f(b) / f(a)).toFixed(2) : ''} |`;
  return [
    `## ${fmt(b.keys)} keys (\`npm run bench:scale\`)`,
    '',
    `Measured ${s.date.slice(0, 10)}. One development installation, measured with ${a.keys} keys and again after creating ${fmt(b.keys)} ` +
      `(through the KMS core, 8 at a time: ${fmt(s.createPerSecond)} keys/s, each an AES-256 key generated in the HSM, wrapped, MACed and written to SQLite). ` +
      `Encrypt: ${s.connections} connections for ${s.seconds} s, the key chosen at random per request among all keys, after a warm-up. ` +
      'ListKeyDetail: 200 sequential calls per figure, Limit 100. Start-up: spawn of the server process until it listens.',
    '',
    `| measure | ${fmt(a.keys)} keys | ${fmt(b.keys)} keys | ratio |`,
    '|---|---:|---:|---:|',
    row('Encrypt req/s', (p) => Math.round(p.encrypt.rps)),
    row('Encrypt p50 ms', (p) => p.encrypt.p50),
    row('Encrypt p99 ms', (p) => p.encrypt.p99),
    row('Encrypt errors', (p) => p.encrypt.errors, false),
    row('ListKeyDetail p50 ms, offset 0', (p) => p.listFirst.p50),
    row('ListKeyDetail p99 ms, offset 0', (p) => p.listFirst.p99),
    row(`ListKeyDetail p50 ms, last page (offset ${fmt(b.listDeep.offset)} with ${fmt(b.keys)} keys)`, (p) => p.listDeep.p50),
    row('ListKeyDetail p99 ms, last page', (p) => p.listDeep.p99),
    row('start-up ms', (p) => p.startupMs),
    row('resident memory MiB after start-up', (p) => p.rssStartMiB),
    row('resident memory MiB after the Encrypt load', (p) => p.rssAfterLoadMiB),
    '',
  ];
}

function isolationSection(r: IsolationResult): string[] {
  const idle = (where: string) => r.rows.find((x) => x.where === where && x.phase === 'idle');
  const ratio = (x: IsolationRow) => {
    const base = idle(x.where);
    return x.phase === 'idle' || !base ? '' : (x.p99 / base.p99).toFixed(2);
  };
  return [
    "## One tenant's key-pair generations versus another's Encrypt (`npm run bench:isolation`)",
    '',
    `Measured ${r.date.slice(0, 10)}; ${r.seconds} s per phase. One development installation (\`kmsctl init --dev\`) in its own process. ` +
      `Tenant B sends Encrypt of 32 bytes, ${r.concurrency} at a time, ` +
      `with its key on the shared pool, then on its dedicated cluster: idle, then while tenant A keeps ${r.load} requests in flight on the shared pool, ` +
      'first RSA-2048 CreateKey (the API offers no larger RSA key), then GetParametersForImport on fresh External keys (each an RSA-2048 generation). ' +
      "A's refusals (per-tenant cap `RequestLimitExceeded.UinLimitExceeded`, slow queue `RequestLimitExceeded`) are retried after 20 ms.",
    '',
    "| B's key on | phase | Encrypt p50 ms | Encrypt p99 ms | p99 / idle | requests | errors | A served | A capped | A queue-full |",
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...r.rows.map(
      (x) =>
        `| ${x.where} | ${x.phase} | ${x.p50.toFixed(1)} | ${x.p99.toFixed(1)} | ${ratio(x)} | ${x.requests} | ${x.errors} | ${x.served ?? ''} | ${x.capped ?? ''} | ${x.queueFull ?? ''} |`,
    ),
    '',
  ];
}

function slowQueueSection(r: SlowQueueResult): string[] {
  return [
    '## Encrypt under RSA-4096 generations, HSM layer (`npm run bench:slow-queue`)',
    '',
    `Measured ${r.date.slice(0, 10)}; ${r.seconds} s per phase; ${r.machine}. One process: \`cluster.encrypt\` of 32 bytes, ${r.concurrency} at a time, on a two-member shared pool ` +
      `and on a one-member dedicated cluster (SoftHSM2, each member its own token and library copy), idle and while ${r.load} loops keep RSA-4096 generations in flight on the shared pool. ` +
      "The queue columns are the shared pool's slow queue, sampled every 100 ms.",
    '',
    '| encrypt on | idle p50 ms | idle p99 ms | loaded p50 ms | loaded p99 ms | p99 ratio | RSA-4096 served | refused | queue at most | running at most |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...r.rows.map(
      (x) =>
        `| ${x.where} | ${x.idleP50.toFixed(2)} | ${x.idleP99.toFixed(2)} | ${x.loadedP50.toFixed(2)} | ${x.loadedP99.toFixed(2)} | ` +
        `${(x.loadedP99 / x.idleP99).toFixed(2)} | ${x.served} | ${x.refused} | ${x.maxQueued} | ${x.maxRunning} |`,
    ),
    '',
  ];
}

export function writeReport(): void {
  const api = load<ApiResult>('api');
  const scale = load<ScaleResult>('scale');
  const isolation = load<IsolationResult>('isolation');
  const slowQueue = load<SlowQueueResult>('slow-queue');
  const machine = scale?.machine ?? api?.machine ?? 'unknown';
  const md = [
    '# Benchmarks',
    '',
    'Figures measured by the scripts in `scripts/` and written here by `npm run bench:report` from `docs/bench-results/*.json`. ' +
      'The machine is shared and noisy: compare the ratios measured within one run, not absolute figures across runs.',
    '',
    `Machine: ${machine}.`,
    '',
    '![throughput and latency](benchmarks.png)',
    '',
    ...(api ? apiSection(api) : ['`npm run bench:api` has not been run yet.', '']),
    ...(scale ? scaleSection(scale) : ['`npm run bench:scale` has not been run yet.', '']),
    ...(isolation ? isolationSection(isolation) : []),
    ...(slowQueue ? slowQueueSection(slowQueue) : []),
    'HSM-layer and KMS-core figures (`npm run bench:hsm`, `npm run bench:kms`) are in the README.',
    '',
  ].join('\n');
  writeFileSync(join(DOCS, 'benchmarks.md'), md);
  const svg = join(DOCS, 'benchmarks.svg');
  writeFileSync(svg, chart(api, scale));
  try {
    execFileSync('rsvg-convert', ['-o', join(DOCS, 'benchmarks.png'), svg]);
  } catch {
    console.error('rsvg-convert not found: docs/benchmarks.svg written, PNG not (apt-get install librsvg2-bin fonts-dejavu-core)');
  }
}

if (require.main === module) writeReport();
