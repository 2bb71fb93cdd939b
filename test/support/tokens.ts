import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HsmMember, MemberOptions } from '../../src/hsm/member';
import { loadProfiles, HsmProfile } from '../../src/hsm/profile';
import { OCK_LABEL, OpenCryptokiToken } from './opencryptoki';

const ROOT = join(__dirname, '..', '..', '..');
export const SOFTHSM_LIB = '/usr/lib/softhsm/libsofthsm2.so';
export const NSS_LIB = '/usr/lib/x86_64-linux-gnu/libsoftokn3.so';
export const profiles = loadProfiles(join(ROOT, 'hsm-profiles'));

/** A temporary directory for one test file's tokens; `cleanup()` removes everything. */
export class TokenLab {
  readonly dir = mkdtempSync(join(tmpdir(), 'kms-hsm-test-'));
  private members: HsmMember[] = [];
  /** The machine's one openCryptoki swtok, held by this lab from its first use until cleanup. */
  ock: OpenCryptokiToken | undefined;
  private readonly soPinFiles = new Map<string, string>();

  /** The ceremony's SO PIN provider for the SoftHSM2 and openCryptoki tokens made here (as dev-so-pins serves kmsctl init --dev). */
  readonly soPins = async (request: { member: string; token: string }): Promise<string> => {
    const file = this.soPinFiles.get(request.member);
    if (!file) throw new Error(`no SO PIN kept for member ${request.member}`);
    return readFileSync(file, 'utf8');
  };

  /**
   * SoftHSM2 tokens in their own SOFTHSM2_CONF, loaded from a private copy of the library so that
   * this token set is a separate module instance (it can be finalised without touching others).
   */
  softhsm(
    name: string,
    labels: string[],
    overrides: Partial<MemberOptions> = {},
    profile: HsmProfile = profiles.get('softhsm2')!,
    /** A subclass of HsmMember (fault injection around a real token). */
    make: (o: MemberOptions) => HsmMember = (o) => new HsmMember(o),
  ): HsmMember[] {
    const dir = join(this.dir, name);
    const env = { ...process.env, KMS_KEEP_SO_PINS: join(dir, 'so-pins') };
    const conf = execFileSync(join(ROOT, 'softhsm', 'make-tokens.sh'), [dir, ...labels], { encoding: 'utf8', env }).trim();
    const lib = join(dir, 'libsofthsm2.so');
    if (!existsSync(lib)) copyFileSync(SOFTHSM_LIB, lib);
    return labels.map((label) =>
      this.trackSoPin(
        join(dir, 'so-pins', `${label}.so-pin`),
        this.track(
          make({
            id: `${name}-${label}`,
            profile,
            module: { path: lib, env: { SOFTHSM2_CONF: conf } },
            tokenLabel: label,
            pin: readFileSync(join(dir, 'pins', `${label}.pin`), 'utf8'),
            backoffMs: [50, 400],
            ...overrides,
          }),
        ),
      ),
    );
  }

  private trackSoPin(file: string, m: HsmMember): HsmMember {
    this.soPinFiles.set(m.id, file);
    return m;
  }

  /** The SO PIN of a SoftHSM2 token made by `softhsm(name, [label])` (kept for tests, as `kmsctl init --dev` does). */
  soPin(name: string, label: string): string {
    return readFileSync(join(this.dir, name, 'so-pins', `${label}.so-pin`), 'utf8');
  }

  tokenDir(name: string): string {
    return join(this.dir, name, 'tokens');
  }

  nss(name: string, overrides: Partial<MemberOptions> = {}): HsmMember {
    const dir = join(this.dir, name);
    const db = execFileSync(join(ROOT, 'softhsm', 'make-nss-db.sh'), [dir], { encoding: 'utf8' }).trim();
    return this.track(
      new HsmMember({
        id: name,
        profile: profiles.get('nss-softokn')!,
        module: { path: NSS_LIB },
        moduleDir: db,
        tokenLabel: 'NSS Certificate DB',
        pin: readFileSync(join(dir, 'pins', 'nss.pin'), 'utf8'),
        backoffMs: [50, 400],
        ...overrides,
      }),
    );
  }

  /**
   * openCryptoki's software token (one per machine: waits its turn, see OpenCryptokiToken), freshly
   * initialised with random PINs under this lab's own pkcsslotd. One member per lab.
   */
  async opencryptoki(name: string, overrides: Partial<MemberOptions> = {}): Promise<HsmMember> {
    if (this.ock) throw new Error('a lab has one openCryptoki member (one swtok per machine)');
    this.ock = await OpenCryptokiToken.acquire(join(this.dir, name));
    return this.trackSoPin(
      join(this.dir, name, 'so-pins', `${OCK_LABEL}.so-pin`),
      this.track(
        new HsmMember({
          id: name,
          profile: profiles.get('opencryptoki-swtok')!,
          module: { path: this.ock.library },
          tokenLabel: OCK_LABEL,
          pin: this.ock.pin,
          backoffMs: [50, 400],
          ...overrides,
        }),
      ),
    );
  }

  private track(m: HsmMember): HsmMember {
    this.members.push(m);
    return m;
  }

  cleanup(): void {
    for (const m of this.members) {
      m.close();
      m.module.finalize();
    }
    this.ock?.release();
    this.ock = undefined;
    rmSync(this.dir, { recursive: true, force: true });
  }
}
