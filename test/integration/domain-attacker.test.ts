/**
 * Issue 12 §1, the attacker: someone holding the user PIN (it is in the data directory) logs into
 * every member after the ceremony and tries to take the domain keys away — wrap every secret key
 * of the token under a key of its own, read CKA_VALUE — and to unwrap a real record with the KEK
 * into an object it can read. What it gets is decided per implementation by what the token
 * enforces (test/integration/domain-lockdown.test.ts).
 */
import * as pk from 'pkcs11js';
import { constants, createDecipheriv, generateKeyPairSync, privateDecrypt, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { initDev } from '../../src/cli/dev-init';
import { loadServerConfig } from '../../src/config';
import { HsmCluster } from '../../src/hsm/cluster';
import { buildClusters, resolvePin } from '../../src/hsm/config';
import { loadProfiles, PROFILE_DIR } from '../../src/hsm/profile';
import { MaterialBinding, WrappedMaterial } from '../../src/hsm/material';
import { HsmMember } from '../../src/hsm/member';
import { TokenLab } from '../support/tokens';

const bind = (keyId: string): MaterialBinding => ({ clusterId: 'c1', keyId, keyVersion: 1, usage: 'ENCRYPT_DECRYPT' });
const RFC5649_IV = Buffer.from('a65959a6', 'hex');

interface Setup {
  name: string;
  make: (lab: TokenLab) => { members: HsmMember[]; pins: string[] };
  /** Whether the token keeps a non-extractable key in (measured in domain-lockdown.test.ts). */
  keepsKeysIn: boolean;
}

const setups: Setup[] = [
  {
    name: 'softhsm2, two members',
    make: (lab) => ({
      members: lab.softhsm('atk', ['a1', 'a2']),
      pins: ['a1', 'a2'].map((l) => readFileSync(join(lab.dir, 'atk', 'pins', `${l}.pin`), 'utf8')),
    }),
    keepsKeysIn: true,
  },
  {
    name: 'nss-softokn',
    make: (lab) => ({ members: [lab.nss('atk-nss')], pins: [readFileSync(join(lab.dir, 'atk-nss', 'pins', 'nss.pin'), 'utf8')] }),
    keepsKeysIn: false,
  },
];

interface Loot {
  /** Labels of the token's secret keys that wrapped under the attacker's AES key, and under its RSA key. */
  wrappedUnderAes: string[];
  wrappedUnderRsa: string[];
  /** Labels whose CKA_VALUE could be read. */
  read: string[];
  /** The record's key recovered offline from a wrapped KEK: the attacker decrypts everything without the HSM. */
  offline: boolean;
  /** The KEK unwrapped a record into an extractable, non-sensitive object whose value was read. */
  unwrappedReadable: boolean;
  /** The KEK unwrapped a record into a key that wrapped under the attacker's AES or RSA key, and the value decrypted. */
  unwrappedWrappable: boolean;
  /** CKA_DECRYPT turned on (set, or in a copy of the KEK) and the record unwrapped in software with C_Decrypt(CKM_AES_ECB) as the oracle. */
  decryptOracle: boolean;
}

function outcome(fn: () => unknown): unknown {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

function allSecretKeys(api: pk.PKCS11, s: pk.Handle): pk.Handle[] {
  api.C_FindObjectsInit(s, [{ type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY }]);
  try {
    const all: pk.Handle[] = [];
    for (let batch = api.C_FindObjects(s, 64); batch.length > 0; batch = api.C_FindObjects(s, 64)) all.push(...batch);
    return all;
  } finally {
    api.C_FindObjectsFinal(s);
  }
}

/** Runs on the member's token with the user PIN only; `record` is a real wrapped-material record of the cluster. */
function attack(member: HsmMember, pin: string, record: WrappedMaterial, sealed: { iv: Buffer; ciphertext: Buffer; tag: Buffer }, plaintext: Buffer): Loot {
  const api = member.module.api;
  const s = api.C_OpenSession(member.module.findToken(member.tokenLabel).slot, pk.CKF_SERIAL_SESSION | pk.CKF_RW_SESSION);
  const loot: Loot = {
    wrappedUnderAes: [],
    wrappedUnderRsa: [],
    read: [],
    offline: false,
    unwrappedReadable: false,
    unwrappedWrappable: false,
    decryptOracle: false,
  };
  try {
    try {
      api.C_Login(s, pk.CKU_USER, pin);
    } catch (e) {
      // this process's members are logged in already: login state is per application
      if (!/CKR_USER_ALREADY_LOGGED_IN/.test((e as Error).message)) throw e;
    }
    const wrapMech: pk.Mechanism = { mechanism: member.profile.rfc5649Mechanism! };
    const oaep: pk.Mechanism = {
      mechanism: pk.CKM_RSA_PKCS_OAEP,
      parameter: { type: pk.CK_PARAMS_RSA_OAEP, hashAlg: pk.CKM_SHA_1, mgf: pk.CKG_MGF1_SHA1, source: 1 } as pk.RsaOAEP,
    };
    const targets = allSecretKeys(api, s);
    const known = randomBytes(32);
    const mine = api.C_CreateObject(s, [
      { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
      { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
      { type: pk.CKA_TOKEN, value: false },
      { type: pk.CKA_VALUE, value: known },
      { type: pk.CKA_WRAP, value: true },
      { type: pk.CKA_UNWRAP, value: true },
    ]);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = rsa.publicKey.export({ format: 'jwk' });
    const myRsa = api.C_CreateObject(s, [
      { type: pk.CKA_CLASS, value: pk.CKO_PUBLIC_KEY },
      { type: pk.CKA_KEY_TYPE, value: pk.CKK_RSA },
      { type: pk.CKA_TOKEN, value: false },
      { type: pk.CKA_MODULUS, value: Buffer.from(jwk.n!, 'base64url') },
      { type: pk.CKA_PUBLIC_EXPONENT, value: Buffer.from(jwk.e!, 'base64url') },
      { type: pk.CKA_WRAP, value: true },
      { type: pk.CKA_ENCRYPT, value: true },
    ]);
    const label = (h: pk.Handle) => String(outcome(() => api.C_GetAttributeValue(s, h, [{ type: pk.CKA_LABEL }])[0].value?.toString()) ?? '(no label)');
    const values: Buffer[] = [];
    for (const h of targets) {
      const underAes = outcome(() => Buffer.from(api.C_WrapKey(s, wrapMech, mine, h, Buffer.alloc(4096)))) as Buffer | undefined;
      if (underAes) {
        loot.wrappedUnderAes.push(label(h));
        const value = outcome(() => unwrapRfc5649(known, underAes)) as Buffer | undefined;
        if (value) values.push(value);
      }
      const underRsa = outcome(() => Buffer.from(api.C_WrapKey(s, oaep, myRsa, h, Buffer.alloc(512)))) as Buffer | undefined;
      if (underRsa) {
        loot.wrappedUnderRsa.push(label(h));
        values.push(privateDecrypt({ key: rsa.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, underRsa));
      }
      const value = outcome(() => api.C_GetAttributeValue(s, h, [{ type: pk.CKA_VALUE }])[0].value) as Buffer | undefined;
      if (value && value.length > 0) {
        loot.read.push(label(h));
        values.push(value);
      }
    }
    // offline: any value that unwraps the record and decrypts the cluster's ciphertext is the KEK
    loot.offline = values.some((kek) => decrypts(outcome(() => unwrapRfc5649(kek, record.wrapped)) as Buffer | undefined, sealed, plaintext));
    const kek = targets.find((h) => label(h).includes('kek'));
    if (kek !== undefined) {
      const readable = outcome(() =>
        api.C_UnwrapKey(s, wrapMech, kek, record.wrapped, [
          { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
          { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
          { type: pk.CKA_TOKEN, value: false },
          { type: pk.CKA_SENSITIVE, value: false },
          { type: pk.CKA_EXTRACTABLE, value: true },
          { type: pk.CKA_ENCRYPT, value: true },
        ]),
      ) as pk.Handle | undefined;
      const value =
        readable === undefined ? undefined : (outcome(() => api.C_GetAttributeValue(s, readable, [{ type: pk.CKA_VALUE }])[0].value) as Buffer | undefined);
      loot.unwrappedReadable = decrypts(value, sealed, plaintext);
      // sensitive, as a template may force, but extractable, with and without CKA_WRAP_WITH_TRUSTED: then wrapped under the attacker's keys
      for (const trusted of [undefined, false, true]) {
        const key = outcome(() =>
          api.C_UnwrapKey(s, wrapMech, kek, record.wrapped, [
            { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
            { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
            { type: pk.CKA_TOKEN, value: false },
            { type: pk.CKA_SENSITIVE, value: true },
            { type: pk.CKA_EXTRACTABLE, value: true },
            { type: pk.CKA_ENCRYPT, value: true },
            ...(trusted === undefined ? [] : [{ type: pk.CKA_WRAP_WITH_TRUSTED, value: trusted }]),
          ]),
        ) as pk.Handle | undefined;
        if (key === undefined) continue;
        const underAes = outcome(() => Buffer.from(api.C_WrapKey(s, wrapMech, mine, key, Buffer.alloc(4096)))) as Buffer | undefined;
        const underRsa = outcome(() => Buffer.from(api.C_WrapKey(s, oaep, myRsa, key, Buffer.alloc(512)))) as Buffer | undefined;
        const got = [
          underAes && (outcome(() => unwrapRfc5649(known, underAes)) as Buffer | undefined),
          underRsa &&
            (outcome(() => privateDecrypt({ key: rsa.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, underRsa)) as
              Buffer | undefined),
        ];
        if (got.some((v) => decrypts(v || undefined, sealed, plaintext))) loot.unwrappedWrappable = true;
      }
      const decrypting = [
        outcome(() => (api.C_SetAttributeValue(s, kek, [{ type: pk.CKA_DECRYPT, value: true }]), kek)),
        outcome(() =>
          api.C_CopyObject(s, kek, [
            { type: pk.CKA_DECRYPT, value: true },
            { type: pk.CKA_TOKEN, value: false },
          ]),
        ),
      ].filter((h): h is pk.Handle => h !== undefined);
      for (const h of decrypting) {
        const ecb = (block: Buffer) => {
          api.C_DecryptInit(s, { mechanism: pk.CKM_AES_ECB }, h);
          return Buffer.from(api.C_Decrypt(s, block, Buffer.alloc(16)));
        };
        if (decrypts(outcome(() => unwrapWithOracle(ecb, record.wrapped)) as Buffer | undefined, sealed, plaintext)) loot.decryptOracle = true;
      }
    }
  } finally {
    api.C_CloseSession(s);
  }
  return loot;
}

/** RFC 5649 unwrap (the RFC 3394 W^-1 steps) with an AES-ECB decryption oracle; the padded key value (its first 32 bytes). */
function unwrapWithOracle(ecb: (block: Buffer) => Buffer, wrapped: Buffer): Buffer {
  const n = wrapped.length / 8 - 1;
  let a = Buffer.from(wrapped.subarray(0, 8));
  const r = Array.from({ length: n }, (_, i) => Buffer.from(wrapped.subarray(8 + 8 * i, 16 + 8 * i)));
  for (let j = 5; j >= 0; j--) {
    for (let i = n; i >= 1; i--) {
      a.writeBigUInt64BE(a.readBigUInt64BE() ^ BigInt(n * j + i));
      const b = ecb(Buffer.concat([a, r[i - 1]]));
      a = Buffer.from(b.subarray(0, 8));
      r[i - 1] = Buffer.from(b.subarray(8));
    }
  }
  if (!a.subarray(0, 4).equals(RFC5649_IV)) throw new Error('integrity check failed');
  return Buffer.concat(r).subarray(0, 32);
}

function unwrapRfc5649(kek: Buffer, wrapped: Buffer): Buffer {
  const d = createDecipheriv('id-aes256-wrap-pad', kek, RFC5649_IV);
  return Buffer.concat([d.update(wrapped), d.final()]);
}

function decrypts(key: Buffer | undefined, sealed: { iv: Buffer; ciphertext: Buffer; tag: Buffer }, plaintext: Buffer): boolean {
  if (!key || key.length !== 32) return false;
  const d = createDecipheriv('aes-256-gcm', key, sealed.iv);
  d.setAuthTag(sealed.tag);
  const out = outcome(() => Buffer.concat([d.update(sealed.ciphertext), d.final()])) as Buffer | undefined;
  return out !== undefined && out.equals(plaintext);
}

describe.each(setups)('the attacker with the user PIN: $name', ({ make, keepsKeysIn }) => {
  let lab: TokenLab;
  let members: HsmMember[];
  let pins: string[];
  let record: WrappedMaterial;
  let sealed: { iv: Buffer; ciphertext: Buffer; tag: Buffer };
  const plaintext = Buffer.from('the secret the KMS keeps');

  beforeAll(async () => {
    lab = new TokenLab();
    ({ members, pins } = make(lab));
    const cluster = new HsmCluster({ id: 'c1', kind: 'shared', owners: [], members });
    cluster.start();
    await cluster.initDomain({ soPin: lab.soPins });
    record = await cluster.generate('AES_256', bind('k1'));
    sealed = await cluster.encrypt(record, bind('k1'), plaintext, Buffer.alloc(0));
  });
  afterAll(() => lab.cleanup());

  test('wrapping or reading the domain keys gets nothing where the token keeps keys in; nothing decrypts offline', () => {
    for (const [i, m] of members.entries()) {
      const loot = attack(m, pins[i], record, sealed, plaintext);
      if (keepsKeysIn) {
        expect({ member: m.id, aes: loot.wrappedUnderAes, rsa: loot.wrappedUnderRsa, read: loot.read, offline: loot.offline }).toEqual({
          member: m.id,
          aes: [],
          rsa: [],
          read: [],
          offline: false,
        });
      } else {
        // known limit (docs/security.md): NSS softokn wraps keys marked non-extractable; the profile says so
        expect(m.profile.name).toBe('nss-softokn');
        expect(loot.wrappedUnderAes).toEqual(expect.arrayContaining(['kms-domain-kek', 'kms-domain-mac']));
        expect(loot.offline).toBe(true);
      }
      expect(loot.read).toEqual([]);
    }
  });

  test('where CKA_UNWRAP_TEMPLATE is enforced the KEK unwraps no record into a key the attacker reads or wraps; NSS softokn: known limit', () => {
    for (const [i, m] of members.entries()) {
      const loot = attack(m, pins[i], record, sealed, plaintext);
      if (keepsKeysIn) {
        expect({
          member: m.id,
          template: m.domainUnwrapTemplate,
          readable: loot.unwrappedReadable,
          wrappable: loot.unwrappedWrappable,
          oracle: loot.decryptOracle,
        }).toEqual({ member: m.id, template: true, readable: false, wrappable: false, oracle: false });
      } else {
        // known limit (docs/security.md): NSS softokn ignores CKA_UNWRAP_TEMPLATE; its profile says so
        expect({ profile: m.profile.name, enforced: m.profile.unwrapTemplate, readable: loot.unwrappedReadable }).toEqual({
          profile: 'nss-softokn',
          enforced: false,
          readable: true,
        });
      }
    }
  });
});

describe("the attacker with the user PIN, during the ceremony's window (copied, not yet locked): softhsm2", () => {
  let lab: TokenLab;
  afterAll(() => lab.cleanup());

  test("CKA_WRAP_WITH_TRUSTED alone refuses every wrap under the attacker's keys: nothing decrypts offline", async () => {
    lab = new TokenLab();
    const members = lab.softhsm('win', ['w1', 'w2']);
    const pins = ['w1', 'w2'].map((l) => readFileSync(join(lab.dir, 'win', 'pins', `${l}.pin`), 'utf8'));
    const cluster = new HsmCluster({ id: 'c1', kind: 'shared', owners: [], members });
    cluster.start();
    await cluster.initDomain({ soPin: lab.soPins, lock: false });
    expect(members.map((m) => m.domainLocked)).toEqual([false, false]);
    const record = await cluster.generate('AES_256', bind('k1'));
    const plaintext = Buffer.from('in the window');
    const sealed = await cluster.encrypt(record, bind('k1'), plaintext, Buffer.alloc(0));
    for (const [i, m] of members.entries()) {
      const loot = attack(m, pins[i], record, sealed, plaintext);
      expect({ aes: loot.wrappedUnderAes, rsa: loot.wrappedUnderRsa, read: loot.read, offline: loot.offline }).toEqual({
        aes: [],
        rsa: [],
        read: [],
        offline: false,
      });
    }
  });
});

describe('the attacker with the user PIN, after kmsctl init --dev', () => {
  let dir: string;
  let clusters: HsmCluster[];
  const lab = new TokenLab();
  afterAll(() => {
    for (const c of clusters ?? []) c.close();
    lab.cleanup();
  });

  test('every member of every development cluster is locked: nothing wraps, nothing reads, nothing decrypts offline', async () => {
    dir = join(lab.dir, 'data');
    await initDev(dir, () => undefined);
    const config = loadServerConfig(dir, {});
    clusters = buildClusters(config.clusters, loadProfiles(PROFILE_DIR));
    const plaintext = Buffer.from('a development secret');
    let attacked = 0;
    for (const [ci, c] of clusters.entries()) {
      c.start();
      const binding: MaterialBinding = { clusterId: c.id, keyId: 'k', keyVersion: 1, usage: 'ENCRYPT_DECRYPT' };
      const record = await c.generate('AES_256', binding);
      const sealed = await c.encrypt(record, binding, plaintext, Buffer.alloc(0));
      for (const [mi, m] of c.members.entries()) {
        expect(m.domainLocked).toBe(true);
        const loot = attack(m, resolvePin(config.clusters[ci].members[mi].pin), record, sealed, plaintext);
        expect({ member: m.id, aes: loot.wrappedUnderAes, rsa: loot.wrappedUnderRsa, read: loot.read, offline: loot.offline }).toEqual({
          member: m.id,
          aes: [],
          rsa: [],
          read: [],
          offline: false,
        });
        expect({ member: m.id, readable: loot.unwrappedReadable, wrappable: loot.unwrappedWrappable, oracle: loot.decryptOracle }).toEqual({
          member: m.id,
          readable: false,
          wrappable: false,
          oracle: false,
        });
        attacked++;
      }
    }
    expect(attacked).toBe(4);
  });
});
