/**
 * Request parameters of every served action, declared once (field names, JSON types, required-ness
 * and caps copied from the SDK's kms_models.d.ts), and the one validator that turns a parsed JSON
 * body into typed parameters. Base64 fields come out as Buffers. Values are the KMS core's to judge
 * (ranges, aliases, key ids); this layer checks shape and size (PARAM_MAXIMA). Messages name the
 * field, never its value.
 */
import { decodeCanonicalBase64 } from '../common/base64';
import { NamedError } from '../common/errors';
import { TAG_LIMITS } from '../kms/key-rules';
import { MAX_TAG_FILTER_VALUES, MAX_TAG_FILTERS } from '../kms/list-query';

export type ParamErrorCode =
  | 'MissingParameter'
  | 'UnknownParameter'
  | 'InvalidParameter'
  | 'InvalidParameterValue'
  | 'InvalidParameterValue.InvalidAlias'
  | 'InvalidParameterValue.InvalidKeyId'
  | 'InvalidParameterValue.InvalidPlaintext'
  | 'InvalidParameterValue.InvalidCiphertext'
  | 'InvalidParameterValue.InvalidDataKeyId'
  | 'InvalidParameterValue.InvalidDataKeyName'
  | 'InvalidParameterValue.InvalidImportKeyMaterial';

