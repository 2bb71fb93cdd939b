import { HsmError, MaterialIntegrityError } from '../hsm/errors';
import type { KeyRecord } from '../store/store';
import { additionalData, canonicalContext, decodeBlob, EncryptionContext, encodeBlob, encodeHeader, SealedBlob } from './ciphertext';
import type { KmsContext } from './context';
import {
  about,
  GcmUseLimitError,
  InvalidCiphertextError,
  InvalidHsmClusterError,
  InvalidKeyIdError,
  KeyNotFoundError,
  InvalidKeyUsageError,
  InvalidParameterError,
  InvalidPlaintextError,
} from './errors';
import { Caller, domainError } from './key-access';
import type { KeyAction } from './key-state';
import { describeTombstone } from './key-metadata';
import { canRotate, DEFAULT_KEY_USAGE, KEY_USAGES, usageOf } from './key-usage';

export const MAX_PLAINTEXT_BYTES = 4096;
export const MAX_RANDOM_BYTES = 1024;
const DATA_KEY_SPECS: Record<string, number> = { AES_128: 16, AES_256: 32 };

export interface EncryptRequest {
  keyId: string;
  plaintext: Buffer;
  context?: EncryptionContext;
}

export interface DecryptRequest {
  /** The blob's bytes, as encrypt returned them. */
  ciphertext: Buffer;
  context?: EncryptionContext;
}

export interface ReEncryptRequest {
  ciphertext: Buffer;
  /** Default: the source key. */
  destinationKeyId?: string;
  sourceContext?: EncryptionContext;
  destinationContext?: EncryptionContext;
}

export interface GenerateDataKeyRequest {
  keyId: string;
  /** AES_128 or AES_256; `numberOfBytes` wins when both are given. */
  keySpec?: string;
  numberOfBytes?: number;
  context?: EncryptionContext;
  /** The cluster the caller expects the key in (empty: any). */
  hsmClusterId?: string;
}

export interface EncryptResult {
  keyId: string;
  ciphertext: Buffer;
}

export interface PlaintextResult {
  keyId: string;
  plaintext: Buffer;
}

export interface ReEncryptResult extends EncryptResult {
  sourceKeyId: string;
  /** False when the blob came back unchanged (same unrotated key, same context). */
  reEncrypted: boolean;
}

export type DataKeyResult = EncryptResult & PlaintextResult;

function requireSymmetric(r: KeyRecord): void {
  const usage = usageOf(r);
  if (KEY_USAGES[usage].kind !== 'symmetric') {
    throw new InvalidKeyUsageError(`key ${r.keyId} is a ${usage} key; symmetric encryption needs an ${DEFAULT_KEY_USAGE} key`);
  }
}

function intIn(name: 'numberOfBytes', v: unknown, min: number, max: number): number {
  if (!Number.isInteger(v) || (v as number) < min || (v as number) > max)
    throw new InvalidParameterError(`${name} must be an integer from ${min} to ${max}`, about(name));
  return v as number;
}

/** Encrypt, Decrypt, ReEncrypt, GenerateDataKey, GenerateRandom: AES-256-GCM inside the HSM, blobs per `ciphertext.ts`. */
export class Envelope {
  constructor(private readonly ctx: KmsContext) {}

  private get access() {
    return this.ctx.access;
  }

  async encrypt(caller: Caller, p: EncryptRequest): Promise<EncryptResult> {
    const { plaintext } = p;
    if (plaintext.length === 0 || plaintext.length > MAX_PLAINTEXT_BYTES) {
      throw new InvalidPlaintextError(`plaintext must be 1 to ${MAX_PLAINTEXT_BYTES} bytes, got ${plaintext.length}`, about('plaintext'));
    }
    const aadContext = canonicalContext(p.context);
    const r = await this.usable(caller, p.keyId, 'Encrypt');
    return { keyId: r.keyId, ciphertext: await this.seal(r, plaintext, aadContext) };
  }

  async decrypt(caller: Caller, p: DecryptRequest): Promise<PlaintextResult> {
    const { record, plaintext } = await this.open(caller, p.ciphertext, p.context);
    return { keyId: record.keyId, plaintext };
  }

  /** The plaintext never leaves the service; an unrotated key and an unchanged context return the blob as it was. */
  async reEncrypt(caller: Caller, p: ReEncryptRequest): Promise<ReEncryptResult> {
    const destContext = canonicalContext(p.destinationContext);
    const { record: source, sealed, plaintext } = await this.open(caller, p.ciphertext, p.sourceContext);
    try {
      const destId = p.destinationKeyId === undefined || p.destinationKeyId === '' ? source.keyId : p.destinationKeyId;
      const dest = await this.usable(caller, destId, 'Encrypt');
      const unchanged = dest.keyId === source.keyId && sealed.keyVersion === this.access.newest(dest) && destContext.equals(canonicalContext(p.sourceContext));
      if (unchanged) return { keyId: dest.keyId, ciphertext: p.ciphertext, sourceKeyId: source.keyId, reEncrypted: false };
      return { keyId: dest.keyId, ciphertext: await this.seal(dest, plaintext, destContext), sourceKeyId: source.keyId, reEncrypted: true };
    } finally {
      plaintext.fill(0);
    }
  }

