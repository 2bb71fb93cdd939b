#!/usr/bin/env node
/**
 * kmsctl: operator commands on the same data directory as the server (or the same Redis).
 * `npx kmsctl help` lists them. Output for machines with --json; progress goes to stderr.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { toKeyMetadata } from '../api/kms-wire';
import { readAnchors } from '../audit/anchors';
import type { VerifyOptions } from '../audit/audit-log';
import { dataDirOf } from '../common/data-dir';
import { loadServerConfig } from '../config';
import { HsmCluster, MemberHealth, SoPinProvider } from '../hsm/cluster';
import { openServices, runCeremony, Services } from '../services';
import type { RotationEvent } from '../kms/domain-rotation';
import { Args, UsageError } from './args';
import { progressBar } from './progress';
import { initDev } from './dev-init';
import { soPinSource } from './so-pin';
import { exitWhenDrained, quietOnClosedPipe } from './exit';

const HELP = `kmsctl [--data-dir DIR] <command>      (DIR defaults to $KMS_DATA_DIR or ./var)

  init [--dev] [--so-pin-file PATH]    --dev: development tokens, config, root account (what make run does);
                                       without: domain keys on every configured cluster (as cluster init) and the service key
  cluster init [--cluster ID] [--so-pin-file PATH]
                                       domain-key ceremony (safe to re-run): generate, copy under a transport key the
                                       sending token's Security Officer marks trusted (SO PIN asked for without echo,
                                       or read from PATH: a file, or a directory of <token>.so-pin; never kept), then
                                       lock (domain keys non-extractable on every member)
  cluster add-member --cluster ID --member ID [--so-pin-file PATH]
                                       unlocked clusters only; a locked one grows by kmsctl cluster rotate-domain
  cluster rotate-domain --cluster ID [--resume] [--so-pin-file PATH] [--json]
                                       a new domain generation: made in one member, copied to every other
                                       (new, empty members included), made current; every wrapped record
                                       re-wrapped under it inside the HSMs (on the shared pool the authority
                                       rows and the audit chain re-sealed too); the old one destroyed on every
                                       member; locked again. Re-run (or --resume: finish only) after a crash.
                                       The SO PIN (prompt or --so-pin-file) is needed where the current
                                       generation's KEK has CKA_UNWRAP_TEMPLATE (cluster status says)
  cluster lock --cluster ID            makes the domain keys non-extractable on every member and reads it back
                                       (existing installations; idempotent, irreversible)
  cluster status [--json]              members' health and whether their domain keys are locked
  tenant create --name N [--json]      prints {"Uin","SecretId","SecretKey"}
  tenant list [--json]
  user create --tenant UIN --name N [--preset P] [--policy-file F] [--json]
  user list --tenant UIN [--json]
  policy attach --uin UIN --name N (--preset P | --policy-file F)
  policy detach --uin UIN --name N
  policy list --uin UIN [--json]
  keys list --tenant UIN [--region R] [--json]
  keys describe --tenant UIN --key-id ID [--region R]
  audit query [--from ISO|ms] [--to ISO|ms] [--event E] [--account UIN] [--resource R] [--keyword K] [--limit N]
  audit verify [--anchors FILE] [--archive DIR]
                                       checks every link through the HSM, the trail against the anchors pushed
                                       to FILE (audit.anchors), and with DIR (audit.archiveDir) the archived
                                       events from seq 1 too; exits 1 when the chain is broken
  audit verify --export FILE           checks a retention archive file on its own (links and start link)
  audit export [same filters as query] JSON lines on stdout`;

/** Writes to stdout; when the pipe is full, the returned promise waits for it to drain. */
const writeOut = (text: string): Promise<void> | undefined =>
  process.stdout.write(text) ? undefined : new Promise((resolve) => process.stdout.once('drain', () => resolve()));
