import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { contextFromWire } from '../../../src/api/kms-wire';
import { ParamError, validateParams } from '../../../src/api/params';
import { additionalData, canonicalContext, decodeBlob, encodeBlob, encodeHeader } from '../../../src/kms/ciphertext';
import { InvalidCiphertextError, InvalidEncryptionContextError } from '../../../src/kms/errors';

const deployment = Buffer.alloc(16, 0xab);
const header = { deploymentId: deployment, keyId: '5d8a2f04-1c2b-4d6e-9f00-0123456789ab', keyVersion: 3 };

/** Seals with Node's AES-GCM exactly as the KMS does with the HSM: header + context as AAD (the context as the Tencent wire sends it). */
function seal(key: Buffer, plaintext: Buffer, context?: string): Buffer {
  const h = encodeHeader(header);
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv).setAAD(additionalData(h, canonicalContext(contextFromWire(context))));
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  return encodeBlob(h, iv, c.getAuthTag(), ct);
}

function open(key: Buffer, blob: Buffer, context?: string): Buffer {
  const b = decodeBlob(blob, deployment);
  const d = createDecipheriv('aes-256-gcm', key, b.iv)
    .setAAD(additionalData(b.header, canonicalContext(contextFromWire(context))))
    .setAuthTag(b.tag);
  return Buffer.concat([d.update(b.ciphertext), d.final()]);
}

describe('ciphertext blob', () => {
  const key = randomBytes(32);

  test('round trip; decrypt reads key id and version from the blob', () => {
    const blob = seal(key, Buffer.from('hello'), '{"b":"2","a":"1"}');
    const parsed = decodeBlob(blob, deployment);
    expect(parsed.keyId).toBe(header.keyId);
    expect(parsed.keyVersion).toBe(3);
    expect(open(key, blob, '{"a":"1","b":"2"}').toString()).toBe('hello');
  });

  test('every single changed byte is refused (parse or authentication), never another error', () => {
    const raw = seal(key, Buffer.from('tamper me'), '{"k":"v"}');
    for (let i = 0; i < raw.length; i++) {
      const bad = Buffer.from(raw);
      bad[i] ^= 0x01;
      let refused = false;
      try {
        open(key, bad, '{"k":"v"}');
      } catch (e) {
        refused = e instanceof InvalidCiphertextError || (e as Error).message.includes('unable to authenticate');
      }
      expect(refused).toBe(true);
    }
  });

  test.each<[string, Buffer]>([
    ['empty', Buffer.alloc(0)],
    ['too short', Buffer.from('KMS')],
    ['wrong magic', Buffer.alloc(80, 1)],
  ])('malformed input (%s) is InvalidCiphertextError', (_name, blob) => {
    expect(() => decodeBlob(blob, deployment)).toThrow(InvalidCiphertextError);
  });

  test.each<[string, string]>([
    ['not base64', '!!!!'],
    ['bad padding', 'abc'],
  ])('a blob whose text is not base64 (%s) is refused by the wire edge with the InvalidCiphertext code', (_name, blob) => {
    expect(() => validateParams('Decrypt', { CiphertextBlob: blob })).toThrow(ParamError);
    expect(() => validateParams('Decrypt', { CiphertextBlob: blob })).toThrow(
      expect.objectContaining({ code: 'InvalidParameterValue.InvalidCiphertext', field: 'CiphertextBlob' }),
    );
  });

  test('a blob from another deployment is refused', () => {
    const blob = seal(key, Buffer.from('x'));
    expect(() => decodeBlob(blob, Buffer.alloc(16, 0xcd))).toThrow(/another deployment/);
  });

  test('an unknown format version is refused', () => {
    const raw = seal(key, Buffer.from('x'));
    raw[3] = 2;
    expect(() => decodeBlob(raw, deployment)).toThrow(/format version 2/);
  });

  test('a wrong or missing encryption context fails authentication', () => {
    const blob = seal(key, Buffer.from('x'), '{"a":"1"}');
    expect(() => open(key, blob, '{"a":"2"}')).toThrow();
    expect(() => open(key, blob)).toThrow();
  });
});

describe('encryption context', () => {
  test.each<[string | undefined, string]>([
    [undefined, ''],
    ['', ''],
    ['{}', ''],
    ['{"b":"2","a":"1"}', '{"a":"1","b":"2"}'],
    ['{ "z" : "x" ,\n "y":"w"}', '{"y":"w","z":"x"}'],
  ])('canonical form of %p is %p', (input, expected) => {
    expect(canonicalContext(contextFromWire(input)).toString()).toBe(expected);
  });

  test.each<[string, RegExp]>([
    ['not json', /not valid JSON/],
    ['[1,2]', /JSON object/],
    ['"s"', /JSON object/],
    ['null', /JSON object/],
    ['{"a":1}', /strings/],
    ['{"a":{"b":"c"}}', /strings/],
    [`{"a":"${'x'.repeat(1100)}"}`, /1024/],
  ])('%p is refused', (input, message) => {
    expect(() => canonicalContext(contextFromWire(input))).toThrow(InvalidEncryptionContextError);
    expect(() => canonicalContext(contextFromWire(input))).toThrow(message);
  });
});

describe('encryption context of the core', () => {
  test('the same context in any name order, from either wire, is the same bytes; values must be strings', () => {
    expect(canonicalContext({ b: '2', a: '1' }).equals(canonicalContext(contextFromWire('{"a":"1","b":"2"}')))).toBe(true);
    expect(canonicalContext({})).toHaveLength(0);
    expect(() => canonicalContext({ a: 1 } as unknown as Record<string, string>)).toThrow(InvalidEncryptionContextError);
  });
});
