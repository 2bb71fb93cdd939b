/**
 * Bounds (docs/security.md §9 "Bounds") and unauthorised answers ("Unauthorised answers"), through
 * the official SDK against a running server: over-long strings and lists are refused with an
 * InvalidParameter* code and nothing is stored; a key holds at most 100 cloud-resource bindings;
 * a sub-account that may not touch a key gets the same answer for it as for a key id that names
 * nothing (neither the key nor its creator is named).
 */
import { MAX_BINDINGS_PER_KEY } from '../../src/kms/key-rules';
import { codeOf, KmsClient, SdkError, ServerLab } from '../support/server';

/** The code and message an SDK call rejected with. */
async function refusal(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return { code: (e as SdkError).code, message: (e as SdkError).message };
  }
  throw new Error('the call succeeded, an error was expected');
}

describe('bounds', () => {
  const lab = new ServerLab();
  let root: KmsClient;
  let keyId: string;
  const bindings = async (): Promise<number> => ((await lab.server.services.store.getKey(String(lab.root.Uin), keyId))?.cloudBindings ?? []).length;

  beforeAll(async () => {
    await lab.start();
    root = lab.client();
    keyId = (await root.CreateKey({ Alias: 'bounds' })).KeyId as string;
  }, 60_000);
  afterAll(() => lab.stop());

  test('a 200 KB ResourceId is refused (InvalidParameterValue), 40 times, and nothing is stored', async () => {
    const big = 'r'.repeat(200 * 1024);
    for (let i = 0; i < 40; i++) {
      expect(await codeOf(root.BindCloudResource({ KeyId: keyId, ProductId: 'cos', ResourceId: `${i}${big}` }))).toBe('InvalidParameterValue');
    }
    expect(await bindings()).toBe(0);
  });

  test('ProductId and ResourceId: 128 characters pass, 129 do not', async () => {
    await expect(root.BindCloudResource({ KeyId: keyId, ProductId: 'p'.repeat(128), ResourceId: 'r'.repeat(128) })).resolves.not.toThrow();
    expect(await codeOf(root.BindCloudResource({ KeyId: keyId, ProductId: 'p'.repeat(129), ResourceId: 'r' }))).toBe('InvalidParameterValue');
    expect(await codeOf(root.BindCloudResource({ KeyId: keyId, ProductId: 'p', ResourceId: 'r'.repeat(129) }))).toBe('InvalidParameterValue');
    await root.UnbindCloudResource({ KeyId: keyId, ProductId: 'p'.repeat(128), ResourceId: 'r'.repeat(128) });
  });

  test(`a key holds at most ${MAX_BINDINGS_PER_KEY} bindings: the next is LimitExceeded; after an unbind there is room again`, async () => {
    for (let i = 0; i < MAX_BINDINGS_PER_KEY; i++) await root.BindCloudResource({ KeyId: keyId, ProductId: 'cvm', ResourceId: `ins-${i}` });
    expect(await bindings()).toBe(MAX_BINDINGS_PER_KEY);
    expect(await codeOf(root.BindCloudResource({ KeyId: keyId, ProductId: 'cvm', ResourceId: 'one-too-many' }))).toBe('LimitExceeded');
    // binding again what is bound already is still a no-op, not a refusal
    await expect(root.BindCloudResource({ KeyId: keyId, ProductId: 'cvm', ResourceId: 'ins-0' })).resolves.not.toThrow();
    expect(await bindings()).toBe(MAX_BINDINGS_PER_KEY);
    await root.UnbindCloudResource({ KeyId: keyId, ProductId: 'cvm', ResourceId: 'ins-0' });
    await expect(root.BindCloudResource({ KeyId: keyId, ProductId: 'cvm', ResourceId: 'one-too-many' })).resolves.not.toThrow();
  });

  test.each([
    ['CreateKey', 'Alias of 61', { Alias: 'a'.repeat(61) }, 'InvalidParameterValue.InvalidAlias'],
    ['CreateKey', 'Description of 1025', { Alias: 'desc', Description: 'd'.repeat(1025) }, 'InvalidParameter'],
    ['CreateKey', '51 Tags', { Alias: 'tags', Tags: Array.from({ length: 51 }, (_, i) => ({ TagKey: `k${i}`, TagValue: 'v' })) }, 'InvalidParameter'],
    ['CreateKey', 'TagKey of 128', { Alias: 'tagkey', Tags: [{ TagKey: 'k'.repeat(128), TagValue: 'v' }] }, 'InvalidParameterValue'],
    ['CreateKey', 'HsmClusterId of 129', { Alias: 'cluster', HsmClusterId: 'c'.repeat(129) }, 'InvalidParameterValue'],
    ['DescribeKey', 'KeyId of 129', { KeyId: 'k'.repeat(129) }, 'InvalidParameterValue.InvalidKeyId'],
    ['DescribeKeys', 'a KeyIds element of 129', { KeyIds: ['k'.repeat(129)] }, 'InvalidParameterValue.InvalidKeyId'],
    ['ListKeyDetail', 'SearchKeyAlias of 61', { SearchKeyAlias: 's'.repeat(61) }, 'InvalidParameterValue'],
    ['ListKeyDetail', '51 TagFilters', { TagFilters: Array.from({ length: 51 }, (_, i) => ({ TagKey: `k${i}` })) }, 'InvalidParameter'],
    ['Decrypt', 'CiphertextBlob of 8196', { CiphertextBlob: 'A'.repeat(8196) }, 'InvalidParameterValue'],
  ] as const)('%s with %s is refused with its code', async (action, _what, body, code) => {
    const call = root[action];
    expect(await codeOf(call.call(root, body))).toBe(code);
  });
});

