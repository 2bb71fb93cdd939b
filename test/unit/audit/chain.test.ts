import { createHash, createHmac, randomUUID } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import {
  ChainHead,
  ChainSlot,
  ChainVerifier,
  GENESIS,
  MAX_PROBLEMS,
  VerifierOptions,
  checkLinks,
  hashEvent,
  headOf,
  linkBatch,
  macEvent,
} from '../../../src/audit/chain';
import { LinkMac } from '../../../src/audit/link-mac';
import { AuditInputError } from '../../../src/audit/errors';
import {
  AuditEvent,
  DEFAULT_EVENT_SOURCE,
  EVENT_FIELDS,
  MAX_FIELD_CHARS,
  NewAuditEvent,
  STORED_FIELDS,
  StoredAuditEvent,
  canonical,
  parseStored,
  storedJson,
  toAuditEvent,
} from '../../../src/audit/event';
import { checkQuery, decodeCursor, encodeCursor, matches } from '../../../src/audit/query';

const now = (): number => 1_700_000_000_000;

function input(over: Partial<NewAuditEvent> = {}): NewAuditEvent {
  return {
    eventName: 'Encrypt',
    accountUin: '100',
    subAccountUin: '100',
    secretId: 'AKIDexample',
    sourceIp: '10.0.0.1',
    region: 'ap-guangzhou',
    requestId: randomUUID(),
    resource: randomUUID(),
    errorCode: '',
    ...over,
  };
}

/** Pure chain logic only: a software HMAC stands in for the HSM (the integration suite uses SoftHSM2). */
const KEY = Buffer.alloc(32, 7);
const softMac: LinkMac = { mac: async (d) => createHmac('sha256', KEY).update(d).digest() };

const events = (n: number, from = 0) => Array.from({ length: n }, (_, i) => toAuditEvent(input({ time: 1000 + from + i }), now));

function chainOf(n: number): Promise<StoredAuditEvent[]> {
  return linkBatch(undefined, events(n), softMac);
}

/** A chain as builds before the HMAC chain wrote it: plain SHA-256 links. */
function plainChain(n: number, head?: ChainHead): StoredAuditEvent[] {
  let prevHash = head?.hash ?? GENESIS;
  return events(n).map((e, i) => {
    const seq = (head?.seq ?? 0) + i + 1;
    const hash = hashEvent(prevHash, e, seq);
    const stored = { ...e, seq, prevHash, hash };
    prevHash = hash;
    return stored;
  });
}

const slots = (list: StoredAuditEvent[]): ChainSlot[] => list.map((e) => ({ seq: e.seq, event: e }));

/** Verifies `list` against `head` (by default: the head of the list itself, as if written so). */
async function verify(list: ChainSlot[], head: ChainHead | 'own' | 'none' = 'own', options: VerifierOptions = { requireMac: true }) {
  const v = new ChainVerifier(options);
  const checks = await checkLinks(list, softMac);
  list.forEach((s) => v.visit(s, checks.get(s.seq)));
  if (head === 'none') return v.end(undefined);
  return v.end(head === 'own' ? headOf(list.map((s) => s.event as StoredAuditEvent)) : head);
}
const withAnchor = (anchor: ChainHead | undefined): VerifierOptions => ({ requireMac: true, anchors: anchor ? [anchor] : [] });