const progress = (msg: string) => process.stderr.write(`${msg}\n`);
const out = (v: unknown, json: boolean) => process.stdout.write((json || typeof v !== 'string' ? JSON.stringify(v, null, json ? 0 : 2) : v) + '\n');

function time(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
  if (Number.isNaN(n)) throw new UsageError(`not a time: ${v}`);
  return n;
}

function cluster(s: Services, id: string): HsmCluster {
  const c = s.clusters.find((x) => x.id === id);
  if (!c) throw new UsageError(`no cluster ${id} (configured: ${s.clusters.map((x) => x.id).join(', ')})`);
  return c;
}

/** A member's domain generations, the current one marked (first 8 hex digits each). */
function generations(current: string | undefined, held: readonly string[]): string {
  return held.map((g) => `${g.slice(0, 8)}${g === current && held.length > 1 ? ' (current)' : ''}`).join(', ') || 'none';
}

function policySource(a: Args): unknown {
  const file = a.get('policy-file');
  return file !== undefined ? readFileSync(file, 'utf8') : a.need('preset');
}

function auditFilter(a: Args) {
  return {
    from: time(a.get('from')),
    to: time(a.get('to')),
    eventName: a.get('event'),
    accountUin: a.get('account'),
    resource: a.get('resource'),
    keyword: a.get('keyword'),
  };
}

function verifyOptions(a: Args): VerifyOptions {
  const anchors = a.get('anchors');
  const dir = a.get('archive');
  return {
    anchors: anchors === undefined ? undefined : readAnchors(readFileSync(anchors, 'utf8')),
    archive:
      dir === undefined
        ? undefined
        : readdirSync(dir)
            .filter((f) => f.endsWith('.jsonl'))
            .map((f) => readFileSync(join(dir, f), 'utf8')),
  };
}

