/**
 * fast-check arbitraries of hostile requests for every served action. Each case is a correctly
 * signed request for one action, broken in one way: a body field (wrong JSON type, missing,
 * unknown, huge, empty, bad base64, out-of-range number, deep nesting, odd strings), the raw body
 * (invalid UTF-8, not JSON, not an object, prototype keys, oversize), the key it names
 * (nonexistent, another tenant's, malformed), a ciphertext or import token (bit flips, truncation,
 * another tenant's), or the request's headers and signature (forged, expired, absent, wrong
 * version, empty action, huge values). Every case says what the server must answer: refused with
 * one of a set of codes, or anything well-formed (a case that may legitimately succeed).
 */
import { deflateSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { isServedAction, isUnsupportedAction, SERVED_ACTIONS } from '../../src/api/actions';
import { ACTION_SCHEMAS, FieldSpec, ServedAction } from '../../src/api/params';
import { decodeCanonicalBase64 } from '../../src/common/base64';
import type { Credentials } from './server';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

/** Keys and blobs the fuzzer aims at (made through the SDK before fuzzing). */
export interface Fixture {
  /** Tenant A's keys, by what they are. */
  keys: {
    sym: string;
    rsa: string;
    ecc: string;
    rsaSign: string;
    ext: string;
    disabled: string;
    archived: string;
    pendingDelete: string;
    dedicated: string;
  };
  /** Tenant A's hosted data keys (under `keys.sym`), by state. */
  dataKeys: { enabled: string; disabled: string; pendingDelete: string };
  /** A ciphertext of `keys.sym` (no context) and an import token of `keys.ext`. */
  blob: string;
  importToken: string;
  /** The public key of `keys.rsa` (PEM) and ciphertexts for it (OAEP-SHA1, PKCS#1 v1.5). */
  rsaPublicKeyPem: string;
  rsaCiphertexts: { oaepSha1: string; pkcs1: string };
  /** A message, its SHA-256 digest (base64), and signatures of it by `keys.ecc` and `keys.rsaSign` (PKCS#1 v1.5, PSS). */
  message: string;
  digest: string;
  signatures: { ecc: string; rsaPkcs1: string; rsaPss: string };
  /** Tenant B: its credentials, one of its keys and a ciphertext under it. */
  other: { creds: Credentials; key: string; blob: string };
}

/** What a case must get. `codes` (when given) lists the acceptable error codes. */
export type Expect = { refused: true; codes?: readonly string[] } | { refused: false };

export type AuthEdit =
  | { kind: 'remove' }
  | { kind: 'replace'; value: string }
  | { kind: 'flipSignature'; index: number }
  | { kind: 'uppercaseSignature' }
  | { kind: 'truncateSignature'; keep: number }
  | { kind: 'credentialDate'; date: string }
  | { kind: 'signedHeaders'; value: string }
  | { kind: 'algorithm'; value: string };

/** One hostile request, as data (printable and replayable). */
export interface FuzzCase {
  /** The served action the case was built for (tallies). */
  served: ServedAction;
  /** The X-TC-Action header sent ('' or undefined when broken that way). */
  action: string;
  mutation: string;
  body: Buffer;
  /** The body sent when it differs from the signed one. */
  sent?: Buffer;
  signer?: 'root' | 'other' | { secretId: string; secretKey: string };
  /** Seconds added to the current time for the timestamp signed and sent. */
  timestampOffset?: number;
  /** X-TC-Timestamp sent = the signed timestamp + this (a timestamp the signature does not cover). */
  headerTimestampOffset?: number;
  /** Header values set before signing (content-type). */
  preHeaders?: Record<string, string>;
  /** Header changes after signing (undefined deletes). */
  headers?: Record<string, string | undefined>;
  auth?: AuthEdit;
  expect: Expect;
}

export interface CaseOptions {
  fixture: Fixture;
  maxBodyBytes: number;
}

const P = 'InvalidParameter';
const PV = 'InvalidParameterValue';
const MISSING = 'MissingParameter';
const UNKNOWN = 'UnknownParameter';
const AUTH = {
  invalid: 'AuthFailure.InvalidAuthorization',
  expired: 'AuthFailure.SignatureExpire',
  notFound: 'AuthFailure.SecretIdNotFound',
  failure: 'AuthFailure.SignatureFailure',
} as const;
const refused = (...codes: string[]): Expect => (codes.length ? { refused: true, codes } : { refused: true });
const ANY: Expect = { refused: false };

const KEY_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const b64 = (s: string | Buffer): string => (Buffer.isBuffer(s) ? s : Buffer.from(s)).toString('base64');

/** Valid bodies for each action (variants: key kinds, algorithms, optional fields), aimed at the fixture keys that fit them. */
export function baseBodies(action: ServedAction, fx: Fixture): JsonObject[] {
  const k = fx.keys;
  const der = Buffer.from(fx.rsaPublicKeyPem.replace(/-----[^-]+-----|\s/g, ''), 'base64').toString('base64');
  switch (action) {
    case 'CreateKey':
      return [
        {
          Alias: 'fuzz-made',
          Description: 'made by the fuzzer',
          KeyUsage: 'ENCRYPT_DECRYPT',
          Type: 1,
          Tags: [{ TagKey: 'fuzz', TagValue: 'yes' }],
          HsmClusterId: '',
        },
        { Alias: 'fuzz-made-ecc', KeyUsage: 'ASYMMETRIC_SIGN_VERIFY_ECC' },
        { Alias: 'fuzz-made-ext', Type: 2, HsmClusterId: 'cls-dev-dedicated' },
      ];
    case 'Encrypt':
      return [
        { KeyId: k.sym, Plaintext: b64('fuzz plaintext'), EncryptionContext: '{"app":"fuzz"}' },
        { KeyId: k.dedicated, Plaintext: b64('x') },
      ];
    case 'Decrypt':
      return [{ CiphertextBlob: fx.blob }, { CiphertextBlob: fx.blob, EncryptionPublicKey: fx.rsaPublicKeyPem, EncryptionAlgorithm: 'RSAES_OAEP_SHA_256' }];
    case 'GenerateDataKey':
      return [
        { KeyId: k.sym, KeySpec: 'AES_256', EncryptionContext: '{"app":"fuzz"}' },
        { KeyId: k.sym, NumberOfBytes: 64, EncryptionPublicKey: der, EncryptionAlgorithm: 'RSAES_PKCS1_V1_5' },
      ];
    case 'AsymmetricRsaDecrypt':
      return [
        { KeyId: k.rsa, Ciphertext: fx.rsaCiphertexts.oaepSha1, Algorithm: 'RSAES_OAEP_SHA_1' },
        { KeyId: k.rsa, Ciphertext: fx.rsaCiphertexts.pkcs1, Algorithm: 'RSAES_PKCS1_V1_5' },
      ];
    case 'SignByAsymmetricKey':
      return [
        { KeyId: k.ecc, Algorithm: 'ECC_P256_R1', Message: fx.message, MessageType: 'RAW' },
        { KeyId: k.ecc, Algorithm: 'ECDSA_SHA_256', Message: fx.digest, MessageType: 'DIGEST' },
        { KeyId: k.rsaSign, Algorithm: 'RSA_PKCS1_SHA_256', Message: fx.message },
        { KeyId: k.rsaSign, Algorithm: 'RSA_PSS_SHA_256', Message: fx.digest, MessageType: 'DIGEST' },
      ];
    case 'VerifyByAsymmetricKey':
      return [
        { KeyId: k.ecc, Algorithm: 'ECC_P256_R1', Message: fx.message, MessageType: 'RAW', SignatureValue: fx.signatures.ecc },
        { KeyId: k.ecc, Algorithm: 'ECC_P256_R1', Message: fx.digest, MessageType: 'DIGEST', SignatureValue: fx.signatures.ecc },
        { KeyId: k.rsaSign, Algorithm: 'RSA_PKCS1_SHA_256', Message: fx.message, SignatureValue: fx.signatures.rsaPkcs1 },
        { KeyId: k.rsaSign, Algorithm: 'RSA_PSS_SHA_256', Message: fx.digest, MessageType: 'DIGEST', SignatureValue: fx.signatures.rsaPss },
      ];
    default:
      return [baseBody(action, fx)];
  }
}

/** The first valid body of each action. */
export function baseBody(action: ServedAction, fx: Fixture): JsonObject {
  const k = fx.keys;
  const member = { MemberAccount: { MemberAppId: 1251000000, MemberUin: 100000000001 } };
  switch (action) {
    case 'CreateKey':
      return {
        Alias: 'fuzz-made',
        Description: 'made by the fuzzer',
        KeyUsage: 'ENCRYPT_DECRYPT',
        Type: 1,
        Tags: [{ TagKey: 'fuzz', TagValue: 'yes' }],
        HsmClusterId: '',
      };
    case 'DescribeKey':
      return { KeyId: k.sym, ...member };
    case 'DescribeKeys':
      return { KeyIds: [k.sym, k.ecc], ...member };
    case 'ListKeys':
      return { Offset: 0, Limit: 20, Role: 0, HsmClusterId: '' };
    case 'ListKeyDetail':
      return {
        Offset: 0,
        Limit: 20,
        Role: 0,
        OrderType: 0,
        KeyState: 0,
        SearchKeyAlias: 'fuzz',
        Origin: 'ALL',
        KeyUsage: 'ALL',
        HsmClusterId: '',
        TagFilters: [{ TagKey: 'fuzz', TagValue: ['yes'] }],
        MemberAccounts: [{ MemberAppId: 1, MemberUin: 2 }],
      };
    case 'UpdateAlias':
      return { KeyId: k.sym, Alias: 'fuzz-renamed', ...member };
    case 'UpdateKeyDescription':
      return { KeyId: k.sym, Description: 'described by the fuzzer', ...member };
    case 'EnableKey':
      return { KeyId: k.disabled, ...member };
    case 'EnableKeys':
      return { KeyIds: [k.disabled], ...member };
    case 'DisableKey':
      return { KeyId: k.sym, ...member };
    case 'DisableKeys':
      return { KeyIds: [k.sym], ...member };
    case 'ScheduleKeyDeletion':
      return { KeyId: k.disabled, PendingWindowInDays: 7, ...member };
    case 'CancelKeyDeletion':
      return { KeyId: k.pendingDelete, ...member };
    case 'ArchiveKey':
      return { KeyId: k.sym, ...member };
    case 'CancelKeyArchive':
      return { KeyId: k.archived, ...member };
    case 'EnableKeyRotation':
      return { KeyId: k.sym, RotateDays: 90, ...member };
    case 'DisableKeyRotation':
      return { KeyId: k.sym, ...member };
    case 'GetKeyRotationStatus':
      return { KeyId: k.sym, ...member };
    case 'RotateKey':
      return { KeyId: k.sym, ...member };
    case 'Encrypt':
      return { KeyId: k.sym, Plaintext: b64('fuzz plaintext'), EncryptionContext: '{"app":"fuzz"}' };
    case 'Decrypt':
      return { CiphertextBlob: fx.blob };
    case 'ReEncrypt':
      return { CiphertextBlob: fx.blob, DestinationKeyId: k.sym };
    case 'GenerateDataKey':
      return { KeyId: k.sym, KeySpec: 'AES_256', EncryptionContext: '{"app":"fuzz"}' };
    case 'GenerateRandom':
      return { NumberOfBytes: 32 };
    case 'GetPublicKey':
      return { KeyId: k.rsa };
    case 'AsymmetricRsaDecrypt':
      return { KeyId: k.rsa, Ciphertext: fx.rsaCiphertexts.oaepSha1, Algorithm: 'RSAES_OAEP_SHA_1' };
    case 'AsymmetricSm2Decrypt':
      return { KeyId: k.rsa, Ciphertext: fx.rsaCiphertexts.oaepSha1 };
    case 'SignByAsymmetricKey':
      return { KeyId: k.ecc, Algorithm: 'ECC_P256_R1', Message: fx.message, MessageType: 'RAW' };
    case 'VerifyByAsymmetricKey':
      return { KeyId: k.ecc, Algorithm: 'ECC_P256_R1', Message: fx.message, MessageType: 'RAW', SignatureValue: fx.signatures.ecc };
    case 'GetParametersForImport':
      return { KeyId: k.ext, WrappingAlgorithm: 'RSAES_OAEP_SHA_1', WrappingKeySpec: 'RSA_2048' };
    case 'ImportKeyMaterial':
      return { KeyId: k.ext, ImportToken: fx.importToken, EncryptedKeyMaterial: b64(Buffer.alloc(256, 7)) };
    case 'DeleteImportedKeyMaterial':
      return { KeyId: k.ext };
    case 'GetServiceStatus':
      return {};
    case 'GetRegions':
      return {};
    case 'ListAlgorithms':
      return {};
    case 'BindCloudResource':
      return { KeyId: k.sym, ProductId: 'cvm', ResourceId: 'ins-fuzz' };
    case 'UnbindCloudResource':
      return { KeyId: k.sym, ProductId: 'cvm', ResourceId: 'ins-fuzz' };
    default:
      return dataKeyBody(action, fx, member);
  }
}

/** The hosted-data-key actions' first valid bodies. */
function dataKeyBody(action: ServedAction, fx: Fixture, member: JsonObject): JsonObject {
  const d = fx.dataKeys;
  switch (action) {
    case 'ImportDataKey':
      return { DataKeyName: 'fuzz-imported', ImportKeyMaterial: b64(Buffer.alloc(32, 9)), ImportType: 2, KeyId: fx.keys.sym, Description: 'fuzz', Tags: [] };
    case 'DescribeDataKey':
    case 'GetDataKeyCiphertextBlob':
    case 'DisableDataKey':
      return { DataKeyId: d.enabled, ...member };
    case 'GetDataKeyPlaintext':
      return { DataKeyId: d.enabled };
    case 'DescribeDataKeys':
      return { DataKeyIds: [d.enabled, d.disabled], ...member };
    case 'ListDataKeys':
      return { Offset: 0, Limit: 20, Role: 0, HsmClusterId: '' };
    case 'ListDataKeyDetail':
      return {
        Offset: 0,
        Limit: 20,
        Role: 0,
        OrderType: 1,
        KeyState: 1,
        SearchKeyAlias: 'fuzz',
        Origin: 'ALL',
        HsmClusterId: '',
        KeyId: fx.keys.sym,
        DataKeyLen: 32,
        TagFilters: [{ TagKey: 'fuzz', TagValue: ['yes'] }],
        MemberAccounts: [{ MemberAppId: 1, MemberUin: 2 }],
      };
    case 'EnableDataKey':
    case 'ScheduleDataKeyDeletion':
      return action === 'EnableDataKey' ? { DataKeyId: d.disabled, ...member } : { DataKeyId: d.disabled, PendingWindowInDays: 7, ...member };
    case 'EnableDataKeys':
      return { DataKeyIds: [d.disabled], ...member };
    case 'DisableDataKeys':
      return { DataKeyIds: [d.enabled], ...member };
    case 'CancelDataKeyDeletion':
      return { DataKeyId: d.pendingDelete, ...member };
    case 'UpdateDataKeyName':
      return { DataKeyId: d.enabled, DataKeyName: 'fuzz-renamed', ...member };
    case 'UpdateDataKeyDescription':
      return { DataKeyId: d.enabled, Description: 'described by the fuzzer', ...member };
    default:
      throw new Error(`no base body for ${action}`);
  }
}

type Path = ReadonlyArray<string | number>;
interface Target {
  path: Path;
  spec: FieldSpec;
  /** Required within its (present) parent object. */
  required: boolean;
}

/** Every field of the action's schema, and the fields of objects present in the base body (Tags.0.TagKey, …). */
export function targets(action: ServedAction, base: JsonObject): Target[] {
  const out: Target[] = [];
  const walk = (fields: Readonly<Record<string, FieldSpec>>, value: JsonObject | undefined, prefix: Path) => {
    for (const [name, spec] of Object.entries(fields)) {
      out.push({ path: [...prefix, name], spec, required: spec.required === true });
      const v = value?.[name];
      if (spec.kind === 'object' && v && typeof v === 'object' && !Array.isArray(v)) walk(spec.fields, v, [...prefix, name]);
      if (spec.kind === 'array' && spec.of.kind === 'object' && Array.isArray(v) && v.length > 0) {
        const first = v[0];
        if (first && typeof first === 'object' && !Array.isArray(first)) walk(spec.of.fields, first, [...prefix, name, 0]);
      }
    }
  };
  walk(ACTION_SCHEMAS[action], base, []);
  return out;
}

function clone<T extends Json>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/** `body` with the value at `path` replaced (undefined deletes it). */
function withValue(body: JsonObject, path: Path, value: Json | undefined): JsonObject {
  const out = clone(body);
  let cur: Json = out;
  for (let i = 0; i < path.length - 1; i++) cur = (cur as Record<string | number, Json>)[path[i]];
  const last = path[path.length - 1];
  if (Array.isArray(cur)) {
    if (value === undefined) cur.splice(last as number, 1);
    else cur[last as number] = value;
  } else {
    const obj = cur as JsonObject;
    if (value === undefined) delete obj[last as string];
    else obj[last as string] = value;
  }
  return out;
}

function getValue(body: JsonObject, path: Path): Json | undefined {
  let cur: Json | undefined = body;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, Json>)[p];
  }
  return cur;
}

