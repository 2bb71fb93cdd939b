import * as pk from 'pkcs11js';
import { UnsupportedError } from './errors';
import type { Pkcs11Calls } from './pkcs11-call';
import type { HsmProfile } from './profile';

type Handle = pk.Handle;

/**
 * C_UnwrapKey, then a check that the key came out sensitive (and not extractable unless the template
 * asks for it): openCryptoki 3.8 ignores both attributes in the template, leaving unwrapped keys
 * readable. Fixed with C_SetAttributeValue where the token lets us; otherwise the key is destroyed and
 * the unwrap refused. With `unwrapIgnoresProtection`, CKA_EXTRACTABLE (refused there) is left out.
 */
export async function unwrapProtected(
  api: pk.PKCS11,
  profile: HsmProfile,
  token: string,
  calls: Pick<Pkcs11Calls, 'unwrapKey'>,
  s: Handle,
  mechanism: pk.Mechanism,
  unwrapping: Handle,
  data: Buffer,
  template: pk.Template,
): Promise<Handle> {
  const extractable = template.some((a) => a.type === pk.CKA_EXTRACTABLE && a.value === true);
  const sent = profile.unwrapIgnoresProtection ? template.filter((a) => a.type !== pk.CKA_EXTRACTABLE) : template;
  const key = await calls.unwrapKey(s, mechanism, unwrapping, data, sent);
  const read = () => api.C_GetAttributeValue(s, key, [{ type: pk.CKA_SENSITIVE }, { type: pk.CKA_EXTRACTABLE }]).map((a) => a.value[0] === 1);
  const enough = ([sensitive, isExtractable]: boolean[]) => sensitive && (extractable || !isExtractable);
  let now = read();
  if (enough(now)) return key;
  try {
    if (!now[0]) api.C_SetAttributeValue(s, key, [{ type: pk.CKA_SENSITIVE, value: true }]);
    if (now[1] && !extractable) api.C_SetAttributeValue(s, key, [{ type: pk.CKA_EXTRACTABLE, value: false }]);
    now = read();
  } catch {
    // judged below
  }
  if (enough(now)) return key;
  api.C_DestroyObject(s, key);
  throw new UnsupportedError(
    `${profile.name} token "${token}" unwraps keys that are not sensitive${extractable ? '' : ' or are extractable'}, and they cannot be made so: refused`,
  );
}
