/**
 * The one base64 decoder of the wire edges: canonical base64 only (the standard alphabet, padding
 * to a multiple of 4, zero padding bits), so one string means one byte string.
 */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The bytes of canonical base64 text, or undefined for anything else. */
export function decodeCanonicalBase64(s: string): Buffer | undefined {
  if (!BASE64.test(s)) return undefined;
  const bytes = Buffer.from(s, 'base64');
  return bytes.toString('base64') === s ? bytes : undefined;
}