const pathName = (p: Path): string => p.join('.');

/** A marker JSON.stringify leaves alone, replaced by raw JSON text after serialising. */
const RAW = '\u0001FUZZ-RAW\u0001';
function render(body: JsonObject, raw?: string): Buffer {
  const text = JSON.stringify(body);
  return Buffer.from(raw === undefined ? text : text.replace(JSON.stringify(RAW), raw), 'utf8');
}

/** What the server makes of a raw body: refused as InvalidParameter unless it is UTF-8 JSON of an object. */
function rawBodyExpect(bytes: Buffer): Expect {
  if (bytes.length === 0) return ANY;
  try {
    const parsed: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? ANY : refused(P);
  } catch {
    return refused(P);
  }
}

// ---------------------------------------------------------------- values

const PROTOTYPE_NAMES = ['__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__', 'isPrototypeOf'];

/** Strings that break naive code: prototype names, control and format characters, lone surrogates, SQL and path syntax, look-alikes of valid values. */
const oddString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    ...PROTOTYPE_NAMES,
    '\u0000',
    'a\u0000b',
    '\ud800',
    '\udfff',
    'x\ud83d',
    '\u202e\u0635',
    '\ufeff',
    '\r\n',
    '\t',
    ' ',
    '%',
    '_',
    '%_%',
    '\\',
    "' OR 1=1 --",
    '"; DROP TABLE keys; --',
    '../../etc/passwd',
    '${jndi:ldap://x}',
    '{{7*7}}',
    'null',
    'undefined',
    'NaN',
    '-1',
    '1e308',
    '[]',
    '{}',
    'ALL',
    'all',
    'ENCRYPT_DECRYPT ',
    'RSA_2048',
    'AES_256',
    'default',
    'cls-dev-dedicated',
    'SM2',
    'SM2DSA',
    'DIGEST',
    'RAW',
    'raw',
    'kms-x',
    'KMS-reserved',
    'a'.repeat(61),
    '🔑'.repeat(20),
    'İ',
    'ß',
    'ﬀ',
  ),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ maxLength: 40 }),
);

