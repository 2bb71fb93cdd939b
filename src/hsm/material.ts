import { createHash } from 'node:crypto';
import { KEY_SPEC_CODES, KeySpec, keySpecOfCode } from '../common/key-specs';
import { InvalidInputError, MaterialIntegrityError } from './errors';
import type { WrapAlgorithm } from './profile';

/**
 * What a piece of wrapped material is for; bound into its MAC so records cannot be swapped between
 * keys or handed to another owner. `owner` and `scope` are opaque to this layer (the KMS core puts the
 * tenant and the region there); absent means the empty string.
 */
export interface MaterialBinding {
  clusterId: string;
  keyId: string;
  keyVersion: number;
  usage: string;
  owner?: string;
  scope?: string;
}

/**
 * Record formats: 1 (`KMR1`, before owner and scope were bound; accepted only to be re-MACed),
 * 2 (`KMR2`, always RFC 5649) and 3 (`KMR3`, names its wrap algorithm, inside the MAC).
 */
export type MaterialFormat = 1 | 2 | 3;

/**
 * Key material wrapped under a cluster's domain KEK (RFC 5649), plus its public half if any,
 * MACed with the cluster's domain MAC key over everything else. Opaque to callers: they persist
 * `toBuffer()` and hand back `WrappedMaterial.fromBuffer()`.
 */
export class WrappedMaterial {
  /** Digest of every byte of this record: the handle-cache key, so an altered record never hits a cached handle. */
  readonly cacheKey: string;

  constructor(
    readonly spec: KeySpec,
    readonly binding: MaterialBinding,
    readonly domainId: Buffer,
    readonly wrapped: Buffer,
    readonly publicKey: Buffer,
    readonly mac: Buffer,
    /** 1: a KMR1 record, which no operation accepts until it is re-MACed under a full binding (HsmCluster.rebindLegacy). */
    readonly format: MaterialFormat = 2,
    /** How `wrapped` was made; KMR1 and KMR2 records are RFC 5649. */
    readonly wrapAlgorithm: WrapAlgorithm = 'rfc5649',
  ) {
    if (format !== 3 && wrapAlgorithm !== 'rfc5649') throw new InvalidInputError(`a KMR${format} record cannot name a wrap algorithm`);
    this.cacheKey = createHash('sha256').update(this.toBuffer()).digest('base64');
  }

  /** The bytes the MAC covers. */
  static macInput(
    spec: KeySpec,
    binding: MaterialBinding,
    domainId: Buffer,
    wrapped: Buffer,
    publicKey: Buffer,
    format: MaterialFormat = 2,
    wrapAlgorithm: WrapAlgorithm = 'rfc5649',
  ): Buffer {
    return encodeBody(format, spec, binding, domainId, wrapped, publicKey, wrapAlgorithm);
  }

  /** The format a new record wrapped with `algorithm` is written in: KMR2 while RFC 5649 (readable by older builds). */
  static formatFor(algorithm: WrapAlgorithm): MaterialFormat {
    return algorithm === 'rfc5649' ? 2 : 3;
  }

  /** The bytes this record's MAC covers (in its own format). */
  get macBody(): Buffer {
    return encodeBody(this.format, this.spec, this.binding, this.domainId, this.wrapped, this.publicKey, this.wrapAlgorithm);
  }

  get legacy(): boolean {
    return this.format === 1;
  }

  toBuffer(): Buffer {
    return Buffer.concat([this.macBody, this.mac]);
  }

  static fromBuffer(buf: Buffer): WrappedMaterial {
    try {
      return decode(buf);
    } catch (e) {
      if (e instanceof MaterialIntegrityError) throw e;
      throw new MaterialIntegrityError('wrapped material record is malformed');
    }
  }

  /** Throws unless this record was made for `expected` (checked on every use, cached or not). */
  assertBinding(expected: MaterialBinding): void {
    if (this.legacy) throw new MaterialIntegrityError('wrapped material record is in the KMR1 format (not bound to its owner): refused until it is migrated');
    if (!sameBinding(this.binding, expected)) {
      throw new MaterialIntegrityError('wrapped material record does not belong to the requested key version or owner');
    }
  }
}

/** Whether two bindings name the same key version (and, unless `ownerToo` is false, the same owner and scope). */
export function sameBinding(a: MaterialBinding, b: MaterialBinding, ownerToo = true): boolean {
  const key = a.clusterId === b.clusterId && a.keyId === b.keyId && a.keyVersion === b.keyVersion && a.usage === b.usage;
  return key && (!ownerToo || ((a.owner ?? '') === (b.owner ?? '') && (a.scope ?? '') === (b.scope ?? '')));
}

