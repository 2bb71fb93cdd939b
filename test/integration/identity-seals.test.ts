/**
 * The identity rows across a domain rotation of the shared cluster, on both identity backends, the
 * MACs made inside a real SoftHSM2 token: counted by the generation they name, re-sealed under the
 * new one (API keys, policies, the sub-account's policy set), verified afterwards with the old
 * generation destroyed; a row put back with its old MAC is then refused, and a disabled key is never
 * made active again by the re-seal.
 */
import { randomBytes } from 'node:crypto';
import { clusterAuthenticator } from '../../src/authority';
import { HsmCluster } from '../../src/hsm/cluster';
import { IamIntegrityError } from '../../src/iam/errors';
import { IdentitySeals } from '../../src/iam/identity-seals';
import { IdentityStore } from '../../src/iam/identity-store';
import { SealedIdentityStore } from '../../src/iam/sealed-identity-store';
import { IDENTITY_BACKENDS, IdentityBacking } from '../support/iam-backends';
import { TokenLab } from '../support/tokens';

const tokens = new TokenLab();
afterAll(() => tokens.cleanup());

describe.each(IDENTITY_BACKENDS)('identity rows across a domain rotation: $name', (backend) => {
  const { name } = backend;
  let hsm: HsmCluster;
  let backing: IdentityBacking;
  let raw: IdentityStore;

  beforeAll(async () => {
    hsm = new HsmCluster({ id: `cls-ids-${name}`, kind: 'shared', owners: [], members: tokens.softhsm(`ids-${name}`, ['ids-a']) });
    hsm.start();
    await hsm.initDomain();
    backing = await backend.setUp();
    raw = await backing.open();
  }, 60_000);

  afterAll(async () => {
    await raw?.close();
    await backing?.tearDown();
    hsm?.close();
  });

  test('re-sealed under the new generation, verified after the old one is destroyed; an old MAC put back is refused', async () => {
    const auth = clusterAuthenticator(hsm);
    const sealed = new SealedIdentityStore(raw, auth);
    const old = hsm.currentGeneration!.toString('hex');
    const tenant = await raw.allocateUin('tenant');
    const rootKey = { secretId: `AKID${randomBytes(16).toString('hex')}`, sealedSecret: Buffer.from('root'), createdAt: 1_700_000_000 };
    await sealed.createTenant({ uin: tenant, name: `t-${name}`, createdAt: 1_700_000_000, apiKey: rootKey });
    const user = await raw.allocateUin('user');
    const userKey = { secretId: `AKID${randomBytes(16).toString('hex')}`, sealedSecret: Buffer.from('user'), createdAt: 1_700_000_001 };
    const policies = ['alpha', 'beta'].map((n) => ({
      name: n,
      body: { kind: 'preset' as const, preset: 'QcloudKMSReadOnlyAccess' },
      attachedAt: 1_700_000_100,
    }));
    await sealed.createUser({ uin: user, tenantUin: tenant, name: 'reader', createdAt: 1_700_000_001, apiKey: userKey, policies });
    await sealed.setApiKeyStatus(userKey.secretId, 'disabled');
    const oldUserRow = (await raw.getApiKey(userKey.secretId))!;
    const seals = new IdentitySeals(raw, auth);
    // two API keys, two policies, one policy set
    expect(Object.fromEntries(await seals.census())).toEqual({ [old]: 5 });

    const next = randomBytes(16);
    await hsm.newGeneration(next, { lock: false });
    await hsm.useGeneration(next);
    const written: number[] = [];
    expect(await seals.reseal((n) => written.push(n))).toBe(5);
    expect(written).toHaveLength(5);
    expect(Object.fromEntries(await seals.census())).toEqual({ [next.toString('hex')]: 5 });
    expect(await seals.reseal(() => undefined)).toBe(0);

    await hsm.destroyGeneration(Buffer.from(old, 'hex'));
    expect((await sealed.getApiKey(rootKey.secretId))?.status).toBe('active');
    expect((await sealed.getApiKey(userKey.secretId))?.status).toBe('disabled');
    expect((await sealed.listPolicies(user)).map((p) => p.name)).toEqual(['alpha', 'beta']);

    // the row as it was, with its MAC under the destroyed generation: refused
    await raw.setApiKeyStatus(userKey.secretId, 'disabled', oldUserRow.mac);
    await expect(sealed.getApiKey(userKey.secretId)).rejects.toThrow(IamIntegrityError);
  }, 60_000);
});
