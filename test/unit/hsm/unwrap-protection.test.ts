import * as pk from 'pkcs11js';
import { join } from 'node:path';
import { UnsupportedError } from '../../../src/hsm/errors';
import type { Pkcs11Calls } from '../../../src/hsm/pkcs11-call';
import { HsmProfile, loadProfiles } from '../../../src/hsm/profile';
import { unwrapProtected } from '../../../src/hsm/unwrap';

const profiles = loadProfiles(join(__dirname, '..', '..', '..', '..', 'hsm-profiles'));
const KEY = Buffer.from([7, 0, 0, 0, 0, 0, 0, 0]);

/** A key object whose protection attributes the stub token reports and may refuse to change. */
function stub(initial: { sensitive: boolean; extractable: boolean }, settable: boolean) {
  const attrs = { ...initial };
  const log: string[] = [];
  let sentTemplate: pk.Template = [];
  const api = {
    C_GetAttributeValue: () => [
      { type: pk.CKA_SENSITIVE, value: Buffer.from([attrs.sensitive ? 1 : 0]) },
      { type: pk.CKA_EXTRACTABLE, value: Buffer.from([attrs.extractable ? 1 : 0]) },
    ],
    C_SetAttributeValue: (_s: pk.Handle, _k: pk.Handle, t: pk.Template) => {
      log.push(`set ${t[0].type === pk.CKA_SENSITIVE ? 'sensitive' : 'extractable'}=${String(t[0].value)}`);
      if (!settable) throw new Error('CKR_ATTRIBUTE_READ_ONLY');
      if (t[0].type === pk.CKA_SENSITIVE) attrs.sensitive = t[0].value === true;
      else attrs.extractable = t[0].value === true;
    },
    C_DestroyObject: () => log.push('destroy'),
  } as unknown as pk.PKCS11;
  const calls = {
    unwrapKey: (_s: pk.Handle, _m: pk.Mechanism, _u: pk.Handle, _w: Buffer, t: pk.Template) => ((sentTemplate = t), KEY),
  } as unknown as Pkcs11Calls;
  return { api, calls, log, attrs, sent: () => sentTemplate };
}

const template = (extractable: boolean): pk.Template => [
  { type: pk.CKA_TOKEN, value: false },
  { type: pk.CKA_SENSITIVE, value: true },
  { type: pk.CKA_EXTRACTABLE, value: extractable },
];
const run = (t: ReturnType<typeof stub>, profile: HsmProfile, extractable = false) =>
  unwrapProtected(t.api, profile, 'tok', t.calls, Buffer.alloc(8), { mechanism: pk.CKM_AES_CBC_PAD }, Buffer.alloc(8), Buffer.alloc(48), template(extractable));

describe('unwrapProtected: every unwrapped key is sensitive and, unless asked for, not extractable', () => {
  const softhsm = profiles.get('softhsm2')!;
  const ock = profiles.get('opencryptoki-swtok')!;

  test('a token that honours the template: the key as is, nothing changed, the template sent whole', async () => {
    const t = stub({ sensitive: true, extractable: false }, true);
    expect(await run(t, softhsm)).toBe(KEY);
    expect(t.log).toEqual([]);
    expect(t.sent()).toEqual(template(false));
  });

  test('a token that ignores it (openCryptoki 3.8): both attributes are set afterwards; CKA_EXTRACTABLE is not sent', async () => {
    const t = stub({ sensitive: false, extractable: true }, true);
    expect(await run(t, ock)).toBe(KEY);
    expect(t.log).toEqual(['set sensitive=true', 'set extractable=false']);
    expect(t.attrs).toEqual({ sensitive: true, extractable: false });
    expect(t.sent().some((a) => a.type === pk.CKA_EXTRACTABLE)).toBe(false);
  });

  test('a key that cannot be made sensitive is destroyed and the unwrap refused', async () => {
    const t = stub({ sensitive: false, extractable: true }, false);
    await expect(run(t, ock)).rejects.toBeInstanceOf(UnsupportedError);
    await expect(run(stub({ sensitive: false, extractable: true }, false), ock)).rejects.toThrow(/not sensitive or are extractable/);
    expect(t.log[t.log.length - 1]).toBe('destroy');
  });

  test('a key asked to be extractable (domain keys, to be copied on) may come out non-extractable; it must still be sensitive', async () => {
    expect(await run(stub({ sensitive: true, extractable: false }, true), softhsm, true)).toBe(KEY);
    const t = stub({ sensitive: false, extractable: true }, true);
    expect(await run(t, ock, true)).toBe(KEY);
    expect(t.log).toEqual(['set sensitive=true']);
  });
});
