/**
 * Issue 11, section 9 (PINs): provisioning never puts a PIN on a command line, and the SO PIN is
 * not kept beside the user PIN. softhsm/make-tokens.sh runs with logging shims in front of
 * softhsm2-util, certutil, modutil and node (every argument vector they get is recorded), while
 * this process samples every /proc/<pid>/cmdline; then the PINs written are looked for in both.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pk from 'pkcs11js';
import { initDev } from '../../src/cli/dev-init';
import { DEV_SO_PINS } from '../../src/common/data-dir';
import { HsmCluster } from '../../src/hsm/cluster';
import { SoPinError } from '../../src/hsm/errors';
import { HsmMember } from '../../src/hsm/member';
import { openModule } from '../../src/hsm/module';
import { lockSwtok, OCK_LABEL, OCK_LOCK_WAIT_MS, OCK_SCRIPT } from '../support/opencryptoki';
import { within } from '../support/poll';
import { profiles, SOFTHSM_LIB } from '../support/tokens';

const ROOT = join(__dirname, '..', '..', '..');
const MAKE_TOKENS = join(ROOT, 'softhsm', 'make-tokens.sh');
const MAKE_NSS_DB = join(ROOT, 'softhsm', 'make-nss-db.sh');
const TOOLS = ['softhsm2-util', 'certutil', 'modutil', 'node'];

/** Every command line on the machine right now (processes that end while being read are skipped). */
function commandLines(): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      out.push(readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' '));
    } catch {
      // gone
    }
  }
  return out;
}

/** A directory of shims that log their arguments to `log` and exec the real tool. */
function shims(dir: string, log: string): string {
  const bin = join(dir, 'shim-bin');
  execFileSync('mkdir', ['-p', bin]);
  for (const tool of TOOLS) {
    const real = execFileSync('bash', ['-c', `command -v ${tool} || true`], { encoding: 'utf8' }).trim();
    if (!real) continue;
    writeFileSync(join(bin, tool), `#!/usr/bin/env bash\nprintf '%s\\n' "${tool} $*" >> '${log}'\nexec '${real}' "$@"\n`);
    chmodSync(join(bin, tool), 0o755);
  }
  return bin;
}

/** Runs a provisioning script with the shims first on PATH, sampling /proc meanwhile. */
async function provision(script: string, args: string[], env: NodeJS.ProcessEnv, work: string): Promise<{ invocations: string[]; sampled: string[] }> {
  const log = join(work, 'invocations.log');
  writeFileSync(log, '');
  const bin = shims(work, log);
  const child = spawn(script, args, { env: { ...process.env, ...env, PATH: `${bin}:${process.env.PATH}` }, stdio: ['ignore', 'pipe', 'inherit'] });
  const sampled = new Set<string>();
  let running = true;
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => ((running = false), resolve(code))));
  while (running) {
    for (const line of commandLines()) sampled.add(line);
    await new Promise((resolve) => setImmediate(resolve));
  }
  expect(await exited).toBe(0);
  return { invocations: readFileSync(log, 'utf8').split('\n').filter(Boolean), sampled: [...sampled] };
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