/** Any JSON value but null (null is "absent" to the API). */
const nonNullJson: fc.Arbitrary<Json> = fc.jsonValue({ maxDepth: 3 }).filter((v) => v !== null) as fc.Arbitrary<Json>;

function wrongTypeValue(spec: FieldSpec): fc.Arbitrary<Json> {
  const num: fc.Arbitrary<Json> = fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }));
  const str: fc.Arbitrary<Json> = fc.oneof(oddString, fc.constantFrom('1', '0', 'true', ''));
  const bool: fc.Arbitrary<Json> = fc.boolean();
  const arr: fc.Arbitrary<Json> = fc.array(nonNullJson, { maxLength: 3 });
  const obj: fc.Arbitrary<Json> = fc.dictionary(fc.string({ maxLength: 8 }), nonNullJson, { maxKeys: 3 });
  switch (spec.kind) {
    case 'string':
    case 'base64':
      return fc.oneof(num, bool, arr, obj);
    case 'integer':
      return fc.oneof(str, bool, arr, obj);
    case 'array':
      return fc.oneof(num, str, bool, obj);
    case 'object':
      return fc.oneof(num, str, bool, arr);
  }
}

/** A string of `n` UTF-16 units made by repeating a short chunk (fast to make, any size). */
const repeated = (min: number, max: number): fc.Arbitrary<string> =>
  fc
    .tuple(fc.oneof(fc.string({ minLength: 1, maxLength: 6 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 3 })), fc.integer({ min, max }))
    .map(([chunk, n]) => chunk.repeat(Math.ceil(n / chunk.length)).slice(0, n));

