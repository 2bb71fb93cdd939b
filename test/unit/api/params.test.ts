import * as fs from 'node:fs';
import * as path from 'node:path';
import { isServedAction, isUnknownAction, isUnsupportedAction, SERVED_ACTIONS, UNSUPPORTED_ACTIONS } from '../../../src/api/actions';
import {
  ACTION_SCHEMAS,
  FieldSpec,
  Fields,
  MAX_KEY_IDS,
  PARAM_MAXIMA,
  ParamError,
  ParamErrorCode,
  parseJsonBody,
  ServedAction,
  validateParams,
} from '../../../src/api/params';
import {
  createKeyRequest,
  decryptRequest,
  generateDataKeyRequest,
  importRequest,
  listKeyDetailRequest,
  reEncryptRequest,
  signRequest,
} from '../../../src/api/kms-wire';
import { decodeCanonicalBase64 } from '../../../src/common/base64';
import type { CreateKeyRequest } from '../../../src/kms/lifecycle';
import type { DecryptRequest, GenerateDataKeyRequest, ReEncryptRequest } from '../../../src/kms/envelope';
import type { ImportRequest } from '../../../src/kms/key-import';
import type { ListRequest } from '../../../src/kms/list-query';
import type { SignRequest } from '../../../src/kms/asymmetric';

const SDK = path.dirname(require.resolve('tencentcloud-sdk-nodejs/package.json'));
const MODELS = fs.readFileSync(path.join(SDK, 'tencentcloud/services/kms/v20190118/kms_models.d.ts'), 'utf8');
const CLIENT = fs.readFileSync(path.join(SDK, 'tencentcloud/services/kms/v20190118/kms_client.js'), 'utf8');

/** `XRequest` of kms_models.d.ts: field → [type, required]; `= null` requests have no fields. */
function sdkRequest(action: string): Map<string, [string, boolean]> {
  const fields = new Map<string, [string, boolean]>();
  if (new RegExp(`export type ${action}Request = null;`).test(MODELS)) return fields;
  const m = new RegExp(`export interface ${action}Request \\{([\\s\\S]*?)\\n\\}`).exec(MODELS);
  if (!m) throw new Error(`no ${action}Request in the SDK models`);
  for (const f of m[1].matchAll(/^\s+(\w+)(\??):\s*([^;]+);/gm)) fields.set(f[1], [f[3], f[2] !== '?']);
  return fields;
}

function sdkKind(type: string): FieldSpec['kind'][] {
  if (type === 'string') return ['string', 'base64'];
  if (type === 'number') return ['integer'];
  if (type.startsWith('Array<')) return ['array'];
  return ['object'];
}

/** A valid value for a field: every optional field filled in. */
function sample(spec: FieldSpec): unknown {
  switch (spec.kind) {
    case 'string':
      return 'x';
    case 'base64':
      return 'aGk=';
    case 'integer':
      return 1;
    case 'array':
      return [sample(spec.of)];
    case 'object':
      return sampleBody(spec.fields);
  }
}
const sampleBody = (fields: Fields): Record<string, unknown> => Object.fromEntries(Object.entries(fields).map(([k, s]) => [k, sample(s)]));
const requiredBody = (fields: Fields): Record<string, unknown> =>
  Object.fromEntries(
    Object.entries(fields)
      .filter(([, s]) => s.required)
      .map(([k, s]) => [k, sample(s)]),
  );

function wrongType(spec: FieldSpec): unknown {
  return spec.kind === 'integer' ? '1' : spec.kind === 'array' ? 'x' : spec.kind === 'object' ? ['x'] : 42;
}

function errorOf(action: ServedAction, body: unknown): { code: ParamErrorCode; field: string | undefined; message: string } | 'valid' {
  try {
    validateParams(action, body);
    return 'valid';
  } catch (e) {
    if (!(e instanceof ParamError)) throw e;
    return { code: e.code, field: e.field, message: e.message };
  }
}

