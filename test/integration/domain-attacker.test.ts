/**
 * Issue 12 §1, the attacker: someone holding the user PIN (it is in the data directory) logs into
 * every member after the ceremony and tries to take the domain keys away — wrap every secret key
 * of the token under a key of its own, read CKA_VALUE — and to unwrap a real record with the KEK
 * into an object it can read. What it gets is decided per implementation by what the token
 * enforces (test/integration/domain-lockdown.test.ts).
 */
import * as pk from 'pkcs11js';
import { createDecipheriv, createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { initDev } from '../../src/cli/dev-init';
import { loadServerConfig } from '../../src/config';
import { HsmCluster } from '../../src/hsm/cluster';
import { buildClusters, resolvePin } from '../../src/hsm/config';
import { loadProfiles, PROFILE_DIR } from '../../src/hsm/profile';
import { MaterialBinding, WrappedMaterial } from '../../src/hsm/material';
import { HsmMember } from '../../src/hsm/member';
import {
  allSecretKeys,
  AttackerKeys,
  attackerUnwrapTemplate,
  attackerWrapMechanism,
  cbcDecrypt,
  labelOf,
  outcome,
  readValue,
  RFC5649_IV,
  unwrapRfc5649,
} from '../support/attacker';
import { TokenLab } from '../support/tokens';

const bind = (keyId: string, usage = 'ENCRYPT_DECRYPT'): MaterialBinding => ({ clusterId: 'c1', keyId, keyVersion: 1, usage });

interface Setup {
  name: string;
  make: (lab: TokenLab) => Promise<{ members: HsmMember[]; pins: string[] }>;
  /** Whether the token keeps a non-extractable key in (measured in domain-lockdown.test.ts). */
  keepsKeysIn: boolean;
}

const setups: Setup[] = [
  {
    name: 'softhsm2, two members',
    make: async (lab) => ({
      members: lab.softhsm('atk', ['a1', 'a2']),
      pins: ['a1', 'a2'].map((l) => readFileSync(join(lab.dir, 'atk', 'pins', `${l}.pin`), 'utf8')),
    }),
    keepsKeysIn: true,
  },
  {
    name: 'nss-softokn',
    make: async (lab) => ({ members: [lab.nss('atk-nss')], pins: [readFileSync(join(lab.dir, 'atk-nss', 'pins', 'nss.pin'), 'utf8')] }),
    keepsKeysIn: false,
  },
  {
    name: 'opencryptoki-swtok',
    make: async (lab) => ({ members: [await lab.opencryptoki('atk-ock')], pins: [lab.ock!.pin] }),
    keepsKeysIn: true,
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
  /** The KEK unwrapped a record into an object whose key the attacker read. */
  unwrappedReadable: boolean;
  /** The KEK unwrapped a record into a key that wrapped under the attacker's AES or RSA key, and the value decrypted. */
  unwrappedWrappable: boolean;
  /** CKA_DECRYPT turned on (set, or in a copy of the KEK) and the record unwrapped in software with C_Decrypt as the oracle. */
  decryptOracle: boolean;
}

/**
 * A real record of the cluster and how the attacker tells it has the key inside: an AES-256 key
 * (RFC 5649) that decrypts the cluster's ciphertext, or, where the cluster has no AES-GCM
 * (openCryptoki 3.8.1), an RSA private key (CKM_AES_CBC_PAD, IV first) matching the record's public key.
 */
interface Target {
  record: WrappedMaterial;
  /** Whether `key` (an AES value, or a PKCS#8 private key) is the record's key. */
  isKey(key: Buffer | undefined): boolean;
}

/** The record's key, from the KEK's value, in software. */
function openRecord(record: WrappedMaterial, kek: Buffer): Buffer | undefined {
  return record.wrapAlgorithm === 'aes-cbc-pad'
    ? outcome(() => cbcDecrypt(kek, record.wrapped.subarray(0, 16), record.wrapped.subarray(16)))
    : outcome(() => unwrapRfc5649(kek, record.wrapped));
}

function aesTarget(record: WrappedMaterial, sealed: { iv: Buffer; ciphertext: Buffer; tag: Buffer }, plaintext: Buffer): Target {
  return { record, isKey: (key) => decrypts(key, sealed, plaintext) };
}

function rsaTarget(record: WrappedMaterial): Target {
  const spki = (der: Buffer) => createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).export({ format: 'der', type: 'spki' });
  return { record, isKey: (key) => key !== undefined && outcome(() => spki(key).equals(record.publicKey)) === true };
}

/** Runs on the member's token with the user PIN only; `target` is a real wrapped-material record of the cluster. */
function attack(member: HsmMember, pin: string, target: Target): Loot {
  const api = member.module.api;
  const { record } = target;
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
    const recordMech: pk.Mechanism =
      record.wrapAlgorithm === 'aes-cbc-pad'
        ? { mechanism: pk.CKM_AES_CBC_PAD, parameter: record.wrapped.subarray(0, 16) }
        : { mechanism: member.profile.rfc5649Mechanism! };
    const body = record.wrapAlgorithm === 'aes-cbc-pad' ? record.wrapped.subarray(16) : record.wrapped;
    const targets = allSecretKeys(api, s);
    const mine = new AttackerKeys(api, s, attackerWrapMechanism(member.profile));
    const label = (h: pk.Handle) => labelOf(api, s, h);
    const values: Buffer[] = [];
    for (const h of targets) {
      const underAes = mine.wrapUnderAes(h);
      if (underAes) {
        loot.wrappedUnderAes.push(label(h));
        const value = mine.openAes(underAes);
        if (value) values.push(value);
      }
      const underRsa = mine.wrapUnderRsa(h);
      if (underRsa) {
        loot.wrappedUnderRsa.push(label(h));
        const value = mine.openRsa(underRsa);
        if (value) values.push(value);
      }
      const value = readValue(api, s, h);
      if (value) {
        loot.read.push(label(h));
        values.push(value);
      }
    }
    // offline: any value that opens the record into its key is the KEK
    loot.offline = values.some((kek) => target.isKey(openRecord(record, kek)));
    const kek = targets.find((h) => label(h).includes('kek'));
    if (kek === undefined) return loot;
    loot.unwrappedReadable = readableUnwrap(api, s, kek, recordMech, body, target);
    // sensitive, as a template may force, but extractable, with and without CKA_WRAP_WITH_TRUSTED: then wrapped under the attacker's keys
    if (record.spec === 'AES_256') {
      for (const trusted of [undefined, false, true]) {
        const key = outcome(() => api.C_UnwrapKey(s, recordMech, kek, body, attackerUnwrapTemplate('wrappable', trusted)));
        if (key === undefined) continue;
        const underAes = mine.wrapUnderAes(key);
        const underRsa = mine.wrapUnderRsa(key);
        if ([underAes && mine.openAes(underAes), underRsa && mine.openRsa(underRsa)].some((v) => target.isKey(v || undefined))) loot.unwrappedWrappable = true;
      }
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
      const opened =
        record.wrapAlgorithm === 'aes-cbc-pad'
          ? outcome(() => {
              api.C_DecryptInit(s, recordMech, h);
              return Buffer.from(api.C_Decrypt(s, body, Buffer.alloc(body.length)));
            })
          : outcome(() =>
              unwrapWithOracle((block: Buffer) => {
                api.C_DecryptInit(s, { mechanism: pk.CKM_AES_ECB }, h);
                return Buffer.from(api.C_Decrypt(s, block, Buffer.alloc(16)));
              }, record.wrapped),
            );
      if (target.isKey(opened)) loot.decryptOracle = true;
    }
  } finally {
    api.C_CloseSession(s);
  }
  return loot;
}