function hugeValue(spec: FieldSpec, maxBody: number): fc.Arbitrary<Json> {
  const sizes = fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 1025, max: 20_000 }) },
    { weight: 3, arbitrary: fc.integer({ min: 20_000, max: maxBody - 4096 }) },
    { weight: 1, arbitrary: fc.integer({ min: maxBody, max: maxBody + 65_536 }) },
  );
  switch (spec.kind) {
    case 'string':
      return fc.oneof(
        sizes.chain((n) => repeated(n, n)),
        sizes.map((n) => 'x'.repeat(n)),
      );
    case 'base64':
      return sizes.map((n) => Buffer.alloc(Math.floor((n * 3) / 4), 0xa5).toString('base64'));
    case 'integer':
      return fc.constantFrom(1e308, -1e308, Number.MAX_VALUE, 2 ** 64, -(2 ** 63));
    case 'array': {
      const count = fc.oneof(fc.integer({ min: 101, max: 2_000 }), fc.integer({ min: 2_000, max: 12_000 }));
      const of = spec.of;
      const element: fc.Arbitrary<Json> =
        of.kind === 'object'
          ? fc.constant(Object.fromEntries(Object.entries(of.fields).map(([n, s]) => [n, s.kind === 'array' ? ['v'] : s.kind === 'integer' ? 1 : 'fuzz'])))
          : of.kind === 'integer'
            ? fc.constant(1)
            : fc.uuid().map((u) => u.toLowerCase());
      return fc
        .tuple(element, count, fc.boolean())
        .map(([e, n, distinct]) =>
          Array.from({ length: n }, (_, i) => (distinct && typeof e === 'string' ? `${e.slice(0, 24)}${String(i).padStart(12, '0')}` : e)),
        );
    }
    case 'object':
      return fc.integer({ min: 100, max: 5_000 }).map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`f${i}`, i])));
  }
}

function emptyValue(spec: FieldSpec): Json {
  switch (spec.kind) {
    case 'string':
    case 'base64':
      return '';
    case 'integer':
      return 0;
    case 'array':
      return [];
    case 'object':
      return {};
  }
}