const ACTIONS = Object.keys(ACTION_SCHEMAS) as ServedAction[];
const FIELD_CASES = ACTIONS.flatMap((a) => Object.entries(ACTION_SCHEMAS[a] as Fields).map(([name, spec]) => [a, name, spec] as const));

describe('schemas match the SDK request models', () => {
  test.each(ACTIONS)('%s: same fields, required-ness and JSON types as kms_models.d.ts', (action) => {
    const sdk = sdkRequest(action);
    const ours = ACTION_SCHEMAS[action] as Fields;
    expect(Object.keys(ours).sort()).toEqual([...sdk.keys()].sort());
    for (const [name, [type, required]] of sdk) {
      const spec = ours[name];
      expect([name, Boolean(spec.required)]).toEqual([name, required]);
      expect(sdkKind(type)).toContain(spec.kind);
    }
  });
});

describe('valid bodies', () => {
  test.each(ACTIONS)('%s: every field filled in', (action) => {
    expect(errorOf(action, sampleBody(ACTION_SCHEMAS[action]))).toBe('valid');
  });
  test.each(ACTIONS)('%s: required fields only', (action) => {
    expect(errorOf(action, requiredBody(ACTION_SCHEMAS[action]))).toBe('valid');
  });

  test('base64 fields become Buffers; strings, numbers and nested objects are kept; MemberAccount is dropped', () => {
    expect(validateParams('Encrypt', { KeyId: 'k', Plaintext: 'aGVsbG8=', EncryptionContext: '{"a":"b"}' })).toEqual({
      KeyId: 'k',
      Plaintext: Buffer.from('hello'),
      EncryptionContext: '{"a":"b"}',
    });
    expect(
      validateParams('VerifyByAsymmetricKey', { KeyId: 'k', Algorithm: 'RSA_PSS_SHA_256', Message: '', SignatureValue: 'AAEC', MessageType: 'RAW' }),
    ).toEqual({ KeyId: 'k', Algorithm: 'RSA_PSS_SHA_256', Message: Buffer.alloc(0), SignatureValue: Buffer.from([0, 1, 2]), MessageType: 'RAW' });
    expect(validateParams('CreateKey', { Alias: 'a', Type: 2, Tags: [{ TagKey: 'k', TagValue: 'v' }] })).toEqual({
      Alias: 'a',
      Type: 2,
      Tags: [{ TagKey: 'k', TagValue: 'v' }],
    });
    expect(validateParams('DescribeKey', { KeyId: 'k', MemberAccount: { MemberUin: 1, MemberAppId: 2 } })).toEqual({ KeyId: 'k' });
    expect(validateParams('ListKeyDetail', { Limit: 5, MemberAccounts: [{ MemberUin: 1 }], TagFilters: [{ TagKey: 'k' }] })).toEqual({
      Limit: 5,
      TagFilters: [{ TagKey: 'k' }],
    });
    expect(validateParams('GetServiceStatus', {})).toEqual({});
  });

  test('JSON null counts as absent', () => {
    expect(validateParams('Encrypt', { KeyId: 'k', Plaintext: 'aGk=', EncryptionContext: null })).toEqual({ KeyId: 'k', Plaintext: Buffer.from('hi') });
    expect(errorOf('Encrypt', { KeyId: null, Plaintext: 'aGk=' })).toMatchObject({ code: 'MissingParameter', field: 'KeyId' });
  });

  test(`KeyIds: ${MAX_KEY_IDS} ids pass, ${MAX_KEY_IDS + 1} do not`, () => {
    const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `k${i}`);
    for (const action of ['DescribeKeys', 'EnableKeys', 'DisableKeys'] as const) {
      expect(validateParams(action, { KeyIds: ids(MAX_KEY_IDS) }).KeyIds).toHaveLength(MAX_KEY_IDS);
      expect(errorOf(action, { KeyIds: ids(MAX_KEY_IDS + 1) })).toMatchObject({ code: 'InvalidParameter', field: 'KeyIds' });
    }
  });

  test('the typed output fits the KMS core parameter types, through the wire mapping where there is one (checked by tsc)', () => {
    const create: CreateKeyRequest = createKeyRequest(validateParams('CreateKey', { Alias: 'a' }));
    const list: ListRequest = listKeyDetailRequest(validateParams('ListKeyDetail', {}));
    const decrypt: DecryptRequest = decryptRequest(validateParams('Decrypt', { CiphertextBlob: 'aGk=' }));
    const reEncrypt: ReEncryptRequest = reEncryptRequest(validateParams('ReEncrypt', { CiphertextBlob: 'aGk=' }));
    const dataKey: GenerateDataKeyRequest = generateDataKeyRequest(validateParams('GenerateDataKey', { KeyId: 'k' }));
    const sign: SignRequest = signRequest(validateParams('SignByAsymmetricKey', { KeyId: 'k', Algorithm: 'a', Message: 'aGk=' }));
    const imported: ImportRequest = importRequest(validateParams('ImportKeyMaterial', { KeyId: 'k', ImportToken: 'dA==', EncryptedKeyMaterial: 'aGk=' }));
    expect([create, list, decrypt, reEncrypt, dataKey, sign, imported].every((p) => typeof p === 'object')).toBe(true);
  });
});

