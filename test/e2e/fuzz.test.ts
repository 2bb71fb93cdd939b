/**
 * Hostile input, property-based (fast-check): properly signed requests to every served action
 * whose bodies, keys, ciphertexts, import tokens, headers and signatures are broken one way at a
 * time (test/support/fuzz-cases.ts), against a running server (a development installation on
 * SoftHSM2 and SQLite, in this process).
 *
 * Properties:
 *  - every answer is HTTP 200 with a well-formed envelope (Response.RequestId a string; on error
 *    Response.Error.Code and .Message strings), the code is one of the API's codes and never
 *    InternalError, a case that must be refused is refused (with the code it must get, where one
 *    is determined), no answer and no log line carries a SecretKey, and messages stay short
 *    (caller input is not echoed at length);
 *  - refused requests change nothing: ListKeyDetail (every usage, state and role, every region)
 *    and DescribeKey of every key of both tenants are the same before and after a round of
 *    refused-only requests, and an import token survives tampered copies of itself;
 *  - memory does not grow without bound: the heap after a forced GC is measured after equal
 *    rounds of fuzzing, and server-side structures (metric series, key cache, alarms) are counted;
 *  - the server never dies: /healthz and /readyz answer, an SDK Encrypt/Decrypt works and the
 *    audit chain verifies after all of it; every request got a log line, none an InternalError.
 *
 * Besides the random properties: every Object.prototype member name in every string field every
 * action uses (exhaustive), and each bug the fuzzer found as a fixed regression case.
 *
 * The seed is printed; FUZZ_SEED=<seed> replays a run, FUZZ_SCALE=<factor> scales numRuns.
 */
