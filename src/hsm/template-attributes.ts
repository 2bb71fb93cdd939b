import koffi from 'koffi';
import * as pk from 'pkcs11js';

/**
 * The calls pkcs11js cannot make: it passes an attribute's value as a number, boolean, string or
 * Buffer, never as a CK_ATTRIBUTE array, so it cannot set CKA_UNWRAP_TEMPLATE. This module, the
 * only one that speaks koffi, calls the same library (koffi.load of the same path returns the
 * instance pkcs11js loaded, so sessions and handles are shared) through its function list, with
 * templates encoded here, nested templates included. Calls are synchronous and keep every buffer
 * they encode referenced until they return. A failure is a pkcs11js Pkcs11Error named by its CKR_
 * code, so the layer classifies it as it does any other.
 */

/** An attribute whose value may itself be a template (CKA_UNWRAP_TEMPLATE, CKA_WRAP_TEMPLATE). */
export interface NestedAttribute {
  type: number;
  value?: pk.Attribute['value'] | NestedAttribute[];
}
export type NestedTemplate = NestedAttribute[];

const ULONG = koffi.sizeof('unsigned long');
const POINTER = koffi.sizeof('void *');
/** CK_ATTRIBUTE and CK_MECHANISM are { CK_ULONG; void *; CK_ULONG }: three words on every platform koffi runs on. */
const TRIPLE = ULONG + POINTER + ULONG;

/** Indexes in CK_FUNCTION_LIST (pkcs11f.h order, after the CK_VERSION). */
const C_GET_ATTRIBUTE_VALUE = 24;
const C_GENERATE_KEY = 58;
const C_UNWRAP_KEY = 61;

/** Anonymous types: koffi's type names are process-wide, and this module may be evaluated more than once in one process (jest). */
const FunctionList = koffi.struct({ version: 'uint16_t', functions: koffi.array('void *', 68) });
const GenerateKey = koffi.proto('unsigned long', ['unsigned long', 'void *', 'void *', 'unsigned long', 'void *']);
const UnwrapKey = koffi.proto('unsigned long', ['unsigned long', 'void *', 'unsigned long', 'void *', 'unsigned long', 'void *', 'unsigned long', 'void *']);
const GetAttributeValue = koffi.proto('unsigned long', ['unsigned long', 'unsigned long', 'void *', 'unsigned long']);

type Fn = (...args: unknown[]) => number | bigint;

const CKR_NAMES = new Map<number, string>(
  Object.entries(pk)
    .filter(([k, v]) => k.startsWith('CKR_') && typeof v === 'number')
    .map(([k, v]) => [v as number, k]),
);

function writeUlong(b: Buffer, offset: number, v: number | bigint): void {
  if (ULONG === 8) b.writeBigUInt64LE(BigInt(v), offset);
  else b.writeUInt32LE(Number(v), offset);
}

function writePointer(b: Buffer, offset: number, address: bigint): void {
  if (POINTER === 8) b.writeBigUInt64LE(address, offset);
  else b.writeUInt32LE(Number(address), offset);
}

function readUlong(b: Buffer, offset = 0): bigint {
  return ULONG === 8 ? b.readBigUInt64LE(offset) : BigInt(b.readUInt32LE(offset));
}

function ulongBuffer(v: number | bigint): Buffer {
  const b = Buffer.alloc(ULONG);
  writeUlong(b, 0, v);
  return b;
}

/** A pkcs11js handle (a little-endian CK_ULONG in a Buffer) as a number for the call. */
function handleValue(h: pk.Handle): bigint {
  return h.length >= 8 ? h.readBigUInt64LE(0) : BigInt(h.readUInt32LE(0));
}

function handleOf(value: bigint): pk.Handle {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(value);
  return b;
}

/** CK_UNAVAILABLE_INFORMATION: ~0 as a CK_ULONG. */
const UNAVAILABLE = (1n << BigInt(ULONG * 8)) - 1n;

const address = (b: Buffer): bigint => (b.length === 0 ? 0n : koffi.address(b));

/** `{type, pValue, len}` triples in one buffer; every value buffer pushed on `keep`. */
function triples(entries: readonly { type: number; value: Buffer; length?: number }[], keep: Buffer[]): Buffer {
  const out = Buffer.alloc(Math.max(1, entries.length) * TRIPLE);
  entries.forEach((e, i) => {
    keep.push(e.value);
    writeUlong(out, i * TRIPLE, e.type);
    writePointer(out, i * TRIPLE + ULONG, address(e.value));
    writeUlong(out, i * TRIPLE + ULONG + POINTER, e.length ?? e.value.length);
  });
  keep.push(out);
  return out;
}

function valueBytes(v: NestedAttribute['value'], keep: Buffer[]): { value: Buffer; length?: number } {
  if (Array.isArray(v)) return { value: encodeTemplate(v, keep), length: v.length * TRIPLE };
  if (typeof v === 'boolean') return { value: Buffer.from([v ? 1 : 0]) };
  if (typeof v === 'number') return { value: ulongBuffer(v) };
  if (typeof v === 'string') return { value: Buffer.from(v, 'utf8') };
  if (v === undefined) return { value: Buffer.alloc(0) };
  if (v instanceof Date) throw new TypeError('template-attributes: CK_DATE values are not encoded');
  return { value: v };
}

/** A CK_ATTRIBUTE array; nested templates become CK_ATTRIBUTE arrays of their own. */
export function encodeTemplate(template: NestedTemplate, keep: Buffer[]): Buffer {
  return triples(
    template.map((a) => ({ type: a.type, ...valueBytes(a.value, keep) })),
    keep,
  );
}

