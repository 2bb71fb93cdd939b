/** The Tencent response envelope: HTTP 200 always, `{"Response": {...fields, "RequestId"}}` or `{"Response": {"Error": {...}, "RequestId"}}`. */

/**
 * Buffers become base64 (binary API fields are base64 strings on the wire). A replacer sees a value
 * after its toJSON(); the holder (`this`) still has the Buffer itself. Undefined fields are left out.
 */
function wire(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  return Buffer.isBuffer(raw) ? raw.toString('base64') : value;
}

export function successBody(result: object, requestId: string): string {
  return JSON.stringify({ Response: { ...result, RequestId: requestId } }, wire);
}

export function errorBody(code: string, message: string, requestId: string): string {
  return JSON.stringify({ Response: { Error: { Code: code, Message: message }, RequestId: requestId } });
}