/** Numbers a JSON integer field may receive: out of range, negative, huge, fractional. */
const numberValue: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(
    -1,
    0,
    -0,
    1,
    0.5,
    -0.5,
    1.5,
    1e-308,
    5e-324,
    1e308,
    -1e308,
    Number.MAX_VALUE,
    2 ** 31,
    2 ** 31 - 1,
    -(2 ** 31),
    2 ** 32,
    2 ** 53,
    2 ** 53 - 1,
    -(2 ** 53),
    2 ** 63,
    1e21,
    7.000000000000001,
  ),
  fc.integer({ min: -1_000_000, max: 1_000_000 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.maxSafeInteger(),
);
/** Number literals JSON.parse turns into something odd (Infinity, a rounded integer, -0). */
const rawNumberLiteral = fc.constantFrom(
  '1e400',
  '-1e400',
  '123456789012345678901234567890',
  '1.0',
  '-0',
  '0e5',
  '1E2',
  '9007199254740993',
  '0.1e1',
  '-0.0',
  '1e-400',
);

/** Canonical base64 altered so it is no longer canonical (bad alphabet, length, padding, padding bits). */
function badBase64(valid: string): fc.Arbitrary<string> {
  const alterations: Array<fc.Arbitrary<string>> = [
    fc.tuple(fc.nat(), fc.constantFrom('-', '_', ' ', '\n', '.', '*', '=', '\u00e9', '\u0000', '%')).map(([i, c]) => {
      const at = i % (valid.length + 1);
      return valid.slice(0, at) + c + valid.slice(at);
    }),
    fc.nat().map((i) => {
      const at = i % Math.max(1, valid.length);
      return valid.slice(0, at) + valid.slice(at + 1);
    }),
    fc.constant(valid.replace(/=+$/, '')),
    fc.constant(`${valid}=`),
    fc.constant(`${valid}====`),
    fc.constant(valid.replace(/\+/g, '-').replace(/\//g, '_') + '-_'),
    fc.constantFrom('=', '==', 'a', 'ab=', 'aGk', 'aGl=', 'aGk==', 'aGk=\n', ' aGk=', 'YQ=', 'YR==', '%%%%', '\u00c0\u00c0\u00c0\u00c0'),
    // the last character before the padding changed to one with non-zero padding bits
    fc.integer({ min: 1, max: 3 }).map((d) => {
      const m = /^(.*)([A-Za-z0-9+/])(=+)$/.exec(valid);
      if (!m) return `${valid}A`;
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
      const c = alphabet[(alphabet.indexOf(m[2]) + d) % 64];
      return `${m[1]}${c}${m[3]}`;
    }),
  ];
  return fc.oneof(...alterations).filter((s) => decodeCanonicalBase64(s) === undefined);
}

// ---------------------------------------------------------------- body cases

const KEY_FIELDS = new Set(['KeyId', 'DestinationKeyId', 'KeyIds', 'DataKeyId', 'DataKeyIds']);
/** Fields whose value must be one of a fixed list (when the body uses them): anything else is refused. */
const ENUM_FIELDS = new Set(['KeySpec', 'Algorithm', 'KeyUsage', 'WrappingAlgorithm', 'WrappingKeySpec', 'EncryptionAlgorithm', 'MessageType', 'Origin']);
const enumExpect = (t: Target): Expect => (ENUM_FIELDS.has(String(t.path[t.path.length - 1])) ? refused() : ANY);

function finish(served: ServedAction, mutation: string, body: Buffer, expect: Expect, maxBody: number): FuzzCase {
  const e = body.length > maxBody ? refused('RequestSizeLimitExceeded') : expect;
  return { served, action: served, mutation, body, expect: e };
}

/** Expectation of a value the schema accepts but the core may refuse: anything, except a key id that names no key of the caller. */
function fieldCases(action: ServedAction, base: JsonObject, fx: Fixture, maxBody: number): fc.Arbitrary<FuzzCase> {
  const ts = targets(action, base);
  const arbs: Array<fc.WeightedArbitrary<FuzzCase>> = [];
  const add = (weight: number, arbitrary: fc.Arbitrary<FuzzCase>) => arbs.push({ weight, arbitrary });
  add(1, fc.constant(finish(action, 'valid', render(base), ANY, maxBody)));
  if (ts.length === 0) {
    add(
      3,
      fc.tuple(fc.string({ minLength: 1, maxLength: 30 }), nonNullJson).map(([n, v]) => finish(action, 'extra', render({ [n]: v }), refused(UNKNOWN), maxBody)),
    );
    return fc.oneof(...arbs);
  }
  const target = fc.constantFrom(...ts);
  add(
    4,
    target.chain((t) =>
      wrongTypeValue(t.spec).map((v) => finish(action, `wrongType:${pathName(t.path)}`, render(withValue(base, t.path, v)), refused(P), maxBody)),
    ),
  );
  add(
    2,
    target.map((t) => {
      const present = getValue(base, t.path) !== undefined;
      const exp = t.required && present ? refused(MISSING) : ANY;
      return finish(action, `missing:${pathName(t.path)}`, render(withValue(base, t.path, undefined)), exp, maxBody);
    }),
  );
  add(
    1,
    target.map((t) => finish(action, `null:${pathName(t.path)}`, render(withValue(base, t.path, null)), t.required ? refused(MISSING) : ANY, maxBody)),
  );
  add(
    3,
    fc
      .tuple(
        fc.oneof(
          fc.string({ minLength: 1, maxLength: 30 }),
          fc.constantFrom(...PROTOTYPE_NAMES),
          fc.string({ unit: 'binary', minLength: 1, maxLength: 200 }),
          repeated(65, 5000),
        ),
        nonNullJson,
      )
      .filter(([n]) => !Object.prototype.hasOwnProperty.call(ACTION_SCHEMAS[action], n))
      .map(([n, v]) => finish(action, 'extra', render({ ...base, [n]: v }), refused(UNKNOWN), maxBody)),
  );
  const parents = [...new Map(ts.filter((t) => t.path.length > 1).map((t) => [pathName(t.path.slice(0, -1)), t.path.slice(0, -1)])).values()];
  if (parents.length > 0) {
    add(
      1,
      fc
        .tuple(fc.constantFrom(...parents), fc.oneof(fc.string({ minLength: 1, maxLength: 20 }), fc.constantFrom(...PROTOTYPE_NAMES)), nonNullJson)
        .filter(([p, n]) => getValue(base, [...p, n]) === undefined && !targets(action, base).some((t) => pathName(t.path) === pathName([...p, n])))
        .map(([p, n, v]) => finish(action, `nestedExtra:${pathName(p)}`, render(withValue(base, [...p, n], v)), refused(UNKNOWN), maxBody)),
    );
  }
  add(
    3,
    target.chain((t) =>
      hugeValue(t.spec, maxBody).map((v) => {
        const exp = t.spec.kind === 'integer' ? refused(P) : ANY;
        return finish(action, `huge:${pathName(t.path)}`, render(withValue(base, t.path, v)), exp, maxBody);
      }),
    ),
  );
  add(
    2,
    target.map((t) => finish(action, `empty:${pathName(t.path)}`, render(withValue(base, t.path, emptyValue(t.spec))), ANY, maxBody)),
  );
  const depth = fc.integer({ min: 50, max: Math.floor(maxBody / 2) - 1024 });
  add(
    1,
    fc.tuple(target, depth, fc.boolean()).map(([t, d, objects]) => {
      const raw = objects ? '{"a":'.repeat(Math.floor(d / 5)) + '1' + '}'.repeat(Math.floor(d / 5)) : '['.repeat(d) + ']'.repeat(d);
      const code = objects && t.spec.kind === 'object' ? UNKNOWN : P;
      return finish(action, `deep:${pathName(t.path)}`, render(withValue(base, t.path, RAW), raw), refused(code), maxBody);
    }),
  );
  const strings = ts.filter((t) => t.spec.kind === 'string');
  if (strings.length > 0) {
    add(
      3,
      fc
        .tuple(fc.constantFrom(...strings), oddString)
        .map(([t, s]) => finish(action, `odd:${pathName(t.path)}`, render(withValue(base, t.path, s)), ANY, maxBody)),
    );
  }
  // Names of Object.prototype's members in the string fields the body uses (algorithms, specs, usages, ids): a lookup table
  // indexed with them without an own-property check finds a function instead of nothing.
  const present = strings.filter((t) => typeof getValue(base, t.path) === 'string');
  if (present.length > 0) {
    add(
      3,
      fc
        .tuple(fc.constantFrom(...present), fc.constantFrom(...PROTOTYPE_NAMES))
        .map(([t, name]) => finish(action, `prototypeName:${pathName(t.path)}=${name}`, render(withValue(base, t.path, name)), enumExpect(t), maxBody)),
    );
  }
  const ints = ts.filter((t) => t.spec.kind === 'integer');
  if (ints.length > 0) {
    add(
      3,
      fc.tuple(fc.constantFrom(...ints), numberValue).map(([t, n]) => {
        const exp = Number.isSafeInteger(n) ? ANY : refused(P);
        return finish(action, `number:${pathName(t.path)}=${n}`, render(withValue(base, t.path, n)), exp, maxBody);
      }),
    );
    add(
      1,
      fc.tuple(fc.constantFrom(...ints), rawNumberLiteral).map(([t, lit]) => {
        const exp = Number.isSafeInteger(JSON.parse(lit) as number) ? ANY : refused(P);
        return finish(action, `rawNumber:${pathName(t.path)}=${lit}`, render(withValue(base, t.path, RAW), lit), exp, maxBody);
      }),
    );
  }
  const b64s = ts.filter((t) => t.spec.kind === 'base64');
  if (b64s.length > 0) {
    add(
      3,
      fc.constantFrom(...b64s).chain((t) => {
        const current = getValue(base, t.path);
        const valid = typeof current === 'string' && current !== '' ? current : b64('fuzz');
        return badBase64(valid).map((s) => {
          const exp = t.spec.kind === 'base64' ? refused(t.spec.invalid ?? PV) : refused();
          return finish(action, `badBase64:${pathName(t.path)}`, render(withValue(base, t.path, s)), exp, maxBody);
        });
      }),
    );
  }
  const keyTargets = ts.filter((t) => KEY_FIELDS.has(String(t.path[0])));
  if (keyTargets.length > 0) add(4, keyIdCases(action, base, keyTargets, fx, maxBody));
  if ('CiphertextBlob' in base) add(4, blobCases(action, base, fx, maxBody));
  if ('ImportToken' in base) add(3, tokenCases(action, base, fx, maxBody));
  return fc.oneof(...arbs);
}

function keyIdCases(action: ServedAction, base: JsonObject, keyTargets: Target[], fx: Fixture, maxBody: number): fc.Arbitrary<FuzzCase> {
  const mine = new Set(Object.values(fx.keys));
  const nonexistent = fc
    .uuid()
    .map((u) => u.toLowerCase())
    .filter((u) => !mine.has(u) && u !== fx.other.key);
  const real = fx.keys.sym;
  const malformed = fc
    .oneof(
      fc.constantFrom(
        real.toUpperCase(),
        ` ${real}`,
        `${real} `,
        `${real}\n`,
        real.slice(0, -1),
        `${real}0`,
        real.replace(/-/g, ''),
        `{${real}}`,
        'alias/fuzz-made',
        'fuzz-made',
        '0',
      ),
      oddString,
      repeated(40, 4000),
    )
    .filter((s) => !KEY_ID.test(s));
  const fixtureKey = fc.constantFrom(...Object.values(fx.keys));
  return fc
    .tuple(
      fc.constantFrom(...keyTargets),
      fc.oneof(
        nonexistent.map((id) => ['nonexistent', id] as const),
        fc.constant(['otherTenant', fx.other.key] as const),
        malformed.map((id) => ['malformed', id] as const),
        fixtureKey.map((id) => ['fixtureKey', id] as const),
      ),
    )
    .map(([t, [kind, id]]) => {
      const field = String(t.path[0]);
      const path: Path = field === 'KeyIds' || field === 'DataKeyIds' ? [field, 0] : t.path;
      // a KeyId filter of a list may name no key of the caller's (nothing is listed); empty, it filters nothing
      const filter = action === 'ListDataKeyDetail';
      let exp: Expect;
      if (kind === 'fixtureKey') exp = ANY;
      else if (kind === 'malformed') exp = (field === 'DestinationKeyId' || filter) && id === '' ? ANY : refused();
      else exp = action === 'DescribeKeys' || action === 'DescribeDataKeys' || filter ? ANY : refused();
      return finish(action, `keyId:${kind}:${pathName(path)}`, render(withValue(base, path, id)), exp, maxBody);
    });
}

/** Byte-level damage to a real base64 value: one bit flipped, cut short, extended, or spliced. */
function damaged(valid: string): fc.Arbitrary<[string, string]> {
  const bytes = Buffer.from(valid, 'base64');
  return fc
    .oneof(
      fc.tuple(fc.nat({ max: bytes.length - 1 }), fc.integer({ min: 0, max: 7 })).map(([i, bit]) => {
        const b = Buffer.from(bytes);
        b[i] = b[i] ^ (1 << bit);
        return [`bitflip@${i}.${bit}`, b.toString('base64')] as [string, string];
      }),
      fc.nat({ max: bytes.length - 1 }).map((n) => [`truncate@${n}`, bytes.subarray(0, n).toString('base64')] as [string, string]),
      fc
        .uint8Array({ minLength: 1, maxLength: 64 })
        .map((extra) => [`append${extra.length}`, Buffer.concat([bytes, Buffer.from(extra)]).toString('base64')] as [string, string]),
      fc
        .tuple(fc.nat({ max: bytes.length - 1 }), fc.uint8Array({ minLength: 1, maxLength: 48 }))
        .map(([at, tail]) => [`splice@${at}`, Buffer.concat([bytes.subarray(0, at), Buffer.from(tail)]).toString('base64')] as [string, string]),
    )
    .filter(([, s]) => s !== valid);
}

function blobCases(action: ServedAction, base: JsonObject, fx: Fixture, maxBody: number): fc.Arbitrary<FuzzCase> {
  return fc.oneof(
    damaged(fx.blob).map(([how, blob]) => finish(action, `blob:${how}`, render({ ...base, CiphertextBlob: blob }), refused(), maxBody)),
    fc.constant(finish(action, 'blob:otherTenant', render({ ...base, CiphertextBlob: fx.other.blob }), refused(`${PV}.InvalidCiphertext`), maxBody)),
  );
}

function tokenCases(action: ServedAction, base: JsonObject, fx: Fixture, maxBody: number): fc.Arbitrary<FuzzCase> {
  return damaged(fx.importToken).map(([how, token]) => finish(action, `token:${how}`, render({ ...base, ImportToken: token }), refused(), maxBody));
}

/** Invalid UTF-8 sequences: a lone continuation byte, overlong forms, surrogates, bytes never used, truncated sequences. */
const INVALID_UTF8 = [
  [0x80],
  [0xbf],
  [0xc0, 0xaf],
  [0xc1, 0xbf],
  [0xe0, 0x80, 0xaf],
  [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf5],
  [0xfe],
  [0xff],
  [0xc3],
  [0xe2, 0x82],
  [0xf0, 0x9f, 0x94],
];

function rawBodyCases(action: ServedAction, base: JsonObject, maxBody: number): fc.Arbitrary<FuzzCase> {
  const text = render(base);
  const withRaw = (mutation: string, bytes: Buffer, expect?: Expect) => finish(action, mutation, bytes, expect ?? rawBodyExpect(bytes), maxBody);
  return fc.oneof(
    fc.tuple(fc.nat(), fc.constantFrom(...INVALID_UTF8)).map(([i, seq]) => {
      const at = i % (text.length + 1);
      return withRaw(`invalidUtf8@${at}`, Buffer.concat([text.subarray(0, at), Buffer.from(seq), text.subarray(at)]), refused(P));
    }),
    fc.uint8Array({ maxLength: 512 }).map((b) => withRaw('randomBytes', Buffer.from(b))),
    fc.string({ unit: 'binary', maxLength: 200 }).map((s) => withRaw('randomText', Buffer.from(s))),
    fc.nat().map((n) => withRaw('truncatedJson', text.subarray(0, n % Math.max(1, text.length)))),
    fc
      .constantFrom(
        '[]',
        '""',
        '"x"',
        '0',
        '-1',
        '1e308',
        'true',
        'false',
        'null',
        '[{}]',
        '{}{}',
        '{"a":1}garbage',
        '{',
        '}',
        '{"": }',
        "{'KeyId':'x'}",
        '{"KeyId":"x",}',
        '\u0000',
        'NaN',
        'Infinity',
      )
      .map((s) => withRaw(`notAnObject:${s}`, Buffer.from(s))),
    fc.integer({ min: 10, max: Math.floor(maxBody / 2) - 16 }).map((d) => withRaw(`deepBody:${d}`, Buffer.from('['.repeat(d) + ']'.repeat(d)), refused(P))),
    fc
      .integer({ min: 10, max: Math.floor(maxBody / 6) })
      .map((d) => withRaw(`deepObjectBody:${d}`, Buffer.from('{"a":'.repeat(d) + '{}' + '}'.repeat(d)), refused(UNKNOWN))),
    fc.constantFrom(...PROTOTYPE_NAMES).map((name) => {
      const inner = text.toString().slice(1, -1);
      return withRaw(`prototypeKey:${name}`, Buffer.from(`{"${name}":{"KeyId":"x","polluted":true}${inner ? ',' : ''}${inner}}`), refused(UNKNOWN));
    }),
    fc.constant(withRaw('bom', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), text]), ANY)),
    fc
      .integer({ min: 1, max: maxBody - text.length - 1 })
      .map((n) => withRaw(`whitespace:${n}`, Buffer.concat([Buffer.from(' \n\t\r'.repeat(Math.ceil(n / 4)).slice(0, n)), text]), ANY)),
    fc
      .integer({ min: maxBody + 1, max: maxBody + 200_000 })
      .map((n) => withRaw(`oversize:${n}`, Buffer.concat([text, Buffer.alloc(n - text.length, 0x20)]), refused('RequestSizeLimitExceeded'))),
    fc.constant(withRaw('duplicateKeys', duplicateFirstKey(text), ANY)),
  );
}

