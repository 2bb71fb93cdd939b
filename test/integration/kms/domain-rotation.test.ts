/**
 * Domain generations on real SoftHSM2 tokens: `DomainRotation` makes a new generation in one member,
 * copies it into the others (an empty new member included), makes it current, re-wraps every record
 * of the cluster inside the HSMs and destroys the old generation once nothing names it. Everything
 * made before keeps working; a run that fails half-way is finished by the next one (or by the
 * background jobs) without re-doing what was done.
 */
import * as pk from 'pkcs11js';
import { constants, publicEncrypt, randomBytes, createPublicKey } from 'node:crypto';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { HsmCluster } from '../../../src/hsm/cluster';
import { MaterialIntegrityError } from '../../../src/hsm/errors';
import { DOMAIN_KEK_LABEL, DOMAIN_MAC_LABEL, HsmMember } from '../../../src/hsm/member';
import { WrappedMaterial } from '../../../src/hsm/material';
import { DomainRotation, DomainRotationError, RotationEvent } from '../../../src/kms/domain-rotation';
import { DomainStateError, loadDomainState } from '../../../src/kms/domain-state';
import type { Kms } from '../../../src/kms/service';
import { RedisMetadataStore } from '../../../src/store/redis/store';
import type { KeyPatch, MetadataStore } from '../../../src/store/store';
import { bob, KmsLab } from '../../support/kms';
import { within } from '../../support/poll';
import { RedisServer, startRedis } from '../../support/redis';

const CLUSTER = 'cls-rot';
const hex = (b: Buffer): string => b.toString('hex');