async function withServices<T>(dataDir: string, fn: (s: Services) => Promise<T>, ceremony?: SoPinProvider): Promise<T> {
  const config = loadServerConfig(dataDir);
  const s = await openServices(config, {
    log: (l) => progress(String(l.msg ?? JSON.stringify(l))),
    jobs: false,
    domainCeremony: ceremony ? progress : undefined,
    soPin: ceremony,
  });
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

type Command = (a: Args, s: Services) => Promise<number>;

function lockText(m: MemberHealth): string {
  if (m.domainLock === 'none') return 'absent';
  if (m.domainLock === 'unlocked') return 'unlocked (kmsctl cluster lock)';
  if (m.domainLock === 'modifiable') return 'locked (non-extractable, still modifiable: run kmsctl cluster lock to finish)';
  return m.lockEnforced ? 'locked' : `locked, NOT ENFORCED by ${m.profile} (the user PIN can wrap them out)`;
}

function unwrapTemplateText(m: MemberHealth): string {
  if (m.unwrapTemplate === 'set') return 'KEK unwrap template set';
  if (m.unwrapTemplate === 'absent') return 'KEK unwrap template absent (an older generation: kmsctl cluster rotate-domain)';
  if (m.unwrapTemplate === 'unenforced') return `KEK unwrap template not enforced by ${m.profile}`;
  return 'KEK unwrap template none';
}

const COMMANDS: Record<string, Command> = {
  'cluster init': async (a, s) => {
    const id = a.get('cluster');
    await runCeremony(id ? [cluster(s, id)] : s.clusters, progress, soPinSource(a.get('so-pin-file')));
    return 0;
  },
  'cluster add-member': async (a, s) => {
    const c = cluster(s, a.need('cluster'));
    const member = c.members.find((m) => m.id === a.need('member'));
    if (!member) throw new UsageError(`cluster ${c.id} has no member ${a.need('member')} in kms.yaml: add it there first`);
    progress(`copying the domain keys of ${c.id} into ${member.id} under a transport key made inside it`);
    const copied = await c.addMember(member, { soPin: soPinSource(a.get('so-pin-file')) });
    out(
      copied
        ? `domain keys copied into ${member.id}; lock the cluster once it is complete: kmsctl cluster lock --cluster ${c.id}`
        : `${member.id} already holds the domain keys`,
      false,
    );
    return 0;
  },
  'cluster lock': async (a, s) => {
    const c = cluster(s, a.need('cluster'));
    const r = await c.lock();
    if (a.flag('json')) out({ cluster: c.id, ...r }, true);
    else {
      out(
        `cluster ${c.id}: domain keys locked (non-extractable, read back) on ${[...r.locked, ...r.already].join(', ')}${r.already.length ? ` (already: ${r.already.join(', ')})` : ''}`,
        false,
      );
      for (const m of r.unenforced)
        progress(`warning: member ${m}: its implementation does not enforce CKA_EXTRACTABLE=false (docs/hsm-layer.md), the lock is recorded only`);
    }
    return 0;
  },
  'cluster rotate-domain': async (a, s) => {
    const c = cluster(s, a.need('cluster'));
    const bar = progressBar((t) => process.stderr.write(t), process.stderr.isTTY === true, 're-wrapping');
    const sealBars = new Map<string, (done: number, total: number) => void>();
    const sealBar = (what: string) =>
      sealBars.get(what) ??
      sealBars
        .set(
          what,
          progressBar((t) => process.stderr.write(t), process.stderr.isTTY === true, `re-sealing ${what}`),
        )
        .get(what)!;
    const shown = (e: RotationEvent): void => {
      if (e.phase === 'rewrap') bar(e.done, e.total);
      else if (e.phase === 'reseal') sealBar(e.what)(e.done, e.total);
      else if (e.phase === 'generation') progress(`cluster ${c.id}: generation ${e.generation} ${e.detail}; now current`);
      else progress(`cluster ${c.id}: generation ${e.generation} destroyed on ${e.members.join(', ') || 'no member'}`);
    };
    const path = a.get('so-pin-file');
    // an SO PIN makes the new generation's copy trusted-only; asked for when there is someone to ask
    const soPin = path !== undefined || process.stdin.isTTY ? soPinSource(path) : undefined;
    const r = await s.kms.domainRotation.rotate(c.id, { resumeOnly: a.flag('resume'), progress: shown, soPin });
    if (a.flag('json')) out(r, true);
    else if (r.generation === undefined) out(`cluster ${c.id}: no rotation to resume`, false);
    else
      out(
        `cluster ${c.id}: generation ${r.generation} current${r.resumed ? ' (resumed)' : ''}; ${r.rewrapped} records re-wrapped${resealedText(r.resealed)} in ${r.ms} ms; generation ${r.retired} destroyed`,
        false,
      );
    return 0;
  },
  'cluster status': async (a, s) => {
    const health = await Promise.all(s.clusters.map((c) => c.health()));
    if (a.flag('json')) out(health, true);
    else {
      for (const h of health) {
        const members = h.members.map(
          (m) =>
            `  ${m.id} [${m.profile}${m.verifiedProfile ? '' : ', unverified profile'}] ${m.state}: ${m.detail}; domain keys ${lockText(m)}; ${unwrapTemplateText(m)}; ` +
            `sessions ${m.sessions.busy}/${m.sessions.open} of ${m.sessions.cap}; domain ${generations(h.generation, m.generations)}`,
        );
        const warnings = h.warnings.map((w) => `  warning: ${w}`);
        out(`${h.id} (${h.kind}) ${h.state}\n${[...members, ...warnings].join('\n')}`, false);
      }
    }
    return health.every((h) => h.state !== 'UNAVAILABLE') ? 0 : 1;
  },
  'tenant create': async (a, s) => (out(await s.iam.createTenant(a.need('name')), a.flag('json')), 0),
  'tenant list': async (a, s) => (out(await s.iam.listTenants(), a.flag('json')), 0),
  'user create': async (a, s) => {
    const file = a.get('policy-file');
    const creds = await s.iam.createUser(a.need('tenant'), a.need('name'), {
      preset: a.get('preset'),
      policy: file === undefined ? undefined : readFileSync(file, 'utf8'),
    });
    out(creds, a.flag('json'));
    return 0;
  },
  'user list': async (a, s) => (out(await s.iam.listUsers(a.need('tenant')), a.flag('json')), 0),
  'policy attach': async (a, s) => (await s.iam.attachPolicy(a.need('uin'), a.need('name'), policySource(a)), 0),
  'policy detach': async (a, s) => (await s.iam.detachPolicy(a.need('uin'), a.need('name')), 0),
  'policy list': async (a, s) => (out(await s.iam.listPolicies(a.need('uin')), a.flag('json')), 0),
  'keys list': async (a, s) => {
    const caller = { tenant: a.need('tenant'), uin: a.need('tenant'), region: a.get('region') ?? s.config.regions[0] };
    const all = [];
    for (let offset = 0; ; offset += 200) {
      const page = await s.kms.lifecycle.listKeyDetail(caller, { offset, limit: 200 });
      all.push(...page.keys.map(toKeyMetadata));
      if (offset + 200 >= page.totalCount) break;
    }
    if (a.flag('json')) out(all, true);
    else for (const k of all) out(`${k.KeyId}  ${k.KeyState.padEnd(13)} ${k.KeyUsage.padEnd(32)} ${k.Alias}`, false);
    return 0;
  },
  'keys describe': async (a, s) => {
    const caller = { tenant: a.need('tenant'), uin: a.need('tenant'), region: a.get('region') ?? s.config.regions[0] };
    out(toKeyMetadata(await s.kms.lifecycle.describeKey(caller, a.need('key-id'))), a.flag('json'));
    return 0;
  },
  'audit query': async (a, s) => (out(await s.audit.query({ ...auditFilter(a), limit: a.int('limit') ?? 100 }), true), 0),
  'audit verify': async (a, s) => {
    const exported = a.get('export');
    const r = exported !== undefined ? await s.audit.verifyExport(readFileSync(exported, 'utf8')) : await s.audit.verify(verifyOptions(a));
    out(r, true);
    return r.ok ? 0 : 1;
  },
  'audit export': async (a, s) => {
    const n = await s.audit.export((line) => writeOut(line.endsWith('\n') ? line : `${line}\n`), auditFilter(a));
    progress(`${n} events exported`);
    return 0;
  },
};

function resealedText(resealed: Record<string, number>): string {
  return Object.entries(resealed)
    .map(([what, n]) => `, ${n} ${what} re-sealed`)
    .join('');
}

export async function kmsctl(argv: readonly string[]): Promise<number> {
  const a = new Args(argv);
  const dataDir = dataDirOf(a.get('data-dir'));
  const [group, verb] = a.words;
  if (!group || group === 'help' || a.flag('help')) return (out(HELP, false), group ? 0 : 2);
  if (group === 'init') {
    if (a.flag('dev')) {
      const r = await initDev(dataDir, progress);
      progress(r.created ? `development installation ready in ${dataDir}; root credentials in ${r.credentialsFile}` : `${dataDir} is already initialised`);
      return 0;
    }
    return withServices(dataDir, async () => (progress('domain keys and service key ready'), 0), soPinSource(a.get('so-pin-file')));
  }
  const command = COMMANDS[`${group} ${verb ?? ''}`];
  if (!command) throw new UsageError(`unknown command "${a.words.join(' ')}"\n\n${HELP}`);
  return withServices(dataDir, (s) => command(a, s));
}

if (require.main === module) {
  quietOnClosedPipe(process.stdout);
  kmsctl(process.argv.slice(2)).then(
    (code) => exitWhenDrained(code),
    (e: Error) => {
      process.stderr.write(`kmsctl: ${e.message}\n`);
      return exitWhenDrained(e instanceof UsageError ? 2 : 1);
    },
  );
}
