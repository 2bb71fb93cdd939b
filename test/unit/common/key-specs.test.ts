import { KEY_SPEC_CODES, KEY_SPECS, keySpecOfCode } from '../../../src/common/key-specs';

describe('key specs and their stored codes', () => {
  test('the codes are the ones records were written with (a renumbering would misread every stored key version)', () => {
    expect(KEY_SPEC_CODES).toEqual({ AES_256: 0, RSA_2048: 1, RSA_3072: 2, RSA_4096: 3, EC_P256: 4, EC_P384: 5 });
  });

  test('each code names one spec, and a code no spec has names none', () => {
    for (const spec of KEY_SPECS) expect(keySpecOfCode(KEY_SPEC_CODES[spec])).toBe(spec);
    expect(new Set(Object.values(KEY_SPEC_CODES)).size).toBe(KEY_SPECS.length);
    for (const code of [6, 255, -1, 1.5]) expect(keySpecOfCode(code)).toBeUndefined();
  });
});
