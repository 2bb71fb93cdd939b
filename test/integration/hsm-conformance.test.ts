import * as pk from 'pkcs11js';
import { constants, createCipheriv, createDecipheriv, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import { HsmCluster } from '../../src/hsm/cluster';
import { InvalidInputError, MaterialIntegrityError, Pkcs11CallError, UnsupportedError } from '../../src/hsm/errors';
import { MaterialBinding, WrappedMaterial } from '../../src/hsm/material';
import { HsmMember } from '../../src/hsm/member';
import { KeySpec, SigningAlgorithm } from '../../src/hsm/capabilities';
import { OCK_LOCK_WAIT_MS } from '../support/opencryptoki';
import { profiles, TokenLab } from '../support/tokens';

/** The same HSM conformance suite, run on every implementation we can exercise here. */
const implementations: Array<{ name: string; make: (lab: TokenLab) => HsmMember[] | Promise<HsmMember[]> }> = [
  { name: 'softhsm2 (sync calls)', make: (lab) => lab.softhsm('sync', ['m1', 'm2']) },
  { name: 'softhsm2 (async calls)', make: (lab) => lab.softhsm('async', ['m1', 'm2'], {}, { ...profiles.get('softhsm2')!, callMode: 'async' }) },
  { name: 'nss-softokn', make: (lab) => [lab.nss('nss')] },
  { name: 'nss-softokn and softhsm2 in one cluster', make: (lab) => [lab.nss('nss'), ...lab.softhsm('mix', ['m2'])] },
  { name: 'opencryptoki-swtok', make: async (lab) => [await lab.opencryptoki('ock')] },
  { name: 'opencryptoki-swtok and nss-softokn in one cluster', make: async (lab) => [await lab.opencryptoki('ock'), lab.nss('nss')] },
];

const bind = (keyId: string, usage = 'ENCRYPT_DECRYPT', keyVersion = 1): MaterialBinding => ({ clusterId: 'c1', keyId, keyVersion, usage });

describe.each(implementations)('HSM conformance: $name', ({ make }) => {
  let lab: TokenLab;
  let members: HsmMember[];
  let cluster: HsmCluster;
  /** Undefined where the cluster has no AES-GCM (openCryptoki 3.8 swtok): AES tests then assert the refusal. */
  let aes: WrappedMaterial | undefined;
  /** A record to tamper with: the AES key, else an RSA key. */
  let record: WrappedMaterial;
  let recordBind: MaterialBinding;

  beforeAll(async () => {
    lab = new TokenLab();
    members = await make(lab);
    cluster = new HsmCluster({ id: 'c1', kind: 'shared', owners: [], members });
    cluster.start();
    const result = await cluster.initDomain({ soPin: lab.soPins });
    expect(result.generated).toBe(true);
    expect(result.copiedTo).toEqual(members.slice(1).map((m) => m.id));
    if (cluster.capabilities.keySpecs.includes('AES_256')) aes = await cluster.generate('AES_256', bind('k-aes'));
    recordBind = aes ? bind('k-aes') : bind('k-rec', 'SIGN_VERIFY');
    record = aes ?? (await cluster.generate('RSA_2048', recordBind));
  }, OCK_LOCK_WAIT_MS + 60_000);

  /** Where the cluster has no AES_256, every AES test asserts this clear refusal instead. */
  async function expectNoAes(): Promise<void> {
    expect(cluster.capabilities.keySpecs).not.toContain('AES_256');
    await expect(cluster.generate('AES_256', bind('k-no-aes'))).rejects.toBeInstanceOf(UnsupportedError);
  }
  afterAll(() => lab.cleanup());

  test('ceremony is safe to re-run and both members hold the same domain', async () => {
    const again = await cluster.initDomain({ soPin: lab.soPins });
    expect(again).toMatchObject({ generated: false, copiedTo: [] });
    const last = members[members.length - 1];
    expect(members[0].domain!.id.equals(last.domain!.id)).toBe(true);
    const wrap = cluster.capabilities.wrapAlgorithms[0];
    expect((await members[0].domainFingerprint(wrap)).equals(await last.domainFingerprint(wrap))).toBe(true);
  });

  test('domain MACs: equal on every member, separated by purpose, never a material MAC', async () => {
    const data = Buffer.from('row: owner=100001');
    const macs = await Promise.all(members.map((m) => m.domainMac('authority-row', data)));
    for (const m of macs) expect(m.equals(macs[0])).toBe(true);
    expect((await cluster.mac('audit-link', data)).equals(macs[0])).toBe(false);
    expect(await cluster.verifyMac('authority-row', data, macs[0])).toBe(true);
    expect(await cluster.verifyMac('authority-row', Buffer.from('row: owner=100002'), macs[0])).toBe(false);
    expect(await cluster.verifyMac('authority-row', data, macs[0].subarray(1))).toBe(false);
    // a MAC asked for with a record's own bytes is not that record's MAC (the purpose label comes first)
    const body = WrappedMaterial.macInput(record.spec, record.binding, record.domainId, record.wrapped, record.publicKey, record.format, record.wrapAlgorithm);
    expect(body.equals(record.macBody)).toBe(true);
    expect((await cluster.mac('authority-row', body)).equals(record.mac)).toBe(false);
    await expect(cluster.mac('Bad Purpose', data)).rejects.toBeInstanceOf(InvalidInputError);
  });

  test('material generated on member A is usable on member B and vice versa', async () => {
    const [a, b] = [members[0], members[members.length - 1]];
    if (!aes) {
      const wrap = cluster.capabilities.wrapAlgorithms[0];
      const rsaA = await a.generate('RSA_2048', bind('k-a', 'SIGN_VERIFY'), wrap);
      const rsaB = await b.generate('RSA_2048', bind('k-b', 'SIGN_VERIFY'), wrap);
      for (const [material, to] of [
        [rsaA, b],
        [rsaB, a],
      ] as const) {
        const sig = await to.sign(material, 'RSA_PKCS1_SHA_256', { message: Buffer.from('cross-member') });
        expect(await cluster.verify(material, 'RSA_PKCS1_SHA_256', { message: Buffer.from('cross-member') }, sig)).toBe(true);
      }
      return expectNoAes();
    }
    const onA = await a.generate('AES_256', bind('k-a'));
    const onB = await b.generate('AES_256', bind('k-b'));
    for (const [material, from, to] of [
      [onA, a, b],
      [onB, b, a],
    ] as const) {
      const sealed = await from.encryptGcm(material, Buffer.from('cross-member'), Buffer.from('aad'));
      expect((await to.decryptGcm(material, sealed, Buffer.from('aad'))).toString()).toBe('cross-member');
    }
  });

  test('AES-GCM round trip with AAD; the IV is 96 bits and differs each time', async () => {
    if (!aes) return expectNoAes();
    const pt = randomBytes(4096);
    const a = await cluster.encrypt(aes, bind('k-aes'), pt, Buffer.from('ctx'));
    const b = await cluster.encrypt(aes, bind('k-aes'), pt, Buffer.from('ctx'));
    expect(a.iv).toHaveLength(12);
    expect(a.tag).toHaveLength(16);
    expect(a.iv.equals(b.iv)).toBe(false);
    expect(a.ciphertext.equals(pt)).toBe(false);
    expect((await cluster.decrypt(aes, bind('k-aes'), a, Buffer.from('ctx'))).equals(pt)).toBe(true);
  });

  test('a tampered ciphertext, tag or AAD is a caller error and never resets a member (flood of 300)', async () => {
    if (!aes) return expectNoAes();
    const sealed = await cluster.encrypt(aes, bind('k-aes'), Buffer.from('secret'), Buffer.from('ctx'));
    const resetsBefore = members.map((m) => m.resets);
    let callerErrors = 0;
    for (let i = 0; i < 300; i++) {
      const bad = { iv: sealed.iv, ciphertext: Buffer.from(sealed.ciphertext), tag: Buffer.from(sealed.tag) };
      if (i % 3 === 0) bad.tag[i % 16] ^= 1;
      else if (i % 3 === 1) bad.ciphertext[i % bad.ciphertext.length] ^= 0x80;
      const aad = i % 3 === 2 ? Buffer.from('other') : Buffer.from('ctx');
      try {
        await cluster.decrypt(aes, bind('k-aes'), bad, aad);
      } catch (e) {
        if (e instanceof Pkcs11CallError && e.errorClass === 'caller') callerErrors++;
        else throw e;
      }
    }
    expect(callerErrors).toBe(300);
    expect(members.map((m) => m.resets)).toEqual(resetsBefore);
    expect(members.every((m) => m.state === 'ACTIVE')).toBe(true);
    expect((await cluster.decrypt(aes, bind('k-aes'), sealed, Buffer.from('ctx'))).toString()).toBe('secret');
  });

  test('a tampered wrapped record fails its MAC and nothing is unwrapped', async () => {
    const bytes = record.toBuffer();
    for (let offset = 0; offset < bytes.length; offset += 7) {
      const bad = Buffer.from(bytes);
      bad[offset] ^= 1;
      const handlesBefore = members[0].cachedHandles;
      await expect((async () => members[0].load(WrappedMaterial.fromBuffer(bad)))()).rejects.toBeInstanceOf(MaterialIntegrityError);
      expect(members[0].cachedHandles).toBe(handlesBefore);
    }
    expect(() => WrappedMaterial.fromBuffer(bytes.subarray(0, 20))).toThrow(MaterialIntegrityError);
  });

  const attempt = (read: () => unknown): string => {
    try {
      read();
      return 'readable';
    } catch (e) {
      return (e as Error).message;
    }
  };
  test('unwrapped material and copied domain keys are sensitive and not extractable: their values cannot be read', async () => {
    const protection = [{ type: pk.CKA_SENSITIVE }, { type: pk.CKA_EXTRACTABLE }];
    const flags = (attrs: pk.Attribute[]) => attrs.map((a) => (a.value as Buffer)[0]);
    for (const m of members) {
      const readValue = (s: pk.Handle, h: pk.Handle) =>
        m.module.api.C_GetAttributeValue(s, h, [{ type: record.spec.startsWith('RSA') ? pk.CKA_PRIVATE_EXPONENT : pk.CKA_VALUE }]);
      const [attrs, read] = await m.withKey(
        record,
        'sign',
        (s, key) => [m.module.api.C_GetAttributeValue(s, key, protection), attempt(() => readValue(s, key))] as const,
      );
      expect(flags(attrs)).toEqual([1, 0]);
      expect(read).toMatch(/CKR_ATTRIBUTE_SENSITIVE/);
      const domain = m.domain!;
      const keys = await m.withSession('sign', (s) =>
        [domain.kek, domain.mac].map((h) => m.module.api.C_GetAttributeValue(s, h, [{ type: pk.CKA_SENSITIVE }])),
      );
      expect(keys.map(flags)).toEqual([[1], [1]]);
      // caught inside: a failed call through the member would be classified (and could fail the member)
      expect(await m.withSession('sign', (s) => attempt(() => m.module.api.C_GetAttributeValue(s, domain.kek, [{ type: pk.CKA_VALUE }])))).toMatch(
        /CKR_ATTRIBUTE_SENSITIVE/,
      );
    }
  });

  test('a record is refused for any binding other than its own', async () => {
    const message = { message: Buffer.from('x') };
    for (const wrong of [bind('another-key', recordBind.usage), { ...recordBind, keyVersion: 2 }, { ...recordBind, clusterId: 'c2' }]) {
      await expect(cluster.encrypt(record, wrong, Buffer.from('x'), Buffer.alloc(0))).rejects.toBeInstanceOf(MaterialIntegrityError);
      await expect(cluster.sign(record, wrong, 'RSA_PKCS1_SHA_256', message)).rejects.toBeInstanceOf(MaterialIntegrityError);
    }
  });

  const signing: Array<[KeySpec, SigningAlgorithm]> = [
    ['RSA_2048', 'RSA_PKCS1_SHA_256'],
    ['RSA_3072', 'RSA_PSS_SHA_256'],
    ['RSA_4096', 'RSA_PKCS1_SHA_256'],
    ['EC_P256', 'ECDSA_SHA_256'],
    ['EC_P384', 'ECDSA_SHA_384'],
  ];
  test.each(signing)('%s signs with %s; signature verifies in software and by OpenSSL; altered message fails', async (spec, algorithm) => {
    if (!cluster.capabilities.keySpecs.includes(spec)) {
      // Declared by the profile (NSS softokn cannot unwrap EC private keys): a clear refusal, not a crash.
      await expect(cluster.generate(spec, bind(`k-${spec}`, 'SIGN_VERIFY'))).rejects.toBeInstanceOf(UnsupportedError);
      expect(cluster.capabilities.signing).not.toContain(algorithm);
      return;
    }
    const material = await cluster.generate(spec, bind(`k-${spec}`, 'SIGN_VERIFY'));
    const spki = createPublicKey({ key: cluster.publicKey(material), format: 'der', type: 'spki' });
    expect(spki.asymmetricKeyType).toBe(spec.startsWith('RSA') ? 'rsa' : 'ec');
    const message = Buffer.from('sign me');
    const sig = await cluster.sign(material, bind(`k-${spec}`, 'SIGN_VERIFY'), algorithm, { message });
    expect(await cluster.verify(material, algorithm, { message }, sig)).toBe(true);
    expect(await cluster.verify(material, algorithm, { message: Buffer.from('sign me!') }, sig)).toBe(false);
    expect(await cluster.verify(material, algorithm, { message }, Buffer.from(sig.map((b, i) => (i === sig.length - 3 ? b ^ 1 : b))))).toBe(false);
    const { verify, createHash } = await import('node:crypto');
    const hash = algorithm === 'ECDSA_SHA_384' ? 'sha384' : 'sha256';
    const opts = algorithm === 'RSA_PSS_SHA_256' ? { key: spki, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } : spki;
    expect(verify(hash, message, opts, sig)).toBe(true);
    const digest = createHash(hash).update(message).digest();
    const sig2 = await cluster.sign(material, bind(`k-${spec}`, 'SIGN_VERIFY'), algorithm, { digest });
    expect(await cluster.verify(material, algorithm, { digest }, sig2)).toBe(true);
  });

  test('signing with the wrong key type or digest size is a caller error', async () => {
    if (aes) await expect(cluster.sign(aes, bind('k-aes'), 'RSA_PKCS1_SHA_256', { message: Buffer.from('x') })).rejects.toBeInstanceOf(InvalidInputError);
    const rsa = await cluster.generate('RSA_2048', bind('k-rsa2', 'SIGN_VERIFY'));
    await expect(cluster.sign(rsa, bind('k-rsa2', 'SIGN_VERIFY'), 'RSA_PKCS1_SHA_256', { digest: Buffer.alloc(31) })).rejects.toBeInstanceOf(InvalidInputError);
  });

  test('RSA decrypt: PKCS#1 v1.5 and OAEP SHA-1; OAEP SHA-256 exactly where the cluster is capable', async () => {
    const rsa = await cluster.generate('RSA_2048', bind('k-rsa-dec', 'ASYMMETRIC_DECRYPT'));
    const key = createPublicKey({ key: rsa.publicKey, format: 'der', type: 'spki' });
    const secret = Buffer.from('asymmetric secret');
    const v15 = publicEncrypt({ key, padding: constants.RSA_PKCS1_PADDING }, secret);
    const oaep1 = publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, secret);
    expect((await cluster.rsaDecrypt(rsa, bind('k-rsa-dec', 'ASYMMETRIC_DECRYPT'), 'RSAES_PKCS1_V1_5', v15)).equals(secret)).toBe(true);
    expect((await cluster.rsaDecrypt(rsa, bind('k-rsa-dec', 'ASYMMETRIC_DECRYPT'), 'RSAES_OAEP_SHA_1', oaep1)).equals(secret)).toBe(true);
    const oaep256 = publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, secret);
    if (cluster.capabilities.rsaDecrypt.includes('RSAES_OAEP_SHA_256')) {
      expect((await cluster.rsaDecrypt(rsa, bind('k-rsa-dec', 'ASYMMETRIC_DECRYPT'), 'RSAES_OAEP_SHA_256', oaep256)).equals(secret)).toBe(true);
    } else {
      await expect(cluster.rsaDecrypt(rsa, bind('k-rsa-dec', 'ASYMMETRIC_DECRYPT'), 'RSAES_OAEP_SHA_256', oaep256)).rejects.toBeInstanceOf(UnsupportedError);
    }
    await expect(cluster.rsaDecrypt(rsa, bind('k-rsa-dec', 'ASYMMETRIC_DECRYPT'), 'RSAES_OAEP_SHA_1', randomBytes(256))).rejects.toMatchObject({
      errorClass: 'caller',
    });
  });

  test('BYOK: caller-wrapped AES-256 material is unwrapped inside the HSM, re-wrapped, and its check value matches on re-import', async () => {
    const wrapping = await cluster.createImportWrappingKey(bind('k-ext', 'IMPORT_WRAPPING'));
    const key = createPublicKey({ key: wrapping.publicKey, format: 'der', type: 'spki' });
    const material = randomBytes(32);
    const padding = cluster.capabilities.importWrapping.includes('RSAES_OAEP_SHA_1') ? 'RSAES_OAEP_SHA_1' : 'RSAES_PKCS1_V1_5';
    const encrypt = (m: Buffer) => publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, m);
    if (!aes) {
      await expect(cluster.importKeyMaterial(wrapping, bind('k-ext', 'IMPORT_WRAPPING'), padding, encrypt(material), bind('k-ext'))).rejects.toBeInstanceOf(
        UnsupportedError,
      );
      return expectNoAes();
    }
    const first = await cluster.importKeyMaterial(wrapping, bind('k-ext', 'IMPORT_WRAPPING'), padding, encrypt(material), bind('k-ext'));
    const again = await cluster.importKeyMaterial(wrapping, bind('k-ext', 'IMPORT_WRAPPING'), padding, encrypt(material), bind('k-ext'));
    const other = await cluster.importKeyMaterial(wrapping, bind('k-ext', 'IMPORT_WRAPPING'), padding, encrypt(randomBytes(32)), bind('k-ext'));
    expect(first.checkValue.equals(again.checkValue)).toBe(true);
    expect(first.checkValue.equals(other.checkValue)).toBe(false);
    expect(first.checkValue.includes(material)).toBe(false);
    // The imported key really is the caller's key: data sealed by the HSM opens in software with it.
    const sealed = await cluster.encrypt(first.material, bind('k-ext'), Buffer.from('byok'), Buffer.from('aad'));
    const d = createDecipheriv('aes-256-gcm', material, sealed.iv).setAAD(Buffer.from('aad')).setAuthTag(sealed.tag);
    expect(Buffer.concat([d.update(sealed.ciphertext), d.final()]).toString()).toBe('byok');
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', material, iv).setAAD(Buffer.alloc(0));
    const ct = Buffer.concat([c.update('soft'), c.final()]);
    expect((await cluster.decrypt(first.material, bind('k-ext'), { iv, ciphertext: ct, tag: c.getAuthTag() }, Buffer.alloc(0))).toString()).toBe('soft');
    await expect(cluster.importKeyMaterial(wrapping, bind('k-ext', 'IMPORT_WRAPPING'), padding, encrypt(randomBytes(16)), bind('k-ext'))).rejects.toMatchObject(
      { errorClass: 'caller' },
    );
    await expect(cluster.importKeyMaterial(wrapping, bind('k-ext', 'IMPORT_WRAPPING'), padding, randomBytes(256), bind('k-ext'))).rejects.toMatchObject({
      errorClass: 'caller',
    });
    expect(members.every((m) => m.state === 'ACTIVE' && m.resets === 0)).toBe(true);
  });

  test('random bytes come from the HSM', async () => {
    const a = await cluster.random(1024);
    const b = await cluster.random(1024);
    expect(a).toHaveLength(1024);
    expect(a.equals(b)).toBe(false);
  });

  test('an unknown mechanism is reported as unsupported', async () => {
    const err = await members[0]
      .withSession('encrypt', (s) => members[0].module.api.C_EncryptInit(s, { mechanism: 0x8abcdef0 }, Buffer.alloc(8)))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Pkcs11CallError);
    expect((err as Pkcs11CallError).errorClass).toMatch(/unsupported|session/);
    expect(members[0].state).toBe('ACTIVE');
  });

  test('concurrency: 2,000 parallel operations over many keys give correct results', async () => {
    if (!aes) {
      // 2,000 domain MACs at once (the fast path); signatures in waves the cluster's slow queue admits
      const macs = await Promise.all(
        Array.from({ length: 2000 }, async (_, i) => {
          const data = Buffer.from(`message ${i}`);
          return cluster.verifyMac('audit-link', data, await cluster.mac('audit-link', data));
        }),
      );
      expect(macs.filter(Boolean)).toHaveLength(2000);
      const keys = await Promise.all(Array.from({ length: 10 }, (_, i) => cluster.generate('RSA_2048', bind(`k-par-${i}`, 'SIGN_VERIFY'))));
      let signed = 0;
      for (let wave = 0; wave < 10; wave++) {
        const ok = await Promise.all(
          keys.map(async (k, i) => {
            const message = { message: Buffer.from(`message ${wave}-${i}`) };
            return cluster.verify(k, 'RSA_PSS_SHA_256', message, await cluster.sign(k, bind(`k-par-${i}`, 'SIGN_VERIFY'), 'RSA_PSS_SHA_256', message));
          }),
        );
        signed += ok.filter(Boolean).length;
      }
      expect(signed).toBe(100);
      return expectNoAes();
    }
    const keys = await Promise.all(Array.from({ length: 20 }, (_, i) => cluster.generate('AES_256', bind(`k-par-${i}`))));
    const results = await Promise.all(
      Array.from({ length: 2000 }, async (_, i) => {
        const pt = Buffer.from(`message ${i}`);
        const k = keys[i % keys.length];
        const sealed = await cluster.encrypt(k, bind(`k-par-${i % keys.length}`), pt, Buffer.from(String(i)));
        return (await cluster.decrypt(k, bind(`k-par-${i % keys.length}`), sealed, Buffer.from(String(i)))).equals(pt);
      }),
    );
    expect(results.filter(Boolean)).toHaveLength(2000);
  });

  test('health reports every member ACTIVE with a real probe', async () => {
    const h = await cluster.health();
    expect(h.state).toBe('ACTIVE');
    expect(h.members.map((m) => m.state)).toEqual(members.map(() => 'ACTIVE'));
    expect(h.members.every((m) => typeof m.probeMs === 'number')).toBe(true);
  });
});
