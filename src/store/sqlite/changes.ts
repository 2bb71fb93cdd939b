/**
 * Change notification on SQLite. A write through any handle in this process reaches the listeners
 * of every handle on the same file right after its commit ({keyId}). Writes by other processes are
 * found by polling `PRAGMA data_version` every 250 ms while there are listeners and reported as {}
 * (anything may have changed); the change counter in the file (table `changes`) tells them apart
 * from this process's own writes. A new listener hears {} once, at once: watching here is live at once.
 */
import Database from 'better-sqlite3';
import * as fs from 'fs';
import * as path from 'path';
import { emitChange } from '../record';
import type { KeyChange } from '../store';

const POLL_MS = 250;

type Listener = (change: KeyChange) => void;

/**
 * Process-wide state of one database file: the listeners of every handle on it, and the change
 * numbers this process committed, so a handle's poller can tell other processes' writes from ours.
 */
export class FileHub {
  private static readonly byFile = new Map<string, FileHub>();
  readonly listeners = new Set<Listener>();
  /** poller -> the last change number it has accounted for */
  private readonly pollers = new Map<object, number>();
  private readonly localSeqs = new Set<number>();
  private handles = 0;

  private constructor(private readonly file: string) {}

  static attach(file: string): FileHub {
    const hub = FileHub.byFile.get(file) ?? new FileHub(file);
    FileHub.byFile.set(file, hub);
    hub.handles++;
    return hub;
  }

  detach(): void {
    if (--this.handles === 0) FileHub.byFile.delete(this.file);
  }

  committed(keyId: string, seq: number): void {
    if (this.pollers.size > 0) this.localSeqs.add(seq);
    emitChange(this.listeners, { keyId });
  }

  startPoller(poller: object, seq: number): void {
    this.pollers.set(poller, seq);
  }

  stopPoller(poller: object): void {
    this.pollers.delete(poller);
    this.prune();
  }

  /** Moves `poller` on to change `seq`; true when a change since its last call was not made by this process. */
  advance(poller: object, seq: number): boolean {
    const last = this.pollers.get(poller) ?? seq;
    let local = 0;
    for (const s of this.localSeqs) if (s > last && s <= seq) local++;
    this.pollers.set(poller, seq);
    this.prune();
    return seq - last > local;
  }

  private prune(): void {
    const oldest = Math.min(...this.pollers.values());
    for (const s of this.localSeqs) if (this.pollers.size === 0 || s <= oldest) this.localSeqs.delete(s);
  }
}

export function hubKey(file: string): string {
  if (file === '' || file === ':memory:') return `memory:${Math.random()}`;
  try {
    return fs.realpathSync(file);
  } catch {
    return path.resolve(file);
  }
}

/** One handle's listeners and its poller of the file for other processes' writes. */
export class ChangeFeed {
  private readonly hub: FileHub;
  private readonly listeners = new Set<Listener>();
  private poller: { timer: NodeJS.Timeout; dataVersion: number } | undefined;
  private readonly bump: Database.Statement;
  private readonly seq: Database.Statement;

  /** On a database whose schema is in place. */
  constructor(
    private readonly db: Database.Database,
    file: string,
  ) {
    this.bump = db.prepare('UPDATE changes SET seq = seq + 1 WHERE id = 1 RETURNING seq');
    this.seq = db.prepare('SELECT seq FROM changes WHERE id = 1');
    this.hub = FileHub.attach(hubKey(file));
  }

  /** Counts a change inside the write's transaction; returns its number for `committed`. */
  count(): number {
    return (this.bump.get() as { seq: number }).seq;
  }

  /** After the commit of change `seq` of key `keyId`. */
  committed(keyId: string, seq: number): void {
    this.hub.committed(keyId, seq);
  }

  watch(listener: Listener): () => void {
    const entry: Listener = (change) => listener(change);
    this.listeners.add(entry);
    this.hub.listeners.add(entry);
    if (this.poller === undefined && this.db.open) this.startPolling();
    queueMicrotask(() => {
      if (this.listeners.has(entry)) emitChange([entry], {});
    });
    return () => {
      this.listeners.delete(entry);
      this.hub.listeners.delete(entry);
      if (this.listeners.size === 0) this.stopPolling();
    };
  }

  close(): void {
    this.stopPolling();
    for (const l of this.listeners) this.hub.listeners.delete(l);
    this.listeners.clear();
    this.hub.detach();
  }

  private startPolling(): void {
    this.hub.startPoller(this, this.changeSeq());
    const timer = setInterval(() => this.poll(), POLL_MS);
    timer.unref();
    this.poller = { timer, dataVersion: this.dataVersion() };
  }

  private stopPolling(): void {
    if (this.poller === undefined) return;
    clearInterval(this.poller.timer);
    this.poller = undefined;
    this.hub.stopPoller(this);
  }

  private poll(): void {
    if (this.poller === undefined || !this.db.open) return;
    try {
      const dataVersion = this.dataVersion();
      if (dataVersion === this.poller.dataVersion) return;
      this.poller.dataVersion = dataVersion;
      if (this.hub.advance(this, this.changeSeq())) emitChange(this.listeners, {});
    } catch {
      // a busy or closing database: the next tick tries again
    }
  }

  private dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  private changeSeq(): number {
    return (this.seq.get() as { seq: number }).seq;
  }
}
