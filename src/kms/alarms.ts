import { appendFileSync } from 'node:fs';

/**
 * Alarms are events: a use attempt of a key pending deletion, a daily reminder in the last days
 * before deletion, the deletion itself, and the GCM use limit of a version (90 % and reached). Sinks: an in-memory log (queryable), a JSON-lines file,
 * a webhook, and whatever listeners (metrics) the server adds. Alarms never carry plaintext or material.
 */
export type AlarmKind =
  | 'PendingDeleteKeyUsed'
  | 'KeyDeletionImminent'
  | 'KeyDeleted'
  | 'UsageLimitApproaching'
  | 'UsageLimitReached'
  /** A stored row that carries authority failed its integrity check (changed outside the service); `detail` says which. */
  | 'StoreIntegrity';

export interface Alarm {
  kind: AlarmKind;
  /** Unix seconds. */
  time: number;
  ownerUin: string;
  keyId: string;
  /** The action attempted, for PendingDeleteKeyUsed. */
  action?: string;
  deletionDate?: number;
  detail?: string;
}

export type AlarmListener = (alarm: Alarm) => void;

export class Alarms {
  private readonly recent: Alarm[] = [];
  private readonly listeners: AlarmListener[] = [];

  constructor(private readonly keep = 1000) {}

  raise(alarm: Alarm): void {
    this.recent.push(alarm);
    if (this.recent.length > this.keep) this.recent.splice(0, this.recent.length - this.keep);
    for (const l of this.listeners) {
      try {
        l(alarm);
      } catch {
        // a failing sink must never fail the request that raised the alarm
      }
    }
  }

  onAlarm(listener: AlarmListener): void {
    this.listeners.push(listener);
  }

  /** The most recent alarms, newest last, optionally for one key. */
  list(keyId?: string): Alarm[] {
    return this.recent.filter((a) => keyId === undefined || a.keyId === keyId);
  }
}

/** Appends each alarm as one JSON line to `path`. */
export function jsonLinesSink(path: string): AlarmListener {
  return (alarm) => appendFileSync(path, JSON.stringify(alarm) + '\n', { mode: 0o600 });
}

/** POSTs each alarm as JSON to `url`; best effort with a timeout, failures reported to `onError`. */
export function webhookSink(url: string, onError: (message: string) => void, timeoutMs = 5000): AlarmListener {
  return (alarm) => {
    fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(alarm),
      signal: AbortSignal.timeout(timeoutMs),
    }).then(
      (res) => {
        if (!res.ok) onError(`alarm webhook answered HTTP ${res.status}`);
      },
      (e: unknown) => onError(`alarm webhook failed: ${(e as Error).message}`),
    );
  };
}
