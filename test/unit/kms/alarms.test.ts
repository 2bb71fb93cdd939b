import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Alarm, Alarms, jsonLinesSink, webhookSink } from '../../../src/kms/alarms';
import { within } from '../../support/poll';

const alarm: Alarm = { kind: 'PendingDeleteKeyUsed', time: 1_800_000_000, ownerUin: '1001', keyId: 'k-1', action: 'Encrypt', deletionDate: 1_800_600_000 };

describe('alarms', () => {
  test('the in-memory log keeps the newest alarms and filters by key; a failing sink does not stop the others', () => {
    const alarms = new Alarms(3);
    const seen: Alarm[] = [];
    alarms.onAlarm(() => {
      throw new Error('broken sink');
    });
    alarms.onAlarm((a) => seen.push(a));
    for (let i = 0; i < 5; i++) alarms.raise({ ...alarm, keyId: `k-${i}` });
    expect(alarms.list().map((a) => a.keyId)).toEqual(['k-2', 'k-3', 'k-4']);
    expect(alarms.list('k-3')).toHaveLength(1);
    expect(seen).toHaveLength(5);
  });

  test('the JSON-lines sink appends one line per alarm to a 0600 file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kms-alarms-'));
    try {
      const sink = jsonLinesSink(join(dir, 'alarms.log'));
      sink(alarm);
      sink({ ...alarm, kind: 'KeyDeleted' });
      const lines = readFileSync(join(dir, 'alarms.log'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Alarm);
      expect(lines.map((a) => a.kind)).toEqual(['PendingDeleteKeyUsed', 'KeyDeleted']);
      expect(statSync(join(dir, 'alarms.log')).mode & 0o777).toBe(0o600);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the webhook sink POSTs the alarm as JSON and reports failures', async () => {
    const received: unknown[] = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        received.push({ method: req.method, type: req.headers['content-type'], body: JSON.parse(body) });
        res.statusCode = received.length === 1 ? 204 : 500;
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const errors: string[] = [];
    const sink = webhookSink(`http://127.0.0.1:${port}/alarm`, (m) => errors.push(m));
    try {
      sink(alarm);
      sink(alarm);
      await within(
        5_000,
        () => received.length >= 2 && errors.length >= 1,
        () => `two deliveries and an error (so far ${JSON.stringify({ received, errors })})`,
      );
      expect(received[0]).toEqual({ method: 'POST', type: 'application/json', body: alarm });
      expect(errors).toEqual(['alarm webhook answered HTTP 500']);
    } finally {
      server.close();
    }
  });
});