  /** A data key from the HSM's generator, and the same bytes sealed under the key. */
  async generateDataKey(caller: Caller, p: GenerateDataKeyRequest): Promise<DataKeyResult> {
    let length: number;
    if (p.numberOfBytes !== undefined) length = intIn('numberOfBytes', p.numberOfBytes, 1, MAX_RANDOM_BYTES);
    else if (p.keySpec !== undefined) {
      // own keys only: "constructor" or "__proto__" must not find Object.prototype's members
      const bytes = Object.hasOwn(DATA_KEY_SPECS, p.keySpec) ? DATA_KEY_SPECS[p.keySpec] : undefined;
      if (bytes === undefined) throw new InvalidParameterError('keySpec must be AES_128 or AES_256', about('keySpec'));
      length = bytes;
    } else throw new InvalidParameterError('one of keySpec or numberOfBytes is required', about('keySpec', 'numberOfBytes'));
    const aadContext = canonicalContext(p.context);
    const r = await this.usable(caller, p.keyId, 'GenerateDataKey');
    if (p.hsmClusterId !== undefined && p.hsmClusterId !== '' && this.access.clusters.forList(caller.tenant, p.hsmClusterId) !== r.hsmClusterId) {
      throw new InvalidHsmClusterError(`key ${r.keyId} is not in HSM cluster ${p.hsmClusterId}`);
    }
    const cluster = this.access.cluster(r);
    const dataKey = await cluster.random(length).catch((e: unknown) => Promise.reject(domainError(e)));
    try {
      return { keyId: r.keyId, plaintext: dataKey, ciphertext: await this.seal(r, dataKey, aadContext) };
    } catch (e) {
      dataKey.fill(0);
      throw e;
    }
  }

  /** Random bytes from the HSM's generator (the shared pool's, or the caller's dedicated cluster's). */
  async generateRandom(caller: Caller, numberOfBytes: number): Promise<Buffer> {
    const n = intIn('numberOfBytes', numberOfBytes, 1, MAX_RANDOM_BYTES);
    const cluster = this.access.clusters.dedicatedOf(caller.tenant)[0] ?? this.access.clusters.shared;
    return cluster.random(n).catch((e: unknown) => Promise.reject(domainError(e)));
  }

  private async usable(caller: Caller, keyId: string, action: KeyAction): Promise<KeyRecord> {
    const r = await this.access.use(caller, keyId, action);
    requireSymmetric(r);
    return r;
  }

  /** Encrypts under the key's newest version and counts the use. */
  private async seal(r: KeyRecord, plaintext: Buffer, context: Buffer): Promise<Buffer> {
    const version = this.access.newest(r);
    const m = this.access.material(r, version)!;
    const header = encodeHeader({ deploymentId: this.ctx.config.deploymentId, keyId: r.keyId, keyVersion: version });
    const budgeted = await this.spend(r, version);
    try {
      const out = await this.access.cluster(r).encrypt(m.material, m.binding, plaintext, additionalData(header, context));
      if (!budgeted) this.ctx.usage.add(r.keyId, version, 1, r.ownerUin);
      return encodeBlob(header, out.iv, out.tag, out.ciphertext);
    } catch (e) {
      throw domainError(e);
    }
  }

  /**
   * A version that cannot rotate (imported material) takes its encryption from the exact GCM budget
   * first and is refused at the limit; the others are counted in batches and rotated (false).
   */
  private async spend(r: KeyRecord, version: number): Promise<boolean> {
    if (canRotate(usageOf(r), r.origin) === 'yes') return false;
    if (await this.ctx.gcm.take(r, version)) return true;
    throw new GcmUseLimitError(
      `key ${r.keyId} version ${version} reached its AES-GCM use limit (${this.ctx.gcm.limit} encryptions with random IVs, NIST SP 800-38D 8.3) ` +
        'and imported material cannot rotate: it still decrypts; to encrypt, import new material into a new key and move data there by re-encryption',
    );
  }

  /** A deleted key says so (from its tombstone); any other unknown key means the blob is not one of this account's. */
  private async unknownKey(caller: Caller, keyId: string, e: unknown): Promise<never> {
    if (!(e instanceof KeyNotFoundError || e instanceof InvalidKeyIdError)) throw e;
    const tomb = e instanceof KeyNotFoundError ? await this.access.store.getTombstone(caller.tenant, keyId) : undefined;
    if (tomb && tomb.region === caller.region) throw new KeyNotFoundError(keyId, describeTombstone(tomb));
    throw new InvalidCiphertextError('ciphertext does not belong to a key of this account (altered, or made for another account)', about('ciphertext'));
  }

  /** Authenticates and decrypts a blob of a key the caller may decrypt with. */
  private async open(
    caller: Caller,
    blob: Buffer,
    context: EncryptionContext | undefined,
  ): Promise<{ record: KeyRecord; sealed: SealedBlob; plaintext: Buffer }> {
    const sealed = decodeBlob(blob, this.ctx.config.deploymentId);
    const aadContext = canonicalContext(context);
    const record = await this.access.load(caller, sealed.keyId).catch((e: unknown) => this.unknownKey(caller, sealed.keyId, e));
    this.access.check(record, 'Decrypt');
    requireSymmetric(record);
    const m = this.access.material(record, sealed.keyVersion);
    if (!m)
      throw new InvalidCiphertextError(`ciphertext refers to version ${sealed.keyVersion} of key ${record.keyId}, which does not exist`, about('ciphertext'));
    try {
      const plaintext = await this.access.cluster(record).decrypt(m.material, m.binding, sealed, additionalData(sealed.header, aadContext));
      return { record, sealed, plaintext };
    } catch (e) {
      if (e instanceof HsmError && e.errorClass === 'caller' && !(e instanceof MaterialIntegrityError)) {
        throw new InvalidCiphertextError(
          'ciphertext does not authenticate: it was altered, or the context differs from the one used to encrypt',
          about('ciphertext', 'context'),
        );
      }
      throw domainError(e);
    }
  }
}