/** Every field at any depth: [action, path in a body, name, spec]. */
function allFields(): Array<readonly [ServedAction, string[], string, FieldSpec]> {
  const out: Array<readonly [ServedAction, string[], string, FieldSpec]> = [];
  const walk = (action: ServedAction, fields: Fields, at: string[]): void => {
    for (const [name, spec] of Object.entries(fields)) {
      out.push([action, [...at, name], name, spec]);
      const inner = spec.kind === 'array' ? spec.of : spec;
      if (inner.kind === 'object') walk(action, inner.fields, spec.kind === 'array' ? [...at, name, '0'] : [...at, name]);
    }
  };
  for (const a of ACTIONS) walk(a, ACTION_SCHEMAS[a], []);
  return out;
}

/** A body of `action` whose field at `path` holds `value` (the objects on the way filled with their required fields). */
function bodyWith(action: ServedAction, path: string[], value: unknown): Record<string, unknown> {
  const body = requiredBody(ACTION_SCHEMAS[action]);
  let fields = ACTION_SCHEMAS[action] as Fields;
  let at: Record<string, unknown> = body;
  for (let i = 0; i < path.length - 1; i++) {
    const spec = fields[path[i]];
    const obj = (spec.kind === 'array' ? spec.of : spec) as Extract<FieldSpec, { kind: 'object' }>;
    const next = requiredBody(obj.fields);
    at[path[i]] = spec.kind === 'array' ? [next] : next;
    if (spec.kind === 'array') i++;
    at = next;
    fields = obj.fields;
  }
  at[path[path.length - 1]] = value;
  return body;
}

