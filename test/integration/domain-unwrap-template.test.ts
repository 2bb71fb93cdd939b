/**
 * Issue 12 §1, CKA_UNWRAP_TEMPLATE on the domain KEK, measured through koffi on the same library
 * instance pkcs11js loaded (template-attributes.ts): what SoftHSM2 2.6.1 and NSS softokn do with
 * the template, what the re-wrap through an SO-trusted session key needs, and an older
 * installation (a KEK without the template) brought to a templated generation by rotate-domain.
 */
import * as pk from 'pkcs11js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HsmCluster } from '../../src/hsm/cluster';
import { MaterialBinding } from '../../src/hsm/material';
import { HsmMember } from '../../src/hsm/member';
import { KEK_UNWRAP_TEMPLATE } from '../../src/hsm/templates';
import { NestedTemplate, templateCalls } from '../../src/hsm/template-attributes';
import { profiles, TokenLab } from '../support/tokens';

const AES = (extra: pk.Template): pk.Template => [
  { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
  { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
  { type: pk.CKA_TOKEN, value: false },
  { type: pk.CKA_ENCRYPT, value: true },
  ...extra,
];
const S = (v: boolean) => ({ type: pk.CKA_SENSITIVE, value: v });
const E = (v: boolean) => ({ type: pk.CKA_EXTRACTABLE, value: v });
const T = (v: boolean) => ({ type: pk.CKA_WRAP_WITH_TRUSTED, value: v });

function outcome(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    return /CKR_[A-Z_]+/.exec((e as Error).message)?.[0] ?? (e as Error).message;
  }
}

/** The facts, on a token of `member` (logged in through it), with `soPin` for the SO rows where the token has an SO login. */
function measure(member: HsmMember, pin: string, soPin?: string): Record<string, string> {
  const api = member.module.api;
  const slot = member.module.findToken(member.tokenLabel).slot;
  const s = api.C_OpenSession(slot, pk.CKF_SERIAL_SESSION | pk.CKF_RW_SESSION);
  const calls = templateCalls(member.module.spec.path);
  const wrap: pk.Mechanism = { mechanism: member.profile.rfc5649Mechanism! };
  const facts: Record<string, string> = {};
  const fact = (name: string, fn: () => unknown) => (facts[name] = outcome(fn));
  const label = `kek-probe-${Math.random().toString(16).slice(2)}`;
  const kekTemplate = (tpl: NestedTemplate): NestedTemplate => [
    // a token object: SoftHSM2 destroys private session objects when the user logs out (the SO rows)
    { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
    { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
    { type: pk.CKA_TOKEN, value: true },
    { type: pk.CKA_PRIVATE, value: true },
    { type: pk.CKA_LABEL, value: label },
    S(true),
    E(false),
    { type: pk.CKA_WRAP, value: true },
    { type: pk.CKA_UNWRAP, value: true },
    { type: pk.CKA_VALUE_LEN, value: 32 },
    { type: pk.CKA_UNWRAP_TEMPLATE, value: tpl },
  ];
  try {
    let kek: pk.Handle = Buffer.alloc(0);
    fact(
      'generate a KEK with CKA_UNWRAP_TEMPLATE {sensitive, wrap-with-trusted} (koffi)',
      () => (kek = calls.generateKey(s, { mechanism: pk.CKM_AES_KEY_GEN }, kekTemplate(KEK_UNWRAP_TEMPLATE))),
    );
    facts['read back'] = JSON.stringify(calls.templateAttribute(s, kek, pk.CKA_UNWRAP_TEMPLATE)?.map((a) => [a.type, a.value[0]]));
    const key = api.C_GenerateKey(s, { mechanism: pk.CKM_AES_KEY_GEN }, AES([{ type: pk.CKA_VALUE_LEN, value: 32 }, S(true), E(true)]));
    const record = Buffer.from(api.C_WrapKey(s, wrap, kek, key, Buffer.alloc(64)));
    const unwrap = (t: pk.Template) => api.C_UnwrapKey(s, wrap, kek, record, AES(t));
    fact('unwrap non-sensitive, extractable', () => unwrap([S(false), E(true)]));
    fact('unwrap sensitive, extractable, naming no CKA_WRAP_WITH_TRUSTED', () => unwrap([S(true), E(true)]));
    fact('unwrap sensitive, extractable, CKA_WRAP_WITH_TRUSTED false', () => unwrap([S(true), E(true), T(false)]));
    let k1: pk.Handle = Buffer.alloc(0);
    fact('unwrap sensitive, extractable, CKA_WRAP_WITH_TRUSTED true', () => (k1 = unwrap([S(true), E(true), T(true)])));
    fact("clear the KEK's CKA_UNWRAP_TEMPLATE (C_SetAttributeValue, empty)", () =>
      api.C_SetAttributeValue(s, kek, [{ type: pk.CKA_UNWRAP_TEMPLATE, value: Buffer.alloc(0) }]),
    );
    fact('copy the KEK with an empty CKA_UNWRAP_TEMPLATE', () => api.C_CopyObject(s, kek, [{ type: pk.CKA_UNWRAP_TEMPLATE, value: Buffer.alloc(0) }]));
    fact('after that, unwrap non-sensitive, extractable', () => unwrap([S(false), E(true)]));
    const mine = api.C_CreateObject(
      s,
      AES([
        { type: pk.CKA_VALUE, value: Buffer.alloc(32, 7) },
        { type: pk.CKA_WRAP, value: true },
        { type: pk.CKA_UNWRAP, value: true },
      ]),
    );
    fact('that key: wrap under a key of the caller', () => api.C_WrapKey(s, wrap, mine, k1, Buffer.alloc(64)));
    fact('that key: read CKA_VALUE', () => {
      if (!api.C_GetAttributeValue(s, k1, [{ type: pk.CKA_VALUE }])[0].value?.length) throw new Error('CKR_ATTRIBUTE_SENSITIVE');
    });
    fact('that key: set CKA_WRAP_WITH_TRUSTED false', () => api.C_SetAttributeValue(s, k1, [T(false)]));
    fact('that key: copy with CKA_WRAP_WITH_TRUSTED false', () => api.C_CopyObject(s, k1, [T(false)]));
    fact('a user session makes a CKA_TRUSTED key', () =>
      api.C_CreateObject(
        s,
        AES([
          { type: pk.CKA_VALUE, value: Buffer.alloc(32, 7) },
          { type: pk.CKA_WRAP, value: true },
          { type: pk.CKA_TRUSTED, value: true },
        ]),
      ),
    );
    if (soPin !== undefined) {
      // the re-wrap: an AES session key made by the SO, public and trusted; private objects are invisible to the SO
      api.C_Logout(s);
      api.C_Login(s, pk.CKU_SO, soPin);
      let trusted: pk.Handle = Buffer.alloc(0);
      fact(
        'SO: generate a public AES session key, CKA_TRUSTED',
        () =>
          (trusted = api.C_GenerateKey(
            s,
            { mechanism: pk.CKM_AES_KEY_GEN },
            AES([
              { type: pk.CKA_VALUE_LEN, value: 32 },
              { type: pk.CKA_PRIVATE, value: false },
              S(true),
              E(false),
              { type: pk.CKA_WRAP, value: true },
              { type: pk.CKA_UNWRAP, value: true },
              { type: pk.CKA_TRUSTED, value: true },
            ]),
          )),
      );
      fact('SO: generate a private KEK (to be trusted)', () =>
        calls.generateKey(s, { mechanism: pk.CKM_AES_KEY_GEN }, [...kekTemplate(KEK_UNWRAP_TEMPLATE), { type: pk.CKA_TRUSTED, value: true }]),
      );
      api.C_Logout(s);
      api.C_Login(s, pk.CKU_USER, pin);
      api.C_FindObjectsInit(s, [{ type: pk.CKA_LABEL, value: label }]);
      kek = api.C_FindObjects(s, 1)[0];
      api.C_FindObjectsFinal(s);
      const k2 = unwrap([S(true), E(true), T(true)]);
      const next = api.C_GenerateKey(
        s,
        { mechanism: pk.CKM_AES_KEY_GEN },
        AES([
          { type: pk.CKA_VALUE_LEN, value: 32 },
          { type: pk.CKA_WRAP, value: true },
        ]),
      );
      fact('re-wrap: the unwrapped key under the next (untrusted) KEK', () => api.C_WrapKey(s, wrap, next, k2, Buffer.alloc(64)));
      let via = Buffer.alloc(0);
      fact(
        're-wrap: under the SO-trusted session key, after the SO logged out',
        () => (via = Buffer.from(api.C_WrapKey(s, wrap, trusted, k2, Buffer.alloc(64)))),
      );
      let k3: pk.Handle = Buffer.alloc(0);
      fact('re-wrap: unwrapped under it, CKA_WRAP_WITH_TRUSTED false', () => (k3 = api.C_UnwrapKey(s, wrap, trusted, via, AES([S(true), E(true), T(false)]))));
      fact('re-wrap: that under the next KEK', () => api.C_WrapKey(s, wrap, next, k3, Buffer.alloc(64)));
      fact('the trusted session key: read CKA_VALUE', () => {
        if (!api.C_GetAttributeValue(s, trusted, [{ type: pk.CKA_VALUE }])[0].value?.length) throw new Error('CKR_ATTRIBUTE_SENSITIVE');
      });
    }
  } finally {
    api.C_FindObjectsInit(s, [{ type: pk.CKA_LABEL, value: label }]);
    const probes = api.C_FindObjects(s, 8);
    api.C_FindObjectsFinal(s);
    for (const h of probes) api.C_DestroyObject(s, h);
    api.C_CloseSession(s);
  }
  return facts;
}

describe('CKA_UNWRAP_TEMPLATE through koffi', () => {
  const lab = new TokenLab();
  afterAll(() => lab.cleanup());

  test('softhsm2 2.6.1 enforces it; the re-wrap goes through an SO-trusted session key', () => {
    const [m] = lab.softhsm('tpl', ['t1']);
    m.connect();
    expect(m.profile.unwrapTemplate).toBe(true);
    expect(measure(m, readFileSync(join(lab.dir, 'tpl', 'pins', 't1.pin'), 'utf8'), lab.soPin('tpl', 't1'))).toEqual({
      'generate a KEK with CKA_UNWRAP_TEMPLATE {sensitive, wrap-with-trusted} (koffi)': 'ok',
      'read back': JSON.stringify([
        [pk.CKA_SENSITIVE, 1],
        [pk.CKA_WRAP_WITH_TRUSTED, 1],
      ]),
      'unwrap non-sensitive, extractable': 'CKR_TEMPLATE_INCONSISTENT',
      'unwrap sensitive, extractable, naming no CKA_WRAP_WITH_TRUSTED': 'CKR_TEMPLATE_INCONSISTENT',
      'unwrap sensitive, extractable, CKA_WRAP_WITH_TRUSTED false': 'CKR_TEMPLATE_INCONSISTENT',
      'unwrap sensitive, extractable, CKA_WRAP_WITH_TRUSTED true': 'ok',
      "clear the KEK's CKA_UNWRAP_TEMPLATE (C_SetAttributeValue, empty)": 'CKR_ATTRIBUTE_READ_ONLY',
      'copy the KEK with an empty CKA_UNWRAP_TEMPLATE': 'CKR_ATTRIBUTE_READ_ONLY',
      'after that, unwrap non-sensitive, extractable': 'CKR_TEMPLATE_INCONSISTENT',
      'that key: wrap under a key of the caller': 'CKR_KEY_NOT_WRAPPABLE',
      'that key: read CKA_VALUE': 'CKR_ATTRIBUTE_SENSITIVE',
      'that key: set CKA_WRAP_WITH_TRUSTED false': 'CKR_ATTRIBUTE_READ_ONLY',
      'that key: copy with CKA_WRAP_WITH_TRUSTED false': 'CKR_ATTRIBUTE_READ_ONLY',
      'a user session makes a CKA_TRUSTED key': 'CKR_ATTRIBUTE_READ_ONLY',
      'SO: generate a public AES session key, CKA_TRUSTED': 'ok',
      'SO: generate a private KEK (to be trusted)': 'CKR_USER_NOT_LOGGED_IN',
      're-wrap: the unwrapped key under the next (untrusted) KEK': 'CKR_KEY_NOT_WRAPPABLE',
      're-wrap: under the SO-trusted session key, after the SO logged out': 'ok',
      're-wrap: unwrapped under it, CKA_WRAP_WITH_TRUSTED false': 'ok',
      're-wrap: that under the next KEK': 'ok',
      'the trusted session key: read CKA_VALUE': 'CKR_ATTRIBUTE_SENSITIVE',
    });
  });

  test('nss-softokn accepts it and ignores it (its profile says unwrapTemplate: false)', () => {
    const m = lab.nss('tpl-nss');
    m.connect();
    expect(m.profile.unwrapTemplate).toBe(false);
    expect(measure(m, readFileSync(join(lab.dir, 'tpl-nss', 'pins', 'nss.pin'), 'utf8'))).toMatchObject({
      'generate a KEK with CKA_UNWRAP_TEMPLATE {sensitive, wrap-with-trusted} (koffi)': 'ok',
      'unwrap non-sensitive, extractable': 'ok',
      'unwrap sensitive, extractable, naming no CKA_WRAP_WITH_TRUSTED': 'ok',
      'that key: wrap under a key of the caller': 'ok',
    });
  });
});

describe('an older installation: a KEK without CKA_UNWRAP_TEMPLATE', () => {
  const lab = new TokenLab();
  afterAll(() => lab.cleanup());
  const bind: MaterialBinding = { clusterId: 'c-old', keyId: 'k', keyVersion: 1, usage: 'ENCRYPT_DECRYPT' };

  test('cluster status says "absent"; rotate-domain (with the SO PIN) makes a templated generation, the record is re-wrapped and decrypts', async () => {
    // made by a build without the template: the same tokens, a profile without the capability
    const before = lab.softhsm('old', ['o1', 'o2'], {}, { ...profiles.get('softhsm2')!, unwrapTemplate: false });
    const oldCluster = new HsmCluster({ id: 'c-old', kind: 'shared', owners: [], members: before });
    oldCluster.start();
    await oldCluster.initDomain({ soPin: lab.soPins });
    const record = await oldCluster.generate('AES_256', bind);
    const sealed = await oldCluster.encrypt(record, bind, Buffer.from('older'), Buffer.alloc(0));
    const generation = record.domainId;
    oldCluster.close();

    const members = lab.softhsm('old', ['o1', 'o2']);
    const cluster = new HsmCluster({ id: 'c-old', kind: 'shared', owners: [], members });
    cluster.start();
    expect((await cluster.health()).members.map((m) => m.unwrapTemplate)).toEqual(['absent', 'absent']);
    expect(cluster.templatedOn(generation)).toEqual([]);
    expect((await cluster.decrypt(record, bind, sealed, Buffer.alloc(0))).toString()).toBe('older');

    const next = Buffer.alloc(16, 0x5a);
    await cluster.newGeneration(next, { soPin: lab.soPins });
    await cluster.useGeneration(next);
    const rewrapped = await cluster.rewrap(record);
    await cluster.destroyGeneration(generation);
    expect((await cluster.health()).members.map((m) => m.unwrapTemplate)).toEqual(['set', 'set']);
    expect(cluster.templatedOn(next).map((m) => m.id)).toEqual(members.map((m) => m.id));
    expect((await cluster.decrypt(rewrapped, bind, sealed, Buffer.alloc(0))).toString()).toBe('older');

    // and the next rotation, from the templated generation, needs the SO's trusted session key
    const third = Buffer.alloc(16, 0x6b);
    await cluster.newGeneration(third, { soPin: lab.soPins });
    await cluster.useGeneration(third);
    await expect(cluster.rewrap(rewrapped)).rejects.toThrow(/Security Officer/);
    await cluster.trustRewrapKeys(next, lab.soPins);
    const again = await cluster.rewrap(rewrapped);
    cluster.dropRewrapKeys();
    expect((await cluster.decrypt(again, bind, sealed, Buffer.alloc(0))).toString()).toBe('older');
    cluster.close();
  }, 120_000);
});