/** The body with its first field given twice, a bogus value first (JSON.parse keeps the last). */
function duplicateFirstKey(text: Buffer): Buffer {
  const t = text.toString('utf8');
  const m = /^\{("(?:[^"\\]|\\.)*"):/.exec(t);
  return Buffer.from(m ? `{${m[1]}:"duplicate",${t.slice(1)}` : t, 'utf8');
}

// ---------------------------------------------------------------- header and signature cases

const bombs = new Map<string, Buffer>();
/** 32 MiB of zeros, compressed to some 32 KB (made once). */
function compressionBomb(encoding: 'gzip' | 'deflate'): Buffer {
  let b = bombs.get(encoding);
  if (b === undefined) {
    const zeros = Buffer.alloc(32 * 2 ** 20);
    b = encoding === 'gzip' ? gzipSync(zeros, { level: 9 }) : deflateSync(zeros, { level: 9 });
    bombs.set(encoding, b);
  }
  return b;
}

/** What Node's HTTP parser does to a header value: optional whitespace (spaces, tabs) around it goes. */
const ows = (v: string): string => v.replace(/^[ \t]+|[ \t]+$/g, '');
const asciiValue = (min: number, max: number) => fc.string({ unit: 'grapheme-ascii', minLength: min, maxLength: max });
/** Header text with bytes 0x80-0xff too (Node sends them as latin1; the server reads them as such). */
const latin1Value = (min: number, max: number) =>
  fc.string({
    unit: fc
      .integer({ min: 0x20, max: 0xff })
      .filter((c) => c !== 0x7f)
      .map((c) => String.fromCharCode(c)),
    minLength: min,
    maxLength: max,
  });