describe('audit events', () => {
  test('toAuditEvent copies exactly the event fields, fills id and time, and cuts long text', () => {
    const withExtras = { ...input({ eventName: 'x'.repeat(5000) }), secretKey: 'SECRET-KEY', plaintext: 'PLAIN', pin: '1234' };
    const e = toAuditEvent(withExtras, now);
    expect(Object.keys(e)).toEqual([...EVENT_FIELDS]);
    expect(e.time).toBe(now());
    expect(e.eventId).toMatch(/^[0-9a-f-]{36}$/);
    expect(e.eventName).toHaveLength(MAX_FIELD_CHARS);
    expect(JSON.stringify(e)).not.toMatch(/SECRET-KEY|PLAIN|1234/);
  });

  test('toAuditEvent refuses wrong types, a non-UUID id and a bad time', () => {
    expect(() => toAuditEvent(input({ eventId: 'nope' }), now)).toThrow(AuditInputError);
    expect(() => toAuditEvent(input({ time: -1 }), now)).toThrow(AuditInputError);
    expect(() => toAuditEvent(input({ time: 1.5 }), now)).toThrow(AuditInputError);
    expect(() => toAuditEvent({ ...input(), region: 7 as unknown as string }, now)).toThrow(AuditInputError);
  });

  test('the canonical form has seq first and a fixed key order, whatever the object order', () => {
    const e = toAuditEvent(input({ time: 5 }), now);
    const shuffled = Object.fromEntries(Object.entries(e).reverse()) as unknown as AuditEvent;
    expect(canonical(shuffled, 3)).toBe(canonical(e, 3));
    expect(Object.keys(JSON.parse(canonical(e, 3)) as object)).toEqual(['seq', ...EVENT_FIELDS.filter((f) => f !== 'eventSource')]);
    const cam = { ...e, eventSource: 'cam.tencentcloudapi.com' };
    expect(Object.keys(JSON.parse(canonical(cam, 3)) as object)).toEqual(['seq', ...EVENT_FIELDS]);
    expect(canonical(e, 3)).not.toBe(canonical(e, 4));
  });

  test('eventSource defaults to kms; an event of the default source has the canonical form of the build before the field', () => {
    const e = toAuditEvent(input({ eventId: '7d7f0c4e-8a55-4c1e-9a57-1f6a3c2b9d10', time: 5, requestId: 'r', resource: 'key/*', eventName: 'ListKeys' }), now);
    expect(e.eventSource).toBe(DEFAULT_EVENT_SOURCE);
    // the exact text the previous build hashed (its canonical form had no eventSource)
    expect(canonical(e, 1)).toBe(
      '{"seq":1,"eventId":"7d7f0c4e-8a55-4c1e-9a57-1f6a3c2b9d10","time":5,"eventName":"ListKeys","accountUin":"100","subAccountUin":"100",' +
        '"secretId":"AKIDexample","sourceIp":"10.0.0.1","region":"ap-guangzhou","requestId":"r","resource":"key/*","errorCode":""}',
    );
    expect(toAuditEvent(input({ eventSource: 'cam.tencentcloudapi.com' }), now).eventSource).toBe('cam.tencentcloudapi.com');
    expect(toAuditEvent(input({ eventSource: 'x'.repeat(1000) }), now).eventSource).toHaveLength(MAX_FIELD_CHARS);
    expect(() => toAuditEvent(input({ eventSource: 7 as unknown as string }), now)).toThrow(AuditInputError);
  });

  test('a stored document of an older build (no eventSource) reads back with the default and its link still verifies', async () => {
    const [e] = await chainOf(1);
    const legacy = JSON.parse(storedJson(e)) as Record<string, unknown>;
    delete legacy.eventSource;
    const parsed = parseStored(JSON.stringify(legacy));
    expect(parsed).toEqual(e);
    expect((await verify(slots([parsed as StoredAuditEvent]))).ok).toBe(true);
  });

  test('the link covers eventSource: changing it either way is reported', async () => {
    const chain = await linkBatch(undefined, [toAuditEvent(input({ eventSource: 'cam.tencentcloudapi.com' }), now), toAuditEvent(input(), now)], softMac);
    expect((await verify(slots(chain))).ok).toBe(true);
    const toDefault = [{ ...chain[0], eventSource: DEFAULT_EVENT_SOURCE }, chain[1]];
    const fromDefault = [chain[0], { ...chain[1], eventSource: 'cam.tencentcloudapi.com' }];
    expect((await verify(slots(toDefault))).problems[0]).toEqual({ seq: 1, reason: expect.stringContaining('does not match its link') });
    expect((await verify(slots(fromDefault))).problems[0]).toEqual({ seq: 2, reason: expect.stringContaining('does not match its link') });
  });

  test('parseStored reads a stored event back and names what is wrong with anything else', async () => {
    const [e] = await chainOf(1);
    expect(parseStored(storedJson(e))).toEqual(e);
    expect(Object.keys(JSON.parse(storedJson(e)) as object)).toEqual([...STORED_FIELDS]);
    expect(parseStored('{')).toBe('not JSON');
    expect(parseStored('[]')).toBe('not a JSON object');
    expect(parseStored(JSON.stringify({ ...e, plaintext: 'x' }))).toBe('unexpected fields plaintext');
    expect(parseStored(JSON.stringify({ ...e, seq: '1' }))).toBe('field seq is missing or not a number');
  });
});

