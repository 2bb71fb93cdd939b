import type * as pk from 'pkcs11js';

/**
 * A PKCS#11 library in memory, for unit tests of connection, recovery and backoff only: one token,
 * sessions and a login, and switches that make calls fail as a device would. It does no
 * cryptography; integration tests use real tokens.
 */
export class FakePkcs11 {
  calls: string[] = [];
  /** When each C_Initialize was called (ms since the epoch). */
  initializedAt: number[] = [];
  /** Every call but C_Finalize throws CKR_DEVICE_ERROR while set. */
  deviceDown = false;
  /** C_Initialize fails this many more times. */
  initFailures = 0;
  pin = '1234';
  private initialized = false;
  private nextSession = 1;
  private readonly open = new Set<number>();

  constructor(readonly tokenLabel = 'fake-token') {}

  private step(name: string): void {
    this.calls.push(name);
    if (this.deviceDown && name !== 'C_Finalize') throw new Error(`${name} failed: CKR_DEVICE_ERROR`);
    if (name !== 'C_Initialize' && name !== 'load' && !this.initialized) throw new Error(`${name} failed: CKR_CRYPTOKI_NOT_INITIALIZED`);
  }

  count(name: string): number {
    return this.calls.filter((c) => c === name).length;
  }

  get openSessions(): number {
    return this.open.size;
  }

  load(): void {
    this.step('load');
  }

  C_Initialize(): void {
    this.step('C_Initialize');
    this.initializedAt.push(Date.now());
    if (this.initFailures > 0) {
      this.initFailures--;
      throw new Error('C_Initialize failed: CKR_DEVICE_ERROR');
    }
    if (this.initialized) throw new Error('CKR_CRYPTOKI_ALREADY_INITIALIZED');
    this.initialized = true;
  }

  C_Finalize(): void {
    this.step('C_Finalize');
    this.initialized = false;
    this.open.clear();
  }

  C_GetSlotList(): Buffer[] {
    this.step('C_GetSlotList');
    return [Buffer.from([1])];
  }

  C_GetTokenInfo(): { label: string; maxSessionCount: number } {
    this.step('C_GetTokenInfo');
    return { label: `${this.tokenLabel}`.padEnd(32, ' '), maxSessionCount: 0 };
  }

  C_OpenSession(): Buffer {
    this.step('C_OpenSession');
    const id = this.nextSession++;
    this.open.add(id);
    return Buffer.from([id]);
  }

  C_CloseSession(s: Buffer): void {
    this.step('C_CloseSession');
    this.open.delete(s[0]);
  }

  C_CloseAllSessions(): void {
    this.step('C_CloseAllSessions');
    this.open.clear();
  }

  C_Login(_s: Buffer, _type: number, pin: string): void {
    this.step('C_Login');
    if (pin !== this.pin) throw new Error('C_Login failed: CKR_PIN_INCORRECT');
  }

  C_GetMechanismList(): number[] {
    this.step('C_GetMechanismList');
    return [];
  }

  C_FindObjectsInit(): void {
    this.step('C_FindObjectsInit');
  }

  C_FindObjects(): Buffer[] {
    this.step('C_FindObjects');
    return [];
  }

  C_FindObjectsFinal(): void {
    this.step('C_FindObjectsFinal');
  }

  C_GenerateRandom(s: Buffer, out: Buffer): Buffer {
    this.step('C_GenerateRandom');
    if (!this.open.has(s[0])) throw new Error('C_GenerateRandom failed: CKR_SESSION_HANDLE_INVALID');
    return out.fill(7);
  }

  /** The object the module layer holds (the fake implements only what connection and sessions call). */
  asLibrary(): pk.PKCS11 {
    return this as unknown as pk.PKCS11;
  }
}