function headerCases(action: ServedAction, base: JsonObject, fx: Fixture, maxBody: number): fc.Arbitrary<FuzzCase> {
  const body = render(base);
  const regionless = action === 'GetRegions';
  const c = (mutation: string, rest: Partial<FuzzCase>, expect: Expect): FuzzCase => ({ served: action, action, mutation, body, expect, ...rest });
  const now = Math.floor(Date.now() / 1000);
  const actionExpect = (sent: string): Expect => {
    const a = ows(sent);
    if (a === '') return refused(MISSING);
    if (isServedAction(a)) return ANY;
    return isUnsupportedAction(a) ? refused('UnsupportedOperation') : refused('InvalidAction');
  };
  return fc.oneof(
    fc.constant(c('noAuthorization', { auth: { kind: 'remove' } }, refused(AUTH.invalid))),
    fc
      .oneof(
        asciiValue(0, 200),
        fc.constantFrom('TC3-HMAC-SHA256', 'TC3-HMAC-SHA256 ', 'Basic YWRtaW46YWRtaW4=', 'Bearer x', 'TC3-HMAC-SHA256 Credential=, SignedHeaders=, Signature='),
      )
      .map((v) => c('garbageAuthorization', { auth: { kind: 'replace', value: v } }, refused(AUTH.invalid))),
    asciiValue(4000, 8000).map((v) => c('hugeAuthorization', { auth: { kind: 'replace', value: `TC3-HMAC-SHA256 Credential=${v}` } }, refused(AUTH.invalid))),
    fc
      .constantFrom('TC3-HMAC-SHA1', 'tc3-hmac-sha256', 'HMAC-SHA256', 'TC3-HMAC-SHA256X')
      .map((v) => c(`algorithm:${v}`, { auth: { kind: 'algorithm', value: v } }, refused(AUTH.invalid))),
    fc.nat({ max: 63 }).map((i) => c(`forgedSignature@${i}`, { auth: { kind: 'flipSignature', index: i } }, refused(AUTH.failure))),
    fc.constant(c('uppercaseSignature', { auth: { kind: 'uppercaseSignature' } }, ANY)),
    fc.nat({ max: 63 }).map((n) => c(`truncatedSignature:${n}`, { auth: { kind: 'truncateSignature', keep: n } }, refused(AUTH.invalid))),
    fc
      .string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'), minLength: 1, maxLength: 64 })
      .map((id) => c('unknownSecretId', { signer: { secretId: `AKIDfuzz${id}`, secretKey: 'fuzz' } }, refused(AUTH.notFound))),
    fc
      .string({ minLength: 1, maxLength: 64 })
      .filter((k) => k !== fx.other.creds.SecretKey)
      .map((k) => c('wrongSecretKey', { signer: { secretId: '', secretKey: k } }, refused(AUTH.failure))),
    fc.integer({ min: 302, max: now }).map((s) => c(`expired:-${s}`, { timestampOffset: -s }, refused(AUTH.expired))),
    fc.integer({ min: 302, max: 100_000_000_000 }).map((s) => c(`future:+${s}`, { timestampOffset: s }, refused(AUTH.expired))),
    fc.constant(c('noTimestamp', { headers: { 'x-tc-timestamp': undefined } }, refused(AUTH.invalid))),
    fc
      .oneof(
        fc.constantFrom('', 'now', '-1', '1.5', '1e9', '0x10', '+1', '9999999999999', ' ', '1 2'),
        asciiValue(1, 30).filter((s) => !/^\d{1,12}$/.test(ows(s))),
        fc.integer({ min: 13, max: 6000 }).map((n) => '9'.repeat(n)),
      )
      .map((v) => c('badTimestamp', { headers: { 'x-tc-timestamp': v } }, refused(AUTH.invalid))),
    fc.integer({ min: 1, max: 250 }).map((d) => c(`timestampNotSigned:-${d}`, { headerTimestampOffset: -d }, refused(AUTH.failure, AUTH.invalid))),
    fc
      .constantFrom('2000-01-01', '1970-01-01', '9999-12-31', '2024-02-30')
      .map((d) => c(`credentialDate:${d}`, { auth: { kind: 'credentialDate', date: d } }, refused(AUTH.invalid))),
    fc
      .constantFrom(
        'content-type',
        'host',
        'Content-Type;host',
        'host;content-type',
        'content-type;content-type;host',
        'content-type;host;x-missing',
        'content-type;host;x_tc',
        '',
      )
      .map((v) => c(`signedHeaders:${v}`, { auth: { kind: 'signedHeaders', value: v } }, refused(AUTH.invalid))),
    fc.constant(c('bodyChangedAfterSigning', { sent: Buffer.concat([body, Buffer.from(' ')]) }, refused(AUTH.failure))),
    fc
      .constantFrom('text/plain', 'application/x-www-form-urlencoded')
      .map((v) => c(`contentTypeChanged:${v}`, { headers: { 'content-type': v } }, refused(AUTH.failure))),
    asciiValue(2000, 7000).map((v) => c('hugeSignedContentType', { preHeaders: { 'content-type': v } }, ANY)),
    fc.constant(c('noVersion', { headers: { 'x-tc-version': undefined } }, refused('NoSuchVersion'))),
    fc
      .oneof(fc.constantFrom('2017-03-12', '2019-01-17', '2019-01-18 ', '', '2019-1-18', 'latest'), asciiValue(1, 40), asciiValue(4000, 8000))
      .filter((v) => ows(v) !== '2019-01-18')
      .map((v) => c('wrongVersion', { headers: { 'x-tc-version': v } }, refused('NoSuchVersion'))),
    fc.constant(c('noAction', { action: '', headers: { 'x-tc-action': undefined } }, refused(MISSING))),
    fc.constant(c('emptyAction', { action: '', headers: { 'x-tc-action': '' } }, refused(MISSING))),
    fc
      .oneof(
        fc.constantFrom(
          action.toLowerCase(),
          action.toUpperCase(),
          `${action}s`,
          `Kms.${action}`,
          'CreateWhiteBoxKey',
          'ListDataKeys',
          '__proto__',
          'constructor',
        ),
        asciiValue(1, 60),
        latin1Value(1, 60),
        asciiValue(4000, 8000),
      )
      .map((v) => c('otherAction', { action: v, headers: { 'x-tc-action': v } }, actionExpect(v))),
    fc.constant(c('noRegion', { headers: { 'x-tc-region': undefined } }, regionless ? ANY : refused(MISSING))),
    fc
      .oneof(
        fc.constantFrom('mars-north-1', 'AP-GUANGZHOU', 'ap-guangzhou ', 'ap-hongkong', '*'),
        asciiValue(1, 40),
        latin1Value(1, 40),
        asciiValue(4000, 8000),
      )
      .filter((v) => !['ap-guangzhou', 'ap-shanghai', 'ap-beijing'].includes(ows(v)))
      .map((v) => c('badRegion', { headers: { 'x-tc-region': v } }, regionless ? ANY : ows(v) === '' ? refused(MISSING) : refused('UnsupportedRegion'))),
    asciiValue(4000, 8000).map((v) => c('hugeUnsignedHeader', { headers: { 'x-fuzz-padding': v } }, ANY)),
    // a body the server cannot read as sent (compressed, or claimed to be): refused, never InternalError
    fc.tuple(fc.constantFrom('gzip', 'deflate', 'br', 'compress', 'identity', 'x-fuzz', 'gzip, gzip', ''), fc.boolean()).map(([encoding, real]) => {
      const sent = real && (encoding === 'gzip' || encoding === 'deflate') ? (encoding === 'gzip' ? gzipSync(body) : deflateSync(body)) : body;
      return c(`contentEncoding:${encoding}${real ? ':real' : ''}`, { headers: { 'content-encoding': encoding }, body: sent }, ANY);
    }),
    // a small compressed body that inflates past the size limit
    fc
      .constantFrom('gzip', 'deflate')
      .map((encoding) =>
        c(
          `compressionBomb:${encoding}`,
          { headers: { 'content-encoding': encoding }, body: compressionBomb(encoding) },
          refused('RequestSizeLimitExceeded', AUTH.failure, P),
        ),
      ),
    // an oversize body is refused before anything else is read: whatever the action header says
    fc
      .tuple(fc.oneof(fc.constant(action), asciiValue(1, 200)), fc.integer({ min: 1, max: 100_000 }))
      .map(([a, extra]) =>
        c('oversizeAnyAction', { action: a, headers: { 'x-tc-action': a }, body: Buffer.alloc(maxBody + extra, 0x20) }, refused('RequestSizeLimitExceeded')),
      ),
    // tenant B signs tenant A's request: a key, key list or ciphertext of A is not B's (DescribeKeys just leaves unknown keys out)
    fc.constant(
      c(
        'otherTenantSigns',
        { signer: 'other' },
        !['DescribeKeys', 'DescribeDataKeys', 'ListDataKeyDetail'].includes(action) &&
          ['KeyId', 'KeyIds', 'CiphertextBlob', 'DataKeyId', 'DataKeyIds'].some((f) => f in base)
          ? refused()
          : ANY,
      ),
    ),
    fc.nat({ max: 15 }).map((i) => c(`signatureHexChar@${i}`, { auth: { kind: 'flipSignature', index: 63 - i } }, refused(AUTH.failure))),
  );
}