describe('maxima (PARAM_MAXIMA)', () => {
  const sized = allFields().filter(([, , , spec]) => spec.kind === 'string' || spec.kind === 'base64' || spec.kind === 'array');

  test.each(sized)('%s.%j has a maximum', (_action, _path, name, spec) => {
    const max = PARAM_MAXIMA[name];
    expect(max).toBeDefined();
    if (spec.kind === 'array') expect(max?.items).toBeGreaterThan(0);
    if (spec.kind !== 'array' || spec.of.kind === 'string') expect(max?.chars).toBeGreaterThan(0);
  });

  test.each(sized.filter(([, , , spec]) => spec.kind === 'string'))(
    '%s.%j: the maximum passes, one character more is refused with the field named',
    (action, path, name) => {
      const max = PARAM_MAXIMA[name];
      expect(errorOf(action, bodyWith(action, path, 'x'.repeat(max.chars!)))).toBe('valid');
      expect(errorOf(action, bodyWith(action, path, 'x'.repeat(max.chars! + 1)))).toMatchObject({
        code: max.code ?? 'InvalidParameterValue',
        field: path.join('.'),
      });
    },
  );

  test.each(sized.filter(([, , , spec]) => spec.kind === 'base64'))(
    '%s.%j: base64 text over the maximum is refused before it is decoded',
    (action, path, name) => {
      const max = PARAM_MAXIMA[name];
      const fits = Buffer.alloc((max.chars! / 4) * 3 - 3, 1).toString('base64');
      expect(errorOf(action, bodyWith(action, path, fits))).toBe('valid');
      expect(errorOf(action, bodyWith(action, path, `${fits}AAAAAAAA`))).toMatchObject({ code: max.code ?? 'InvalidParameterValue', field: path.join('.') });
    },
  );

  test.each(sized.filter(([, , , spec]) => spec.kind === 'array'))(
    '%s.%j: the most elements pass, one more is InvalidParameter',
    (action, path, name, spec) => {
      const max = PARAM_MAXIMA[name];
      const element = spec.kind === 'array' ? sample(spec.of) : undefined;
      expect(
        errorOf(
          action,
          bodyWith(
            action,
            path,
            Array.from({ length: max.items! }, () => element),
          ),
        ),
      ).toBe('valid');
      expect(
        errorOf(
          action,
          bodyWith(
            action,
            path,
            Array.from({ length: max.items! + 1 }, () => element),
          ),
        ),
      ).toMatchObject({ code: 'InvalidParameter', field: path.join('.') });
    },
  );

  test('a 200 KB ResourceId is refused', () => {
    expect(errorOf('BindCloudResource', { KeyId: 'k', ProductId: 'p', ResourceId: 'r'.repeat(200 * 1024) })).toMatchObject({
      code: 'InvalidParameterValue',
      field: 'ResourceId',
    });
  });
});

