/**
 * Issue 12 §1: the ceremony with the Security Officer, and the lock, on real tokens.
 */
import * as pk from 'pkcs11js';
import { HsmCluster } from '../../src/hsm/cluster';
import { DomainKeyError, DomainLockedError, SoPinError } from '../../src/hsm/errors';
import { MaterialBinding } from '../../src/hsm/material';
import { DOMAIN_KEK_LABEL, DOMAIN_MAC_LABEL, HsmMember } from '../../src/hsm/member';
import { profiles, TokenLab } from '../support/tokens';

const bind = (clusterId: string, keyId: string): MaterialBinding => ({ clusterId, keyId, keyVersion: 1, usage: 'ENCRYPT_DECRYPT' });

/** The domain-key objects' protection attributes, read with a raw session of the same process. */
function domainAttributes(m: HsmMember): Array<Record<string, boolean>> {
  const api = m.module.api;
  const s = api.C_OpenSession(m.module.findToken(m.tokenLabel).slot, pk.CKF_SERIAL_SESSION | pk.CKF_RW_SESSION);
  try {
    const out: Array<Record<string, boolean>> = [];
    for (const label of [DOMAIN_KEK_LABEL, DOMAIN_MAC_LABEL]) {
      api.C_FindObjectsInit(s, [{ type: pk.CKA_LABEL, value: label }]);
      const handles = api.C_FindObjects(s, 16);
      api.C_FindObjectsFinal(s);
      for (const h of handles) {
        const [e, w, a, sens] = api.C_GetAttributeValue(s, h, [
          { type: pk.CKA_EXTRACTABLE },
          { type: pk.CKA_WRAP_WITH_TRUSTED },
          { type: pk.CKA_ALWAYS_SENSITIVE },
          { type: pk.CKA_SENSITIVE },
        ]);
        out.push({ extractable: e.value[0] === 1, wrapWithTrusted: w.value[0] === 1, alwaysSensitive: a.value[0] === 1, sensitive: sens.value[0] === 1 });
      }
    }
    return out;
  } finally {
    api.C_CloseSession(s);
  }
}

