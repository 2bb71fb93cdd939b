/**
 * Issue 12 §1, probe: what each PKCS#11 implementation ENFORCES about keeping a key inside the
 * token, measured with raw pkcs11js calls on real tokens. The table in docs/hsm-layer.md is this
 * file's expectations; a library upgrade that changes one fails here first.
 */
import * as pk from 'pkcs11js';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HsmProfile } from '../../src/hsm/profile';
import { NestedTemplate, templateCalls } from '../../src/hsm/template-attributes';
import { KEK_UNWRAP_TEMPLATE } from '../../src/hsm/templates';
import { attackerUnwrapTemplate, attackerWrapMechanism, attempt, OAEP_SHA1, rsaPublicTemplate } from '../support/attacker';
import { TokenLab } from '../support/tokens';

interface RawToken {
  api: pk.PKCS11;
  slot: pk.Handle;
  pin: string;
  /** The token's Security Officer PIN; NSS softokn has none. */
  soPin: string | undefined;
  profile: HsmProfile;
}

const implementations: Array<{ name: string; make: (lab: TokenLab) => RawToken | Promise<RawToken> }> = [
  {
    name: 'softhsm2',
    make: (lab) => {
      const [m] = lab.softhsm('probe', ['p']);
      m.module.initialize();
      const pin = readFileSync(join(lab.dir, 'probe', 'pins', 'p.pin'), 'utf8');
      return { api: m.module.api, slot: m.module.findToken('p').slot, pin, soPin: lab.soPin('probe', 'p'), profile: m.profile };
    },
  },
  {
    name: 'nss-softokn',
    make: (lab) => {
      const m = lab.nss('probe-nss');
      m.module.initialize();
      const pin = readFileSync(join(lab.dir, 'probe-nss', 'pins', 'nss.pin'), 'utf8');
      return { api: m.module.api, slot: m.module.findToken(m.tokenLabel).slot, pin, soPin: undefined, profile: m.profile };
    },
  },
  {
    name: 'opencryptoki-swtok',
    make: async (lab) => {
      const m = await lab.opencryptoki('probe-ock');
      m.module.initialize();
      return { api: m.module.api, slot: m.module.findToken(m.tokenLabel).slot, pin: lab.ock!.pin, soPin: lab.ock!.soPin, profile: m.profile };
    },
  },
];

/** 'true' / 'false', or why the attribute could not be read. */
function read(api: pk.PKCS11, s: pk.Handle, h: pk.Handle, type: number): string {
  let value = '';
  const outcome = attempt(() => (value = String(api.C_GetAttributeValue(s, h, [{ type }])[0].value[0] === 1)));
  return outcome === 'ok' ? value : outcome;
}