describe('PINs during provisioning', () => {
  const work = mkdtempSync(join(tmpdir(), 'kms-provisioning-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  test("make-tokens.sh: no PIN in any tool's arguments or any process's command line; no SO PIN kept; the tokens work", async () => {
    const dir = join(work, 'set');
    const { invocations, sampled } = await provision(MAKE_TOKENS, [dir, 'a', 'b'], {}, work);
    expect(invocations.length).toBeGreaterThan(0);
    const pins = ['a', 'b'].map((l) => readFileSync(join(dir, 'pins', `${l}.pin`), 'utf8'));
    for (const pin of pins) {
      expect(pin).toMatch(/^[0-9a-f]{24}$/);
      expect(invocations.filter((l) => l.includes(pin))).toEqual([]);
      expect(sampled.filter((l) => l.includes(pin))).toEqual([]);
    }
    expect(invocations.some((l) => /--(so-)?pin/.test(l))).toBe(false);
    // the SO PIN is gone: nothing but the user PINs in the set's directory
    expect(filesUnder(dir).filter((f) => f.endsWith('.so-pin'))).toEqual([]);
    expect(readdirSync(join(dir, 'pins')).sort()).toEqual(['a.pin', 'b.pin']);
    for (const f of readdirSync(join(dir, 'pins'))) expect(statSync(join(dir, 'pins', f)).mode & 0o777).toBe(0o600);

    const lib = join(dir, 'libsofthsm2.so');
    copyFileSync(SOFTHSM_LIB, lib);
    const members = ['a', 'b'].map(
      (label, i) =>
        new HsmMember({
          id: label,
          profile: profiles.get('softhsm2')!,
          module: { path: lib, env: { SOFTHSM2_CONF: join(dir, 'softhsm2.conf') } },
          tokenLabel: label,
          pin: pins[i],
        }),
    );
    const cluster = new HsmCluster({ id: 'p', kind: 'shared', owners: [], members });
    try {
      cluster.start();
      // the SO PIN is forgotten, so the domain keys (CKA_WRAP_WITH_TRUSTED) cannot be copied: refused before anything is generated
      await expect(cluster.initDomain()).rejects.toBeInstanceOf(SoPinError);
      expect(members.map((m) => m.domain)).toEqual([undefined, undefined]);
      const alone = new HsmCluster({ id: 'p', kind: 'shared', owners: [], members: [members[0]] });
      expect((await alone.initDomain()).locked).toEqual(['a']);
      const key = await alone.generate('AES_256', { clusterId: 'p', keyId: 'k', keyVersion: 1, usage: 'ENCRYPT_DECRYPT' });
      const sealed = await members[0].encryptGcm(key, Buffer.from('works'), Buffer.alloc(0));
      expect((await members[0].decryptGcm(key, sealed, Buffer.alloc(0))).toString()).toBe('works');
    } finally {
      cluster.close();
      members[0].module.finalize();
    }
    // re-running keeps the tokens and their PINs
    await provision(MAKE_TOKENS, [dir, 'a', 'b'], {}, work);
    expect(['a', 'b'].map((l) => readFileSync(join(dir, 'pins', `${l}.pin`), 'utf8'))).toEqual(pins);
  });

  test("development mode (KMS_KEEP_SO_PINS) keeps the SO PIN, 0600, away from the user PINs; it is the token's SO PIN", async () => {
    const dir = join(work, 'dev-set');
    const keep = join(work, 'dev-so-pins');
    const { invocations, sampled } = await provision(MAKE_TOKENS, [dir, 'd'], { KMS_KEEP_SO_PINS: keep }, work);
    const soPin = readFileSync(join(keep, 'd.so-pin'), 'utf8');
    expect(soPin).toMatch(/^[0-9a-f]{24}$/);
    expect(statSync(join(keep, 'd.so-pin')).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(dir, 'pins'))).toEqual(['d.pin']);
    expect(soPin).not.toBe(readFileSync(join(dir, 'pins', 'd.pin'), 'utf8'));
    expect([...invocations, ...sampled].filter((l) => l.includes(soPin))).toEqual([]);

    const lib = join(dir, 'libsofthsm2.so');
    copyFileSync(SOFTHSM_LIB, lib);
    const module = openModule({ path: lib, env: { SOFTHSM2_CONF: join(dir, 'softhsm2.conf') } });
    module.initialize();
    try {
      const session = module.api.C_OpenSession(module.findToken('d').slot, pk.CKF_SERIAL_SESSION | pk.CKF_RW_SESSION);
      module.api.C_Login(session, pk.CKU_SO, soPin);
      module.api.C_Logout(session);
      module.api.C_CloseSession(session);
    } finally {
      module.finalize();
    }
  });

  test(
    'opencryptoki-token.sh: the user PIN is never on a command line; the token works with it; stop wipes the token',
    async () => {
      const unlock = await lockSwtok();
      const dir = join(work, 'ock');
      try {
        const { invocations, sampled } = await provision(OCK_SCRIPT, ['start', dir, OCK_LABEL], {}, work);
        const pin = readFileSync(join(dir, 'pins', `${OCK_LABEL}.pin`), 'utf8');
        expect(pin).toMatch(/^[0-9a-f]{8}$/);
        expect(statSync(join(dir, 'pins', `${OCK_LABEL}.pin`)).mode & 0o777).toBe(0o600);
        expect(invocations.some((l) => l.startsWith('node') && l.includes('init-token.js --profile opencryptoki-swtok'))).toBe(true);
        expect([...invocations, ...sampled].filter((l) => l.includes(pin))).toEqual([]);
        const member = new HsmMember({
          id: 'ock',
          profile: profiles.get('opencryptoki-swtok')!,
          module: { path: '/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so' },
          tokenLabel: OCK_LABEL,
          pin,
        });
        try {
          member.connect();
          expect(member.state).toBe('ACTIVE');
          expect((await member.random(16)).length).toBe(16);
        } finally {
          member.close();
          member.module.finalize();
        }
        const wrong = new HsmMember({
          id: 'ock-wrong',
          profile: profiles.get('opencryptoki-swtok')!,
          module: { path: '/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so' },
          tokenLabel: OCK_LABEL,
          pin: pin === '00000000' ? '11111111' : '00000000',
        });
        try {
          expect(() => wrong.connect()).toThrow(/PIN incorrect/);
        } finally {
          wrong.module.finalize();
        }
      } finally {
        try {
          execFileSync(OCK_SCRIPT, ['stop']);
        } finally {
          unlock();
        }
      }
      expect(existsSync('/var/lib/opencryptoki/swtok/NVTOK.DAT')).toBe(false);
    },
    OCK_LOCK_WAIT_MS + 60_000,
  );

  test(
    'opencryptoki-token.sh refuses a pkcsslotd it did not start and a token it did not make, and leaves both alone',
    async () => {
      const unlock = await lockSwtok();
      const nvtok = '/var/lib/opencryptoki/swtok/NVTOK.DAT';
      const run = (args: string[]) => {
        try {
          execFileSync(OCK_SCRIPT, args, { stdio: ['ignore', 'pipe', 'pipe'] });
          return 'exit 0';
        } catch (e) {
          return `exit ${(e as { status: number }).status}: ${String((e as { stderr: Buffer }).stderr)}`;
        }
      };
      try {
        // the daemon writes its pid file after the command returns: wait for it (a stale one is removed first)
        rmSync('/var/run/pkcsslotd.pid', { force: true });
        execFileSync('/usr/sbin/pkcsslotd');
        await within(5_000, () => existsSync('/var/run/pkcsslotd.pid') && readFileSync('/var/run/pkcsslotd.pid', 'utf8').trim() !== '', "pkcsslotd's pid file");
        const pid = readFileSync('/var/run/pkcsslotd.pid', 'utf8').trim();
        try {
          expect(run(['start', join(work, 'ock-foreign'), OCK_LABEL])).toMatch(new RegExp(`^exit 3: .*pkcsslotd ${pid} was not started by these tests`));
          expect(existsSync(`/proc/${pid}`)).toBe(true);
        } finally {
          process.kill(Number(pid), 'SIGKILL');
        }
        writeFileSync(nvtok, "someone else's token");
        expect(run(['stop'])).toMatch(/^exit 3: .*holds a token these tests did not make: refusing to wipe it/);
        expect(readFileSync(nvtok, 'utf8')).toBe("someone else's token");
      } finally {
        rmSync(nvtok, { force: true });
        unlock();
      }
    },
    OCK_LOCK_WAIT_MS + 60_000,
  );

  test('make-nss-db.sh: the NSS database PIN is never on a command line', async () => {
    const dir = join(work, 'nss');
    const { invocations, sampled } = await provision(MAKE_NSS_DB, [dir], {}, work);
    const pin = readFileSync(join(dir, 'pins', 'nss.pin'), 'utf8');
    expect(invocations.some((l) => l.startsWith('certutil'))).toBe(true);
    expect([...invocations, ...sampled].filter((l) => l.includes(pin))).toEqual([]);
  });

  test('kmsctl init --dev: SO PINs under dev-so-pins (0600), none beside the user PINs', async () => {
    const dataDir = join(work, 'dev-install');
    await initDev(dataDir, () => undefined);
    const kept = readdirSync(join(dataDir, DEV_SO_PINS)).sort();
    expect(kept).toEqual(['dedicated-a.so-pin', 'dedicated-b.so-pin', 'shared-a.so-pin', 'shared-b.so-pin']);
    for (const f of kept) expect(statSync(join(dataDir, DEV_SO_PINS, f)).mode & 0o777).toBe(0o600);
    expect(filesUnder(join(dataDir, 'softhsm')).filter((f) => f.endsWith('.so-pin'))).toEqual([]);
    expect(existsSync(join(dataDir, 'softhsm', 'shared', 'pins', 'shared-a.pin'))).toBe(true);
  }, 60_000);
});