describe('the ceremony with the Security Officer, and the lock (softhsm2)', () => {
  let lab: TokenLab;
  beforeAll(() => (lab = new TokenLab()));
  afterAll(() => lab.cleanup());

  test('cluster init: generated WRAP_WITH_TRUSTED, copied under the SO-trusted transport key, locked on every member; status says so', async () => {
    const members = lab.softhsm('init', ['i1', 'i2', 'i3']);
    const cluster = new HsmCluster({ id: 'ci', kind: 'shared', owners: [], members, probeCacheMs: 0 });
    cluster.start();
    const asked: string[] = [];
    const r = await cluster.initDomain({ soPin: (q) => (asked.push(q.token), lab.soPins(q)) });
    expect(r).toMatchObject({ generated: true, copiedTo: ['init-i2', 'init-i3'], locked: ['init-i1', 'init-i2', 'init-i3'] });
    expect(asked).toEqual(['i1']); // one SO login, on the sending token only
    for (const [i, m] of members.entries()) {
      expect(m.domainLocked).toBe(true);
      // an unwrapped copy is never CKA_ALWAYS_SENSITIVE (it existed wrapped outside this token)
      expect(domainAttributes(m)).toEqual([0, 1].map(() => ({ extractable: false, wrapWithTrusted: true, alwaysSensitive: i === 0, sensitive: true })));
    }
    const health = await cluster.health();
    expect(health.members.map((m) => [m.state, m.domainLock, m.lockEnforced])).toEqual(members.map(() => ['ACTIVE', 'locked', true]));
    // the sending member logged its user out and back in: it serves, and so do the others
    const key = await cluster.generate('AES_256', bind('ci', 'k'));
    for (const m of members) {
      const sealed = await m.encryptGcm(key, Buffer.from('after the ceremony'), Buffer.alloc(0));
      expect((await members[0].decryptGcm(key, sealed, Buffer.alloc(0))).toString()).toBe('after the ceremony');
    }
    // re-running changes nothing and asks for no PIN
    expect(await cluster.initDomain()).toMatchObject({ generated: false, copiedTo: [], locked: [] });
  });

  test('a locked cluster takes no new member: add-member and init say so and point at rotate-domain', async () => {
    const [a, b] = lab.softhsm('grow', ['g1', 'g2']);
    const [c] = lab.softhsm('grow-new', ['g3']);
    const cluster = new HsmCluster({ id: 'cg', kind: 'shared', owners: [], members: [a, b] });
    cluster.start();
    await cluster.initDomain({ soPin: lab.soPins });
    c.connect();
    const grown = new HsmCluster({ id: 'cg', kind: 'shared', owners: [], members: [a, b, c] });
    for (const attempt of [() => grown.addMember(c, { soPin: lab.soPins }), () => grown.initDomain({ soPin: lab.soPins })]) {
      const e = await attempt().catch((x: unknown) => x);
      expect(e).toBeInstanceOf(DomainLockedError);
      expect((e as Error).message).toMatch(/cluster cg is locked.*grow-new-g3.*kmsctl cluster rotate-domain --cluster cg/);
    }
    expect(c.domain).toBeUndefined();
  });

  test('no SO PIN, or a wrong one: a typed error before anything is generated or copied; the member keeps serving', async () => {
    const [a, b] = lab.softhsm('sopin', ['s1', 's2']);
    const cluster = new HsmCluster({ id: 'cs', kind: 'shared', owners: [], members: [a, b] });
    cluster.start();
    await expect(cluster.initDomain()).rejects.toBeInstanceOf(SoPinError);
    expect([a.domain, b.domain]).toEqual([undefined, undefined]);
    const wrong = await cluster.initDomain({ soPin: async () => 'not-the-so-pin' }).catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(SoPinError);
    expect((wrong as Error).message).toMatch(/Security Officer of token "s1" could not log in: SO PIN incorrect/);
    expect((wrong as Error).message).not.toContain('not-the-so-pin');
    expect([a.state, b.domain, a.domainLocked]).toEqual(['ACTIVE', undefined, false]);
    const key = await a.generate('AES_256', bind('cs', 'k'));
    expect((await a.decryptGcm(key, await a.encryptGcm(key, Buffer.from('still'), Buffer.alloc(0)), Buffer.alloc(0))).toString()).toBe('still');
    // and with the right one the same ceremony completes
    expect(await cluster.initDomain({ soPin: lab.soPins })).toMatchObject({ generated: false, copiedTo: ['sopin-s2'], locked: ['sopin-s1', 'sopin-s2'] });
  });

  test('an existing installation (domain keys extractable, no WRAP_WITH_TRUSTED): cluster lock locks every member, reads it back, is idempotent', async () => {
    const legacy = { ...profiles.get('softhsm2')!, wrapWithTrusted: false };
    const before = lab.softhsm('legacy', ['l1', 'l2'], {}, legacy);
    const old = new HsmCluster({ id: 'cl', kind: 'shared', owners: [], members: before });
    old.start();
    await old.initDomain({ lock: false });
    expect(domainAttributes(before[1])).toEqual([0, 1].map(() => ({ extractable: true, wrapWithTrusted: false, alwaysSensitive: false, sensitive: true })));
    const record = await old.generate('AES_256', bind('cl', 'k'));
    old.close();
    // the upgraded service: same tokens, today's profile
    const after = lab.softhsm('legacy', ['l1', 'l2']);
    const cluster = new HsmCluster({ id: 'cl', kind: 'shared', owners: [], members: after, probeCacheMs: 0 });
    cluster.start();
    expect((await cluster.health()).members.map((m) => m.domainLock)).toEqual(['unlocked', 'unlocked']);
    expect(await cluster.lock()).toEqual({ locked: after.map((m) => m.id), already: [], unenforced: [] });
    expect(await cluster.lock()).toEqual({ locked: [], already: after.map((m) => m.id), unenforced: [] });
    for (const m of after) expect(domainAttributes(m).every((a) => !a.extractable)).toBe(true);
    expect((await cluster.health()).members.map((m) => m.domainLock)).toEqual(['locked', 'locked']);
    const sealed = await cluster.encrypt(record, bind('cl', 'k'), Buffer.from('old record'), Buffer.alloc(0));
    expect((await cluster.decrypt(record, bind('cl', 'k'), sealed, Buffer.alloc(0))).toString()).toBe('old record');
  });

  test('locked by a version before lockUnmodifiable (non-extractable, still modifiable): status says locked, unfinished; cluster lock finishes it', async () => {
    const older = { ...profiles.get('softhsm2')!, lockUnmodifiable: false };
    const before = lab.softhsm('older', ['o1', 'o2'], {}, older);
    const old = new HsmCluster({ id: 'co', kind: 'shared', owners: [], members: before });
    old.start();
    await old.initDomain({ soPin: lab.soPins });
    expect(before.map((m) => m.domainLocked)).toEqual([true, true]);
    const record = await old.generate('AES_256', bind('co', 'k'));
    old.close();
    // the upgraded service: same tokens, today's profile (its lock also makes them CKA_MODIFIABLE=false)
    const after = lab.softhsm('older', ['o1', 'o2']);
    const cluster = new HsmCluster({ id: 'co', kind: 'shared', owners: [], members: after, probeCacheMs: 0 });
    cluster.start();
    expect((await cluster.health()).members.map((m) => m.domainLock)).toEqual(['modifiable', 'modifiable']);
    // a locked cluster all the same: no copy into a new member
    const [extra] = lab.softhsm('older-extra', ['x1']);
    extra.connect();
    await expect(cluster.addMember(extra, { soPin: lab.soPins })).rejects.toThrow(DomainLockedError);
    expect(await cluster.lock()).toEqual({ locked: after.map((m) => m.id), already: [], unenforced: [] });
    expect((await cluster.health()).members.map((m) => m.domainLock)).toEqual(['locked', 'locked']);
    const sealed = await cluster.encrypt(record, bind('co', 'k'), Buffer.from('older lock'), Buffer.alloc(0));
    expect((await cluster.decrypt(record, bind('co', 'k'), sealed, Buffer.alloc(0))).toString()).toBe('older lock');
    expect((await cluster.health()).warnings).toEqual([]);
  });

  test('cluster lock refuses to strand a member: every member must hold the same domain keys', async () => {
    const [a, b] = lab.softhsm('strand', ['t1', 't2']);
    const solo = new HsmCluster({ id: 'cx', kind: 'shared', owners: [], members: [a] });
    solo.start();
    await solo.initDomain({ lock: false });
    b.connect();
    const cluster = new HsmCluster({ id: 'cx', kind: 'shared', owners: [], members: [a, b] });
    await expect(cluster.lock()).rejects.toThrow(DomainKeyError);
    await expect(cluster.lock()).rejects.toThrow(/strand-t2 hold no domain keys/);
    expect(a.domainLocked).toBe(false);
  });
});

