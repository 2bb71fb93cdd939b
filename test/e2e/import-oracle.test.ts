/**
 * Security section 4, "Import without an oracle", through the official SDK against running servers:
 * with PKCS#1 v1.5 wrapping enabled, every failed ImportKeyMaterial after the RSA step answers one
 * code and one message (whatever the wrapped bytes decrypt to), a failed attempt uses its token up,
 * and no input gets InternalError; by default PKCS#1 v1.5 is refused, saying why.
 */
import { constants, createPublicKey, generateKeyPairSync, KeyObject, publicEncrypt, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { initDev } from '../../src/cli/dev-init';
import { KmsClient, SdkError, ServerLab } from '../support/server';

const PKCS1 = 'RSAES_PKCS1_V1_5';
const OAEP1 = 'RSAES_OAEP_SHA_1';

/** A development installation whose kms.yaml was edited before the server starts. */
async function startWith(lab: ServerLab, edit: (doc: Record<string, unknown>) => void): Promise<void> {
  await initDev(lab.dir, () => undefined);
  const file = join(lab.dir, 'kms.yaml');
  const doc = parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(doc);
  writeFileSync(file, stringify(doc), { mode: 0o600 });
  await lab.start();
}

/** What an SDK call rejected with (code and message), or 'ok'. */
async function outcome(p: Promise<unknown>): Promise<{ code?: string; message: string } | 'ok'> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return { code: (e as SdkError).code, message: (e as SdkError).message };
  }
}

/** EME-PKCS1-v1_5 padding of `m` for a 256-byte modulus, encrypted raw: a correctly padded value of any length. */
function pkcs1Wrap(spkiB64: string, m: Buffer): Buffer {
  const ps = Buffer.alloc(256 - 3 - m.length);
  for (let i = 0; i < ps.length; i++) ps[i] = 1 + (randomBytes(1)[0] % 255);
  const em = Buffer.concat([Buffer.from([0, 2]), ps, Buffer.from([0]), m]);
  return publicEncrypt({ key: createPublicKey({ key: Buffer.from(spkiB64, 'base64'), format: 'der', type: 'spki' }), padding: constants.RSA_NO_PADDING }, em);
}

function oaepWrap(key: KeyObject, m: Buffer): Buffer {
  return publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, m);
}

function spki(b64: string): KeyObject {
  return createPublicKey({ key: Buffer.from(b64, 'base64'), format: 'der', type: 'spki' });
}

