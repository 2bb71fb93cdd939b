import { createHash, randomUUID } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { ChainHead, ChainSlot, ChainVerifier, GENESIS, MAX_PROBLEMS, hashEvent, headOf, linkBatch } from '../../../src/audit/chain';
import { AuditInputError } from '../../../src/audit/errors';
import {
  AuditEvent, EVENT_FIELDS, MAX_FIELD_CHARS, NewAuditEvent, STORED_FIELDS, StoredAuditEvent, canonical, parseStored, storedJson, toAuditEvent,
} from '../../../src/audit/event';
import { checkQuery, decodeCursor, encodeCursor, matches } from '../../../src/audit/query';

const now = (): number => 1_700_000_000_000;

function input(over: Partial<NewAuditEvent> = {}): NewAuditEvent {
  return {
    eventName: 'Encrypt', accountUin: '100', subAccountUin: '100', secretId: 'AKIDexample', sourceIp: '10.0.0.1',
    region: 'ap-guangzhou', requestId: randomUUID(), resource: randomUUID(), errorCode: '', ...over,
  };
}

function chainOf(n: number): StoredAuditEvent[] {
  return linkBatch(undefined, Array.from({ length: n }, (_, i) => toAuditEvent(input({ time: 1000 + i }), now)));
}

const slots = (events: StoredAuditEvent[]): ChainSlot[] => events.map((e) => ({ seq: e.seq, event: e }));

/** Verifies `list` against `head` (by default: the head of the list itself, as if written so). */
function verify(list: ChainSlot[], head: ChainHead | 'own' | 'none' = 'own', anchor?: ChainHead) {
  const v = new ChainVerifier(anchor);
  list.forEach((s) => v.visit(s));
  if (head === 'none') return v.end(undefined);
  return v.end(head === 'own' ? headOf(list.map((s) => s.event as StoredAuditEvent)) : head);
}

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
    expect(Object.keys(JSON.parse(canonical(e, 3)) as object)).toEqual(['seq', ...EVENT_FIELDS]);
    expect(canonical(e, 3)).not.toBe(canonical(e, 4));
  });

  test('parseStored reads a stored event back and names what is wrong with anything else', () => {
    const [e] = chainOf(1);
    expect(parseStored(storedJson(e))).toEqual(e);
    expect(Object.keys(JSON.parse(storedJson(e)) as object)).toEqual([...STORED_FIELDS]);
    expect(parseStored('{')).toBe('not JSON');
    expect(parseStored('[]')).toBe('not a JSON object');
    expect(parseStored(JSON.stringify({ ...e, plaintext: 'x' }))).toBe('unexpected fields plaintext');
    expect(parseStored(JSON.stringify({ ...e, seq: '1' }))).toBe('field seq is missing or not a number');
  });
});

