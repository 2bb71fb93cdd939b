/**
 * Change notification on Redis: every COMMIT publishes its key id on CHANNEL. While there are
 * listeners a second connection subscribes to it; listeners hear {} once the subscription is in
 * place (a listener added later: at once) and after every reconnect, since changes before that may
 * have been missed.
 */
import Redis from 'ioredis';
import { emitChange } from '../record';
import type { KeyChange } from '../store';
import { CHANNEL } from './keys';

type Listener = (change: KeyChange) => void;

export class ChangeSubscription {
  private readonly listeners = new Set<Listener>();
  private subscriber: Redis | undefined;
  /** The subscriber's subscription is confirmed (a new listener is live at once). */
  private subscribed = false;

  constructor(private readonly redis: Redis) {}

  watch(listener: Listener): () => void {
    const entry: Listener = (change) => listener(change);
    this.listeners.add(entry);
    if (this.subscriber === undefined && this.redis.status !== 'end') this.subscribe();
    else if (this.subscribed)
      queueMicrotask(() => {
        if (this.listeners.has(entry)) emitChange([entry], {});
      });
    return () => {
      this.listeners.delete(entry);
      if (this.listeners.size === 0) this.unsubscribe();
    };
  }

  close(): void {
    this.listeners.clear();
    this.unsubscribe();
  }

  private subscribe(): void {
    // the SUBSCRIBE below is issued before this connection is up: it waits in the offline queue
    const sub = this.redis.duplicate({ enableOfflineQueue: true });
    this.subscriber = sub;
    let connectedBefore = false;
    sub.on('message', (_channel: string, keyId: string) => emitChange(this.listeners, { keyId }));
    sub.on('ready', () => {
      if (connectedBefore) this.confirmSubscription(sub);
      connectedBefore = true;
    });
    sub.on('close', () => {
      if (this.subscriber === sub) this.subscribed = false;
    });
    sub.on('error', () => undefined); // ioredis reconnects by itself; listeners hear {} when it has
    this.confirmSubscription(sub);
  }

  /** (Re)subscribes and, once the server confirms, tells listeners anything may have changed meanwhile. */
  private confirmSubscription(sub: Redis): void {
    sub.subscribe(CHANNEL).then(
      () => {
        if (this.subscriber !== sub) return;
        this.subscribed = true;
        emitChange(this.listeners, {});
      },
      () => undefined,
    );
  }

  private unsubscribe(): void {
    const sub = this.subscriber;
    this.subscriber = undefined;
    this.subscribed = false;
    sub?.disconnect();
  }
}
