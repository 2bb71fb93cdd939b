import { createHmac } from 'crypto';
import { AuditInputError, AuditTokenError } from '../../../src/audit/errors';
import { LinkMac } from '../../../src/audit/link-mac';
import { LookupRequest, checkLookup, isReadOnlyEvent, lookupScope, resourceTypeOf } from '../../../src/audit/lookup';
import { openToken, sealToken } from '../../../src/audit/lookup-token';

/** A software HMAC stands in for the HSM (the conformance suite uses SoftHSM2). */
const macWith = (k: number): LinkMac => ({ mac: async (d) => createHmac('sha256', Buffer.alloc(32, k)).update(d).digest() });
const mac = macWith(7);

const request = (over: Partial<LookupRequest> = {}): LookupRequest => ({ tenant: '100', startTime: 0, endTime: 10_000, maxResults: 10, ...over });

describe('lookup requests', () => {
  test('a good request passes; every bad field is refused with a message naming it', () => {
    expect(() => checkLookup(request({ attribute: { key: 'EventName', value: 'Encrypt' } }))).not.toThrow();
    const bad: Array<[Partial<LookupRequest>, RegExp]> = [
      [{ tenant: '' }, /tenant/],
      [{ startTime: -1 }, /startTime/],
      [{ endTime: 1.5 }, /endTime/],
      [{ startTime: 20_000 }, /startTime must not be after endTime/],
      [{ maxResults: 0 }, /maxResults/],
      [{ maxResults: 51 }, /maxResults/],
      [{ attribute: { key: 'Nope' as 'EventName', value: 'x' } }, /attribute key must be one of/],
      [{ attribute: { key: 'ReadOnly', value: 'yes' } }, /ReadOnly must be 'true' or 'false'/],
      [{ attribute: { key: 'EventName', value: 5 as unknown as string } }, /must be a string/],
    ];
    for (const [over, message] of bad) expect(() => checkLookup(request(over))).toThrow(message);
    expect(() => checkLookup(request({ maxResults: 51 }))).toThrow(AuditInputError);
  });

  test('read-only actions: Describe*, Get*, List*, LookUp* and the operations that store nothing', () => {
    for (const n of ['DescribeKey', 'GetPublicKey', 'ListKeys', 'LookUpEvents', 'Encrypt', 'Decrypt', 'VerifyByAsymmetricKey'])
      expect([n, isReadOnlyEvent(n)]).toEqual([n, true]);
    for (const n of ['CreateKey', 'ScheduleKeyDeletion', 'GenerateDataKey', 'AddUser', 'Listen', 'Getaway', 'UpdateAlias'])
      expect([n, isReadOnlyEvent(n)]).toEqual([n, false]);
  });

  test('the resource type is the product of the event source', () => {
    expect(resourceTypeOf('kms.tencentcloudapi.com')).toBe('kms');
    expect(resourceTypeOf('cam.tencentcloudapi.com')).toBe('cam');
    expect(resourceTypeOf('')).toBe('kms');
  });
});

describe('NextToken', () => {
  const scope = lookupScope(request());
  const at = { time: 1_700_000_000_123, seq: 42 };

  test('opens to the position it was sealed with, in the same lookup, on any handle with the same MAC key', async () => {
    const token = await sealToken(mac, at, scope);
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(await openToken(macWith(7), token, scope)).toEqual(at);
  });

  test('a token of another tenant or other filters is refused, though genuine', async () => {
    const token = await sealToken(mac, at, scope);
    for (const other of [request({ tenant: '200' }), request({ endTime: 9_999 }), request({ attribute: { key: 'EventName', value: 'Encrypt' } })]) {
      await expect(openToken(mac, token, lookupScope(other))).rejects.toThrow(/issued for another lookup/);
    }
  });

  test('a changed, made-up or foreign token is refused with AuditTokenError', async () => {
    const token = await sealToken(mac, at, scope);
    const raw = Buffer.from(token, 'base64url');
    const moved = Buffer.from(raw.toString('latin1').replace('.42.', '.41.'), 'latin1').toString('base64url');
    await expect(openToken(mac, moved, scope)).rejects.toThrow(/changed or made up/);
    await expect(openToken(macWith(9), token, scope)).rejects.toThrow(AuditTokenError);
    for (const junk of ['', 'not a token', 'x'.repeat(300), Buffer.from('v1.1.2.3').toString('base64url'), '1700000000-5']) {
      await expect(openToken(mac, junk, scope)).rejects.toThrow(AuditTokenError);
    }
  });
});
