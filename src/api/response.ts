/** The Tencent response envelope: HTTP 200 always, `{"Response": {...fields, "RequestId"}}` or `{"Response": {"Error": {...}, "RequestId"}}`. */

/** Buffers become base64 (binary API fields are base64 strings on the wire). */
function wire(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return value.toString('base64');
  if (Array.isArray(value)) return value.map(wire);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).map(([k, v]) => [k, wire(v)]));
  }
  return value;
}

export function successBody(result: object, requestId: string): string {
  return JSON.stringify({ Response: { ...(wire(result) as object), RequestId: requestId } });
}

export function errorBody(code: string, message: string, requestId: string): string {
  return JSON.stringify({ Response: { Error: { Code: code, Message: message }, RequestId: requestId } });
}
