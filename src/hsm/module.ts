import * as pk from 'pkcs11js';
import { existsSync } from 'node:fs';
import { ConfigError, ModuleLoadError, TokenNotFoundError } from './errors';

export interface ModuleSpec {
  path: string;
  /** Environment set just before C_Initialize (SoftHSM2 reads SOFTHSM2_CONF then). */
  env?: Record<string, string>;
  libraryParameters?: string;
  /** Makes the library object (default: pkcs11js loading `path`); unit tests inject a fake here. */
  library?: () => pk.PKCS11;
}

export interface TokenSlot {
  slot: pk.Handle;
  label: string;
  maxSessions: number;
}

/**
 * One loaded and initialised PKCS#11 library. `generation` grows on every (re-)initialisation,
 * so sessions and handles of an older generation are known to be dead.
 */
export class Pkcs11Module {
  readonly api: pk.PKCS11;
  generation = 0;
  private loaded = false;
  private initialized = false;
  private pending = 0;

  constructor(readonly spec: ModuleSpec) {
    this.api = spec.library ? spec.library() : new pk.PKCS11();
  }

  /** Thread-pool calls not yet settled: finalising the module under one crashes the process. */
  get callsInFlight(): number {
    return this.pending;
  }

  track<T>(call: Promise<T>): Promise<T> {
    this.pending++;
    return call.finally(() => {
      this.pending--;
    });
  }

  get isInitialized(): boolean {
    return this.initialized;
  }

  initialize(): void {
    if (this.initialized) return;
    const clash = [...modules.values()].find((m) => m !== this && m.initialized && m.spec.path === this.spec.path);
    if (clash) {
      // dlopen returns the same library instance for the same path: a second configuration would silently be ignored.
      throw new ConfigError(
        `${this.spec.path} is already initialised with another environment or library parameters; load a copy of the library from another path`,
      );
    }
    if (!this.loaded) {
      if (!this.spec.library && !existsSync(this.spec.path)) throw new ModuleLoadError(this.spec.path, 'file not found');
      try {
        this.api.load(this.spec.path);
      } catch (e) {
        throw new ModuleLoadError(this.spec.path, (e as Error).message);
      }
      this.loaded = true;
    }
    for (const [k, v] of Object.entries(this.spec.env ?? {})) process.env[k] = v;
    const options: pk.InitializationOptions = { flags: pk.CKF_OS_LOCKING_OK };
    if (this.spec.libraryParameters) options.libraryParameters = this.spec.libraryParameters;
    try {
      this.api.C_Initialize(options);
    } catch (e) {
      if (!/CKR_CRYPTOKI_ALREADY_INITIALIZED/.test((e as Error).message)) throw e;
    }
    this.initialized = true;
    this.generation++;
  }

  finalize(): void {
    if (!this.initialized) return;
    this.initialized = false;
    try {
      this.api.C_Finalize();
    } catch {
      // already gone: finalising is best effort
    }
  }

  reinitialize(): void {
    this.finalize();
    this.initialize();
  }

  tokens(): TokenSlot[] {
    return this.api.C_GetSlotList(true).map((slot) => {
      const info = this.api.C_GetTokenInfo(slot);
      return { slot, label: info.label.trim(), maxSessions: info.maxSessionCount };
    });
  }

  findToken(label: string): TokenSlot {
    const all = this.tokens();
    const found = all.find((t) => t.label === label);
    if (!found)
      throw new TokenNotFoundError(
        label,
        all.map((t) => t.label),
      );
    return found;
  }
}

const modules = new Map<string, Pkcs11Module>();

/** The same library with the same environment is loaded once per process and shared by its members. */
export function openModule(spec: ModuleSpec): Pkcs11Module {
  if (spec.library) return new Pkcs11Module(spec);
  const key = JSON.stringify([spec.path, spec.env ?? {}, spec.libraryParameters ?? '']);
  let mod = modules.get(key);
  if (!mod) {
    mod = new Pkcs11Module(spec);
    modules.set(key, mod);
  }
  return mod;
}