describe('unauthorised answers', () => {
  const lab = new ServerLab();
  let alice: KmsClient;
  let bob: KmsClient;
  let carol: KmsClient;
  let aliceKey: string;
  let aliceUin: string;
  const missing = '00000000-0000-4000-8000-000000000000';

  beforeAll(async () => {
    await lab.start();
    const iam = lab.server.services.iam;
    const tenant = String(lab.root.Uin);
    const a = await iam.createUser(tenant, 'alice', { preset: 'QcloudKMSCreatorFullAccess' });
    aliceUin = String(a.Uin);
    alice = lab.client(a);
    bob = lab.client(await iam.createUser(tenant, 'bob', { preset: 'QcloudKMSCreatorFullAccess' }));
    // full access, but none of alice's keys
    const c = await iam.createUser(tenant, 'carol', { preset: 'QcloudKMSFullAccess' });
    await iam.attachPolicy(String(c.Uin), 'not-alice', {
      version: '2.0',
      statement: [{ effect: 'deny', action: ['kms:*'], resource: [`qcs::kms:*:uin/${tenant}:key/creatorUin/${aliceUin}/*`] }],
    });
    carol = lab.client(c);
    aliceKey = (await alice.CreateKey({ Alias: 'alices' })).KeyId as string;
  }, 60_000);
  afterAll(() => lab.stop());

  test.each([
    ['DescribeKey', (k: string) => ({ KeyId: k })],
    ['Encrypt', (k: string) => ({ KeyId: k, Plaintext: 'aGk=' })],
    ['DisableKey', (k: string) => ({ KeyId: k })],
  ] as const)(
    "%s: bob (creator preset) gets the same answer for alice's key and for a key that does not exist, naming neither key nor creator",
    async (action, body) => {
      const onAlices = await refusal(bob[action](body(aliceKey)));
      const onMissing = await refusal(bob[action](body(missing)));
      expect(onAlices.code).toBe('UnauthorizedOperation');
      expect(onMissing).toEqual(onAlices);
      expect(onAlices.message).not.toContain(aliceKey);
      expect(onAlices.message).not.toContain(aliceUin);
    },
  );

  test.each([
    ['DescribeKey', (k: string) => ({ KeyId: k })],
    ['Encrypt', (k: string) => ({ KeyId: k, Plaintext: 'aGk=' })],
  ] as const)("%s: carol (full access, denied alice's keys) gets the same answer for alice's key and for a key that does not exist", async (action, body) => {
    const onAlices = await refusal(carol[action](body(aliceKey)));
    const onMissing = await refusal(carol[action](body(missing)));
    expect(onAlices.code).toBe('UnauthorizedOperation');
    expect(onMissing).toEqual(onAlices);
    expect(onAlices.message).not.toContain(aliceUin);
  });

  test('what they may do is unchanged: alice uses her key, the root account is told a missing key is not found, carol uses her own', async () => {
    await expect(alice.Encrypt({ KeyId: aliceKey, Plaintext: 'aGk=' })).resolves.not.toThrow();
    expect(await codeOf(lab.client().DescribeKey({ KeyId: missing }))).toBe('ResourceUnavailable.CmkNotFound');
    const own = (await carol.CreateKey({ Alias: 'carols' })).KeyId as string;
    await expect(carol.Encrypt({ KeyId: own, Plaintext: 'aGk=' })).resolves.not.toThrow();
  });
});