// ---------------------------------------------------------------- all together

export interface CaseArbitraries {
  /** Any hostile case for any served action. */
  any: fc.Arbitrary<FuzzCase>;
  /** Body and raw-body cases only. */
  body: fc.Arbitrary<FuzzCase>;
  /** Header and signature cases only. */
  headers: fc.Arbitrary<FuzzCase>;
  /** Only cases the server must refuse. */
  refusedOnly: fc.Arbitrary<FuzzCase>;
}

export function caseArbitraries(o: CaseOptions): CaseArbitraries {
  // Built once per action and body variant; each action is equally likely, then each of its variants.
  const per = (make: (a: ServedAction, base: JsonObject) => fc.Arbitrary<FuzzCase>) =>
    fc.oneof(...SERVED_ACTIONS.map((a) => fc.oneof(...baseBodies(a, o.fixture).map((base) => make(a, base)))));
  const body = per((a, base) =>
    fc.oneof({ weight: 4, arbitrary: fieldCases(a, base, o.fixture, o.maxBodyBytes) }, { weight: 1, arbitrary: rawBodyCases(a, base, o.maxBodyBytes) }),
  );
  const headers = per((a, base) => headerCases(a, base, o.fixture, o.maxBodyBytes));
  const any = fc.oneof({ weight: 3, arbitrary: body }, { weight: 1, arbitrary: headers });
  return {
    any: any.map(printable),
    body: body.map(printable),
    headers: headers.map(printable),
    refusedOnly: any.filter((x) => x.expect.refused).map(printable),
  };
}

/** The case with a short description for fast-check's counterexample reports (bodies may be 300 KB). */
function printable(x: FuzzCase): FuzzCase {
  return Object.defineProperty({ ...x }, fc.toStringMethod, { value: () => describeCase(x), enumerable: false });
}

/**
 * Every name of an Object.prototype member in every string field every body variant uses, for every served action: the
 * exhaustive form of the prototypeName mutation (a lookup table indexed without an own-property check is found for sure).
 */
export function prototypeNameCases(o: CaseOptions): FuzzCase[] {
  const out: FuzzCase[] = [];
  for (const action of SERVED_ACTIONS) {
    for (const base of baseBodies(action, o.fixture)) {
      for (const t of targets(action, base)) {
        if (t.spec.kind !== 'string' || typeof getValue(base, t.path) !== 'string') continue;
        for (const name of PROTOTYPE_NAMES)
          out.push(
            printable(finish(action, `prototypeName:${pathName(t.path)}=${name}`, render(withValue(base, t.path, name)), enumExpect(t), o.maxBodyBytes)),
          );
      }
    }
  }
  return out;
}

/** Short, printable description of a case (for counterexamples and logs). */
export function describeCase(x: FuzzCase): string {
  const preview = x.body
    .subarray(0, 160)
    .toString('utf8')
    .replace(/[^\x20-\x7e]/g, '?');
  return `${x.served} [${x.mutation}] action=${JSON.stringify(x.action.slice(0, 40))} body(${x.body.length})=${preview}${x.body.length > 160 ? '…' : ''}`;
}