describe('refused bodies', () => {
  test.each(FIELD_CASES.filter(([, , spec]) => spec.required))('%s without %s → MissingParameter', (action, name) => {
    const body = requiredBody(ACTION_SCHEMAS[action]);
    delete body[name];
    expect(errorOf(action, body)).toMatchObject({ code: 'MissingParameter', field: name });
  });

  test.each(FIELD_CASES)('%s.%s of the wrong JSON type → InvalidParameter', (action, name, spec) => {
    const body = { ...requiredBody(ACTION_SCHEMAS[action]), [name]: wrongType(spec) };
    expect(errorOf(action, body)).toMatchObject({ code: 'InvalidParameter', field: name });
  });

  test.each(ACTIONS)('%s with an unknown field → UnknownParameter', (action) => {
    expect(errorOf(action, { ...requiredBody(ACTION_SCHEMAS[action]), Unknown: 1 })).toMatchObject({ code: 'UnknownParameter', field: 'Unknown' });
  });

  test.each(ACTIONS)('%s with a body that is not an object → InvalidParameter', (action) => {
    for (const body of [null, undefined, [], 'x', 1, true]) expect(errorOf(action, body)).toMatchObject({ code: 'InvalidParameter', field: undefined });
  });

  const BAD_BASE64 = ['aGVsbG8', 'aGVsbG9=', 'aGVsbA===', 'aGVs bG8=', 'aGVsbG8=\n', '-_-_', 'aGVsbG8=aGk=', '=aGk', 'a'];
  test.each(FIELD_CASES.filter(([, , spec]) => spec.kind === 'base64'))(
    "%s.%s not canonical base64 → InvalidParameterValue (or the field's own code) naming it",
    (action, name, spec) => {
      const code = (spec.kind === 'base64' && spec.invalid) || 'InvalidParameterValue';
      for (const bad of BAD_BASE64) {
        const e = errorOf(action, { ...requiredBody(ACTION_SCHEMAS[action]), [name]: bad });
        expect(e).toMatchObject({ code, field: name });
        expect(e !== 'valid' && e.message).toContain(name);
      }
    },
  );

  const deep = (n: number): unknown => (n === 0 ? 'x' : { a: [deep(n - 1)] });
  test.each<[string, ServedAction, unknown, ParamErrorCode, string | undefined]>([
    ['object where a string is expected', 'DescribeKey', { KeyId: { a: { b: 'c' } } }, 'InvalidParameter', 'KeyId'],
    ['array where a string is expected', 'DescribeKey', { KeyId: ['k'] }, 'InvalidParameter', 'KeyId'],
    ['string where a number is expected', 'GenerateRandom', { NumberOfBytes: '32' }, 'InvalidParameter', 'NumberOfBytes'],
    ['fraction where an integer is expected', 'GenerateRandom', { NumberOfBytes: 1.5 }, 'InvalidParameter', 'NumberOfBytes'],
    ['unsafe integer', 'ListKeys', { Offset: 2 ** 60 }, 'InvalidParameter', 'Offset'],
    ['boolean where a number is expected', 'ListKeys', { Limit: true }, 'InvalidParameter', 'Limit'],
    ['number in a string array', 'DescribeKeys', { KeyIds: ['a', 1] }, 'InvalidParameter', 'KeyIds.1'],
    ['null in a string array', 'EnableKeys', { KeyIds: ['a', null] }, 'InvalidParameter', 'KeyIds.1'],
    ['object for an array', 'DisableKeys', { KeyIds: { 0: 'a' } }, 'InvalidParameter', 'KeyIds'],
    ['tag that is a string', 'CreateKey', { Alias: 'a', Tags: ['k=v'] }, 'InvalidParameter', 'Tags.0'],
    ['tag without TagValue', 'CreateKey', { Alias: 'a', Tags: [{ TagKey: 'k' }] }, 'MissingParameter', 'Tags.0.TagValue'],
    ['tag with an unknown field', 'CreateKey', { Alias: 'a', Tags: [{ TagKey: 'k', TagValue: 'v', Extra: 1 }] }, 'UnknownParameter', 'Tags.0.Extra'],
    ['tag value deeply nested', 'GenerateDataKey', { KeyId: 'k', Tags: [{ TagKey: 'k', TagValue: deep(50) }] }, 'InvalidParameter', 'Tags.0.TagValue'],
    ['tag filter values of numbers', 'ListKeyDetail', { TagFilters: [{ TagKey: 'k', TagValue: ['a', 2] }] }, 'InvalidParameter', 'TagFilters.0.TagValue.1'],
    ['MemberAccount of the wrong shape', 'RotateKey', { KeyId: 'k', MemberAccount: { MemberUin: 'x' } }, 'InvalidParameter', 'MemberAccount.MemberUin'],
    ['MemberAccount with an unknown field', 'EnableKey', { KeyId: 'k', MemberAccount: { Uin: 1 } }, 'UnknownParameter', 'MemberAccount.Uin'],
    ['MemberAccount where the model has none', 'Encrypt', { KeyId: 'k', Plaintext: 'aGk=', MemberAccount: {} }, 'UnknownParameter', 'MemberAccount'],
    ['MemberAccounts as one object', 'ListKeyDetail', { MemberAccounts: { MemberUin: 1 } }, 'InvalidParameter', 'MemberAccounts'],
    ['deeply nested junk under an unknown name', 'GetRegions', { Junk: deep(2000) }, 'UnknownParameter', 'Junk'],
    ['deeply nested junk in a known field', 'Decrypt', { CiphertextBlob: deep(2000) }, 'InvalidParameter', 'CiphertextBlob'],
    ['a CiphertextBlob that is not base64', 'Decrypt', { CiphertextBlob: '%%%' }, 'InvalidParameterValue.InvalidCiphertext', 'CiphertextBlob'],
    ['field names are case-sensitive', 'DescribeKey', { keyId: 'k' }, 'UnknownParameter', 'keyId'],
    ['__proto__ is not a parameter', 'DescribeKey', JSON.parse('{"KeyId":"k","__proto__":{"polluted":1}}'), 'UnknownParameter', '__proto__'],
    ['constructor is not a parameter', 'GetRegions', { constructor: 1 }, 'UnknownParameter', 'constructor'],
  ])('%s → %s', (_name, action, body, code, field) => {
    expect(errorOf(action, body)).toMatchObject({ code, field });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  test('messages never echo values; long unknown names are cut short', () => {
    const secret = Buffer.from('top secret plaintext').toString('base64');
    const e = errorOf('Encrypt', { KeyId: 'k', Plaintext: `${secret.slice(0, -1)}!` });
    expect(e !== 'valid' && e.message).not.toContain(secret.slice(0, 8));
    const wrong = errorOf('Encrypt', { KeyId: 'k', Plaintext: 'aGk=', EncryptionContext: { secret: 'value-xyz' } });
    expect(JSON.stringify(wrong)).not.toContain('value-xyz');
    const long = errorOf('GetRegions', { ['n'.repeat(10_000)]: 1 });
    expect(long !== 'valid' && long.message.length).toBeLessThan(200);
  });
});

describe('parseJsonBody', () => {
  test.each<[string, Buffer, unknown]>([
    ['an object', Buffer.from('{"KeyId":"k","N":1}'), { KeyId: 'k', N: 1 }],
    ['an empty body is {}', Buffer.alloc(0), {}],
    ['UTF-8 text', Buffer.from('{"Description":"clé"}'), { Description: 'clé' }],
    ['a JSON array (validateParams refuses it)', Buffer.from('[1]'), [1]],
  ])('%s', (_name, raw, expected) => {
    expect(parseJsonBody(raw)).toEqual(expected);
  });

  test.each<[string, Buffer]>([
    ['truncated JSON', Buffer.from('{"KeyId":')],
    ['not JSON', Buffer.from('KeyId=k')],
    ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])],
  ])('%s → InvalidParameter without echoing the body', (_name, raw) => {
    let caught: unknown;
    try {
      parseJsonBody(raw);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(ParamError);
    expect(caught).toMatchObject({ code: 'InvalidParameter', field: undefined, message: 'the request body is not valid UTF-8 JSON' });
  });
});