describe('rotate-domain: a new domain generation for a cluster, every record re-wrapped under it', () => {
  let lab: KmsLab;
  const jobErrors: string[] = [];
  let kms: Kms;
  let store: MetadataStore;
  let rot: HsmCluster;
  let members: HsmMember[];
  let mixed: HsmCluster;

  beforeAll(async () => {
    lab = new KmsLab((tokens) => {
      members = tokens.softhsm('rot', ['rot-a', 'rot-b', 'rot-c']);
      rot = new HsmCluster({ id: CLUSTER, kind: 'dedicated', owners: [bob.tenant], members, probeCacheMs: 0 });
      mixed = new HsmCluster({
        id: 'cls-rot-mixed',
        kind: 'dedicated',
        owners: [bob.tenant],
        members: [tokens.nss('rot-nss'), ...tokens.softhsm('mixed', ['mixed-a'])],
        probeCacheMs: 0,
      });
      return [rot, mixed];
    });
    await lab.start();
    // rot-c stands for a member added to the configuration after the ceremony: a token without domain keys
    await members[2].removeDomainKeys();
    store = lab.sqlite();
    kms = lab.kms(store, { macClusterId: 'cls-shared', onJobError: (e) => jobErrors.push(String(e)) });
  });
  afterAll(() => lab.cleanup());

  const census = () => kms.domainRotation.census(CLUSTER);
  const held = () => members.map((m) => [...m.generations.keys()].sort());
  const enc = async (keyId: string, text: string) => (await kms.envelope.encrypt(bob, { keyId: keyId, plaintext: Buffer.from(text) })).ciphertext;
  const dec = async (blob: Buffer) => (await kms.envelope.decrypt(bob, { ciphertext: blob })).plaintext.toString();
  const create = async (n: number, prefix: string) => {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push((await kms.lifecycle.createKey(bob, { alias: `${prefix}-${i}`, hsmClusterId: CLUSTER })).keyId);
    return ids;
  };
  /** Every record of the cluster, unwrapped (MAC checked) by `member` alone. */
  const loadAllOn = async (member: HsmMember) => {
    let n = 0;
    for (let cursor: string | undefined = ''; cursor !== undefined;) {
      const page = await store.clusterKeys(CLUSTER, cursor, 100);
      for (const ref of page.keys) {
        const r = (await store.getKey(ref.ownerUin, ref.keyId))!;
        for (const m of [...r.versions.map((v) => v.material), ...(r.importParameters ? [r.importParameters.wrappingKey] : [])]) {
          await member.load(WrappedMaterial.fromBuffer(m));
          n++;
        }
      }
      cursor = page.cursor;
    }
    return n;
  };

  const kinds = 'symmetric keys (two versions), signing and decryption keys, an imported key and pending import parameters';
  test(`${kinds}: all work after it; the old generation is gone; the new member serves them all`, async () => {
    const sym = await create(6, 'sym');
    await kms.rotation.rotateKey(bob, sym[0]);
    const blobs = await Promise.all(sym.map((id, i) => enc(id, `before ${i}`)));
    const ec = (await kms.lifecycle.createKey(bob, { alias: 'ec', keyUsage: 'ec-p256-sign-verify', hsmClusterId: CLUSTER })).keyId;
    const rsa = (await kms.lifecycle.createKey(bob, { alias: 'rsa', keyUsage: 'rsa-2048-decrypt', hsmClusterId: CLUSTER })).keyId;
    const message = Buffer.from('signed before the rotation');
    const { signature: Signature } = await kms.asymmetric.sign(bob, { keyId: ec, algorithm: 'ECDSA_SHA_256', message: message });
    const rsaPub = createPublicKey({ key: (await kms.asymmetric.getPublicKey(bob, rsa)).publicKey, format: 'der', type: 'spki' });
    const rsaCipher = publicEncrypt({ key: rsaPub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, Buffer.from('rsa secret'));
    const byok = (await kms.lifecycle.createKey(bob, { alias: 'byok', origin: 'EXTERNAL', hsmClusterId: CLUSTER })).keyId;
    const params = await kms.keyImport.getParametersForImport(bob, { keyId: byok, wrappingAlgorithm: 'RSAES_OAEP_SHA_1', wrappingKeySpec: 'RSA_2048' });

    const old = rot.currentGeneration!;
    expect(held()).toEqual([[hex(old)], [hex(old)], []]);
    const records = 6 + 1 + 2 + 1; // versions, plus the import wrapping key
    expect(await census()).toEqual(new Map([[hex(old), records]]));

    const events: RotationEvent[] = [];
    const report = await kms.domainRotation.rotate(CLUSTER, { soPin: lab.tokens.soPins, progress: (e) => events.push(e) });
    const now = rot.currentGeneration!;
    expect(hex(now)).toBe(report.generation);
    expect(now.equals(old)).toBe(false);
    expect(report).toMatchObject({ resumed: false, rewrapped: records, retired: hex(old), destroyedOn: ['rot-rot-a', 'rot-rot-b'] });
    expect(events[0]).toMatchObject({ phase: 'generation', generation: hex(now) });
    expect(events.filter((e) => e.phase === 'rewrap').pop()).toEqual({ phase: 'rewrap', done: records, total: records });
    expect(await census()).toEqual(new Map([[hex(now), records]]));
    await rot.refreshGenerations();
    expect(held()).toEqual([[hex(now)], [hex(now)], [hex(now)]]);

    expect(await Promise.all(blobs.map(dec))).toEqual(sym.map((_, i) => `before ${i}`));
    expect(await dec(await enc(sym[0], 'after'))).toBe('after');
    expect(await kms.asymmetric.verify(bob, { keyId: ec, algorithm: 'ECDSA_SHA_256', message: message, signature: Signature })).toMatchObject({
      signatureValid: true,
    });
    const again = await kms.asymmetric.sign(bob, { keyId: ec, algorithm: 'ECDSA_SHA_256', message: message });
    expect(await kms.asymmetric.verify(bob, { keyId: ec, algorithm: 'ECDSA_SHA_256', message: message, signature: again.signature })).toMatchObject({
      signatureValid: true,
    });
    expect((await kms.asymmetric.rsaDecrypt(bob, { keyId: rsa, ciphertext: rsaCipher, algorithm: 'RSAES_OAEP_SHA_1' })).plaintext.toString()).toBe(
      'rsa secret',
    );
    const material = randomBytes(32);
    const wrappedMaterial = publicEncrypt(
      { key: createPublicKey({ key: params.publicKey, format: 'der', type: 'spki' }), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' },
      material,
    );
    await kms.keyImport.importKeyMaterial(bob, { keyId: byok, importToken: params.importToken, encryptedKeyMaterial: wrappedMaterial });
    expect(await dec(await enc(byok, 'imported'))).toBe('imported');
    // the member that never held the old generation serves every record on its own
    expect(await loadAllOn(members[2])).toBe(records);
    const state = await loadDomainState(store, rot);
    expect(state?.state).toEqual({ current: hex(now) });
  }, 120_000);

  test('a run that fails after a few records is finished by the next run, which re-wraps only the rest; everything decrypts in between', async () => {
    const ids = await create(30, 'crash');
    const blobs = await Promise.all(ids.map((id, i) => enc(id, `crash ${i}`)));
    const old = rot.currentGeneration!;
    const total = [...(await census()).values()].reduce((a, b) => a + b, 0);
    let seen = 0;
    const failing = kms.domainRotation.rotate(CLUSTER, {
      soPin: lab.tokens.soPins,
      progress: (e) => {
        if (e.phase === 'rewrap' && e.done > 0 && ++seen === 5) throw new Error('injected failure after 5 records');
      },
    });
    await expect(failing).rejects.toThrow('injected failure after 5 records');
    const mid = await census();
    const next = rot.currentGeneration!;
    expect(next.equals(old)).toBe(false);
    const doneBefore = mid.get(hex(next)) ?? 0;
    expect(doneBefore).toBeGreaterThanOrEqual(5);
    expect(mid.get(hex(old))).toBe(total - doneBefore);
    expect(await kms.domainRotation.unfinished(CLUSTER)).toBe(true);
    expect(held()).toEqual([0, 1, 2].map(() => [hex(next), hex(old)].sort()));
    expect(await Promise.all(blobs.map(dec))).toEqual(ids.map((_, i) => `crash ${i}`));
    expect(await dec(await enc(ids[0], 'sealed mid-way'))).toBe('sealed mid-way');
    // a record still under the old generation, relabelled as the new one: its domain id is under the MAC
    const stale =
      (await kms.domainRotation.census(CLUSTER)) &&
      (await (async () => {
        for (const id of ids) {
          const r = (await store.getKey(bob.tenant, id))!;
          const m = WrappedMaterial.fromBuffer(r.versions[0].material);
          if (m.domainId.equals(old)) return m;
        }
        throw new Error('no record left under the old generation');
      })());
    const relabelled = new WrappedMaterial(stale.spec, stale.binding, next, stale.wrapped, stale.publicKey, stale.mac);
    await expect(members[0].load(relabelled)).rejects.toThrow(/MAC check/);

    const resumed = await kms.domainRotation.rotate(CLUSTER, { soPin: lab.tokens.soPins });
    expect(resumed).toMatchObject({ resumed: true, generation: hex(next), retired: hex(old), rewrapped: total - doneBefore });
    expect(await census()).toEqual(new Map([[hex(next), total]]));
    await rot.refreshGenerations();
    expect(held()).toEqual([[hex(next)], [hex(next)], [hex(next)]]);
    expect(await Promise.all(blobs.map(dec))).toEqual(ids.map((_, i) => `crash ${i}`));
    const nothing = await kms.domainRotation.rotate(CLUSTER, { soPin: lab.tokens.soPins, resumeOnly: true });
    expect([nothing.generation, nothing.rewrapped, hex(rot.currentGeneration!)]).toEqual([undefined, 0, hex(next)]);
  }, 120_000);

  const unfinishable = 'the background jobs of the lease holder cannot finish a rotation a crashed run left under a templated KEK (no SO PIN)';
  test(`${unfinishable}: they say so, everything still decrypts; --resume with the SO PIN finishes it`, async () => {
    const old = rot.currentGeneration!;
    const [keyId] = await create(1, 'bg');
    const blob = await enc(keyId, 'during');
    let seen = 0;
    await expect(
      kms.domainRotation.rotate(CLUSTER, {
        soPin: lab.tokens.soPins,
        progress: (e) => {
          if (e.phase === 'rewrap' && e.done > 0 && ++seen === 3) throw new Error('crash');
        },
      }),
    ).rejects.toThrow('crash');
    const next = rot.currentGeneration!;
    expect((await census()).get(hex(old))).toBeGreaterThan(0);
    expect(rot.templatedOn(old).map((m) => m.id)).toEqual(members.map((m) => m.id));
    await kms.jobs.runOnce();
    await within(
      60_000,
      () => jobErrors.some((e) => e.includes('CKA_UNWRAP_TEMPLATE')),
      () => `the background jobs reporting the SO PIN they lack (${jobErrors.join('; ')})`,
      200,
    );
    expect(await kms.domainRotation.unfinished(CLUSTER)).toBe(true);
    expect(await dec(blob)).toBe('during');
    const report = await kms.domainRotation.rotate(CLUSTER, { soPin: lab.tokens.soPins, resumeOnly: true });
    expect([report.resumed, report.generation]).toEqual([true, hex(next)]);
    expect([...(await census()).keys()]).toEqual([hex(next)]);
    expect(await dec(blob)).toBe('during');
  }, 120_000);

  test('a version added while its key is being re-wrapped is kept (compare-and-set), and re-wrapped too', async () => {
    const [keyId] = await create(1, 'race');
    let raced = false;
    const racing: MetadataStore = Object.create(store) as MetadataStore;
    racing.updateKey = async (owner: string, id: string, revision: number, patch: KeyPatch) => {
      if (!raced && id === keyId && patch.versions) {
        raced = true;
        await kms.rotation.rotateKey(bob, keyId);
      }
      return store.updateKey(owner, id, revision, patch);
    };
    const rotation = new DomainRotation(racing, lab.clusters, 'node-race', 'cls-shared');
    await rotation.rotate(CLUSTER, { soPin: lab.tokens.soPins });
    expect(raced).toBe(true);
    const r = (await store.getKey(bob.tenant, keyId))!;
    expect(r.versions.map((v) => v.version)).toEqual([1, 2]);
    const current = rot.currentGeneration!;
    expect(r.versions.every((v) => WrappedMaterial.fromBuffer(v.material).domainId.equals(current))).toBe(true);
    expect(await dec(await enc(keyId, 'v2'))).toBe('v2');
  }, 120_000);

  test('a record written under the old generation after the walk passed it (a node not yet switched) is found by the census and re-wrapped before the old generation goes', async () => {
    const [keyId] = await create(1, 'late');
    const stale = (await store.getKey(bob.tenant, keyId))!;
    const old = rot.currentGeneration!;
    let ends = 0;
    const late: MetadataStore = Object.create(store) as MetadataStore;
    late.clusterKeys = async (id: string, cursor: string, limit: number) => {
      const page = await store.clusterKeys(id, cursor, limit);
      // pages of the first census, then of the walk; when the next census begins, the stale node writes its old record back
      if (page.cursor === undefined && ++ends === 3) {
        const now = (await store.getKey(bob.tenant, keyId))!;
        expect(WrappedMaterial.fromBuffer(now.versions[0].material).domainId.equals(old)).toBe(false);
        await store.updateKey(bob.tenant, keyId, now.revision, { versions: stale.versions });
      }
      return page;
    };
    const records = [...(await census()).values()].reduce((a, b) => a + b, 0);
    const report = await new DomainRotation(late, lab.clusters, 'node-late', 'cls-shared').rotate(CLUSTER, { soPin: lab.tokens.soPins });
    expect(report.rewrapped).toBe(records + 1);
    expect([...(await census()).keys()]).toEqual([report.generation]);
    expect(report.destroyedOn).toHaveLength(3);
    expect(await dec(await enc(keyId, 'late'))).toBe('late');
  }, 120_000);

  test('a node that has not heard of the new generation yet (its own sessions on the same tokens) reads the tokens again when a record names it', async () => {
    const [keyId] = await create(1, 'elsewhere');
    // its own copy of the library, as another process would have: the rotation's SO logins (login state is per library instance) leave it alone
    const copy = join(lab.tokens.dir, 'rot', 'libsofthsm2-other-node.so');
    copyFileSync(join(lab.tokens.dir, 'rot', 'libsofthsm2.so'), copy);
    const module = { path: copy, env: { SOFTHSM2_CONF: join(lab.tokens.dir, 'rot', 'softhsm2.conf') } };
    const other = new HsmCluster({
      id: CLUSTER,
      kind: 'dedicated',
      owners: [bob.tenant],
      members: lab.tokens.softhsm('rot', ['rot-a'], { id: 'other-node-rot-a', module }),
      probeCacheMs: 0,
    });
    other.start();
    const before = other.currentGeneration!;
    await kms.domainRotation.rotate(CLUSTER, { soPin: lab.tokens.soPins });
    const m = WrappedMaterial.fromBuffer((await store.getKey(bob.tenant, keyId))!.versions[0].material);
    expect(m.domainId.equals(before)).toBe(false);
    expect(other.holdsGeneration(m.domainId)).toBe(false);
    const sealed = await other.encrypt(m, m.binding, Buffer.from('from a node behind'), Buffer.alloc(0));
    expect((await rot.decrypt(m, m.binding, sealed, Buffer.alloc(0))).toString()).toBe('from a node behind');
    expect(other.holdsGeneration(m.domainId)).toBe(true);
  }, 120_000);

  test('NSS softokn and SoftHSM2 in one cluster: two generations side by side on the NSS database, AES and RSA records re-wrapped, the old one destroyed', async () => {
    const aes = (await kms.lifecycle.createKey(bob, { alias: 'mixed-aes', hsmClusterId: 'cls-rot-mixed' })).keyId;
    const rsa = (await kms.lifecycle.createKey(bob, { alias: 'mixed-rsa', keyUsage: 'rsa-2048-sign-verify', hsmClusterId: 'cls-rot-mixed' })).keyId;
    const blob = await enc(aes, 'across token families');
    const message = Buffer.from('m');
    const { signature: Signature } = await kms.asymmetric.sign(bob, { keyId: rsa, algorithm: 'RSA_PSS_SHA_256', message: message });
    const old = mixed.currentGeneration!;
    let seen = 0;
    await expect(
      kms.domainRotation.rotate('cls-rot-mixed', {
        soPin: lab.tokens.soPins,
        progress: (e) => {
          if (e.phase === 'rewrap' && e.done > 0 && ++seen === 1) throw new Error('stop');
        },
      }),
    ).rejects.toThrow('stop');
    expect(mixed.members.map((m) => m.generations.size)).toEqual([2, 2]);
    const left = (await kms.domainRotation.census('cls-rot-mixed')).get(hex(old)) ?? 0;
    const report = await kms.domainRotation.rotate('cls-rot-mixed', { soPin: lab.tokens.soPins });
    expect(report).toMatchObject({ resumed: true, rewrapped: left, retired: hex(old), destroyedOn: ['rot-nss', 'mixed-mixed-a'] });
    expect(await kms.domainRotation.census('cls-rot-mixed')).toEqual(new Map([[report.generation, 2]]));
    await mixed.refreshGenerations();
    expect(mixed.members.map((m) => [...m.generations.keys()])).toEqual([[report.generation], [report.generation]]);
    expect(await dec(blob)).toBe('across token families');
    expect(await kms.asymmetric.verify(bob, { keyId: rsa, algorithm: 'RSA_PSS_SHA_256', message: message, signature: Signature })).toMatchObject({
      signatureValid: true,
    });
    const again = await kms.asymmetric.sign(bob, { keyId: rsa, algorithm: 'RSA_PSS_SHA_256', message: message });
    expect(await kms.asymmetric.verify(bob, { keyId: rsa, algorithm: 'RSA_PSS_SHA_256', message: message, signature: again.signature })).toMatchObject({
      signatureValid: true,
    });
    for (const m of mixed.members) {
      for (const id of [aes, rsa]) await m.load(WrappedMaterial.fromBuffer((await store.getKey(bob.tenant, id))!.versions[0].material));
    }
  }, 120_000);

  test('a member away when the old generation is to be destroyed: refused (it would stay on that token), the next run destroys it everywhere', async () => {
    const [keyId] = await create(1, 'away');
    const blob = await enc(keyId, 'kept');
    const old = rot.currentGeneration!;
    const away = members[1];
    const refused = kms.domainRotation.rotate(CLUSTER, {
      soPin: lab.tokens.soPins,
      progress: (e) => {
        if (e.phase === 'rewrap' && e.done === e.total && e.total > 0) away.close();
      },
    });
    await expect(refused).rejects.toThrow(/while members are unavailable: rot-rot-b/);
    expect(await kms.domainRotation.unfinished(CLUSTER)).toBe(true);
    expect((await census()).get(hex(old))).toBeUndefined();
    expect(members[0].holds(old)).toBe(true);
    away.connect();
    const report = await kms.domainRotation.rotate(CLUSTER, { soPin: lab.tokens.soPins, resumeOnly: true });
    expect(report).toMatchObject({ resumed: true, rewrapped: 0, retired: hex(old), destroyedOn: ['rot-rot-a', 'rot-rot-b', 'rot-rot-c'] });
    await rot.refreshGenerations();
    expect(held()).toEqual([0, 1, 2].map(() => [report.generation]));
    expect(await dec(blob)).toBe('kept');
  }, 120_000);

  test('with the Security Officer PIN, the new generation is made CKA_WRAP_WITH_TRUSTED on every member (copied under SO-trusted transport keys) and locked', async () => {
    const protection = () =>
      members.flatMap((m) => {
        const api = m.module.api;
        const s = api.C_OpenSession(m.module.findToken(m.tokenLabel).slot, pk.CKF_SERIAL_SESSION);
        try {
          return [DOMAIN_KEK_LABEL, DOMAIN_MAC_LABEL].flatMap((label) => {
            api.C_FindObjectsInit(s, [{ type: pk.CKA_LABEL, value: label }]);
            const handles = api.C_FindObjects(s, 16);
            api.C_FindObjectsFinal(s);
            return handles.map((h) => {
              const [w, e] = api.C_GetAttributeValue(s, h, [{ type: pk.CKA_WRAP_WITH_TRUSTED }, { type: pk.CKA_EXTRACTABLE }]);
              return `${m.id} ${label}: ${w.value[0] === 1 ? 'trusted-only' : 'any wrap'}, ${e.value[0] === 1 ? 'extractable' : 'locked'}`;
            });
          });
        } finally {
          api.C_CloseSession(s);
        }
      });
    // the current generation's KEK has CKA_UNWRAP_TEMPLATE: without the SO PIN its records could not be re-wrapped, refused before anything is made
    const before = rot.currentGeneration!;
    await expect(kms.domainRotation.rotate(CLUSTER)).rejects.toThrow(/CKA_UNWRAP_TEMPLATE/);
    expect(rot.currentGeneration!.equals(before)).toBe(true);
    expect(await kms.domainRotation.unfinished(CLUSTER)).toBe(false);
    const report = await kms.domainRotation.rotate(CLUSTER, { soPin: lab.tokens.soPins });
    expect(members.map((m) => m.domainUnwrapTemplate)).toEqual(members.map(() => true));
    expect(report.retired).toBeDefined();
    const after = protection();
    expect(after).toHaveLength(members.length * 2);
    expect(after.filter((p) => !p.endsWith('trusted-only, locked'))).toEqual([]);
  }, 120_000);

  test('refused: the cluster that MACs the audit chain; a domain state altered in the store; a record naming another generation than it was MACed under', async () => {
    await expect(kms.domainRotation.rotate('cls-shared')).rejects.toBeInstanceOf(DomainRotationError);
    await expect(kms.domainRotation.rotate('cls-none')).rejects.toBeInstanceOf(DomainRotationError);
    const [keyId] = await create(1, 'tamper');
    const before = (await store.getKey(bob.tenant, keyId))!;
    const m = WrappedMaterial.fromBuffer(before.versions[0].material);
    // the domain id is under the MAC: a record moved to another generation is refused, whatever that generation holds
    const moved = new WrappedMaterial(m.spec, m.binding, Buffer.from(randomBytes(16)), m.wrapped, m.publicKey, m.mac);
    await expect(members[0].load(moved)).rejects.toBeInstanceOf(MaterialIntegrityError);
    const next = rot.heldGenerations()[0];
    await rot.rewrap(m); // under the current one already: as is
    const state = (await store.getClusterState(CLUSTER))!;
    const doc = JSON.parse(state.doc) as Record<string, string>;
    await store.putClusterState(CLUSTER, state.revision, JSON.stringify({ ...doc, retiring: hex(next) }));
    await expect(loadDomainState(store, rot)).rejects.toBeInstanceOf(DomainStateError);
    await expect(kms.domainRotation.rotate(CLUSTER, { soPin: lab.tokens.soPins })).rejects.toBeInstanceOf(DomainStateError);
    const bad = (await store.getClusterState(CLUSTER))!;
    await store.putClusterState(CLUSTER, bad.revision, state.doc);
    expect((await loadDomainState(store, rot))?.state).toEqual({ current: hex(next) });
  }, 60_000);
});

describe('rotate-domain on the Redis store', () => {
  let lab: KmsLab;
  let redis: RedisServer;
  let store: RedisMetadataStore;
  let kms: Kms;

  beforeAll(async () => {
    lab = new KmsLab();
    await lab.start();
    redis = await startRedis({ persistent: true });
    store = await RedisMetadataStore.open({ port: redis.port });
    kms = lab.kms(store, { macClusterId: 'cls-shared' });
  });
  afterAll(async () => {
    await lab.cleanup();
    await store.close();
    await redis.stop();
  });

  test('the SCAN walk re-wraps every key of the cluster, a failed run is resumed, the old generation goes', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) ids.push((await kms.lifecycle.createKey(bob, { alias: `redis-${i}`, hsmClusterId: 'cls-bob' })).keyId);
    await kms.lifecycle.createKey(bob, { alias: 'redis-shared' });
    const blobs = await Promise.all(ids.map(async (id, i) => (await kms.envelope.encrypt(bob, { keyId: id, plaintext: Buffer.from(`r${i}`) })).ciphertext));
    const old = lab.dedicated.currentGeneration!.toString('hex');
    let seen = 0;
    await expect(
      kms.domainRotation.rotate('cls-bob', {
        soPin: lab.tokens.soPins,
        progress: (e) => {
          if (e.phase === 'rewrap' && e.done > 0 && ++seen === 4) throw new Error('stop');
        },
      }),
    ).rejects.toThrow('stop');
    const left = (await kms.domainRotation.census('cls-bob')).get(old)!;
    expect(left).toBeGreaterThan(0);
    const report = await kms.domainRotation.rotate('cls-bob', { soPin: lab.tokens.soPins });
    expect(report).toMatchObject({ resumed: true, rewrapped: left, retired: old, destroyedOn: ['bob-bob-a'] });
    expect(await kms.domainRotation.census('cls-bob')).toEqual(new Map([[report.generation, 25]]));
    expect(await Promise.all(blobs.map(async (b) => (await kms.envelope.decrypt(bob, { ciphertext: b })).plaintext.toString()))).toEqual(
      ids.map((_, i) => `r${i}`),
    );
  }, 120_000);
});