import { constants, createHash, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { SERVED_ACTIONS, UNSUPPORTED_ACTIONS } from '../../src/api/actions';
import { API_ERROR_CODES, KMS_ERROR_CODES } from '../../src/api/error-codes';
import type { ServedAction } from '../../src/api/params';
import { AuthEdit, caseArbitraries, CaseArbitraries, describeCase, Fixture, FuzzCase, prototypeNameCases } from '../support/fuzz-cases';
import { Envelope, FuzzLab, RawAnswer, RawCall } from '../support/fuzz-lab';
import type { Credentials, KmsClient } from '../support/server';
import { report } from '../support/report';

const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : Date.now() % 2 ** 31;
const SCALE = Number(process.env.FUZZ_SCALE ?? 1);
const runs = (n: number): number => Math.max(1, Math.round(n * SCALE));
const RUNS = { headers: runs(1000), body: runs(3000), refused: runs(1000), memoryRound: runs(800) };
const REGIONS = ['ap-guangzhou', 'ap-shanghai', 'ap-beijing'];
/** Longest error message accepted: messages name fields and cut client-chosen values short. */
const MAX_MESSAGE_CHARS = 600;

/** Every code the API may answer with for a caller's request. InternalError and the temporary-unavailability code are not caller mistakes. */
const KNOWN_CODES = new Set<string>([
  ...KMS_ERROR_CODES.map(([, code]) => code),
  ...API_ERROR_CODES.map(([, code]) => code),
  'MissingParameter',
  'UnknownParameter',
  'InvalidParameter',
  'InvalidParameterValue',
  'RequestSizeLimitExceeded',
  'AuthFailure.InvalidAuthorization',
  'AuthFailure.SignatureExpire',
  'AuthFailure.SecretIdNotFound',
  'AuthFailure.SignatureFailure',
]);
KNOWN_CODES.delete('UnsupportedOperation.ServiceTemporaryUnavailable');
KNOWN_CODES.delete('InternalError');

/** The GC, exposed at run time (jest does not pass --expose-gc). */
function exposeGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

function editAuthorization(signed: string, edit: AuthEdit): string | undefined {
  const signature = /Signature=([0-9a-f]{64})/.exec(signed)?.[1] ?? '';
  const withSignature = (s: string) => signed.replace(`Signature=${signature}`, `Signature=${s}`);
  switch (edit.kind) {
    case 'remove':
      return undefined;
    case 'replace':
      return edit.value;
    case 'flipSignature': {
      const c = parseInt(signature[edit.index], 16);
      return withSignature(signature.slice(0, edit.index) + ((c + 1 + (edit.index % 15)) % 16).toString(16) + signature.slice(edit.index + 1));
    }
    case 'uppercaseSignature':
      return withSignature(signature.toUpperCase());
    case 'truncateSignature':
      return withSignature(signature.slice(0, edit.keep));
    case 'credentialDate':
      return signed.replace(/(Credential=[^/]+\/)\d{4}-\d{2}-\d{2}\//, `$1${edit.date}/`);
    case 'signedHeaders':
      return signed.replace(/SignedHeaders=[^,]*/, `SignedHeaders=${edit.value}`);
    case 'algorithm':
      return signed.replace(/^TC3-HMAC-SHA256/, edit.value);
  }
}

describe('hostile input: property-based fuzzing of every served action against a running server', () => {
  const lab = new FuzzLab();
  let fx: Fixture;
  let sentinel: string;
  let arbs: CaseArbitraries;
  const tally = {
    requests: 0,
    bytes: 0,
    perProperty: new Map<string, number>(),
    perAction: new Map<string, number>(),
    perMutation: new Map<string, number>(),
    codes: new Map<string, number>(),
  };
  const bump = (m: Map<string, number>, k: string, n = 1) => m.set(k, (m.get(k) ?? 0) + n);

  beforeAll(async () => {
    report(`fuzz seed ${SEED} (replay: FUZZ_SEED=${SEED}); numRuns ${JSON.stringify(RUNS)}`);
    await lab.start();
    const c = lab.client();
    const create = async (p: object): Promise<string> => (await c.CreateKey(p)).KeyId as string;
    const keys = {
      sym: await create({ Alias: 'fuzz-sym' }),
      rsa: await create({ Alias: 'fuzz-rsa', KeyUsage: 'ASYMMETRIC_DECRYPT_RSA_2048' }),
      ecc: await create({ Alias: 'fuzz-ecc', KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_ECC' }),
      rsaSign: await create({ Alias: 'fuzz-rsa-sign', KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_RSA_2048' }),
      ext: await create({ Alias: 'fuzz-ext', Type: 2 }),
      disabled: await create({ Alias: 'fuzz-disabled' }),
      archived: await create({ Alias: 'fuzz-archived' }),
      pendingDelete: await create({ Alias: 'fuzz-pending-delete' }),
      dedicated: await create({ Alias: 'fuzz-dedicated', HsmClusterId: 'cls-dev-dedicated' }),
    };
    await c.DisableKey({ KeyId: keys.disabled });
    await c.ArchiveKey({ KeyId: keys.archived });
    await c.DisableKey({ KeyId: keys.pendingDelete });
    await c.ScheduleKeyDeletion({ KeyId: keys.pendingDelete, PendingWindowInDays: 7 });
    const hosted = async (DataKeyName: string): Promise<string> =>
      (await c.GenerateDataKey({ KeyId: keys.sym, KeySpec: 'AES_256', IsHostedByKms: 1, DataKeyName, Tags: [{ TagKey: 'fuzz', TagValue: 'yes' }] }))
        .DataKeyId as string;
    const dataKeys = { enabled: await hosted('fuzz-dk-enabled'), disabled: await hosted('fuzz-dk-disabled'), pendingDelete: await hosted('fuzz-dk-pending') };
    await c.DisableDataKey({ DataKeyId: dataKeys.disabled });
    await c.DisableDataKey({ DataKeyId: dataKeys.pendingDelete });
    await c.ScheduleDataKeyDeletion({ DataKeyId: dataKeys.pendingDelete, PendingWindowInDays: 7 });
    sentinel = await create({ Alias: 'fuzz-sentinel' });
    const pem = (await c.GetPublicKey({ KeyId: keys.rsa })).PublicKeyPem as string;
    const message = b64('signed by the fuzzer');
    const digest = createHash('sha256').update('signed by the fuzzer').digest('base64');
    const sign = async (KeyId: string, Algorithm: string): Promise<string> =>
      (await c.SignByAsymmetricKey({ KeyId, Algorithm, Message: message, MessageType: 'RAW' })).Signature as string;
    const otherCreds = await lab.server.services.iam.createTenant('fuzz-tenant-b');
    lab.secrets.push(otherCreds.SecretKey);
    const b = lab.client(otherCreds);
    const otherKey = (await b.CreateKey({ Alias: 'fuzz-b-key' })).KeyId as string;
    fx = {
      keys,
      dataKeys,
      blob: (await c.Encrypt({ KeyId: keys.sym, Plaintext: b64('fuzz secret') })).CiphertextBlob as string,
      importToken: (await c.GetParametersForImport({ KeyId: keys.ext, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' }))
        .ImportToken as string,
      rsaPublicKeyPem: pem,
      rsaCiphertexts: {
        oaepSha1: publicEncrypt({ key: pem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, Buffer.from('rsa secret')).toString('base64'),
        pkcs1: publicEncrypt({ key: pem, padding: constants.RSA_PKCS1_PADDING }, Buffer.from('rsa secret')).toString('base64'),
      },
      message,
      digest,
      signatures: {
        ecc: await sign(keys.ecc, 'ECC_P256_R1'),
        rsaPkcs1: await sign(keys.rsaSign, 'RSA_PKCS1_SHA_256'),
        rsaPss: await sign(keys.rsaSign, 'RSA_PSS_SHA_256'),
      },
      other: { creds: otherCreds, key: otherKey, blob: (await b.Encrypt({ KeyId: otherKey, Plaintext: b64('b secret') })).CiphertextBlob as string },
    };
    arbs = caseArbitraries({ fixture: fx, maxBodyBytes: lab.server.services.config.maxBodyBytes });
  }, 120_000);

  afterAll(async () => {
    const lines = [
      `fuzz summary (seed ${SEED}): ${tally.requests} fuzzed requests, ${(tally.bytes / 2 ** 20).toFixed(1)} MB of bodies`,
      `  per property: ${[...tally.perProperty].map(([k, v]) => `${k} ${v}`).join(', ')}`,
      `  per action: ${[...tally.perAction]
        .sort()
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
      `  per mutation: ${[...tally.perMutation]
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
      `  answers: ${[...tally.codes]
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    ];
    report(lines.join('\n'));
    await lab.stop();
  });

  function toCall(x: FuzzCase, fixture: Fixture): RawCall {
    const timestamp = Math.floor(Date.now() / 1000) + (x.timestampOffset ?? 0);
    let creds: Pick<Credentials, 'SecretId' | 'SecretKey'> = lab.root;
    if (x.signer === 'other') creds = fixture.other.creds;
    else if (typeof x.signer === 'object') creds = { SecretId: x.signer.secretId || lab.root.SecretId, SecretKey: x.signer.secretKey };
    const headers = { ...x.headers };
    if (x.headerTimestampOffset !== undefined) headers['x-tc-timestamp'] = String(timestamp + x.headerTimestampOffset);
    const auth = x.auth;
    return {
      action: x.action,
      body: x.body,
      sent: x.sent,
      creds,
      timestamp,
      headers,
      preHeaders: x.preHeaders,
      authorization: auth ? (signed) => editAuthorization(signed, auth) : undefined,
    };
  }

  /** The envelope checks every answer must pass; returns the code (Success for a success). */
  function check(a: RawAnswer, x: FuzzCase): string {
    const where = describeCase(x);
    if (a.status !== 200) throw new Error(`HTTP ${a.status} for ${where}: ${a.text.slice(0, 200)}`);
    for (const s of lab.secrets) if (a.text.includes(s)) throw new Error(`a SecretKey is in the answer to ${where}`);
    let env: Envelope;
    try {
      env = JSON.parse(a.text) as Envelope;
    } catch {
      throw new Error(`not JSON: ${a.text.slice(0, 200)} for ${where}`);
    }
    const r = env?.Response;
    if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new Error(`no Response object for ${where}`);
    if (typeof r.RequestId !== 'string' || r.RequestId === '') throw new Error(`Response.RequestId is not a string for ${where}`);
    if (r.Error === undefined) {
      if (x.expect.refused) throw new Error(`must be refused, but succeeded: ${where} → ${a.text.slice(0, 300)}`);
      return 'Success';
    }
    const { Code, Message } = r.Error;
    if (typeof Code !== 'string' || Code === '' || typeof Message !== 'string') throw new Error(`malformed Error for ${where}: ${a.text.slice(0, 300)}`);
    if (Code === 'InternalError') throw new Error(`InternalError for a caller's mistake: ${where} → ${Message}`);
    if (!KNOWN_CODES.has(Code)) throw new Error(`unexpected code ${Code} for ${where}: ${Message.slice(0, 200)}`);
    if (/\[native code\]|\[object \w+\]/.test(Message)) throw new Error(`message shows a JavaScript internal (${Message.slice(0, 200)}) for ${where}`);
    if (Message.length > MAX_MESSAGE_CHARS)
      throw new Error(`message of ${Message.length} characters (input echoed at length?) for ${where}: ${Message.slice(0, 200)}…`);
    if (x.expect.refused && x.expect.codes && !x.expect.codes.includes(Code)) {
      throw new Error(`expected ${x.expect.codes.join(' or ')}, got ${Code} (${Message.slice(0, 200)}) for ${where}`);
    }
    return Code;
  }

  async function fire(property: string, x: FuzzCase, fixture: Fixture = fx): Promise<string> {
    const code = check(await lab.send(toCall(x, fixture)), x);
    tally.requests++;
    tally.bytes += (x.sent ?? x.body).length;
    bump(tally.perProperty, property);
    bump(tally.perAction, x.served);
    bump(tally.perMutation, x.mutation.split(/[:@=]/)[0]);
    bump(tally.codes, code);
    return code;
  }

  /** Runs `numRuns` cases through `property`; fails if any served action got no case. */
  async function fuzz(property: string, arb: fc.Arbitrary<FuzzCase>, numRuns: number, seedOffset: number, fixture: Fixture = fx): Promise<number> {
    const seen = new Set<ServedAction>();
    let count = 0;
    await fc.assert(
      fc.asyncProperty(arb, async (x) => {
        seen.add(x.served);
        count++;
        await fire(property, x, fixture);
      }),
      { seed: SEED + seedOffset, numRuns },
    );
    const missed = SERVED_ACTIONS.filter((a) => !seen.has(a));
    expect(missed).toEqual([]);
    report(`${property}: ${count} cases, ${seen.size} actions`);
    return count;
  }

  test('headers and signatures (forged, expired, absent, wrong version, empty action, huge values): the code each must get', async () => {
    await fuzz('headers', arbs.headers, RUNS.headers, 1);
  }, 300_000);

  const bodyFaults =
    'wrong types, missing/extra fields, huge/empty values, bad base64, invalid UTF-8, deep nesting, numbers, tampered blobs and tokens, foreign and unknown keys';
  test(`bodies (${bodyFaults}): a specific code, never InternalError`, async () => {
    await fuzz('bodies', arbs.body, RUNS.body, 2);
  }, 300_000);

  test('every Object.prototype member name in every string field every action uses (exhaustive): never InternalError', async () => {
    const cases = prototypeNameCases({ fixture: fx, maxBodyBytes: lab.server.services.config.maxBodyBytes });
    const failures: string[] = [];
    for (const x of cases) await fire('prototype names', x).catch((e: Error) => failures.push(e.message.slice(0, 300)));
    report(`prototype names: ${cases.length} cases`);
    expect(failures).toEqual([]);
  }, 300_000);

  /** Everything a tenant can see of its keys, in every region. */
  async function snapshot(creds: Pick<Credentials, 'SecretId' | 'SecretKey'>): Promise<unknown> {
    const out: Record<string, unknown> = {};
    const strip = (r: Record<string, unknown>) => {
      const { RequestId: _id, ...rest } = r;
      return rest;
    };
    for (const region of REGIONS) {
      const c: KmsClient = lab.client(creds, region);
      const listed: Array<Record<string, unknown>> = [];
      for (const Role of [0, 1]) {
        for (let Offset = 0; ; Offset += 200) {
          const page = await c.ListKeyDetail({ KeyUsage: 'ALL', KeyState: 0, Role, Offset, Limit: 200 });
          const metas = page.KeyMetadatas as Array<Record<string, unknown>>;
          listed.push(...metas);
          if (metas.length < 200) break;
        }
      }
      const described: Record<string, unknown> = {};
      for (const m of listed) {
        const id = m.KeyId as string;
        described[id] = { describe: strip(await c.DescribeKey({ KeyId: id })), rotation: strip(await c.GetKeyRotationStatus({ KeyId: id })) };
      }
      out[region] = { listed, described, listKeys: strip(await c.ListKeys({ Limit: 200 })), status: strip(await c.GetServiceStatus({})) };
    }
    return out;
  }

  test('refused requests change nothing: ListKeyDetail and DescribeKey of every key, both tenants, every region; the import token survives', async () => {
    const c = lab.client();
    // A fresh external key and its token, aimed at by this round only: a refused ImportKeyMaterial must neither use nor replace the token.
    const ext = (await c.CreateKey({ Alias: 'fuzz-ext-refused', Type: 2 })).KeyId as string;
    const params = await c.GetParametersForImport({ KeyId: ext, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' });
    const roundFixture: Fixture = { ...fx, keys: { ...fx.keys, ext }, importToken: params.ImportToken as string };
    const refusedOnly = caseArbitraries({ fixture: roundFixture, maxBodyBytes: lab.server.services.config.maxBodyBytes }).refusedOnly;
    const before = { a: await snapshot(lab.root), b: await snapshot(fx.other.creds) };
    expect(JSON.stringify(before)).toContain(fx.keys.sym);
    await fuzz('refused', refusedOnly, RUNS.refused, 3, roundFixture);
    const after = { a: await snapshot(lab.root), b: await snapshot(fx.other.creds) };
    expect(after).toEqual(before);
    const wrappingKey = createPublicKey({ key: Buffer.from(params.PublicKey as string, 'base64'), format: 'der', type: 'spki' });
    const material = publicEncrypt({ key: wrappingKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, randomBytes(32));
    await c.ImportKeyMaterial({ KeyId: ext, ImportToken: params.ImportToken, EncryptedKeyMaterial: material.toString('base64') });
    expect(((await c.DescribeKey({ KeyId: ext })).KeyMetadata as { KeyState: string }).KeyState).toBe('Enabled');
  }, 300_000);

  test('memory does not grow without bound over equal rounds of fuzzing; server-side structures stay bounded', async () => {
    const gc = exposeGc();
    const services = lab.server.services;
    const heap = async (): Promise<number> => {
      await services.audit.flush();
      for (let i = 0; i < 4; i++) gc();
      return process.memoryUsage().heapUsed;
    };
    const round = (i: number) => fuzz(`memory round ${i}`, arbs.any, RUNS.memoryRound, 10 + i);
    // two rounds to warm up (JIT, SQLite statement cache, key records, metric series), then two measured rounds of the same size
    await round(0);
    await round(1);
    const h1 = await heap();
    const bytesBefore = tally.bytes;
    await round(2);
    const h2 = await heap();
    await round(3);
    const h3 = await heap();
    const sent = tally.bytes - bytesBefore;
    const mb = (n: number) => (n / 2 ** 20).toFixed(1);
    const perRequest = (h3 - h1) / (2 * RUNS.memoryRound);
    report(
      `heap after GC: ${mb(h1)} MB, +${RUNS.memoryRound} requests ${mb(h2)} MB, +${RUNS.memoryRound} more ${mb(h3)} MB ` +
        `(${perRequest.toFixed(0)} bytes per request; ${mb(sent)} MB of bodies sent in the two measured rounds)`,
    );
    // The bound: 4 MB over the 2 × 800 measured requests, i.e. 2.6 KB a request. Retaining the bodies (25-35 MB, printed above)
    // crosses it many times over, and so does anything of 2 KB or more kept per request (checked: a 4 KB string kept per request
    // fails here). It leaves room for GC noise (within ±1.5 MB in the runs made) and for what fills legitimately (records of keys
    // the fuzzer managed to create, new key versions, metric series). Smaller leaks need longer runs (FUZZ_SCALE=4: 0.7 KB a
    // request); the counts below catch unbounded structures directly.
    expect(h3 - h1).toBeLessThan(4 * 2 ** 20);
    // Metric series: one per (action, code); an action the API does not have is counted as "unknown", never as its own series.
    const series = (await services.metrics.requests.get()).values;
    const actions = new Set(series.map((v) => String(v.labels.action)));
    const allowed = new Set<string>([...SERVED_ACTIONS, ...UNSUPPORTED_ACTIONS, 'unknown', '']);
    expect([...actions].filter((a) => !allowed.has(a))).toEqual([]);
    expect(series.length).toBeLessThanOrEqual(allowed.size * (KNOWN_CODES.size + 2));
    expect(services.kms.alarms.list().length).toBeLessThanOrEqual(1000);
    const keyCache = services.kms['cache'];
    report(
      `server structures: ${series.length} request-metric series, ${keyCache.size} cached key records, ${services.kms.alarms.list().length} recent alarms`,
    );
    expect(keyCache.size).toBeLessThanOrEqual(500);
  }, 300_000);

  test('regressions: each bug the fuzzer found, as a fixed case', async () => {
    const before = lab.internalErrorCount;
    const send = async (action: string, body: object | Buffer, headers?: Record<string, string | undefined>): Promise<Envelope> => {
      const a = await lab.send({ action, body: Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body)), headers });
      expect(a.status).toBe(200);
      return JSON.parse(a.text) as Envelope;
    };
    const code = async (p: Promise<Envelope>): Promise<string> => String((await p).Response.Error?.Code ?? 'Success');
    const c = lab.client();
    // keys of this test only (the fuzzer may have disabled, archived or scheduled the fixture's keys for deletion)
    const rsa = (await c.CreateKey({ Alias: 'fuzz-regression-rsa', KeyUsage: 'ASYMMETRIC_DECRYPT_RSA_2048' })).KeyId as string;
    const ecc = (await c.CreateKey({ Alias: 'fuzz-regression-ecc', KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_ECC' })).KeyId as string;
    const signature = (await c.SignByAsymmetricKey({ KeyId: ecc, Algorithm: 'ECC_P256_R1', Message: fx.message })).Signature as string;

    // An empty RSA ciphertext left a decrypt operation active on a pooled HSM session; the next request on that session
    // (anyone's Decrypt) failed with InternalError (CKR_OPERATION_ACTIVE). Fixed in src/kms/asymmetric.ts (ciphertext length).
    for (const Algorithm of ['RSAES_OAEP_SHA_1', 'RSAES_PKCS1_V1_5']) {
      expect(await code(send('AsymmetricRsaDecrypt', { KeyId: rsa, Ciphertext: '', Algorithm }))).toBe('FailedOperation.DecryptError');
    }
    const blob = (await c.Encrypt({ KeyId: sentinel, Plaintext: b64('x') })).CiphertextBlob as string;
    for (let i = 0; i < 20; i++) expect(await code(send('Decrypt', { CiphertextBlob: blob }))).toBe('Success');

    // Names of Object.prototype members found functions in lookup tables: KeySpec → InternalError, Algorithm → "[native code]"
    // messages, and VerifyByAsymmetricKey answered. Fixed in src/kms/envelope.ts and src/kms/asymmetric.ts (own keys only).
    expect(await code(send('GenerateDataKey', { KeyId: sentinel, KeySpec: 'constructor' }))).toBe('InvalidParameter');
    expect(await code(send('SignByAsymmetricKey', { KeyId: ecc, Algorithm: 'toString', Message: fx.message }))).toBe('InvalidParameter');
    expect(await code(send('VerifyByAsymmetricKey', { KeyId: ecc, Algorithm: '__proto__', Message: fx.message, SignatureValue: signature }))).toBe(
      'InvalidParameter',
    );

    // Many tag filters made SQLite refuse the query ("Expression tree is too large"): InternalError. Fixed in src/kms/list-query.ts.
    const filters = (n: number, values: number) =>
      Array.from({ length: n }, (_, i) => ({ TagKey: `k${i}`, TagValue: Array.from({ length: values }, (_v, j) => `v${j}`) }));
    expect(await code(send('ListKeyDetail', { TagFilters: filters(1000, 1) }))).toBe('InvalidParameter');
    expect(await code(send('ListKeyDetail', { TagFilters: filters(1, 101) }))).toBe('InvalidParameter');
    expect(await code(send('ListKeyDetail', { TagFilters: filters(50, 100) }))).toBe('Success');

    // A ciphertext with non-zero base64 padding bits (not the string Encrypt returned) decrypted. Fixed in src/kms/ciphertext.ts.
    let padded = blob;
    for (let n = 2; !padded.endsWith('='); n++) padded = (await c.Encrypt({ KeyId: sentinel, Plaintext: b64('x'.repeat(n)) })).CiphertextBlob as string;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const last = padded.replace(/=+$/, '').length - 1;
    const altered = padded.slice(0, last) + alphabet[alphabet.indexOf(padded[last]) ^ 1] + padded.slice(last + 1);
    expect(Buffer.from(altered, 'base64').equals(Buffer.from(padded, 'base64'))).toBe(true);
    expect(await code(send('Decrypt', { CiphertextBlob: altered }))).toBe('InvalidParameterValue.InvalidCiphertext');
    expect(await code(send('Decrypt', { CiphertextBlob: padded }))).toBe('Success');

    // GetRegions (regionless) with a region header the server does not serve was refused to the root account as UnauthorizedOperation,
    // echoing the header. Fixed in src/api/pipeline.ts (a regionless action acts in the first served region).
    expect(await code(send('GetRegions', {}, { 'x-tc-region': 'x'.repeat(5000) }))).toBe('Success');

    // Caller input was echoed whole in messages (a 100 KB KeyId came back in a 100 KB message). Fixed with quoted() in src/kms/errors.ts.
    for (const [action, body] of [
      ['DescribeKey', { KeyId: 'k'.repeat(100_000) }],
      ['CreateKey', { Alias: 'fuzz-long', HsmClusterId: 'c'.repeat(100_000) }],
      ['CreateKey', { Alias: 'fuzz-long', KeyUsage: 'u'.repeat(100_000) }],
      ['SignByAsymmetricKey', { KeyId: ecc, Algorithm: 'a'.repeat(100_000), Message: fx.message }],
      ['UnbindCloudResource', { KeyId: sentinel, ProductId: 'p'.repeat(50_000), ResourceId: 'r'.repeat(50_000) }],
    ] as const) {
      const e = await send(action, body);
      expect(String(e.Response.Error?.Message).length).toBeLessThan(400);
    }

    // An oversize body was counted under its X-TC-Action as a metric label (one series per string a client sends: unbounded
    // memory), and had no log line and no audit event. A body that is not what its Content-Encoding says was InternalError.
    // Fixed in src/api/app.ts and src/api/pipeline.ts (refuseUnread).
    const marker = `FuzzOversize${Date.now()}`;
    const big = Buffer.alloc(lab.server.services.config.maxBodyBytes + 1, 0x20);
    expect(await code(send(marker, big))).toBe('RequestSizeLimitExceeded');
    expect(lab.recent.some((l) => l.code === 'RequestSizeLimitExceeded' && l.action === 'unknown')).toBe(true);
    expect((await lab.server.services.metrics.requests.get()).values.some((v) => v.labels.action === marker)).toBe(false);
    // it never authenticated, so it is a count in the failure aggregate, not an event of its own (docs/security.md §6)
    lab.server.services.trust.failures.flush();
    await lab.server.services.audit.flush();
    expect((await lab.server.services.audit.query({ eventName: marker, limit: 10 })).events).toEqual([]);
    const aggregates = (await lab.server.services.audit.query({ eventName: 'UnauthenticatedRequests', limit: 100 })).events;
    expect(aggregates.some((e) => e.errorCode === 'RequestSizeLimitExceeded')).toBe(true);
    expect(await code(send('ListKeys', Buffer.from('{}'), { 'content-encoding': 'gzip' }))).toBe('InvalidParameter');
    expect(await code(send('ListKeys', Buffer.from('{}'), { 'content-encoding': 'br' }))).toBe('InvalidParameter');
    expect(await code(send('ListKeys', Buffer.from('{}'), { 'content-encoding': 'constructor' }))).toBe('InvalidParameter');

    expect(lab.internalErrorCount).toBe(before);
  }, 120_000);

  test("a header block over Node's limit (16 KiB) is answered by Node's HTTP parser before the API sees it (431), and the server lives on", async () => {
    const a = await lab.post(
      { 'content-type': 'application/json', host: `127.0.0.1:${lab.server.port}`, 'x-tc-action': 'ListKeys', 'x-fuzz-padding': 'x'.repeat(20_000) },
      Buffer.from('{}'),
    );
    expect(a.status).toBe(431);
    expect(await lab.get('/healthz')).toMatchObject({ status: 200 });
  });

  test('the server never died: /healthz, /readyz, an SDK call, the audit chain; no SecretKey in any log line; no InternalError logged', async () => {
    expect(await lab.get('/healthz')).toMatchObject({ status: 200 });
    expect((await lab.get('/readyz')).status).toBe(200);
    const c = lab.client();
    const blob = (await c.Encrypt({ KeyId: sentinel, Plaintext: b64('still alive') })).CiphertextBlob;
    expect(Buffer.from((await c.Decrypt({ CiphertextBlob: blob })).Plaintext as string, 'base64').toString()).toBe('still alive');
    expect((await c.ListKeys({})).TotalCount as number).toBeGreaterThan(0);
    await lab.server.services.audit.flush();
    expect((await lab.server.services.audit.verify()).ok).toBe(true);
    expect(lab.leakedInLogs).toEqual([]);
    expect(lab.internalErrors).toEqual([]);
    expect(lab.internalErrorCount).toBe(0);
    expect(lab.logLines).toBeGreaterThanOrEqual(tally.requests);
    report(`fuzzed requests in all: ${tally.requests}; server log lines: ${lab.logLines}`);
  }, 60_000);
});
