import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HsmCluster } from '../../src/hsm/cluster';
import { buildClusters, parseClusterConfig } from '../../src/hsm/config';
import { MaterialIntegrityError } from '../../src/hsm/errors';
import { WrappedMaterial } from '../../src/hsm/material';
import { soPinsFromPath } from '../../src/cli/so-pin';
import { profiles, TokenLab } from '../support/tokens';

describe('clusters built from YAML configuration on real tokens', () => {
  let lab: TokenLab;
  let clusters: HsmCluster[];

  beforeAll(async () => {
    lab = new TokenLab();
    // make the tokens (and their PIN files) with the project's own script, through the lab
    lab.softhsm('shared', ['sh-a', 'sh-b']);
    lab.softhsm('dedicated', ['de-a']);
    const yaml = `
clusters:
  - id: default
    kind: shared
    pool: { maxSessions: 4, waitMs: 500 }
    members:
      - { id: sh-a, profile: softhsm2, module: shared/libsofthsm2.so, env: { SOFTHSM2_CONF: ${join(lab.dir, 'shared', 'softhsm2.conf')} }, token: sh-a, pin: { file: shared/pins/sh-a.pin } }
      - { id: sh-b, profile: softhsm2, module: shared/libsofthsm2.so, env: { SOFTHSM2_CONF: ${join(lab.dir, 'shared', 'softhsm2.conf')} }, token: sh-b, pin: { env: TEST_PIN_SH_B } }
  - id: cls-dedicated
    kind: dedicated
    owners: [100000000001]
    members:
      - { id: de-a, profile: softhsm2, module: dedicated/libsofthsm2.so, env: { SOFTHSM2_CONF: ${join(lab.dir, 'dedicated', 'softhsm2.conf')} }, token: de-a, pin: { file: dedicated/pins/de-a.pin } }
`;
    writeFileSync(join(lab.dir, 'clusters.yaml'), yaml);
    const { readFileSync } = await import('node:fs');
    const env = { TEST_PIN_SH_B: readFileSync(join(lab.dir, 'shared', 'pins', 'sh-b.pin'), 'utf8') };
    clusters = buildClusters(parseClusterConfig(yaml, lab.dir), profiles, env);
    for (const c of clusters) {
      c.start();
      // kmsctl's source of SO PINs: a directory of <token>.so-pin files (only the shared pool copies)
      await c.initDomain({ soPin: soPinsFromPath(join(lab.dir, 'shared', 'so-pins')) });
    }
  });
  afterAll(() => {
    for (const c of clusters) {
      c.close();
      for (const m of c.members) m.module.finalize();
    }
    lab.cleanup();
  });

  test('shared pool and dedicated cluster come up with their own members, domains and capabilities', async () => {
    const [shared, dedicated] = clusters;
    expect(shared.kind).toBe('shared');
    expect(dedicated.owners).toEqual(['100000000001']);
    expect(shared.members.map((m) => m.id)).toEqual(['sh-a', 'sh-b']);
    expect(shared.members[0].domain!.id.equals(dedicated.members[0].domain!.id)).toBe(false);
    expect(shared.capabilities.keySpecs).toEqual(['AES_256', 'RSA_2048', 'RSA_3072', 'RSA_4096', 'EC_P256', 'EC_P384']);
    expect(shared.capabilities.rsaDecrypt).toEqual(['RSAES_PKCS1_V1_5', 'RSAES_OAEP_SHA_1']);
    expect(shared.capabilities.ecdsaHashInSoftware).toBe(true);
    expect(shared.members[0].sessions.cap).toBe(4);
    expect((await shared.health()).state).toBe('ACTIVE');
    expect((await dedicated.health()).state).toBe('ACTIVE');
  });

  test("a dedicated cluster's material never runs on the shared pool, even with its binding forged", async () => {
    const [shared, dedicated] = clusters;
    const binding = { clusterId: 'cls-dedicated', keyId: 'k', keyVersion: 1, usage: 'ENCRYPT_DECRYPT' };
    const material = await dedicated.generate('AES_256', binding);
    await expect(shared.encrypt(material, binding, Buffer.from('x'), Buffer.alloc(0))).rejects.toBeInstanceOf(MaterialIntegrityError);
    // Even asked directly, a shared member refuses: the record belongs to another HSM domain.
    await expect(shared.members[0].encryptGcm(material, Buffer.from('x'), Buffer.alloc(0))).rejects.toThrow(/another HSM domain/);
    const sealed = await dedicated.encrypt(material, binding, Buffer.from('mine'), Buffer.alloc(0));
    expect((await dedicated.decrypt(material, binding, sealed, Buffer.alloc(0))).toString()).toBe('mine');
  });
  test('material bound to one owner and scope is refused under another; a KMR1 record is re-bound only if its MAC verifies inside the HSM', async () => {
    const [shared] = clusters;
    const mine = { clusterId: 'default', keyId: 'k2', keyVersion: 1, usage: 'ENCRYPT_DECRYPT', owner: '100000000001', scope: 'ap-guangzhou' };
    const material = await shared.generate('AES_256', mine);
    const sealed = await shared.encrypt(material, mine, Buffer.from('owned'), Buffer.alloc(0));
    await expect(shared.decrypt(material, { ...mine, owner: '100000000002' }, sealed, Buffer.alloc(0))).rejects.toBeInstanceOf(MaterialIntegrityError);
    await expect(shared.encrypt(material, { ...mine, scope: 'ap-shanghai' }, Buffer.from('x'), Buffer.alloc(0))).rejects.toBeInstanceOf(MaterialIntegrityError);
    // a KMR1 record of the same wrapped key with a MAC the HSM never made: not re-bound
    const { owner: _o, scope: _s, ...old } = mine;
    const forged = new WrappedMaterial(material.spec, old, material.domainId, material.wrapped, material.publicKey, material.mac, 1);
    await expect(shared.encrypt(forged, old, Buffer.from('x'), Buffer.alloc(0))).rejects.toThrow(/KMR1/);
    await expect(shared.rebindLegacy(forged, mine)).rejects.toThrow(/failed its MAC check/);
    await expect(shared.rebindLegacy(material, mine)).rejects.toThrow(/only a KMR1 record/);
  });
});