const aesTemplate = (extra: pk.Template, extractable = true): pk.Template => [
  { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
  { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
  { type: pk.CKA_VALUE_LEN, value: 32 },
  { type: pk.CKA_PRIVATE, value: true },
  { type: pk.CKA_SENSITIVE, value: true },
  { type: pk.CKA_EXTRACTABLE, value: extractable },
  ...extra,
];

/** An RSA public key of the attacker's (it holds the private half). */
const rsaPublicKeyOf = (extra: pk.Template): pk.Template => rsaPublicTemplate(generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey, extra);

/** Every fact of the table, measured on one token. */
function probe(t: RawToken): Record<string, string> {
  const { api } = t;
  const facts: Record<string, string> = {};
  const s = api.C_OpenSession(t.slot, pk.CKF_SERIAL_SESSION | pk.CKF_RW_SESSION);
  // openCryptoki 3.8.1 has no RFC 5649 key wrap: CKM_AES_CBC_PAD is what its profile wraps with
  const wrapMech = attackerWrapMechanism(t.profile);
  const out = () => Buffer.alloc(4096);
  try {
    api.C_Login(s, pk.CKU_USER, t.pin);
    const gen = (label: string, extra: pk.Template, extractable = true) =>
      api.C_GenerateKey(
        s,
        { mechanism: pk.CKM_AES_KEY_GEN },
        aesTemplate(
          [{ type: pk.CKA_TOKEN, value: true }, { type: pk.CKA_LABEL, value: label }, { type: pk.CKA_ID, value: randomBytes(8) }, ...extra],
          extractable,
        ),
      );
    const userAesKey = () =>
      api.C_GenerateKey(
        s,
        { mechanism: pk.CKM_AES_KEY_GEN },
        aesTemplate([
          { type: pk.CKA_TOKEN, value: false },
          { type: pk.CKA_WRAP, value: true },
        ]),
      );
    const find = (label: string): pk.Handle => {
      api.C_FindObjectsInit(s, [{ type: pk.CKA_LABEL, value: label }]);
      const [h] = api.C_FindObjects(s, 1);
      api.C_FindObjectsFinal(s);
      return h;
    };
    let plain = gen('probe-plain', [
      { type: pk.CKA_WRAP, value: true },
      { type: pk.CKA_UNWRAP, value: true },
      { type: pk.CKA_DECRYPT, value: false },
    ]);
    // what the attacker makes with the user PIN: an AES key of its own and an RSA public key it knows the private half of
    let userAes = userAesKey();
    let userRsa = api.C_CreateObject(s, rsaPublicKeyOf([]));

    facts['read CKA_VALUE of a sensitive key'] = attempt(() => api.C_GetAttributeValue(s, plain, [{ type: pk.CKA_VALUE }]));
    facts['CKA_SENSITIVE true -> false'] = attempt(() => api.C_SetAttributeValue(s, plain, [{ type: pk.CKA_SENSITIVE, value: false }]));
    facts['wrap an extractable key under a user AES key'] = attempt(() => api.C_WrapKey(s, wrapMech, userAes, plain, out()));
    facts['wrap an extractable key under a user RSA key'] = attempt(() => api.C_WrapKey(s, OAEP_SHA1, userRsa, plain, out()));
    const born = gen('probe-born-non-extractable', [], false);
    facts['wrap a key generated non-extractable under a user AES key'] = attempt(() => api.C_WrapKey(s, wrapMech, userAes, born, out()));
    facts['wrap a key generated non-extractable under a user RSA key'] = attempt(() => api.C_WrapKey(s, OAEP_SHA1, userRsa, born, out()));
    facts['CKA_DECRYPT false -> true on a wrapping key'] = attempt(() => api.C_SetAttributeValue(s, plain, [{ type: pk.CKA_DECRYPT, value: true }]));

    let wwt: pk.Handle | undefined;
    const userSessionKey = userAes;
    facts['generate with CKA_WRAP_WITH_TRUSTED'] = attempt(() => (wwt = gen('probe-wwt', [{ type: pk.CKA_WRAP_WITH_TRUSTED, value: true }])));
    if (wwt) {
      const key = wwt;
      facts['CKA_WRAP_WITH_TRUSTED reads back'] = read(api, s, key, pk.CKA_WRAP_WITH_TRUSTED);
      facts['wrap a WRAP_WITH_TRUSTED key under a user AES key'] = attempt(() => api.C_WrapKey(s, wrapMech, userAes, key, out()));
      facts['wrap a WRAP_WITH_TRUSTED key under a user RSA key'] = attempt(() => api.C_WrapKey(s, OAEP_SHA1, userRsa, key, out()));
      facts['CKA_WRAP_WITH_TRUSTED true -> false'] = attempt(() => api.C_SetAttributeValue(s, key, [{ type: pk.CKA_WRAP_WITH_TRUSTED, value: false }]));
    }
    facts['user session creates a CKA_TRUSTED public key'] = attempt(() => api.C_CreateObject(s, rsaPublicKeyOf([{ type: pk.CKA_TRUSTED, value: true }])));
    facts['user session sets CKA_TRUSTED on a public key'] = attempt(() => api.C_SetAttributeValue(s, userRsa, [{ type: pk.CKA_TRUSTED, value: true }]));
    facts['SO login while the user is logged in'] = attempt(() => api.C_Login(s, pk.CKU_SO, t.soPin ?? t.pin));

    api.C_Logout(s);
    let trusted: pk.Handle | undefined;
    if (t.soPin === undefined) {
      facts['SO login (user PIN)'] = attempt(() => api.C_Login(s, pk.CKU_SO, t.pin));
      if (facts['SO login (user PIN)'] === 'ok') api.C_Logout(s);
      facts['SO login (empty PIN)'] = attempt(() => api.C_Login(s, pk.CKU_SO, ''));
      if (facts['SO login (empty PIN)'] === 'ok') api.C_Logout(s);
    } else {
      facts['SO login'] = attempt(() => api.C_Login(s, pk.CKU_SO, t.soPin));
      facts['SO session creates a CKA_TRUSTED session public key'] = attempt(
        () =>
          (trusted = api.C_CreateObject(
            s,
            rsaPublicKeyOf([
              { type: pk.CKA_PRIVATE, value: false },
              { type: pk.CKA_TRUSTED, value: true },
            ]),
          )),
      );
      facts['user login while the SO is logged in'] = attempt(() => api.C_Login(s, pk.CKU_USER, t.pin));
      api.C_Logout(s);
    }
    api.C_Login(s, pk.CKU_USER, t.pin);
    facts["a private token key's handle after logout and login"] = read(api, s, plain, pk.CKA_EXTRACTABLE).replace(/true|false/, 'valid');
    facts['a private session key after logout and login'] = read(api, s, userSessionKey, pk.CKA_WRAP).replace(/true|false/, 'valid');
    plain = find('probe-plain');
    userAes = userAesKey();
    userRsa = api.C_CreateObject(s, rsaPublicKeyOf([]));
    if (wwt !== undefined) wwt = find('probe-wwt');
    if (trusted !== undefined && wwt !== undefined) {
      const [key, by] = [wwt, trusted];
      facts['trusted key still there after SO logout'] = read(api, s, by, pk.CKA_TRUSTED);
      facts['wrap a WRAP_WITH_TRUSTED key under the trusted key'] = attempt(() => api.C_WrapKey(s, OAEP_SHA1, by, key, out()));
    }

    // the lock
    facts['lock: CKA_EXTRACTABLE true -> false'] = attempt(() => api.C_SetAttributeValue(s, plain, [{ type: pk.CKA_EXTRACTABLE, value: false }]));
    facts['after the lock, CKA_EXTRACTABLE reads'] = read(api, s, plain, pk.CKA_EXTRACTABLE);
    facts['after the lock, CKA_NEVER_EXTRACTABLE reads'] = read(api, s, plain, pk.CKA_NEVER_EXTRACTABLE);
    facts['after the lock, CKA_ALWAYS_SENSITIVE reads'] = read(api, s, plain, pk.CKA_ALWAYS_SENSITIVE);
    facts['after the lock, wrap under a user AES key'] = attempt(() => api.C_WrapKey(s, wrapMech, userAes, plain, out()));
    facts['after the lock, wrap under a user RSA key'] = attempt(() => api.C_WrapKey(s, OAEP_SHA1, userRsa, plain, out()));
    facts['unlock: CKA_EXTRACTABLE false -> true'] = attempt(() => api.C_SetAttributeValue(s, plain, [{ type: pk.CKA_EXTRACTABLE, value: true }]));
    facts['C_CopyObject of a locked key with CKA_EXTRACTABLE true'] = attempt(() =>
      api.C_CopyObject(s, plain, [
        { type: pk.CKA_TOKEN, value: false },
        { type: pk.CKA_EXTRACTABLE, value: true },
      ]),
    );
    facts['C_CopyObject of a locked key with CKA_SENSITIVE false'] = attempt(() =>
      api.C_CopyObject(s, plain, [
        { type: pk.CKA_TOKEN, value: false },
        { type: pk.CKA_SENSITIVE, value: false },
      ]),
    );

    // what a KEK unwraps: a record of a key whose value the test knows, unwrapped with the attacker's template
    const known = randomBytes(32);
    const victim = api.C_CreateObject(s, [
      { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
      { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
      { type: pk.CKA_TOKEN, value: false },
      { type: pk.CKA_VALUE, value: known },
      { type: pk.CKA_EXTRACTABLE, value: true },
      { type: pk.CKA_SENSITIVE, value: true },
    ]);
    const record = Buffer.from(api.C_WrapKey(s, wrapMech, plain, victim, out()));
    let readable: pk.Handle | undefined;
    facts['KEK unwraps a record as non-sensitive and extractable'] = attempt(() => {
      readable = api.C_UnwrapKey(s, wrapMech, plain, record, attackerUnwrapTemplate('readable'));
    });
    if (readable !== undefined) {
      const value = api.C_GetAttributeValue(s, readable, [{ type: pk.CKA_VALUE }])[0].value;
      facts["its CKA_VALUE is the record's key"] = String(value.equals(known));
    }
    let quiet: pk.Handle | undefined;
    facts['KEK unwraps a record naming neither CKA_SENSITIVE nor CKA_EXTRACTABLE'] = attempt(() => {
      quiet = api.C_UnwrapKey(s, wrapMech, plain, record, attackerUnwrapTemplate('unnamed'));
    });
    if (quiet !== undefined) {
      const key = quiet;
      facts['its CKA_VALUE reads'] = attempt(() => {
        if (!api.C_GetAttributeValue(s, key, [{ type: pk.CKA_VALUE }])[0].value.equals(known)) throw new Error('not the key');
      });
    }
    const template = [{ type: pk.CKA_SENSITIVE, value: true }];
    facts['CKA_UNWRAP_TEMPLATE through pkcs11js'] = attempt(() =>
      api.C_SetAttributeValue(s, plain, [{ type: pk.CKA_UNWRAP_TEMPLATE, value: template as unknown as Buffer }]),
    );
  } finally {
    api.C_CloseSession(s);
  }
  return facts;
}

const SOFTHSM2: Record<string, string> = {
  'read CKA_VALUE of a sensitive key': 'CKR_ATTRIBUTE_SENSITIVE',
  'CKA_SENSITIVE true -> false': 'CKR_ATTRIBUTE_READ_ONLY',
  'wrap an extractable key under a user AES key': 'ok',
  'wrap an extractable key under a user RSA key': 'ok',
  'wrap a key generated non-extractable under a user AES key': 'CKR_KEY_UNEXTRACTABLE',
  'wrap a key generated non-extractable under a user RSA key': 'CKR_KEY_UNEXTRACTABLE',
  'CKA_DECRYPT false -> true on a wrapping key': 'ok',
  'generate with CKA_WRAP_WITH_TRUSTED': 'ok',
  'CKA_WRAP_WITH_TRUSTED reads back': 'true',
  'wrap a WRAP_WITH_TRUSTED key under a user AES key': 'CKR_KEY_NOT_WRAPPABLE',
  'wrap a WRAP_WITH_TRUSTED key under a user RSA key': 'CKR_KEY_NOT_WRAPPABLE',
  'CKA_WRAP_WITH_TRUSTED true -> false': 'CKR_ATTRIBUTE_READ_ONLY',
  'user session creates a CKA_TRUSTED public key': 'CKR_ATTRIBUTE_READ_ONLY',
  'user session sets CKA_TRUSTED on a public key': 'CKR_ATTRIBUTE_READ_ONLY',
  'SO login while the user is logged in': 'CKR_USER_ANOTHER_ALREADY_LOGGED_IN',
  'SO login': 'ok',
  'SO session creates a CKA_TRUSTED session public key': 'ok',
  'user login while the SO is logged in': 'CKR_USER_ANOTHER_ALREADY_LOGGED_IN',
  "a private token key's handle after logout and login": 'CKR_OBJECT_HANDLE_INVALID',
  'a private session key after logout and login': 'CKR_OBJECT_HANDLE_INVALID',
  'trusted key still there after SO logout': 'true',
  'wrap a WRAP_WITH_TRUSTED key under the trusted key': 'ok',
  'lock: CKA_EXTRACTABLE true -> false': 'ok',
  'after the lock, CKA_EXTRACTABLE reads': 'false',
  'after the lock, CKA_NEVER_EXTRACTABLE reads': 'false',
  'after the lock, CKA_ALWAYS_SENSITIVE reads': 'true',
  'after the lock, wrap under a user AES key': 'CKR_KEY_UNEXTRACTABLE',
  'after the lock, wrap under a user RSA key': 'CKR_KEY_UNEXTRACTABLE',
  'unlock: CKA_EXTRACTABLE false -> true': 'CKR_ATTRIBUTE_READ_ONLY',
  'C_CopyObject of a locked key with CKA_EXTRACTABLE true': 'CKR_ATTRIBUTE_READ_ONLY',
  'C_CopyObject of a locked key with CKA_SENSITIVE false': 'CKR_ATTRIBUTE_READ_ONLY',
  'KEK unwraps a record as non-sensitive and extractable': 'ok',
  "its CKA_VALUE is the record's key": 'true',
  'KEK unwraps a record naming neither CKA_SENSITIVE nor CKA_EXTRACTABLE': 'ok',
  'its CKA_VALUE reads': 'CKR_ATTRIBUTE_SENSITIVE',
  'CKA_UNWRAP_TEMPLATE through pkcs11js': 'refused by pkcs11js: an attribute value is a number, boolean, string or Buffer, never a template',
};
const NSS: Record<string, string> = {
  'read CKA_VALUE of a sensitive key': 'CKR_ATTRIBUTE_SENSITIVE',
  'CKA_SENSITIVE true -> false': 'CKR_ATTRIBUTE_READ_ONLY',
  'wrap an extractable key under a user AES key': 'ok',
  'wrap an extractable key under a user RSA key': 'ok',
  'wrap a key generated non-extractable under a user AES key': 'ok',
  'wrap a key generated non-extractable under a user RSA key': 'ok',
  'CKA_DECRYPT false -> true on a wrapping key': 'ok',
  'generate with CKA_WRAP_WITH_TRUSTED': 'ok',
  'CKA_WRAP_WITH_TRUSTED reads back': 'true',
  'wrap a WRAP_WITH_TRUSTED key under a user AES key': 'ok',
  'wrap a WRAP_WITH_TRUSTED key under a user RSA key': 'ok',
  'CKA_WRAP_WITH_TRUSTED true -> false': 'ok',
  'user session creates a CKA_TRUSTED public key': 'ok',
  'user session sets CKA_TRUSTED on a public key': 'CKR_ATTRIBUTE_TYPE_INVALID',
  'SO login while the user is logged in': 'CKR_USER_ALREADY_LOGGED_IN',
  'SO login (user PIN)': 'CKR_USER_TYPE_INVALID',
  'SO login (empty PIN)': 'CKR_USER_TYPE_INVALID',
  "a private token key's handle after logout and login": 'valid',
  'a private session key after logout and login': 'valid',
  'lock: CKA_EXTRACTABLE true -> false': 'ok',
  'after the lock, CKA_EXTRACTABLE reads': 'false',
  'after the lock, CKA_NEVER_EXTRACTABLE reads': 'false',
  'after the lock, CKA_ALWAYS_SENSITIVE reads': 'true',
  'after the lock, wrap under a user AES key': 'ok',
  'after the lock, wrap under a user RSA key': 'ok',
  'unlock: CKA_EXTRACTABLE false -> true': 'CKR_ATTRIBUTE_READ_ONLY',
  'C_CopyObject of a locked key with CKA_EXTRACTABLE true': 'ok',
  'C_CopyObject of a locked key with CKA_SENSITIVE false': 'CKR_ATTRIBUTE_READ_ONLY',
  'KEK unwraps a record as non-sensitive and extractable': 'ok',
  "its CKA_VALUE is the record's key": 'true',
  'KEK unwraps a record naming neither CKA_SENSITIVE nor CKA_EXTRACTABLE': 'ok',
  'its CKA_VALUE reads': 'ok',
  'CKA_UNWRAP_TEMPLATE through pkcs11js': 'refused by pkcs11js: an attribute value is a number, boolean, string or Buffer, never a template',
};
const OPENCRYPTOKI: Record<string, string> = {
  'read CKA_VALUE of a sensitive key': 'CKR_ATTRIBUTE_SENSITIVE',
  'CKA_SENSITIVE true -> false': 'CKR_ATTRIBUTE_READ_ONLY',
  'wrap an extractable key under a user AES key': 'ok',
  'wrap an extractable key under a user RSA key': 'ok',
  'wrap a key generated non-extractable under a user AES key': 'CKR_KEY_UNEXTRACTABLE',
  'wrap a key generated non-extractable under a user RSA key': 'CKR_KEY_UNEXTRACTABLE',
  'CKA_DECRYPT false -> true on a wrapping key': 'ok',
  // no CKA_WRAP_WITH_TRUSTED, and nobody (user or SO) may make a CKA_TRUSTED key
  'generate with CKA_WRAP_WITH_TRUSTED': 'CKR_ATTRIBUTE_TYPE_INVALID',
  'user session creates a CKA_TRUSTED public key': 'CKR_TEMPLATE_INCONSISTENT',
  'user session sets CKA_TRUSTED on a public key': 'CKR_TEMPLATE_INCONSISTENT',
  'SO login while the user is logged in': 'CKR_USER_ANOTHER_ALREADY_LOGGED_IN',
  'SO login': 'ok',
  'SO session creates a CKA_TRUSTED session public key': 'CKR_TEMPLATE_INCONSISTENT',
  'user login while the SO is logged in': 'CKR_USER_ANOTHER_ALREADY_LOGGED_IN',
  "a private token key's handle after logout and login": 'CKR_OBJECT_HANDLE_INVALID',
  'a private session key after logout and login': 'CKR_OBJECT_HANDLE_INVALID',
  'lock: CKA_EXTRACTABLE true -> false': 'ok',
  'after the lock, CKA_EXTRACTABLE reads': 'false',
  'after the lock, CKA_NEVER_EXTRACTABLE reads': 'false',
  'after the lock, CKA_ALWAYS_SENSITIVE reads': 'true',
  'after the lock, wrap under a user AES key': 'CKR_KEY_UNEXTRACTABLE',
  'after the lock, wrap under a user RSA key': 'CKR_KEY_UNEXTRACTABLE',
  'unlock: CKA_EXTRACTABLE false -> true': 'CKR_ATTRIBUTE_READ_ONLY',
  'C_CopyObject of a locked key with CKA_EXTRACTABLE true': 'CKR_ATTRIBUTE_READ_ONLY',
  'C_CopyObject of a locked key with CKA_SENSITIVE false': 'CKR_ATTRIBUTE_READ_ONLY',
  // C_UnwrapKey refuses CKA_EXTRACTABLE=true in the template, but a key unwrapped without it is readable
  'KEK unwraps a record as non-sensitive and extractable': 'CKR_ATTRIBUTE_READ_ONLY',
  'KEK unwraps a record naming neither CKA_SENSITIVE nor CKA_EXTRACTABLE': 'ok',
  'its CKA_VALUE reads': 'ok',
  'CKA_UNWRAP_TEMPLATE through pkcs11js': 'refused by pkcs11js: an attribute value is a number, boolean, string or Buffer, never a template',
};
const expected: Record<string, Record<string, string>> = { softhsm2: SOFTHSM2, 'nss-softokn': NSS, 'opencryptoki-swtok': OPENCRYPTOKI };

describe.each(implementations)('what $name enforces', ({ name, make }) => {
  let lab: TokenLab;
  beforeAll(() => {
    lab = new TokenLab();
  });
  afterAll(() => lab.cleanup());

  test('the enforcement table', async () => {
    const facts = probe(await make(lab));
    expect(facts).toEqual(expected[name]);
  });
});

/**
 * pkcs11js passes an attribute's value as a number, boolean, string or Buffer, so it cannot set
 * CKA_UNWRAP_TEMPLATE (an array of CK_ATTRIBUTE with pointers). test/support/unwrap-template-probe.c
 * asks the same library in C whether C_UnwrapKey would enforce one (with CKA_MODIFIABLE false too);
 * the service sets it through koffi, and test/integration/domain-unwrap-template.test.ts measures
 * the template it uses, on the instance pkcs11js loaded, with the re-wrap rotate-domain needs.
 */
describe('CKA_UNWRAP_TEMPLATE, set from C', () => {
  const ROOT = join(__dirname, '..', '..', '..');
  let lab: TokenLab;
  let probeBinary: string;
  beforeAll(() => {
    lab = new TokenLab();
    probeBinary = join(lab.dir, 'unwrap-template-probe');
    execFileSync('cc', [
      '-O1',
      '-I',
      join(ROOT, 'node_modules', 'pkcs11js', 'includes'),
      '-o',
      probeBinary,
      join(ROOT, 'test', 'support', 'unwrap-template-probe.c'),
      '-ldl',
    ]);
  });
  afterAll(() => lab.cleanup());

  const run = (args: string[], pinFile: string, env: NodeJS.ProcessEnv = process.env): Record<string, string> => {
    const text = execFileSync(probeBinary, args, { input: readFileSync(pinFile), env, encoding: 'utf8' });
    return Object.fromEntries(
      text
        .trim()
        .split('\n')
        .map((l) => l.trim().split(': ') as [string, string]),
    );
  };

  test('softhsm2 enforces it (and keeps it: read-only, not dropped by C_CopyObject)', () => {
    const [m] = lab.softhsm('tpl', ['t1']);
    const facts = run([join(lab.dir, 'tpl', 'libsofthsm2.so'), 't1', String(m.profile.rfc5649Mechanism)], join(lab.dir, 'tpl', 'pins', 't1.pin'), {
      ...process.env,
      SOFTHSM2_CONF: join(lab.dir, 'tpl', 'softhsm2.conf'),
    });
    expect(facts).toEqual({
      'generate a KEK with CKA_UNWRAP_TEMPLATE': 'ok',
      'unwrap as non-sensitive, extractable': 'CKR_TEMPLATE_INCONSISTENT',
      'unwrap naming neither attribute': 'CKR_TEMPLATE_INCONSISTENT',
      'unwrap as the template says': 'ok',
      'clear CKA_UNWRAP_TEMPLATE with C_SetAttributeValue': 'CKR_ATTRIBUTE_READ_ONLY',
      'copy the KEK without the template': 'CKR_ATTRIBUTE_READ_ONLY',
      'after that, unwrap as non-sensitive, extractable': 'CKR_TEMPLATE_INCONSISTENT',
      'generate a KEK with CKA_UNWRAP_TEMPLATE (CKA_MODIFIABLE false)': 'ok',
      'unwrap as non-sensitive, extractable (CKA_MODIFIABLE false)': 'CKR_TEMPLATE_INCONSISTENT',
      'unwrap naming neither attribute (CKA_MODIFIABLE false)': 'CKR_TEMPLATE_INCONSISTENT',
      'unwrap as the template says (CKA_MODIFIABLE false)': 'ok',
      'clear CKA_UNWRAP_TEMPLATE with C_SetAttributeValue (CKA_MODIFIABLE false)': 'CKR_ACTION_PROHIBITED',
      'copy the KEK without the template (CKA_MODIFIABLE false)': 'CKR_ATTRIBUTE_READ_ONLY',
      'after that, unwrap as non-sensitive, extractable (CKA_MODIFIABLE false)': 'CKR_TEMPLATE_INCONSISTENT',
    });
  });

  test('nss-softokn accepts it and ignores it', () => {
    const m = lab.nss('tpl-nss');
    const params = m.profile.libraryParameters!.replace('{dir}', join(lab.dir, 'tpl-nss', 'db'));
    const facts = run([m.module.spec.path, m.tokenLabel, String(m.profile.rfc5649Mechanism), params], join(lab.dir, 'tpl-nss', 'pins', 'nss.pin'));
    expect(facts).toMatchObject({
      'generate a KEK with CKA_UNWRAP_TEMPLATE': 'ok',
      'unwrap as non-sensitive, extractable': 'ok',
      'unwrap naming neither attribute': 'ok',
      'and read its CKA_VALUE': 'ok',
      'clear CKA_UNWRAP_TEMPLATE with C_SetAttributeValue': 'ok',
      'copy the KEK without the template (CKA_MODIFIABLE false)': 'ok',
    });
  });
});

/**
 * openCryptoki 3.8.1 swtok: what the ceremony could lean on besides the lock (measured through
 * koffi, as on SoftHSM2): CKA_UNWRAP_TEMPLATE, the CKA_MODIFIABLE=false copy that lockUnmodifiable
 * makes, and whether the KEK can be turned into a decryption oracle (its records are CKM_AES_CBC_PAD).
 */
describe('openCryptoki swtok: CKA_UNWRAP_TEMPLATE, CKA_MODIFIABLE=false copies, the SO', () => {
  const lab = new TokenLab();
  afterAll(() => lab.cleanup());

  test('measured', async () => {
    const m = await lab.opencryptoki('ock-more');
    m.module.initialize();
    const api = m.module.api;
    const calls = templateCalls(m.module.spec.path);
    const s = api.C_OpenSession(m.module.findToken(m.tokenLabel).slot, pk.CKF_SERIAL_SESSION | pk.CKF_RW_SESSION);
    const cbc: pk.Mechanism = { mechanism: pk.CKM_AES_CBC_PAD, parameter: Buffer.alloc(16, 2) };
    const facts: Record<string, string> = {};
    const fact = (name: string, fn: () => unknown) => (facts[name] = attempt(fn));
    const kekOf = (extra: NestedTemplate): NestedTemplate => [
      ...aesTemplate([
        { type: pk.CKA_TOKEN, value: true },
        { type: pk.CKA_WRAP, value: true },
        { type: pk.CKA_UNWRAP, value: true },
        { type: pk.CKA_DECRYPT, value: false },
      ]),
      ...extra,
    ];
    const known = randomBytes(32);
    const secret = (): pk.Template => [
      { type: pk.CKA_CLASS, value: pk.CKO_SECRET_KEY },
      { type: pk.CKA_KEY_TYPE, value: pk.CKK_AES },
      { type: pk.CKA_TOKEN, value: false },
      { type: pk.CKA_VALUE, value: known },
    ];
    const readsKnown = (h: pk.Handle) => () => {
      if (!api.C_GetAttributeValue(s, h, [{ type: pk.CKA_VALUE }])[0].value.equals(known)) throw new Error('not the key');
    };
    try {
      api.C_Login(s, pk.CKU_USER, lab.ock!.pin);
      fact('generate a KEK with CKA_UNWRAP_TEMPLATE {sensitive, wrap-with-trusted} (koffi)', () =>
        calls.generateKey(s, { mechanism: pk.CKM_AES_KEY_GEN }, kekOf([{ type: pk.CKA_UNWRAP_TEMPLATE, value: KEK_UNWRAP_TEMPLATE }])),
      );
      let kek: pk.Handle = Buffer.alloc(0);
      fact(
        'generate a KEK with CKA_UNWRAP_TEMPLATE {sensitive} (koffi)',
        () =>
          (kek = calls.generateKey(
            s,
            { mechanism: pk.CKM_AES_KEY_GEN },
            kekOf([{ type: pk.CKA_UNWRAP_TEMPLATE, value: [{ type: pk.CKA_SENSITIVE, value: true }] }]),
          )),
      );
      if (facts['generate a KEK with CKA_UNWRAP_TEMPLATE {sensitive} (koffi)'] === 'ok') {
        facts['its CKA_UNWRAP_TEMPLATE reads back'] = JSON.stringify(calls.templateAttribute(s, kek, pk.CKA_UNWRAP_TEMPLATE)?.map((a) => [a.type, a.value[0]]));
        const victim = api.C_CreateObject(s, [...secret(), { type: pk.CKA_EXTRACTABLE, value: true }]);
        const record = Buffer.from(api.C_WrapKey(s, cbc, kek, victim, Buffer.alloc(256)));
        let k: pk.Handle = Buffer.alloc(0);
        fact(
          'the templated KEK unwraps naming CKA_SENSITIVE false',
          () => (k = api.C_UnwrapKey(s, cbc, kek, record, [...secret().slice(0, 3), { type: pk.CKA_SENSITIVE, value: false }])),
        );
        fact('the templated KEK unwraps naming no CKA_SENSITIVE', () => (k = api.C_UnwrapKey(s, cbc, kek, record, secret().slice(0, 3))));
        fact("that key's CKA_VALUE reads", readsKnown(k));
      }
      // lockUnmodifiable: a copy with CKA_MODIFIABLE=false, CKA_EXTRACTABLE=false
      const plain = api.C_GenerateKey(s, { mechanism: pk.CKM_AES_KEY_GEN }, kekOf([]) as pk.Template);
      let sealed: pk.Handle = Buffer.alloc(0);
      fact(
        'C_CopyObject with CKA_EXTRACTABLE false, CKA_MODIFIABLE false',
        () =>
          (sealed = api.C_CopyObject(s, plain, [
            { type: pk.CKA_EXTRACTABLE, value: false },
            { type: pk.CKA_MODIFIABLE, value: false },
          ])),
      );
      if (facts['C_CopyObject with CKA_EXTRACTABLE false, CKA_MODIFIABLE false'] === 'ok') {
        facts['the copy: CKA_MODIFIABLE reads'] = read(api, s, sealed, pk.CKA_MODIFIABLE);
        facts['the copy: CKA_EXTRACTABLE reads'] = read(api, s, sealed, pk.CKA_EXTRACTABLE);
        fact('the copy: CKA_DECRYPT false -> true', () => api.C_SetAttributeValue(s, sealed, [{ type: pk.CKA_DECRYPT, value: true }]));
        let decrypting: pk.Handle = Buffer.alloc(0);
        fact('the copy: C_CopyObject with CKA_DECRYPT true', () => (decrypting = api.C_CopyObject(s, sealed, [{ type: pk.CKA_DECRYPT, value: true }])));
        if (facts['the copy: C_CopyObject with CKA_DECRYPT true'] === 'ok') {
          const victim = api.C_CreateObject(s, [...secret(), { type: pk.CKA_EXTRACTABLE, value: true }]);
          const record = Buffer.from(api.C_WrapKey(s, cbc, plain, victim, Buffer.alloc(256)));
          fact('that copy decrypts a record of the original (CKM_AES_CBC_PAD) into the key', () => {
            api.C_DecryptInit(s, cbc, decrypting);
            if (!Buffer.from(api.C_Decrypt(s, record, Buffer.alloc(256))).equals(known)) throw new Error('not the key');
          });
        }
        let uncopyable: pk.Handle = Buffer.alloc(0);
        fact(
          'C_CopyObject with CKA_EXTRACTABLE false, CKA_MODIFIABLE false, CKA_COPYABLE false',
          () =>
            (uncopyable = api.C_CopyObject(s, plain, [
              { type: pk.CKA_EXTRACTABLE, value: false },
              { type: pk.CKA_MODIFIABLE, value: false },
              { type: 0x171, value: false },
            ])),
        );
        if (facts['C_CopyObject with CKA_EXTRACTABLE false, CKA_MODIFIABLE false, CKA_COPYABLE false'] === 'ok') {
          facts['that copy: CKA_COPYABLE reads'] = read(api, s, uncopyable, 0x171);
          fact('that copy: C_CopyObject with CKA_DECRYPT true', () => api.C_CopyObject(s, uncopyable, [{ type: pk.CKA_DECRYPT, value: true }]));
        }
        fact('generate with CKA_COPYABLE false', () =>
          api.C_GenerateKey(s, { mechanism: pk.CKM_AES_KEY_GEN }, [...(kekOf([]) as pk.Template), { type: 0x171, value: false }]),
        );
        fact('the copy: C_CopyObject with CKA_MODIFIABLE true', () => api.C_CopyObject(s, sealed, [{ type: pk.CKA_MODIFIABLE, value: true }]));
        fact('the copy: C_DestroyObject', () => api.C_DestroyObject(s, api.C_CopyObject(s, sealed, [])));
      }
      // the oracle: a KEK whose CKA_DECRYPT a user session turns on decrypts a CBC-PAD record as data
      const victim = api.C_CreateObject(s, [...secret(), { type: pk.CKA_EXTRACTABLE, value: true }]);
      const record = Buffer.from(api.C_WrapKey(s, cbc, plain, victim, Buffer.alloc(256)));
      api.C_SetAttributeValue(s, plain, [{ type: pk.CKA_DECRYPT, value: true }]);
      fact('a KEK with CKA_DECRYPT turned on decrypts a record (CKM_AES_CBC_PAD) into the key', () => {
        api.C_DecryptInit(s, cbc, plain);
        if (!Buffer.from(api.C_Decrypt(s, record, Buffer.alloc(256))).equals(known)) throw new Error('not the key');
      });
      api.C_Logout(s);
      api.C_Login(s, pk.CKU_SO, lab.ock!.soPin);
      fact('SO session creates a public session key (no CKA_TRUSTED)', () => api.C_CreateObject(s, rsaPublicKeyOf([{ type: pk.CKA_PRIVATE, value: false }])));
      fact('SO session generates a public AES session key with CKA_TRUSTED', () =>
        api.C_GenerateKey(s, { mechanism: pk.CKM_AES_KEY_GEN }, [
          ...aesTemplate([
            { type: pk.CKA_TOKEN, value: false },
            { type: pk.CKA_TRUSTED, value: true },
          ]).filter((a) => a.type !== pk.CKA_PRIVATE),
          { type: pk.CKA_PRIVATE, value: false },
        ]),
      );
      api.C_Logout(s);
    } finally {
      api.C_CloseSession(s);
    }
    expect(facts).toEqual({
      // no CKA_UNWRAP_TEMPLATE (nor CKA_WRAP_WITH_TRUSTED inside one): nothing forces what the KEK unwraps
      'generate a KEK with CKA_UNWRAP_TEMPLATE {sensitive, wrap-with-trusted} (koffi)': 'CKR_ATTRIBUTE_TYPE_INVALID',
      'generate a KEK with CKA_UNWRAP_TEMPLATE {sensitive} (koffi)': 'CKR_ATTRIBUTE_TYPE_INVALID',
      // lockUnmodifiable: the copy is made and its CKA_DECRYPT cannot be set, but a copy of it can have CKA_DECRYPT (no CKA_COPYABLE)
      'C_CopyObject with CKA_EXTRACTABLE false, CKA_MODIFIABLE false': 'ok',
      'the copy: CKA_MODIFIABLE reads': 'false',
      'the copy: CKA_EXTRACTABLE reads': 'false',
      'the copy: CKA_DECRYPT false -> true': 'CKR_ATTRIBUTE_READ_ONLY',
      'the copy: C_CopyObject with CKA_DECRYPT true': 'ok',
      'that copy decrypts a record of the original (CKM_AES_CBC_PAD) into the key': 'ok',
      'the copy: C_CopyObject with CKA_MODIFIABLE true': 'ok',
      'the copy: C_DestroyObject': 'ok',
      'C_CopyObject with CKA_EXTRACTABLE false, CKA_MODIFIABLE false, CKA_COPYABLE false': 'CKR_ATTRIBUTE_TYPE_INVALID',
      'generate with CKA_COPYABLE false': 'CKR_ATTRIBUTE_TYPE_INVALID',
      'a KEK with CKA_DECRYPT turned on decrypts a record (CKM_AES_CBC_PAD) into the key': 'ok',
      'SO session creates a public session key (no CKA_TRUSTED)': 'ok',
      'SO session generates a public AES session key with CKA_TRUSTED': 'CKR_TEMPLATE_INCONSISTENT',
    });
  });
});