export class ParamError extends NamedError {
  /** `field` is the parameter's path (`Tags.0.TagKey`), or undefined for the body itself. */
  constructor(
    readonly code: ParamErrorCode,
    readonly field: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

interface Flags {
  required?: true;
  /** Accepted and shape-checked, left out of the typed result (MemberAccount: multi-account, not served on-premises). */
  ignored?: true;
}

export type FieldSpec = Flags &
  (
    | { kind: 'string' }
    /** `invalid`: the code of text that is not canonical base64 (default InvalidParameterValue). */
    | { kind: 'base64'; invalid?: ParamErrorCode }
    | { kind: 'integer' }
    | { kind: 'array'; of: FieldSpec }
    | { kind: 'object'; fields: Fields }
  );

export type Fields = Readonly<Record<string, FieldSpec>>;

type ValueOf<S> = S extends { kind: 'string' }
  ? string
  : S extends { kind: 'base64' }
    ? Buffer
    : S extends { kind: 'integer' }
      ? number
      : S extends { kind: 'array'; of: infer E }
        ? Array<ValueOf<E>>
        : S extends { kind: 'object'; fields: infer F }
          ? ParamsOf<F>
          : never;
type Kept<F> = { [K in keyof F]: F[K] extends { ignored: true } ? never : K }[keyof F];
type RequiredKeys<F> = { [K in keyof F]: F[K] extends { required: true } ? K : never }[keyof F];

/** The typed parameters a field table describes. */
export type ParamsOf<F> = { [K in Extract<Kept<F>, RequiredKeys<F>>]: ValueOf<F[K]> } & { [K in Exclude<Kept<F>, RequiredKeys<F>>]?: ValueOf<F[K]> };

export const str = { kind: 'string' } as const;
const b64 = { kind: 'base64' } as const;
/** A ciphertext blob: bytes that are not base64 cannot be one (InvalidCiphertext, as for any other malformed blob). */
const blob = { kind: 'base64', invalid: 'InvalidParameterValue.InvalidCiphertext' } as const;
export const int = { kind: 'integer' } as const;
export const req = <S extends FieldSpec>(s: S): S & { required: true } => ({ ...s, required: true });
const ignored = <S extends FieldSpec>(s: S): S & { ignored: true } => ({ ...s, ignored: true });
export const arrayOf = <E extends FieldSpec>(of: E): { kind: 'array'; of: E } => ({ kind: 'array', of });
export const object = <F extends Fields>(fields: F): { kind: 'object'; fields: F } => ({ kind: 'object', fields });

/**
 * The most a field may hold, by field name: `chars`, the length of a string (of a base64 field, of
 * its base64 text; of a list of strings, of each element); `items`, the elements of a list. Over
 * `chars`: `code` (default InvalidParameterValue; where the core has its own rule, the core's code,
 * so the answer does not depend on which layer saw it first); over `items`: InvalidParameter.
 * Figures from reference §6 where it gives one (Alias, Description, EncryptionContext, Plaintext,
 * Message, KeyIds); tags and tag filters as the core bounds them (TAG_LIMITS, MAX_TAG_FILTERS); the rest ours, documented
 * in docs/kms-core.md "Parameter maxima". Every string and list field of ACTION_SCHEMAS has an entry
 * (test/unit/api/params.test.ts).
 */
export interface Maximum {
  chars?: number;
  items?: number;
  code?: ParamErrorCode;
}

/** base64 text of `bytes` bytes. */
const b64chars = (bytes: number): number => 4 * Math.ceil(bytes / 3);
const KEY_ID_MAX: Maximum = { chars: 128, code: 'InvalidParameterValue.InvalidKeyId' };
const DATA_KEY_ID_MAX: Maximum = { chars: 128, code: 'InvalidParameterValue.InvalidDataKeyId' };
const NAME = { chars: 64 };
const CONTEXT = { chars: 1024 };

export const PARAM_MAXIMA: Readonly<Record<string, Maximum>> = {
  KeyId: KEY_ID_MAX,
  DestinationKeyId: KEY_ID_MAX,
  KeyIds: { ...KEY_ID_MAX, items: 100 },
  Alias: { chars: 60, code: 'InvalidParameterValue.InvalidAlias' },
  SearchKeyAlias: { chars: 60 },
  Description: { chars: 1024, code: 'InvalidParameter' },
  DataKeyName: { chars: 256, code: 'InvalidParameterValue.InvalidDataKeyName' },
  DataKeyId: DATA_KEY_ID_MAX,
  DataKeyIds: { ...DATA_KEY_ID_MAX, items: 100 },
  ImportKeyMaterial: { chars: 8192, code: 'InvalidParameterValue.InvalidImportKeyMaterial' },
  KeyUsage: NAME,
  Origin: NAME,
  KeySpec: NAME,
  Algorithm: NAME,
  EncryptionAlgorithm: NAME,
  MessageType: NAME,
  WrappingAlgorithm: NAME,
  WrappingKeySpec: NAME,
  HsmClusterId: { chars: 128 },
  ProductId: { chars: 128 },
  ResourceId: { chars: 128 },
  Tags: { items: TAG_LIMITS.perKey },
  TagKey: { chars: TAG_LIMITS.keyChars },
  TagValue: { chars: TAG_LIMITS.valueChars, items: MAX_TAG_FILTER_VALUES },
  TagFilters: { items: MAX_TAG_FILTERS },
  MemberAccounts: { items: 100 },
  EncryptionContext: CONTEXT,
  SourceEncryptionContext: CONTEXT,
  DestinationEncryptionContext: CONTEXT,
  Plaintext: { chars: b64chars(4096), code: 'InvalidParameterValue.InvalidPlaintext' },
  Message: { chars: b64chars(4096), code: 'InvalidParameter' },
  CiphertextBlob: { chars: 8192 },
  Ciphertext: { chars: 1024 },
  SignatureValue: { chars: 1024 },
  EncryptedKeyMaterial: { chars: 4096 },
  ImportToken: { chars: 1024 },
  EncryptionPublicKey: { chars: 4096 },
};

/** DescribeKeys, EnableKeys, DisableKeys: at most 100 key ids (reference §6). */
export const MAX_KEY_IDS = PARAM_MAXIMA.KeyIds.items as number;

const MEMBER_ACCOUNT = object({ MemberAppId: int, MemberUin: int });
const MEMBER = { MemberAccount: ignored(MEMBER_ACCOUNT) };
const KEY = { KeyId: req(str) };
const KEY_OF_MEMBER = { ...KEY, ...MEMBER };
const KEY_IDS = { KeyIds: req(arrayOf(str)), ...MEMBER };
const TAGS = arrayOf(object({ TagKey: req(str), TagValue: req(str) }));
const PAGE = { Offset: int, Limit: int, Role: int, HsmClusterId: str };
const PUBLIC_KEY_OUTPUT = { EncryptionPublicKey: str, EncryptionAlgorithm: str };
const SIGN = { KeyId: req(str), Algorithm: req(str), Message: req(b64), MessageType: str };
const CLOUD_RESOURCE = { KeyId: req(str), ProductId: req(str), ResourceId: req(str) };
const DATA_KEY = { DataKeyId: req(str), ...MEMBER };
const DATA_KEY_IDS = { DataKeyIds: req(arrayOf(str)), ...MEMBER };
/** Bytes that are not base64 cannot be a data key or a blob of one. */
const MATERIAL = { kind: 'base64', invalid: 'InvalidParameterValue.InvalidImportKeyMaterial' } as const;
const TAG_FILTERS = arrayOf(object({ TagKey: req(str), TagValue: arrayOf(str) }));

/** Every served action and its request fields. */
export const ACTION_SCHEMAS = {
  CreateKey: { Alias: req(str), Description: str, KeyUsage: str, Type: int, Tags: TAGS, HsmClusterId: str },
  DescribeKey: KEY_OF_MEMBER,
  DescribeKeys: KEY_IDS,
  ListKeys: PAGE,
  ListKeyDetail: {
    ...PAGE,
    OrderType: int,
    KeyState: int,
    SearchKeyAlias: str,
    Origin: str,
    KeyUsage: str,
    TagFilters: arrayOf(object({ TagKey: req(str), TagValue: arrayOf(str) })),
    MemberAccounts: ignored(arrayOf(MEMBER_ACCOUNT)),
  },
  UpdateAlias: { Alias: req(str), ...KEY_OF_MEMBER },
  UpdateKeyDescription: { Description: req(str), ...KEY_OF_MEMBER },
  EnableKey: KEY_OF_MEMBER,
  EnableKeys: KEY_IDS,
  DisableKey: KEY_OF_MEMBER,
  DisableKeys: KEY_IDS,
  ScheduleKeyDeletion: { PendingWindowInDays: req(int), ...KEY_OF_MEMBER },
  CancelKeyDeletion: KEY_OF_MEMBER,
  ArchiveKey: KEY_OF_MEMBER,
  CancelKeyArchive: KEY_OF_MEMBER,
  EnableKeyRotation: { RotateDays: int, ...KEY_OF_MEMBER },
  DisableKeyRotation: KEY_OF_MEMBER,
  GetKeyRotationStatus: KEY_OF_MEMBER,
  RotateKey: KEY_OF_MEMBER,
  Encrypt: { ...KEY, Plaintext: req(b64), EncryptionContext: str },
  Decrypt: { CiphertextBlob: req(blob), EncryptionContext: str, ...PUBLIC_KEY_OUTPUT },
  ReEncrypt: { CiphertextBlob: req(blob), DestinationKeyId: str, SourceEncryptionContext: str, DestinationEncryptionContext: str },
  GenerateDataKey: {
    ...KEY,
    KeySpec: str,
    NumberOfBytes: int,
    EncryptionContext: str,
    ...PUBLIC_KEY_OUTPUT,
    IsHostedByKms: int,
    DataKeyName: str,
    Description: str,
    HsmClusterId: str,
    Tags: TAGS,
  },
  GenerateRandom: { NumberOfBytes: req(int) },
  GetPublicKey: KEY,
  AsymmetricRsaDecrypt: { ...KEY, Ciphertext: req(b64), Algorithm: req(str) },
  AsymmetricSm2Decrypt: { ...KEY, Ciphertext: req(b64) },
  SignByAsymmetricKey: SIGN,
  VerifyByAsymmetricKey: { ...SIGN, SignatureValue: req(b64) },
  GetParametersForImport: { ...KEY, WrappingAlgorithm: req(str), WrappingKeySpec: req(str) },
  ImportKeyMaterial: { EncryptedKeyMaterial: req(b64), ImportToken: req(b64), ...KEY, ValidTo: int },
  DeleteImportedKeyMaterial: KEY,
  GetServiceStatus: {},
  GetRegions: {},
  ListAlgorithms: {},
  BindCloudResource: CLOUD_RESOURCE,
  UnbindCloudResource: CLOUD_RESOURCE,
  ImportDataKey: {
    DataKeyName: req(str),
    ImportKeyMaterial: req(MATERIAL),
    ImportType: req(int),
    Description: str,
    KeyId: str,
    HsmClusterId: str,
    Tags: TAGS,
  },
  DescribeDataKey: DATA_KEY,
  DescribeDataKeys: DATA_KEY_IDS,
  ListDataKeys: PAGE,
  ListDataKeyDetail: {
    ...PAGE,
    OrderType: int,
    KeyState: int,
    SearchKeyAlias: str,
    Origin: str,
    KeyId: str,
    DataKeyLen: int,
    TagFilters: TAG_FILTERS,
    MemberAccounts: ignored(arrayOf(MEMBER_ACCOUNT)),
  },
  EnableDataKey: DATA_KEY,
  EnableDataKeys: DATA_KEY_IDS,
  DisableDataKey: DATA_KEY,
  DisableDataKeys: DATA_KEY_IDS,
  ScheduleDataKeyDeletion: { PendingWindowInDays: req(int), ...DATA_KEY },
  CancelDataKeyDeletion: DATA_KEY,
  GetDataKeyPlaintext: { DataKeyId: req(str), ...PUBLIC_KEY_OUTPUT },
  GetDataKeyCiphertextBlob: DATA_KEY,
  UpdateDataKeyName: { DataKeyName: req(str), ...DATA_KEY },
  UpdateDataKeyDescription: { Description: req(str), ...DATA_KEY },
} satisfies Record<string, Fields>;

export type ServedAction = keyof typeof ACTION_SCHEMAS;
export type ActionParams<A extends ServedAction> = ParamsOf<(typeof ACTION_SCHEMAS)[A]>;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const wrongType = (path: string, what: string): ParamError => new ParamError('InvalidParameter', path, `${path} must be ${what}`);
/** A field's path for messages; a client-chosen name is cut short, never echoed at length. */
const child = (path: string, name: string | number): string => {
  const n = String(name);
  const shown = n.length > 64 ? `${n.slice(0, 64)}…` : n;
  return path === '' ? shown : `${path}.${shown}`;
};

/** The maxima of one service's fields, by field name (PARAM_MAXIMA for KMS). */
export type Maxima = Readonly<Record<string, Maximum>>;

function checkArray(spec: Extract<FieldSpec, { kind: 'array' }>, v: unknown, path: string, max: Maximum, maxima: Maxima): unknown[] {
  if (!Array.isArray(v)) throw wrongType(path, 'an array');
  if (max.items !== undefined && v.length > max.items) throw new ParamError('InvalidParameter', path, `${path} must have at most ${max.items} elements`);
  const each: Maximum = { chars: max.chars, code: max.code };
  return v.map((e, i) => checkValue(spec.of, e, child(path, i), each, maxima));
}

function checkLength(v: string, path: string, max: Maximum): string {
  if (max.chars !== undefined && v.length > max.chars)
    throw new ParamError(max.code ?? 'InvalidParameterValue', path, `${path} must be at most ${max.chars} characters`);
  return v;
}

function checkValue(spec: FieldSpec, v: unknown, path: string, max: Maximum, maxima: Maxima): unknown {
  switch (spec.kind) {
    case 'string':
      if (typeof v !== 'string') throw wrongType(path, 'a string');
      return checkLength(v, path, max);
    case 'base64': {
      if (typeof v !== 'string') throw wrongType(path, 'a base64 string');
      const bytes = decodeCanonicalBase64(checkLength(v, path, max));
      if (!bytes) throw new ParamError(spec.invalid ?? 'InvalidParameterValue', path, `${path} is not canonical base64`);
      return bytes;
    }
    case 'integer':
      if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw wrongType(path, 'an integer');
      return v;
    case 'array':
      return checkArray(spec, v, path, max, maxima);
    case 'object':
      return checkObject(spec.fields, v, path, maxima);
  }
}

/** JSON null counts as absent (the SDKs drop nulls; a null required field is missing). */
function checkObject(fields: Fields, v: unknown, path: string, maxima: Maxima): Record<string, unknown> {
  if (!isRecord(v)) throw path === '' ? new ParamError('InvalidParameter', undefined, 'the request body must be a JSON object') : wrongType(path, 'an object');
  const unknown = Object.keys(v).find((name) => !Object.prototype.hasOwnProperty.call(fields, name));
  if (unknown !== undefined) throw new ParamError('UnknownParameter', child(path, unknown), `${child(path, unknown)} is not a parameter of this action`);
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(fields)) {
    const value = v[name];
    if (value === undefined || value === null) {
      if (spec.required) throw new ParamError('MissingParameter', child(path, name), `${child(path, name)} is required`);
      continue;
    }
    const checked = checkValue(spec, value, child(path, name), maxima[name] ?? {}, maxima);
    if (!spec.ignored) out[name] = checked;
  }
  return out;
}

/** The request body as JSON (an empty body is `{}`); anything unparsable is ParamError InvalidParameter. */
export function parseJsonBody(raw: Buffer): unknown {
  if (raw.length === 0) return {};
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw));
  } catch {
    throw new ParamError('InvalidParameter', undefined, 'the request body is not valid UTF-8 JSON');
  }
}

/** The typed parameters of `action` from a parsed JSON body; throws ParamError. */
export function validateParams<A extends ServedAction>(action: A, body: unknown): ActionParams<A> {
  return checkObject(ACTION_SCHEMAS[action], body, '', PARAM_MAXIMA) as ActionParams<A>;
}

/** Another service's parameters: the same checks over its own field table and maxima. */
export function validateFields<F extends Fields>(fields: F, body: unknown, maxima: Maxima): ParamsOf<F> {
  return checkObject(fields, body, '', maxima) as ParamsOf<F>;
}