/**
 * The KEK asked to unwrap the record into a key the attacker reads: an AES key asked non-sensitive
 * and extractable, or naming neither (openCryptoki refuses CKA_EXTRACTABLE=true there); an RSA
 * private key naming neither, its value taken back out under the attacker's own AES key.
 */
function readableUnwrap(api: pk.PKCS11, s: pk.Handle, kek: pk.Handle, mech: pk.Mechanism, body: Buffer, target: Target): boolean {
  if (target.record.spec === 'AES_256') {
    return (['readable', 'unnamed'] as const).some((kind) => {
      const key = outcome(() => api.C_UnwrapKey(s, mech, kek, body, attackerUnwrapTemplate(kind)));
      return key !== undefined && target.isKey(readValue(api, s, key));
    });
  }
  const key = outcome(() =>
    api.C_UnwrapKey(s, mech, kek, body, [
      { type: pk.CKA_CLASS, value: pk.CKO_PRIVATE_KEY },
      { type: pk.CKA_KEY_TYPE, value: pk.CKK_RSA },
      { type: pk.CKA_TOKEN, value: false },
      { type: pk.CKA_SIGN, value: true },
    ]),
  );
  if (key === undefined) return false;
  // the unwrapped private key is extractable: the attacker wraps it under its own key (CBC-PAD) and opens it in software
  const mine = new AttackerKeys(api, s, { mechanism: pk.CKM_AES_CBC_PAD, parameter: Buffer.alloc(16, 1) });
  const wrapped = mine.wrapUnderAes(key);
  return wrapped !== undefined && target.isKey(mine.openAes(wrapped));
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

function decrypts(key: Buffer | undefined, sealed: { iv: Buffer; ciphertext: Buffer; tag: Buffer }, plaintext: Buffer): boolean {
  if (!key || key.length !== 32) return false;
  const d = createDecipheriv('aes-256-gcm', key, sealed.iv);
  d.setAuthTag(sealed.tag);
  const out = outcome(() => Buffer.concat([d.update(sealed.ciphertext), d.final()]));
  return out !== undefined && out.equals(plaintext);
}

describe.each(setups)('the attacker with the user PIN: $name', ({ make, keepsKeysIn }) => {
  let lab: TokenLab;
  let members: HsmMember[];
  let pins: string[];
  let target: Target;
  const plaintext = Buffer.from('the secret the KMS keeps');

  beforeAll(async () => {
    lab = new TokenLab();
    ({ members, pins } = await make(lab));
    const cluster = new HsmCluster({ id: 'c1', kind: 'shared', owners: [], members });
    cluster.start();
    await cluster.initDomain({ soPin: lab.soPins });
    if (cluster.capabilities.keySpecs.includes('AES_256')) {
      const record = await cluster.generate('AES_256', bind('k1'));
      target = aesTarget(record, await cluster.encrypt(record, bind('k1'), plaintext, Buffer.alloc(0)), plaintext);
    } else {
      // openCryptoki 3.8.1 has no AES-GCM: its records are RSA keys, wrapped with CKM_AES_CBC_PAD
      target = rsaTarget(await cluster.generate('RSA_2048', bind('k1', 'SIGN_VERIFY')));
    }
  });
  afterAll(() => lab.cleanup());

  test('wrapping or reading the domain keys gets nothing where the token keeps keys in; nothing decrypts offline', () => {
    for (const [i, m] of members.entries()) {
      const loot = attack(m, pins[i], target);
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

  test('where CKA_UNWRAP_TEMPLATE is enforced the KEK unwraps no record into a key the attacker reads or wraps; NSS softokn, openCryptoki: known limits', () => {
    for (const [i, m] of members.entries()) {
      const loot = attack(m, pins[i], target);
      const got = {
        member: m.id,
        template: m.domainUnwrapTemplate,
        readable: loot.unwrappedReadable,
        wrappable: loot.unwrappedWrappable,
        oracle: loot.decryptOracle,
      };
      if (m.profile.unwrapTemplate) {
        expect(got).toEqual({ member: m.id, template: true, readable: false, wrappable: false, oracle: false });
      } else if (m.profile.name === 'nss-softokn') {
        // known limit (docs/security.md): NSS softokn ignores CKA_UNWRAP_TEMPLATE; its profile says so
        expect({ enforced: m.profile.unwrapTemplate, readable: loot.unwrappedReadable }).toEqual({ enforced: false, readable: true });
      } else {
        // known limits (docs/security.md §10): openCryptoki 3.8.1 has no CKA_UNWRAP_TEMPLATE and its C_UnwrapKey ignores
        // CKA_SENSITIVE, so the KEK unwraps a record into a key the user takes out; and a copy of the locked KEK may decrypt
        expect(m.profile.name).toBe('opencryptoki-swtok');
        expect(got).toEqual({ member: m.id, template: false, readable: true, wrappable: false, oracle: true });
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
      const loot = attack(m, pins[i], aesTarget(record, sealed, plaintext));
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
        const loot = attack(m, resolvePin(config.clusters[ci].members[mi].pin), aesTarget(record, sealed, plaintext));
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