describe('decodeCanonicalBase64', () => {
  test.each<[string, string | undefined]>([
    ['', ''],
    ['aGk=', '6869'],
    ['aGVsbG8=', '68656c6c6f'],
    ['aGVsbG8h', '68656c6c6f21'],
    ['AA==', '00'],
    ['//8=', 'ffff'],
    ['aGk', undefined],
    ['aGl=', undefined],
    ['AB==', undefined],
    ['aGk==', undefined],
    ['aG k=', undefined],
    ['aGk=\n', undefined],
    ['a-_b', undefined],
  ])('%p → %p', (s, expected) => {
    const out = decodeCanonicalBase64(s);
    expect(out?.toString('hex')).toBe(expected);
  });
});

describe('actions', () => {
  const sdkActions = [...CLIENT.matchAll(/this\.request\("(\w+)"/g)].map((m) => m[1]);

  test("served and unsupported actions are disjoint and together are the SDK client's 69 actions", () => {
    expect(sdkActions).toHaveLength(69);
    expect([...SERVED_ACTIONS, ...UNSUPPORTED_ACTIONS].sort()).toEqual([...sdkActions].sort());
    expect(SERVED_ACTIONS).toHaveLength(52);
    expect(SERVED_ACTIONS.filter((a) => (UNSUPPORTED_ACTIONS as readonly string[]).includes(a))).toEqual([]);
  });

  test.each<[string, 'served' | 'unsupported' | 'unknown']>([
    ['Encrypt', 'served'],
    ['ListAlgorithms', 'served'],
    ['BindCloudResource', 'served'],
    ['EncryptByWhiteBox', 'unsupported'],
    ['ImportDataKey', 'served'],
    ['GetDataKeyPlaintext', 'served'],
    ['PostQuantumCryptoSign', 'unsupported'],
    ['encrypt', 'unknown'],
    ['', 'unknown'],
    ['DescribeHSMClusters', 'unknown'],
    ['toString', 'unknown'],
    ['__proto__', 'unknown'],
    ['constructor', 'unknown'],
  ])('%p is %s', (action, kind) => {
    expect([isServedAction(action), isUnsupportedAction(action), isUnknownAction(action)]).toEqual([
      kind === 'served',
      kind === 'unsupported',
      kind === 'unknown',
    ]);
  });
});
