import * as pk from 'pkcs11js';
import { classifyError, MemberOperation } from './error-classes';
import { HsmError, InvalidInputError, MemberUnavailableError, Pkcs11CallError } from './errors';
import { ckrName, MemberConnection } from './connection';
import type { HsmProfile } from './profile';
import { SessionPool } from './session-pool';

type Handle = pk.Handle;

export interface SessionOptions {
  id: string;
  maxSessions?: number;
  poolWaitMs?: number;
}

export interface OperationEvent {
  member: string;
  operation: MemberOperation;
  ms: number;
  ok: boolean;
}

/**
 * A member's sessions: a pool for operations and one long-lived logged-in "keeper" session that
 * owns unwrapped session objects and runs serialised work (unwraps, the ceremony). Failures are
 * classified by the profile: a device error fails the connection, a session error drops the session.
 */
export class MemberSessions {
  /** Errors counted since the last successful probe; more than a few make the member DEGRADED. */
  recentErrors = 0;
  /** Operations completed (for metrics and for seeing where work goes). */
  operations = 0;
  /** Called after every pooled operation with its duration (metrics); unset costs nothing. */
  onOperation: ((e: OperationEvent) => void) | undefined;
  private pool: SessionPool<Handle>;
  private keeper: Handle | undefined;
  private keeperQueue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly connection: MemberConnection,
    private readonly profile: HsmProfile,
    private readonly options: SessionOptions,
  ) {
    this.pool = this.newPool(1);
  }

  private get api(): pk.PKCS11 {
    return this.connection.module.api;
  }

  get stats(): { open: number; busy: number; cap: number; waiting: number } {
    return { open: this.pool.size, busy: this.pool.busy, cap: this.pool.cap, waiting: this.pool.waiting };
  }

  private newPool(tokenMax: number): SessionPool<Handle> {
    const caps = [this.profile.maxSessions, this.options.maxSessions ?? Infinity, tokenMax > 1 ? tokenMax - 1 : Infinity];
    return new SessionPool<Handle>(
      this.options.id,
      () => this.api.C_OpenSession(this.connection.slot, pk.CKF_SERIAL_SESSION | pk.CKF_RW_SESSION),
      (s) => this.api.C_CloseSession(s),
      Math.max(1, Math.min(...caps)),
      this.options.poolWaitMs ?? 2_000,
    );
  }

  /** A fresh login: a new pool sized for the token, and its keeper session. */
  attach(tokenMaxSessions: number, keeper: Handle): void {
    this.pool.reset(new MemberUnavailableError(this.options.id, 'reconnecting'));
    this.pool = this.newPool(tokenMaxSessions);
    this.keeper = keeper;
    this.recentErrors = 0;
  }

  detach(reason: string): void {
    this.pool.reset(new MemberUnavailableError(this.options.id, reason));
    this.keeper = undefined;
  }

  /** The keeper session, for synchronous reads right after a login (domain keys); undefined when not connected. */
  get keeperSession(): Handle | undefined {
    return this.keeper;
  }

  toHsmError(e: unknown, operation: MemberOperation): HsmError {
    if (e instanceof HsmError) return e;
    const ckr = ckrName(e);
    if (!ckr) return new InvalidInputError(`${operation} on ${this.options.id} rejected its arguments: ${e instanceof Error ? e.message : String(e)}`);
    return new Pkcs11CallError(classifyError(ckr, operation, this.profile.errorOverrides), ckr, operation, this.options.id);
  }

  /** Runs `fn` on a pooled session; failures are classified and handled as the profile says. */
  withSession<T>(operation: MemberOperation, fn: (s: Handle) => T | Promise<T>): Promise<T> {
    let s: Handle | undefined;
    try {
      this.connection.ensure();
      s = this.pool.tryAcquire();
    } catch (e) {
      const err = this.toHsmError(e, operation);
      // C_OpenSession failing as a device (NSS after its module went away) fails the member, as a failed call does
      if (err instanceof Pkcs11CallError && err.errorClass === 'device') {
        this.recentErrors++;
        this.connection.fail(err.message);
      }
      return Promise.reject(err);
    }
    if (s === undefined) return this.pool.acquire().then((acquired) => this.runOn(operation, acquired, fn));
    return this.runOn(operation, s, fn);
  }

  /** Sync results stay sync until the end: in-process tokens pay for one promise, not one per layer. */
  private runOn<T>(operation: MemberOperation, s: Handle, fn: (s: Handle) => T | Promise<T>): Promise<T> {
    const observe = this.onOperation;
    const started = observe ? process.hrtime.bigint() : 0n;
    const report = (ok: boolean): void => {
      if (observe) observe({ member: this.options.id, operation, ms: Number(process.hrtime.bigint() - started) / 1e6, ok });
    };
    const succeeded = (value: T): T => {
      this.pool.release(s);
      this.operations++;
      report(true);
      return value;
    };
    const failed = (e: unknown): HsmError => {
      const err = this.toHsmError(e, operation);
      this.afterFailure(err, s);
      report(false);
      return err;
    };
    let result: T | Promise<T>;
    try {
      result = fn(s);
    } catch (e) {
      return Promise.reject(failed(e));
    }
    return result instanceof Promise
      ? result.then(succeeded, (e: unknown) => {
          throw failed(e);
        })
      : Promise.resolve(succeeded(result));
  }

  private afterFailure(err: HsmError, s: Handle): void {
    if (err.errorClass === 'device') {
      this.recentErrors++;
      this.connection.fail(err.message);
    } else if (err.errorClass === 'session') {
      this.recentErrors++;
      this.pool.discard(s);
    } else {
      this.pool.release(s);
    }
  }

  /** Work on the keeper session (it owns unwrapped session objects); serialised. */
  withKeeper<T>(operation: MemberOperation, fn: (s: Handle) => T | Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      this.connection.ensure();
      const keeper = this.keeper;
      if (!keeper) throw new MemberUnavailableError(this.options.id, 'no session');
      try {
        return await fn(keeper);
      } catch (e) {
        const err = this.toHsmError(e, operation);
        if (err.errorClass === 'device' || err.errorClass === 'session') {
          this.recentErrors++;
          this.connection.fail(err.message);
        }
        throw err;
      }
    };
    const p = this.keeperQueue.then(run, run);
    this.keeperQueue = p.catch(() => undefined);
    return p;
  }

  /** Destroys a session object the keeper owns, if the module that made it is still the one loaded. */
  destroyObject(h: Handle): void {
    if (this.keeper && this.connection.current) this.api.C_DestroyObject(this.keeper, h);
  }

  find(s: Handle, template: pk.Template): Handle[] {
    this.api.C_FindObjectsInit(s, template);
    try {
      const out: Handle[] = [];
      for (let batch = this.api.C_FindObjects(s, 16); batch.length > 0; batch = this.api.C_FindObjects(s, 16)) out.push(...batch);
      return out;
    } finally {
      this.api.C_FindObjectsFinal(s);
    }
  }
}
