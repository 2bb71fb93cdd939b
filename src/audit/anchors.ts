/**
 * Anchors: the head of the trail (seq and its HMAC link) pushed regularly to a sink outside the
 * store, so that events cut off the tail, or a trail rewritten from an earlier point, no longer match
 * what was pushed (`kmsctl audit verify --anchors FILE`). A link is an HMAC made inside the HSM, so
 * nobody can make an anchor that matches a rewritten trail either.
 */
import { createSocket } from 'node:dgram';
import { appendFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { ChainHead } from './chain';
import { AuditInputError } from './errors';

export const ANCHOR_KIND = 'kms-audit-anchor';

export interface Anchor extends ChainHead {
  kind: typeof ANCHOR_KIND;
  /** When it was pushed, unix ms. */
  time: number;
}

export type AnchorSink = (anchor: Anchor) => Promise<void>;

export const anchorLine = (a: Anchor): string => JSON.stringify({ kind: a.kind, seq: a.seq, hash: a.hash, time: a.time });

/** Appends each anchor as one JSON line (0600). */
export function fileAnchorSink(path: string): AnchorSink {
  return (a) => appendFile(path, `${anchorLine(a)}\n`, { mode: 0o600 });
}

/** POSTs each anchor as JSON; a refusal (non-2xx) or timeout rejects. */
export function webhookAnchorSink(url: string, timeoutMs = 5000): AnchorSink {
  return async (a) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: anchorLine(a),
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.arrayBuffer().catch(() => undefined);
    if (!res.ok) throw new Error(`audit anchor webhook answered HTTP ${res.status}`);
  };
}

/** Sends each anchor to a syslog server over UDP as one RFC 5424 message (facility log audit, severity info). */
export function syslogAnchorSink(host: string, port: number): AnchorSink {
  return (a) =>
    new Promise((resolve, reject) => {
      const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
      const message = `<110>1 ${new Date(a.time).toISOString()} ${hostname()} kms-audit ${process.pid} anchor - ${anchorLine(a)}`;
      socket.send(message, port, host, (e) => {
        socket.close();
        if (e) reject(e);
        else resolve();
      });
    });
}

/** The anchors in a sink's output (JSON lines, or syslog lines carrying them), in the order found. */
export function readAnchors(text: string): ChainHead[] {
  const anchors: ChainHead[] = [];
  for (const line of text.split('\n')) {
    const at = line.indexOf(`{"kind":"${ANCHOR_KIND}"`);
    if (at < 0) continue;
    const doc = JSON.parse(line.slice(at)) as Partial<Anchor>;
    if (!Number.isSafeInteger(doc.seq) || typeof doc.hash !== 'string' || !/^[0-9a-f]{64}$/.test(doc.hash)) {
      throw new AuditInputError(`not an audit anchor: ${line.slice(at, at + 80)}`);
    }
    anchors.push({ seq: doc.seq as number, hash: doc.hash });
  }
  return anchors;
}