/** CK_MECHANISM; a parameter is raw bytes (an IV) or CK_RSA_PKCS_OAEP_PARAMS. */
function encodeMechanism(m: pk.Mechanism, keep: Buffer[]): Buffer {
  const p = m.parameter;
  let parameter: Buffer = Buffer.alloc(0);
  if (Buffer.isBuffer(p)) parameter = p;
  else if (p && (p as pk.RsaOAEP).type === pk.CK_PARAMS_RSA_OAEP) {
    const o = p as pk.RsaOAEP;
    parameter = Buffer.alloc(ULONG * 4 + POINTER);
    writeUlong(parameter, 0, o.hashAlg);
    writeUlong(parameter, ULONG, o.mgf);
    writeUlong(parameter, ULONG * 2, o.source);
    const source = o.sourceData ?? Buffer.alloc(0);
    keep.push(source);
    writePointer(parameter, ULONG * 3, address(source));
    writeUlong(parameter, ULONG * 3 + POINTER, source.length);
  } else if (p !== undefined) {
    throw new TypeError('template-attributes: only raw and RSA-OAEP mechanism parameters are encoded');
  }
  return triples([{ type: m.mechanism, value: parameter }], keep);
}

/** A nested template read back from C_GetAttributeValue (values as raw bytes). */
export interface ReadAttribute {
  type: number;
  value: Buffer;
}

/** The functions of one loaded PKCS#11 library that take nested templates. */
export class TemplateCalls {
  private readonly fns: { generateKey: Fn; unwrapKey: Fn; getAttributeValue: Fn };

  constructor(libraryPath: string) {
    const lib = koffi.load(libraryPath);
    const out: unknown[] = [null];
    const rv = (lib.func('C_GetFunctionList', 'unsigned long', [koffi.out(koffi.pointer(koffi.pointer(FunctionList)))]) as Fn)(out);
    check(rv, 'C_GetFunctionList');
    const list = koffi.decode(out[0], FunctionList) as { functions: unknown[] };
    this.fns = {
      generateKey: koffi.decode(list.functions[C_GENERATE_KEY], GenerateKey) as Fn,
      unwrapKey: koffi.decode(list.functions[C_UNWRAP_KEY], UnwrapKey) as Fn,
      getAttributeValue: koffi.decode(list.functions[C_GET_ATTRIBUTE_VALUE], GetAttributeValue) as Fn,
    };
  }

  generateKey(session: pk.Handle, mechanism: pk.Mechanism, template: NestedTemplate): pk.Handle {
    const keep: Buffer[] = [];
    const key = Buffer.alloc(ULONG);
    const rv = this.fns.generateKey(handleValue(session), encodeMechanism(mechanism, keep), encodeTemplate(template, keep), template.length, key);
    check(rv, 'C_GenerateKey');
    keep.length = 0;
    return handleOf(readUlong(key));
  }

  unwrapKey(session: pk.Handle, mechanism: pk.Mechanism, unwrapping: pk.Handle, wrapped: Buffer, template: NestedTemplate): pk.Handle {
    const keep: Buffer[] = [wrapped];
    const key = Buffer.alloc(ULONG);
    const rv = this.fns.unwrapKey(
      handleValue(session),
      encodeMechanism(mechanism, keep),
      handleValue(unwrapping),
      wrapped,
      wrapped.length,
      encodeTemplate(template, keep),
      template.length,
      key,
    );
    check(rv, 'C_UnwrapKey');
    keep.length = 0;
    return handleOf(readUlong(key));
  }

  /**
   * A template-valued attribute of `object` (CKA_UNWRAP_TEMPLATE): undefined when the object has
   * none (the token says CKR_ATTRIBUTE_TYPE_INVALID, or its length is 0).
   */
  templateAttribute(session: pk.Handle, object: pk.Handle, type: number): ReadAttribute[] | undefined {
    const s = handleValue(session);
    const o = handleValue(object);
    const query = Buffer.alloc(TRIPLE);
    writeUlong(query, 0, type);
    const sized = Number(this.fns.getAttributeValue(s, o, query, 1));
    if (sized === pk.CKR_ATTRIBUTE_TYPE_INVALID) return undefined;
    check(sized, 'C_GetAttributeValue');
    const raw = readUlong(query, ULONG + POINTER);
    if (raw === 0n || raw === UNAVAILABLE) return undefined;
    const length = Number(raw);
    const count = length / TRIPLE;
    // second pass: the array's entries, then each entry's value
    const entries = Buffer.alloc(length);
    const keep: Buffer[] = [entries];
    writePointer(query, ULONG, address(entries));
    check(this.fns.getAttributeValue(s, o, query, 1), 'C_GetAttributeValue');
    const values: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      const v = Buffer.alloc(Number(readUlong(entries, i * TRIPLE + ULONG + POINTER)));
      values.push(v);
      keep.push(v);
      writePointer(entries, i * TRIPLE + ULONG, address(v));
    }
    check(this.fns.getAttributeValue(s, o, query, 1), 'C_GetAttributeValue');
    keep.length = 0;
    return values.map((value, i) => ({ type: Number(readUlong(entries, i * TRIPLE)), value }));
  }
}

function check(rv: number | bigint, method: string): void {
  const code = Number(rv);
  if (code === pk.CKR_OK) return;
  const name = CKR_NAMES.get(code) ?? `CKR_0x${code.toString(16)}`;
  throw new pk.Pkcs11Error(`${name}:${code}`, code, method);
}

const loaded = new Map<string, TemplateCalls>();

/** The template calls of the library at `path` (loaded once per process, like the library itself). */
export function templateCalls(path: string): TemplateCalls {
  let calls = loaded.get(path);
  if (!calls) {
    calls = new TemplateCalls(path);
    loaded.set(path, calls);
  }
  return calls;
}