/**
 * The byte that names a KMR3 record's wrap algorithm. Stored with the material: never renumber or
 * reuse a code (not derived from the order of WRAP_ALGORITHMS, which a profile change could reorder).
 */
export const WRAP_ALGORITHM_CODES: Readonly<Record<WrapAlgorithm, number>> = { rfc5649: 0, 'aes-cbc-pad': 1 };

function wrapAlgorithmOfCode(code: number): WrapAlgorithm | undefined {
  return (Object.keys(WRAP_ALGORITHM_CODES) as WrapAlgorithm[]).find((a) => WRAP_ALGORITHM_CODES[a] === code);
}

const MAGICS: Record<MaterialFormat, Buffer> = { 1: Buffer.from('KMR1', 'latin1'), 2: Buffer.from('KMR2', 'latin1'), 3: Buffer.from('KMR3', 'latin1') };
const MAC_LENGTH = 32;

function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  if (b.length > 0xffff) throw new InvalidInputError('binding field too long');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

function bytes(b: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

function encodeBody(
  format: MaterialFormat,
  spec: KeySpec,
  binding: MaterialBinding,
  domainId: Buffer,
  wrapped: Buffer,
  publicKey: Buffer,
  wrapAlgorithm: WrapAlgorithm,
): Buffer {
  if (!Number.isInteger(binding.keyVersion) || binding.keyVersion < 0 || binding.keyVersion > 0xffffffff) {
    throw new InvalidInputError('key version must be an unsigned 32-bit integer');
  }
  const version = Buffer.alloc(4);
  version.writeUInt32BE(binding.keyVersion);
  const owner = format >= 2 ? [str(binding.owner ?? ''), str(binding.scope ?? '')] : [];
  return Buffer.concat([
    MAGICS[format],
    Buffer.from([KEY_SPEC_CODES[spec]]),
    format === 3 ? Buffer.from([WRAP_ALGORITHM_CODES[wrapAlgorithm]]) : Buffer.alloc(0),
    str(binding.clusterId),
    str(binding.keyId),
    version,
    str(binding.usage),
    ...owner,
    bytes(domainId),
    bytes(wrapped),
    bytes(publicKey),
  ]);
}

class Reader {
  private at = 0;
  constructor(private readonly buf: Buffer) {}
  take(n: number): Buffer {
    if (this.at + n > this.buf.length) throw new MaterialIntegrityError('wrapped material record is truncated');
    const out = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  u16 = () => this.take(2).readUInt16BE();
  u32 = () => this.take(4).readUInt32BE();
  str = () => this.take(this.u16()).toString('utf8');
  bytes = () => Buffer.from(this.take(this.u32()));
  get remaining(): number {
    return this.buf.length - this.at;
  }
}

function decode(buf: Buffer): WrappedMaterial {
  const r = new Reader(buf);
  const magic = r.take(4);
  const format = ([1, 2, 3] as const).find((f) => magic.equals(MAGICS[f]));
  if (format === undefined) throw new MaterialIntegrityError('not a wrapped material record');
  const spec = keySpecOfCode(r.take(1)[0]);
  if (!spec) throw new MaterialIntegrityError('wrapped material record has an unknown key spec');
  const wrapAlgorithm = format === 3 ? wrapAlgorithmOfCode(r.take(1)[0]) : 'rfc5649';
  if (!wrapAlgorithm) throw new MaterialIntegrityError('wrapped material record has an unknown wrap algorithm');
  const clusterId = r.str();
  const keyId = r.str();
  const keyVersion = r.u32();
  const usage = r.str();
  const owned = format >= 2 ? ownerFields(r.str(), r.str()) : {};
  const domainId = r.bytes();
  const wrapped = r.bytes();
  const publicKey = r.bytes();
  const mac = Buffer.from(r.take(MAC_LENGTH));
  if (r.remaining !== 0) throw new MaterialIntegrityError('wrapped material record has trailing bytes');
  return new WrappedMaterial(spec, { clusterId, keyId, keyVersion, usage, ...owned }, domainId, wrapped, publicKey, mac, format, wrapAlgorithm);
}

/** Owner and scope as decoded: empty fields are left out (an absent field means the empty string). */
function ownerFields(owner: string, scope: string): Pick<MaterialBinding, 'owner' | 'scope'> {
  return { ...(owner ? { owner } : {}), ...(scope ? { scope } : {}) };
}
