import { createHash, timingSafeEqual } from 'node:crypto';
import type { KeySpec } from './capabilities';
import { InvalidInputError, MaterialIntegrityError } from './errors';

/** What a piece of wrapped material is for; bound into its MAC so records cannot be swapped between keys. */
export interface MaterialBinding {
  clusterId: string;
  keyId: string;
  keyVersion: number;
  usage: string;
}

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
  ) {
    this.cacheKey = createHash('sha256').update(this.toBuffer()).digest('base64');
  }

  /** The bytes the MAC covers. */
  static macInput(spec: KeySpec, binding: MaterialBinding, domainId: Buffer, wrapped: Buffer, publicKey: Buffer): Buffer {
    return encodeBody(spec, binding, domainId, wrapped, publicKey);
  }

  toBuffer(): Buffer {
    return Buffer.concat([encodeBody(this.spec, this.binding, this.domainId, this.wrapped, this.publicKey), this.mac]);
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
    const b = this.binding;
    if (b.clusterId !== expected.clusterId || b.keyId !== expected.keyId || b.keyVersion !== expected.keyVersion || b.usage !== expected.usage) {
      throw new MaterialIntegrityError('wrapped material record does not belong to the requested key version');
    }
  }
}

const MAGIC = Buffer.from('KMR1', 'latin1');
const MAC_LENGTH = 32;
const SPECS: KeySpec[] = ['AES_256', 'RSA_2048', 'RSA_3072', 'RSA_4096', 'EC_P256', 'EC_P384'];

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

function encodeBody(spec: KeySpec, binding: MaterialBinding, domainId: Buffer, wrapped: Buffer, publicKey: Buffer): Buffer {
  if (!Number.isInteger(binding.keyVersion) || binding.keyVersion < 0 || binding.keyVersion > 0xffffffff) {
    throw new InvalidInputError('key version must be an unsigned 32-bit integer');
  }
  const version = Buffer.alloc(4);
  version.writeUInt32BE(binding.keyVersion);
  return Buffer.concat([
    MAGIC,
    Buffer.from([SPECS.indexOf(spec)]),
    str(binding.clusterId),
    str(binding.keyId),
    version,
    str(binding.usage),
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
  if (!timingSafeEqual(r.take(4), MAGIC)) throw new MaterialIntegrityError('not a wrapped material record');
  const spec = SPECS[r.take(1)[0]];
  if (!spec) throw new MaterialIntegrityError('wrapped material record has an unknown key spec');
  const clusterId = r.str();
  const keyId = r.str();
  const keyVersion = r.u32();
  const usage = r.str();
  const domainId = r.bytes();
  const wrapped = r.bytes();
  const publicKey = r.bytes();
  const mac = Buffer.from(r.take(MAC_LENGTH));
  if (r.remaining !== 0) throw new MaterialIntegrityError('wrapped material record has trailing bytes');
  return new WrappedMaterial(spec, { clusterId, keyId, keyVersion, usage }, domainId, wrapped, publicKey, mac);
}
