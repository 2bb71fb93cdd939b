import * as pk from 'pkcs11js';
import { join } from 'node:path';
import { HsmMember } from '../../../src/hsm/member';
import { LoginError, MemberUnavailableError, Pkcs11CallError } from '../../../src/hsm/errors';
import { loadProfiles } from '../../../src/hsm/profile';
import { KEY_SPEC, kekTemplate, macTemplate, transportKeyTemplates, unwrapTemplate } from '../../../src/hsm/templates';
import type { KeySpec } from '../../../src/hsm/capabilities';
import { FakePkcs11 } from '../../support/fake-pkcs11';
import { within } from '../../support/poll';

const profile = loadProfiles(join(__dirname, '..', '..', '..', '..', 'hsm-profiles')).get('softhsm2')!;

function member(fake: FakePkcs11, backoffMs: [number, number] = [10, 40]): HsmMember {
  return new HsmMember({
    id: 'm',
    profile,
    module: { path: '/fake/libpkcs11.so', library: () => fake.asLibrary() },
    tokenLabel: fake.tokenLabel,
    pin: '1234',
    backoffMs,
  });
}

describe('member connection and recovery (fake library)', () => {
  test('a wrong PIN is a LoginError that names the token, not the PIN', () => {
    const fake = new FakePkcs11();
    fake.pin = 'other';
    const m = member(fake);
    let err: unknown;
    try {
      m.connect();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LoginError);
    expect((err as Error).message).toBe('login to token "fake-token" failed: PIN incorrect');
    expect((err as Error).message).not.toContain('1234');
    expect(fake.openSessions).toBe(0);
  });

  test('a device error rejects, fails the member, and recovery re-initialises the module and logs in again', async () => {
    const fake = new FakePkcs11();
    const m = member(fake);
    m.connect();
    expect(m.state).toBe('ACTIVE');
    await expect(m.random(4)).resolves.toEqual(Buffer.alloc(4, 7));
    fake.deviceDown = true;
    const failed = m.random(4);
    expect(failed).toBeInstanceOf(Promise);
    const err = await failed.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Pkcs11CallError);
    expect((err as Pkcs11CallError).errorClass).toBe('device');
    expect(m.state).toBe('UNAVAILABLE');
    await expect(m.random(4)).rejects.toBeInstanceOf(MemberUnavailableError);
    fake.deviceDown = false;
    await within(2_000, () => m.state === 'ACTIVE');
    expect(m.resets).toBe(1);
    expect(fake.count('C_Finalize')).toBe(1);
    expect(fake.count('C_Login')).toBe(2);
    await expect(m.random(4)).resolves.toEqual(Buffer.alloc(4, 7));
    m.close();
  });

  test('backoff doubles while the device stays down, is capped, and starts again small after a success', async () => {
    const fake = new FakePkcs11();
    const m = member(fake, [10, 40]);
    m.connect();
    fake.initFailures = 4;
    m.fail('test');
    await within(2_000, () => m.state === 'ACTIVE');
    expect(fake.count('C_Initialize')).toBe(1 + 5); // the first connect, four failures, one success
    expect(m.lastError).toBe('');
    // The waits before attempts 2..5 are at least 20, 40, 40 (capped), 40 ms (timers never fire early by more than a tick).
    const gaps = fake.initializedAt.slice(2).map((t, i) => t - fake.initializedAt[i + 1]);
    expect(gaps.map((g, i) => g >= [20, 40, 40, 40][i] - 2)).toEqual([true, true, true, true]);
    m.close();
  });

  test('recovery does not finalise the module while a thread-pool call is in flight', async () => {
    const fake = new FakePkcs11();
    const m = member(fake);
    m.connect();
    let settle: () => void = () => undefined;
    void m.module.track(new Promise<void>((r) => (settle = r)));
    m.fail('test');
    await new Promise((r) => setTimeout(r, 80));
    expect(fake.count('C_Finalize')).toBe(0);
    settle();
    await within(2_000, () => m.state === 'ACTIVE');
    expect(fake.count('C_Finalize')).toBe(1);
    m.close();
  });

  test('operations on a member that never connected reject; they never throw', async () => {
    const m = member(new FakePkcs11());
    const calls = [
      () => m.random(1),
      () => m.generate('AES_256', { clusterId: 'c', keyId: 'k', keyVersion: 1, usage: 'ENCRYPT_DECRYPT', owner: 'o' }),
      () => m.domainMac('x', Buffer.alloc(1)),
      () => m.domainFingerprint('rfc5649'),
    ];
    for (const call of calls) {
      let thrown = false;
      let p: Promise<unknown> | undefined;
      try {
        p = call();
      } catch {
        thrown = true;
      }
      expect(thrown).toBe(false);
      await expect(p).rejects.toBeInstanceOf(Error);
    }
  });
});

describe('templates', () => {
  const attr = (t: pk.Template, type: number) => t.find((a) => a.type === type)?.value;

  test.each(Object.keys(KEY_SPEC) as KeySpec[])('what a record of %s unwraps into is sensitive and non-extractable', (spec) => {
    const t = unwrapTemplate(spec);
    expect(attr(t, pk.CKA_SENSITIVE)).toBe(true);
    expect(attr(t, pk.CKA_EXTRACTABLE)).toBe(false);
    expect(attr(t, pk.CKA_TOKEN)).toBe(false);
  });

  test('the domain KEK only wraps and unwraps; the MAC key only signs and verifies', () => {
    const kek = kekTemplate(Buffer.from('id'), true);
    expect([attr(kek, pk.CKA_WRAP), attr(kek, pk.CKA_UNWRAP), attr(kek, pk.CKA_ENCRYPT), attr(kek, pk.CKA_DECRYPT)]).toEqual([true, true, false, false]);
    expect(attr(kek, pk.CKA_ID)).toEqual(Buffer.from('idK'));
    const mac = macTemplate(Buffer.from('id'), true);
    expect([attr(mac, pk.CKA_SIGN), attr(mac, pk.CKA_VERIFY), attr(mac, pk.CKA_WRAP)]).toEqual([true, true, undefined]);
    expect(attr(mac, pk.CKA_ID)).toEqual(Buffer.from('idM'));
  });

  test('the transport private key never leaves the receiving member', () => {
    const t = transportKeyTemplates();
    expect(attr(t.privateKey, pk.CKA_EXTRACTABLE)).toBe(false);
    expect(attr(t.privateKey, pk.CKA_SENSITIVE)).toBe(true);
  });
});
