import * as pk from 'pkcs11js';
import { LoginError, MemberUnavailableError, SoPinError } from './errors';
import type { Pkcs11Module, TokenSlot } from './module';

export type MemberState = 'ACTIVE' | 'DEGRADED' | 'UNAVAILABLE';

export interface ConnectionOptions {
  id: string;
  tokenLabel: string;
  /** The resolved PIN; never logged, never in an error. */
  pin: string;
  /** First and longest delay between attempts to bring a failed member back. */
  backoffMs?: [number, number];
}

/** What a member does with a fresh login (open sessions, read capabilities and domain keys) and when it loses one. */
export interface ConnectionEvents {
  connected(token: TokenSlot, keeper: pk.Handle): void;
  dropped(reason: string): void;
}

export function ckrName(e: unknown): string | undefined {
  const m = /(CKR_[A-Z0-9_]+)/.exec(e instanceof Error ? e.message : String(e));
  return m ? m[1] : undefined;
}

/**
 * A member's link to its token: module initialisation, the login on the long-lived keeper session,
 * and recovery with exponential backoff after a device-level failure. A module re-initialised by
 * another member of the same library (`generation` moved on) is noticed and reconnected to.
 */
export class MemberConnection {
  state: MemberState = 'UNAVAILABLE';
  lastError = 'not connected';
  resets = 0;
  slot: pk.Handle = Buffer.alloc(0);
  private generation = -1;
  private reconnectFailed = false;
  private recovery: NodeJS.Timeout | undefined;
  private backoff: number;
  private closed = false;

  constructor(
    readonly module: Pkcs11Module,
    private readonly options: ConnectionOptions,
    private readonly events: ConnectionEvents,
  ) {
    this.backoff = this.backoffRange[0];
  }

  private get backoffRange(): [number, number] {
    return this.options.backoffMs ?? [200, 10_000];
  }

  /** The delay before the next recovery attempt (doubles on each failed one). */
  get nextBackoffMs(): number {
    return this.backoff;
  }

  /** Whether handles and sessions made since the last connect are still alive. */
  get current(): boolean {
    return this.module.isInitialized && this.module.generation === this.generation;
  }

  /** Initialises the module if needed, finds the token and logs in on a new keeper session. */
  connect(): void {
    const api = this.module.api;
    this.module.initialize();
    const token = this.module.findToken(this.options.tokenLabel);
    this.slot = token.slot;
    this.generation = this.module.generation;
    const keeper = api.C_OpenSession(this.slot, pk.CKF_SERIAL_SESSION | pk.CKF_RW_SESSION);
    try {
      api.C_Login(keeper, pk.CKU_USER, this.options.pin);
    } catch (e) {
      const ckr = ckrName(e) ?? 'unknown error';
      if (ckr !== 'CKR_USER_ALREADY_LOGGED_IN') {
        api.C_CloseSession(keeper);
        throw new LoginError(this.options.tokenLabel, ckr === 'CKR_PIN_INCORRECT' ? 'PIN incorrect' : ckr);
      }
    }
    this.events.connected(token, keeper);
    this.state = 'ACTIVE';
    this.lastError = '';
    this.backoff = this.backoffRange[0];
  }

  /**
   * Runs `fn` as the token's Security Officer on session `s`, then logs the user back in. Login
   * state is per application and token and SO and user exclude each other, so the user is logged
   * out of this token for every session of this process meanwhile (other processes keep theirs).
   * The SO PIN is used for this one C_Login and not kept; a refused one is a SoPinError without it.
   */
  asSecurityOfficer<T>(s: pk.Handle, soPin: string, fn: (so: pk.Handle) => T): T {
    const api = this.module.api;
    try {
      api.C_Logout(s);
    } catch (e) {
      if (ckrName(e) !== 'CKR_USER_NOT_LOGGED_IN') throw e;
    }
    try {
      try {
        api.C_Login(s, pk.CKU_SO, soPin);
      } catch (e) {
        const ckr = ckrName(e);
        throw new SoPinError(
          `the Security Officer of token "${this.options.tokenLabel}" could not log in: ${ckr === 'CKR_PIN_INCORRECT' ? 'SO PIN incorrect' : (ckr ?? 'unknown error')}`,
        );
      }
      try {
        return fn(s);
      } finally {
        api.C_Logout(s);
      }
    } finally {
      this.loginUser(s);
    }
  }

  private loginUser(s: pk.Handle): void {
    try {
      this.module.api.C_Login(s, pk.CKU_USER, this.options.pin);
    } catch (e) {
      this.fail(`could not log the user back in after the SO login: ${ckrName(e) ?? 'unknown error'}`);
      throw e;
    }
  }

  /** Closes every session of the token (if the module is still ours) and stops recovering. */
  close(closeSessions: () => void): void {
    this.closed = true;
    if (this.recovery) clearTimeout(this.recovery);
    if (this.current) {
      try {
        closeSessions();
        this.module.api.C_CloseAllSessions(this.slot);
      } catch {
        // module already gone
      }
    }
    this.events.dropped('closed');
    this.state = 'UNAVAILABLE';
    this.lastError = 'closed';
  }

  /** Marks the member failed and starts re-initialising its module with exponential backoff. */
  fail(reason: string): void {
    if (this.state === 'UNAVAILABLE' && this.recovery) return;
    this.state = 'UNAVAILABLE';
    this.lastError = reason;
    this.events.dropped(reason);
    this.scheduleRecovery();
  }

  private scheduleRecovery(): void {
    if (this.closed || this.recovery) return;
    this.recovery = setTimeout(() => {
      this.recovery = undefined;
      try {
        // Re-initialise unless another member of the same module already did since we failed.
        if (this.module.generation === this.generation || this.reconnectFailed) {
          // C_Finalize under a thread-pool call (another member's generation, say) would crash the process
          if (this.module.callsInFlight > 0) return this.scheduleRecovery();
          this.module.reinitialize();
          this.resets++;
        }
        this.connect();
        this.reconnectFailed = false;
      } catch (e) {
        this.reconnectFailed = true;
        this.lastError = e instanceof Error ? e.message : String(e);
        this.backoff = Math.min(this.backoff * 2, this.backoffRange[1]);
        this.scheduleRecovery();
      }
    }, this.backoff);
    this.recovery.unref();
  }

  /** Throws MemberUnavailableError unless the member can serve; reconnects after another member's re-initialisation. */
  ensure(): void {
    if (this.state === 'UNAVAILABLE') throw new MemberUnavailableError(this.options.id, this.lastError);
    if (this.current) return;
    // Another member of the same module re-initialised it: our sessions and handles are gone.
    try {
      if (!this.module.isInitialized) throw new MemberUnavailableError(this.options.id, 'module finalised');
      this.connect();
    } catch (e) {
      this.fail((e as Error).message);
      throw new MemberUnavailableError(this.options.id, this.lastError);
    }
  }
}
