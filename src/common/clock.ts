/** Every date the KMS uses comes from a Clock, so tests can cross rotation, expiry and deletion dates without waiting. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** Unix seconds of a clock. */
export function unixNow(clock: Clock): number {
  return Math.floor(clock.now() / 1000);
}

export const DAY_SECONDS = 86_400;

/** A clock that moves only when told to (tests, simulations). */
export class ManualClock implements Clock {
  constructor(private ms: number = Date.UTC(2026, 0, 1)) {}

  now(): number {
    return this.ms;
  }

  advance(seconds: number): void {
    this.ms += seconds * 1000;
  }

  set(ms: number): void {
    this.ms = ms;
  }
}