describe('the lock on nss-softokn is recorded, not enforced, and says so', () => {
  let lab: TokenLab;
  beforeAll(() => (lab = new TokenLab()));
  afterAll(() => lab.cleanup());

  test('nss-softokn and softhsm2 in one cluster: no SO login (the NSS source has none), both locked, NSS reported unenforced', async () => {
    const members = [lab.nss('mix-nss'), ...lab.softhsm('mix', ['m2'])];
    const cluster = new HsmCluster({ id: 'cm', kind: 'shared', owners: [], members, probeCacheMs: 0 });
    cluster.start();
    const r = await cluster.initDomain({
      soPin: async () => {
        throw new Error('no SO PIN should be asked for');
      },
    });
    expect(r).toMatchObject({ copiedTo: ['mix-m2'], locked: ['mix-nss', 'mix-m2'] });
    expect(await cluster.lock()).toEqual({ locked: [], already: ['mix-nss', 'mix-m2'], unenforced: ['mix-nss'] });
    expect((await cluster.health()).members.map((m) => [m.domainLock, m.lockEnforced])).toEqual([
      ['locked', false],
      ['locked', true],
    ]);
    // said plainly wherever the cluster is shown (cluster status, the server's start-up log)
    expect((await cluster.health()).warnings).toEqual([
      expect.stringMatching(/^member mix-nss \(nss-softokn\) does not enforce non-extractability: anyone with its user PIN/),
    ]);
    // the SoftHSM2 copy carries WRAP_WITH_TRUSTED from its own profile
    expect(domainAttributes(members[1]).every((a) => a.wrapWithTrusted && !a.extractable)).toBe(true);
  });
});
