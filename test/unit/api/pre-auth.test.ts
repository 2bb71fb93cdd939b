import type { NewAuditEvent } from '../../../src/audit/event';
import { ManualClock } from '../../../src/common/clock';
import { FAILURE_EVENT_NAME, FailureAudit, PreAuthLimiter } from '../../../src/api/pre-auth';

describe('PreAuthLimiter', () => {
  test('an address may fail `burst` times, then is refused until tokens refill; other addresses are not affected', () => {
    const clock = new ManualClock(1_000_000);
    const limiter = new PreAuthLimiter({ perSecond: 2, burst: 3 }, clock);
    for (let i = 0; i < 3; i++) {
      expect(limiter.allows('10.0.0.1')).toBe(true);
      limiter.charge('10.0.0.1');
    }
    expect(limiter.allows('10.0.0.1')).toBe(false);
    expect(limiter.allows('10.0.0.2')).toBe(true);
    clock.set(clock.now() + 500);
    expect(limiter.allows('10.0.0.1')).toBe(true);
  });

  test('asking costs nothing (requests that authenticate are never charged)', () => {
    const limiter = new PreAuthLimiter({ perSecond: 1, burst: 1 }, new ManualClock());
    for (let i = 0; i < 100; i++) expect(limiter.allows('10.0.0.1')).toBe(true);
    expect(limiter.size).toBe(0);
  });

  test('bounded: past maxSources, addresses are forgotten', () => {
    const clock = new ManualClock(1_000_000);
    const limiter = new PreAuthLimiter({ perSecond: 1, burst: 1 }, clock, 100);
    for (let i = 0; i < 1_000; i++) limiter.charge(`10.0.${i >> 8}.${i & 255}`);
    expect(limiter.size).toBeLessThanOrEqual(100);
  });
});

describe('FailureAudit', () => {
  const fail = (over: Partial<Parameters<FailureAudit['record']>[0]> = {}) => ({
    sourceIp: '10.0.0.1',
    secretId: 'AKIDx',
    code: 'AuthFailure.SignatureFailure',
    requestId: 'r1',
    ...over,
  });

  test('10,000 failures from one address, SecretId and code are one event with the count', () => {
    const events: NewAuditEvent[] = [];
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const audit = new FailureAudit((e) => events.push(e), clock);
    for (let i = 0; i < 10_000; i++) audit.record(fail({ requestId: `r${i}` }));
    audit.close();
    expect(events).toEqual([
      expect.objectContaining({
        eventName: FAILURE_EVENT_NAME,
        sourceIp: '10.0.0.1',
        secretId: 'AKIDx',
        errorCode: 'AuthFailure.SignatureFailure',
        resource: 'count/10000',
        requestId: 'r0',
      }),
    ]);
  });

  test('groups per minute: a minute that is over is appended, the current one waits', () => {
    const events: NewAuditEvent[] = [];
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const audit = new FailureAudit((e) => events.push(e), clock);
    audit.record(fail());
    audit.flush(false);
    expect(events).toHaveLength(0);
    clock.advance(60);
    audit.record(fail());
    audit.flush(false);
    expect(events.map((e) => e.resource)).toEqual(['count/1']);
    audit.close();
    expect(events).toHaveLength(2);
  });

  test('bounded: unique SecretIds past maxGroups count under "*" (one group per code)', () => {
    const events: NewAuditEvent[] = [];
    const audit = new FailureAudit((e) => events.push(e), new ManualClock(), 10);
    for (let i = 0; i < 5_000; i++) audit.record(fail({ secretId: `AKID${i}`, sourceIp: `10.0.${i >> 8}.${i & 255}` }));
    expect(audit.pending).toBe(11);
    audit.close();
    expect(events.find((e) => e.secretId === '*')).toMatchObject({ sourceIp: '*', resource: 'count/4990' });
  });
});