describe('the chain', () => {
  test('link = HMAC(prevHash || canonical) through the LinkMac, linked from the genesis value', async () => {
    const chain = await chainOf(3);
    expect(chain.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(chain[0].prevHash).toBe(GENESIS);
    expect(chain[1].prevHash).toBe(chain[0].hash);
    const expected = createHmac('sha256', KEY)
      .update(chain[1].prevHash + canonical(chain[1], 2))
      .digest('hex');
    expect(chain[1].hash).toBe(expected);
    expect(await macEvent(softMac, chain[1].prevHash, chain[1], 2)).toBe(expected);
    expect(chain[1].hash).not.toBe(hashEvent(chain[1].prevHash, chain[1], 2));
  });

  test('the plain link is SHA-256(prevHash || canonical), as builds before the HMAC chain wrote it', () => {
    const [e] = plainChain(1);
    expect(e.hash).toBe(
      createHash('sha256')
        .update(GENESIS + canonical(e, 1))
        .digest('hex'),
    );
  });

  test('a batch continues after a head', async () => {
    const first = await chainOf(2);
    const next = await linkBatch(headOf(first), [toAuditEvent(input(), now)], softMac);
    expect(next[0].seq).toBe(3);
    expect(next[0].prevHash).toBe(first[1].hash);
    expect((await verify(slots([...first, ...next]))).ok).toBe(true);
  });

  test('an intact chain verifies; an empty chain with no head too', async () => {
    expect(await verify(slots(await chainOf(10)))).toEqual({ ok: true, checked: 10, problems: [], hmacFrom: 1, from: 1 });
    expect(await verify([], 'none')).toEqual({ ok: true, checked: 0, problems: [], from: 1 });
  });

  test('plain links verify up to where the HMAC chain begins; the first HMAC link is the epoch', async () => {
    const old = plainChain(4);
    const rest = await linkBatch(headOf(old), events(3, 10), softMac);
    expect(await verify(slots([...old, ...rest]))).toMatchObject({ ok: true, checked: 7, hmacFrom: 5 });
  });

  test('a trail of plain links only is reported when HMAC links are required (an export of old events may have none)', async () => {
    expect((await verify(slots(plainChain(3)))).problems).toEqual([{ seq: 1, reason: expect.stringContaining('no event is HMAC-linked') }]);
    expect((await verify(slots(plainChain(3)), 'own', {})).ok).toBe(true);
  });

  test('a consistent rewrite with plain SHA-256 after the epoch is reported where it begins', async () => {
    const chain = await chainOf(6);
    const kept = [...chain.slice(0, 2), ...chain.slice(3)];
    const forged = kept.slice(0, 2);
    let prevHash = kept[1].hash;
    for (const [i, e] of kept.slice(2).entries()) {
      const seq = 3 + i;
      const hash = hashEvent(prevHash, e, seq);
      forged.push({ ...e, seq, prevHash, hash });
      prevHash = hash;
    }
    const r = await verify(slots(forged));
    expect(r.ok).toBe(false);
    expect(r.problems[0]).toEqual({ seq: 3, reason: expect.stringContaining('plain SHA-256 link after the HMAC chain began at 1') });
  });

  test('a changed event with a recomputed link under another key does not match its link', async () => {
    const chain = await chainOf(5);
    const forged = { ...chain[2], accountUin: '999' };
    chain[2] = {
      ...forged,
      hash: createHmac('sha256', Buffer.alloc(32, 9))
        .update(forged.prevHash + canonical(forged, 3))
        .digest('hex'),
    };
    expect((await verify(slots(chain))).problems[0]).toEqual({ seq: 3, reason: expect.stringContaining('does not match its link') });
  });

  test('a changed field is reported at its seq', async () => {
    const chain = await chainOf(5);
    chain[2] = { ...chain[2], errorCode: 'UnauthorizedOperation' };
    const r = await verify(slots(chain));
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual([{ seq: 3, reason: expect.stringContaining('changed') }]);
  });

  test('a removed event is reported as missing', async () => {
    const chain = await chainOf(5);
    const r = await verify(slots([...chain.slice(0, 2), ...chain.slice(3)]));
    expect(r.problems).toEqual([{ seq: 3, reason: 'event 3 is missing (removed)' }]);
    expect(r.checked).toBe(4);
  });

  test('the first events removed are reported', async () => {
    const chain = await chainOf(5);
    expect((await verify(slots(chain.slice(2)))).problems).toEqual([{ seq: 1, reason: 'events 1..2 are missing (removed)' }]);
  });

  test('after retention, verification begins at the start record: the first kept event links to its prevHash', async () => {
    const chain = await chainOf(6);
    const start = { seq: 4, prevHash: chain[2].hash };
    expect(await verify(slots(chain.slice(3)), 'own', { requireMac: true, start })).toMatchObject({ ok: true, checked: 3, from: 4 });
    expect((await verify(slots(chain.slice(4)), 'own', { requireMac: true, start })).problems).toEqual([{ seq: 4, reason: 'event 4 is missing (removed)' }]);
    const wrong = { seq: 4, prevHash: chain[1].hash };
    expect((await verify(slots(chain.slice(3)), 'own', { requireMac: true, start: wrong })).problems[0].reason).toMatch(/prevHash does not match/);
  });

  test('two swapped rows are reported at both seqs', async () => {
    const chain = await chainOf(5);
    const swapped = [...chain];
    [swapped[1], swapped[2]] = [
      { ...chain[2], seq: 2 },
      { ...chain[1], seq: 3 },
    ];
    expect((await verify(slots(swapped))).problems.map((p) => p.seq)).toEqual([2, 3]);
  });

  test('an event stored at another seq than it was chained at is reported as moved', async () => {
    const chain = await chainOf(4);
    const list = slots(chain);
    [list[1], list[2]] = [
      { seq: 2, event: chain[2] },
      { seq: 3, event: chain[1] },
    ];
    expect((await verify(list)).problems).toEqual([
      { seq: 2, reason: 'the event stored at 2 was chained at 3 (moved or reordered)' },
      { seq: 3, reason: 'the event stored at 3 was chained at 2 (moved or reordered)' },
    ]);
  });

  test('removed newest events are caught by the head anchor, and events beyond it too', async () => {
    const chain = await chainOf(6);
    expect((await verify(slots(chain.slice(0, 4)), headOf(chain) as ChainHead)).problems).toEqual([{ seq: 5, reason: expect.stringContaining('truncated') }]);
    expect((await verify(slots(chain), headOf(chain.slice(0, 4)) as ChainHead)).problems).toEqual([
      { seq: 5, reason: expect.stringContaining('beyond the head') },
    ]);
    expect((await verify(slots(chain), { seq: 6, hash: chain[4].hash })).problems).toEqual([{ seq: 6, reason: expect.stringContaining('head anchor') }]);
    expect((await verify(slots(chain), 'none')).problems).toEqual([{ seq: 1, reason: 'the head anchor is missing' }]);
  });

  test('a consistent truncation passes, but not against an anchor kept outside', async () => {
    const chain = await chainOf(6);
    const kept = headOf(chain);
    const cut = chain.slice(0, 4);
    expect((await verify(slots(cut))).ok).toBe(true);
    expect((await verify(slots(cut), 'own', withAnchor(kept))).problems).toEqual([{ seq: 6, reason: expect.stringContaining('anchored event 6 is missing') }]);
    expect((await verify(slots(chain), 'own', withAnchor(kept))).ok).toBe(true);
  });

  test('every anchor is checked; anchors below the start of the kept trail are covered by the archive', async () => {
    const chain = await chainOf(6);
    const anchors = [
      { seq: 2, hash: chain[1].hash },
      { seq: 4, hash: chain[3].hash },
      { seq: 5, hash: chain[1].hash },
    ];
    expect((await verify(slots(chain), 'own', { requireMac: true, anchors })).problems).toEqual([
      { seq: 5, reason: expect.stringContaining('does not match the anchor') },
    ]);
    const start = { seq: 3, prevHash: chain[1].hash };
    expect((await verify(slots(chain.slice(2)), 'own', { requireMac: true, start, anchors: anchors.slice(0, 2) })).ok).toBe(true);
  });

  test('an unreadable slot is reported and its successor is not blamed', async () => {
    const chain = await chainOf(3);
    const list = slots(chain);
    list[1] = { seq: 2, event: { unreadable: 'not JSON' } };
    expect((await verify(list)).problems).toEqual([{ seq: 2, reason: 'the stored event cannot be read: not JSON' }]);
  });

  test('the problem list is bounded', async () => {
    const chain = (await chainOf(MAX_PROBLEMS + 50)).map((e) => ({ ...e, region: 'tampered' }));
    const r = await verify(slots(chain), 'own', {});
    expect(r.problems).toHaveLength(MAX_PROBLEMS + 1);
    expect(r.problems[MAX_PROBLEMS].reason).toMatch(/not listed/);
  });
});

describe('audit queries', () => {
  test('cursors round-trip; foreign cursors and bad limits are refused', () => {
    expect(decodeCursor(encodeCursor({ time: 1_700_000_000_123, seq: 42 }))).toEqual({ time: 1_700_000_000_123, seq: 42 });
    expect(() => decodeCursor('abc')).toThrow(AuditInputError);
    expect(() => checkQuery({ limit: 0 })).toThrow(AuditInputError);
    expect(() => checkQuery({ limit: 1001 })).toThrow(AuditInputError);
    expect(() => checkQuery({ limit: 10, from: -5 })).toThrow(AuditInputError);
    expect(checkQuery({ limit: 1000, cursor: '5-6' })).toEqual({ time: 5, seq: 6 });
  });

  test('matches applies every filter; the keyword is a substring of any text field', () => {
    const e = toAuditEvent(input({ time: 100, eventName: 'Decrypt', sourceIp: '192.168.7.9', errorCode: 'ResourceUnavailable.CmkDisabled' }), now);
    expect(matches(e, {})).toBe(true);
    expect(matches(e, { from: 100, to: 100, eventName: 'Decrypt', accountUin: '100', resource: e.resource })).toBe(true);
    expect(matches(e, { from: 101 })).toBe(false);
    expect(matches(e, { to: 99 })).toBe(false);
    expect(matches(e, { eventName: 'Encrypt' })).toBe(false);
    expect(matches(e, { keyword: '168.7' })).toBe(true);
    expect(matches(e, { keyword: 'CmkDisabled' })).toBe(true);
    expect(matches(e, { keyword: 'cmkdisabled' })).toBe(false);
    expect(matches(e, { keyword: '' })).toBe(true);
  });
});

describe('the audit code', () => {
  const dir = path.join(process.cwd(), 'src', 'audit');
  const sources = (): Array<[string, string]> => fs.readdirSync(dir).map((f) => [f, fs.readFileSync(path.join(dir, f), 'utf8')]);

  test("has no UPDATE or DELETE statement but retention's DELETE below the start record and the schema number's upgrade", () => {
    const allowed: Record<string, string[]> = {
      'sqlite-audit-log.ts': ['UPDATE audit_meta SET', 'DELETE FROM'],
    };
    for (const [file, text] of sources()) {
      const hits = text.match(/\bDELETE\s+FROM\b|\bUPDATE\s+\w+\s+SET\b|\bREPLACE\s+INTO\b|\bON\s+CONFLICT\b[^;]*\bDO\s+UPDATE\b/gi);
      expect({ file, hits }).toEqual({ file, hits: allowed[file] ?? null });
    }
    expect(sources().find(([f]) => f === 'sqlite-audit-log.ts')?.[1]).toContain("const RETAIN = 'DELETE FROM audit_events WHERE seq < ?';");
  });

  test('imports nothing from hsm/ (the HSM is reached through the LinkMac port)', () => {
    for (const [file, text] of sources()) expect({ file, hsm: /from '\.\.\/hsm\//.test(text) }).toEqual({ file, hsm: false });
  });
});