describe('import without an oracle: PKCS#1 v1.5 enabled (import.allowPkcs1v15: true)', () => {
  const lab = new ServerLab();
  let c: KmsClient;
  let keyId: string;
  const foreign = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;

  beforeAll(async () => {
    await startWith(lab, (doc) => {
      doc.import = { allowPkcs1v15: true };
    });
    c = lab.client();
    keyId = (await c.CreateKey({ Alias: 'oracle-pkcs1', Type: 2 })).KeyId as string;
  }, 60_000);
  afterAll(() => lab.stop());

  const params = (alg = PKCS1) =>
    c.GetParametersForImport({ KeyId: keyId, WrappingAlgorithm: alg, WrappingKeySpec: 'RSA_2048' }) as Promise<{ ImportToken: string; PublicKey: string }>;
  const attempt = (token: string, material: Buffer) =>
    outcome(c.ImportKeyMaterial({ KeyId: keyId, ImportToken: token, EncryptedKeyMaterial: material.toString('base64') }));

  test('random bytes, a padded 16-byte key, a padded 33-byte value and OAEP under another key: one code, one message', async () => {
    const cases: Array<[string, (publicKey: string) => Buffer]> = [
      ['random bytes', () => randomBytes(256)],
      ['correctly padded 16-byte key', (pk) => pkcs1Wrap(pk, randomBytes(16))],
      ['correctly padded 33-byte value', (pk) => pkcs1Wrap(pk, randomBytes(33))],
      ['OAEP under the wrong key', () => oaepWrap(foreign, randomBytes(32))],
    ];
    const seen: Array<{ code?: string; message: string } | 'ok'> = [];
    for (const [, make] of cases) {
      const p = await params();
      seen.push(await attempt(p.ImportToken, make(p.PublicKey)));
    }
    expect(seen[0]).not.toBe('ok');
    const first = seen[0] as { code?: string; message: string };
    expect(first.code).toBe('InvalidParameter.DecryptMaterialError');
    for (const s of seen) expect(s).toEqual(first);
    expect(first.message).toMatch(/GetParametersForImport/);
    expect(((await c.DescribeKey({ KeyId: keyId })).KeyMetadata as { KeyState: string }).KeyState).toBe('PendingImport');
  });

  test('a failed attempt uses the token up: the same token with good material is refused; a new token works', async () => {
    const p = await params();
    const material = randomBytes(32);
    expect(await attempt(p.ImportToken, randomBytes(256))).toMatchObject({ code: 'InvalidParameter.DecryptMaterialError' });
    const again = await attempt(p.ImportToken, publicEncrypt({ key: spki(p.PublicKey), padding: constants.RSA_PKCS1_PADDING }, material));
    expect(again).toMatchObject({ code: 'InvalidParameterValue' });
    expect((again as { message: string }).message).toMatch(/ImportToken/);
    const q = await params(OAEP1);
    expect(await attempt(q.ImportToken, oaepWrap(spki(q.PublicKey), material))).toBe('ok');
    expect(((await c.DescribeKey({ KeyId: keyId })).KeyMetadata as { KeyState: string }).KeyState).toBe('Enabled');
  });

  test('on a key that has material, different material answers the same as a bad wrap', async () => {
    const p = await params(OAEP1);
    const bad = await attempt(p.ImportToken, randomBytes(256));
    const q = await params(OAEP1);
    expect(await attempt(q.ImportToken, oaepWrap(spki(q.PublicKey), randomBytes(32)))).toEqual(bad);
  });

  test('no InternalError for fuzzed EncryptedKeyMaterial (each attempt on a fresh token)', async () => {
    const fuzz: Array<(pk: string) => Buffer> = [
      () => Buffer.alloc(256),
      () => Buffer.alloc(256, 0xff),
      () => Buffer.from([0, 2, ...randomBytes(254)]),
      (pk) => pkcs1Wrap(pk, Buffer.alloc(0)),
      (pk) => pkcs1Wrap(pk, randomBytes(1)),
      (pk) => pkcs1Wrap(pk, randomBytes(24)),
      (pk) => pkcs1Wrap(pk, randomBytes(31)),
      (pk) => pkcs1Wrap(pk, randomBytes(64)),
      (pk) => pkcs1Wrap(pk, randomBytes(245)),
      (pk) => {
        const w = publicEncrypt({ key: spki(pk), padding: constants.RSA_PKCS1_PADDING }, randomBytes(32));
        w[100] ^= 0x40;
        return w;
      },
      (pk) => oaepWrap(spki(pk), randomBytes(32)),
      (pk) => oaepWrap(spki(pk), randomBytes(16)),
    ];
    const codes = new Set<string | undefined>();
    for (const make of fuzz) {
      const p = await params();
      const r = await attempt(p.ImportToken, make(p.PublicKey));
      codes.add(r === 'ok' ? 'ok' : r.code);
    }
    expect(codes.has('InternalError')).toBe(false);
    expect([...codes]).toEqual(['InvalidParameter.DecryptMaterialError']);
  });
});

describe('import without an oracle: default configuration', () => {
  const lab = new ServerLab();
  let c: KmsClient;

  beforeAll(async () => {
    await lab.start();
    c = lab.client();
  }, 60_000);
  afterAll(() => lab.stop());

  test('GetParametersForImport with RSAES_PKCS1_V1_5 is refused, naming Bleichenbacher; OAEP works', async () => {
    const keyId = (await c.CreateKey({ Alias: 'oracle-default', Type: 2 })).KeyId as string;
    const r = await outcome(c.GetParametersForImport({ KeyId: keyId, WrappingAlgorithm: PKCS1, WrappingKeySpec: 'RSA_2048' }));
    expect(r).toMatchObject({ code: 'UnsupportedOperation' });
    expect((r as { message: string }).message).toMatch(/Bleichenbacher/);
    expect((r as { message: string }).message).toMatch(/RSAES_OAEP_SHA_1/);
    const p = await c.GetParametersForImport({ KeyId: keyId, WrappingAlgorithm: OAEP1, WrappingKeySpec: 'RSA_2048' });
    await c.ImportKeyMaterial({
      KeyId: keyId,
      ImportToken: p.ImportToken,
      EncryptedKeyMaterial: oaepWrap(spki(p.PublicKey as string), randomBytes(32)).toString('base64'),
    });
    expect(JSON.stringify(await c.ListAlgorithms({}))).not.toContain(PKCS1);
  });
});
