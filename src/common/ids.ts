/**
 * The one UUID rule: lowercase hex in the 8-4-4-4-12 form, as `crypto.randomUUID()` writes every id
 * this service makes (key ids, audit event ids). An id in any other form was not made here.
 */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isUuid(v: string): boolean {
  return UUID.test(v);
}