describe('the hash chain', () => {
  test('hash = SHA-256(prevHash || canonical), linked from the genesis value', () => {
    const chain = chainOf(3);
    expect(chain.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(chain[0].prevHash).toBe(GENESIS);
    expect(chain[1].prevHash).toBe(chain[0].hash);
    const expected = createHash('sha256').update(chain[1].prevHash + canonical(chain[1], 2)).digest('hex');
    expect(chain[1].hash).toBe(expected);
    expect(hashEvent(chain[1].prevHash, chain[1], 2)).toBe(expected);
  });

  test('a batch continues after a head', () => {
    const first = chainOf(2);
    const next = linkBatch(headOf(first), [toAuditEvent(input(), now)]);
    expect(next[0].seq).toBe(3);
    expect(next[0].prevHash).toBe(first[1].hash);
    expect(verify(slots([...first, ...next])).ok).toBe(true);
  });

  test('an intact chain verifies; an empty chain with no head too', () => {
    expect(verify(slots(chainOf(10)))).toEqual({ ok: true, checked: 10, problems: [] });
    expect(verify([], 'none')).toEqual({ ok: true, checked: 0, problems: [] });
  });

  test('a changed field is reported at its seq', () => {
    const chain = chainOf(5);
    chain[2] = { ...chain[2], errorCode: 'UnauthorizedOperation' };
    const r = verify(slots(chain));
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual([{ seq: 3, reason: expect.stringContaining('changed') }]);
  });

  test('a changed event with a recomputed hash breaks the next link', () => {
    const chain = chainOf(5);
    const forged = { ...chain[2], accountUin: '999' };
    chain[2] = { ...forged, hash: hashEvent(forged.prevHash, forged, 3) };
    expect(verify(slots(chain)).problems).toEqual([{ seq: 4, reason: expect.stringContaining('prevHash does not match event 3') }]);
  });

  test('a removed event is reported as missing', () => {
    const chain = chainOf(5);
    const r = verify(slots([...chain.slice(0, 2), ...chain.slice(3)]));
    expect(r.problems).toEqual([{ seq: 3, reason: 'event 3 is missing (removed)' }]);
    expect(r.checked).toBe(4);
  });

  test('the first events removed are reported', () => {
    const chain = chainOf(5);
    expect(verify(slots(chain.slice(2))).problems).toEqual([{ seq: 1, reason: 'events 1..2 are missing (removed)' }]);
  });

  test('two swapped rows are reported at both seqs', () => {
    const chain = chainOf(5);
    const swapped = [...chain];
    [swapped[1], swapped[2]] = [{ ...chain[2], seq: 2 }, { ...chain[1], seq: 3 }];
    expect(verify(slots(swapped)).problems.map((p) => p.seq)).toEqual([2, 3]);
  });

  test('an event stored at another seq than it was chained at is reported as moved', () => {
    const chain = chainOf(4);
    const list = slots(chain);
    [list[1], list[2]] = [{ seq: 2, event: chain[2] }, { seq: 3, event: chain[1] }];
    expect(verify(list).problems).toEqual([
      { seq: 2, reason: 'the event stored at 2 was chained at 3 (moved or reordered)' },
      { seq: 3, reason: 'the event stored at 3 was chained at 2 (moved or reordered)' },
    ]);
  });

  test('removed newest events are caught by the head anchor, and events beyond it too', () => {
    const chain = chainOf(6);
    expect(verify(slots(chain.slice(0, 4)), headOf(chain) as ChainHead).problems).toEqual([{ seq: 5, reason: expect.stringContaining('truncated') }]);
    expect(verify(slots(chain), headOf(chain.slice(0, 4)) as ChainHead).problems).toEqual([{ seq: 5, reason: expect.stringContaining('beyond the head') }]);
    expect(verify(slots(chain), { seq: 6, hash: chain[4].hash }).problems).toEqual([{ seq: 6, reason: expect.stringContaining('head anchor') }]);
    expect(verify(slots(chain), 'none').problems).toEqual([{ seq: 1, reason: 'the head anchor is missing' }]);
  });

  test('a consistent truncation passes, but not against an anchor kept outside', () => {
    const chain = chainOf(6);
    const kept = headOf(chain);
    const cut = chain.slice(0, 4);
    expect(verify(slots(cut)).ok).toBe(true);
    expect(verify(slots(cut), 'own', kept).problems).toEqual([{ seq: 6, reason: expect.stringContaining('anchored event 6 is missing') }]);
    expect(verify(slots(chain), 'own', kept).ok).toBe(true);
  });

  test('an unreadable slot is reported and its successor is not blamed', () => {
    const chain = chainOf(3);
    const list = slots(chain);
    list[1] = { seq: 2, event: { unreadable: 'not JSON' } };
    expect(verify(list).problems).toEqual([{ seq: 2, reason: 'the stored event cannot be read: not JSON' }]);
  });

  test('the problem list is bounded', () => {
    const chain = chainOf(MAX_PROBLEMS + 50).map((e) => ({ ...e, region: 'tampered' }));
    const r = verify(slots(chain));
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
  test('has no UPDATE or DELETE statement', () => {
    const dir = path.join(process.cwd(), 'src', 'audit');
    for (const file of fs.readdirSync(dir)) {
      const text = fs.readFileSync(path.join(dir, file), 'utf8');
      expect({ file, hits: text.match(/\bDELETE\s+FROM\b|\bUPDATE\s+\w+\s+SET\b|\bREPLACE\s+INTO\b|\bON\s+CONFLICT\b[^;]*\bDO\s+UPDATE\b/gi) }).toEqual({ file, hits: null });
    }
  });
});
