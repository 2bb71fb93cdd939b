import { HsmError, MaterialIntegrityError } from '../hsm/errors';
import type { KeyRecord } from '../store/store';
import { additionalData, canonicalContext, decodeBlob, encodeBlob, encodeHeader, SealedBlob } from './ciphertext';
import type { KmsContext } from './context';
import {
  GcmUseLimitError, InvalidCiphertextError, InvalidHsmClusterError, InvalidKeyIdError, KeyNotFoundError, InvalidKeyUsageError, InvalidParameterError, InvalidPlaintextError,
  UnsupportedOperationError,
} from './errors';
import { Caller, domainError } from './key-access';
import type { KeyAction } from './key-state';
import { describeTombstone } from './key-metadata';
import { canRotate, KEY_USAGES, KeyUsage } from './key-usage';
import { outputPlaintext, PublicKeyOutput } from '../api/public-key-output';

export const MAX_PLAINTEXT_BYTES = 4096;
export const MAX_RANDOM_BYTES = 1024;
const DATA_KEY_SPECS: Record<string, number> = { AES_128: 16, AES_256: 32 };

export interface DecryptParams extends PublicKeyOutput {
  CiphertextBlob: string;
  EncryptionContext?: string;
}

export interface ReEncryptParams {
  CiphertextBlob: string;
  DestinationKeyId?: string;
  SourceEncryptionContext?: string;
  DestinationEncryptionContext?: string;
}

export interface GenerateDataKeyParams extends PublicKeyOutput {
  KeyId: string;
  KeySpec?: string;
  NumberOfBytes?: number;
  EncryptionContext?: string;
  HsmClusterId?: string;
  IsHostedByKms?: number;
}

function requireSymmetric(r: KeyRecord): void {
  if (KEY_USAGES[r.keyUsage as keyof typeof KEY_USAGES]?.kind !== 'symmetric') {
    throw new InvalidKeyUsageError(`key ${r.keyId} is a ${r.keyUsage} key; symmetric encryption needs an ENCRYPT_DECRYPT key`);
  }
}

function intIn(name: string, v: unknown, min: number, max: number): number {
  if (!Number.isInteger(v) || (v as number) < min || (v as number) > max) throw new InvalidParameterError(`${name} must be an integer from ${min} to ${max}`);
  return v as number;
}

/** Encrypt, Decrypt, ReEncrypt, GenerateDataKey, GenerateRandom: AES-256-GCM inside the HSM, blobs per `ciphertext.ts`. */
export class Envelope {
  constructor(private readonly ctx: KmsContext) {}

  private get access() {
    return this.ctx.access;
  }

  async encrypt(caller: Caller, keyId: string, plaintext: Buffer, context?: string): Promise<{ CiphertextBlob: string; KeyId: string }> {
    if (plaintext.length === 0 || plaintext.length > MAX_PLAINTEXT_BYTES) {
      throw new InvalidPlaintextError(`Plaintext must be 1 to ${MAX_PLAINTEXT_BYTES} bytes, got ${plaintext.length}`);
    }
    const aadContext = canonicalContext(context);
    const r = await this.usable(caller, keyId, 'Encrypt');
    return { CiphertextBlob: await this.seal(r, plaintext, aadContext), KeyId: r.keyId };
  }

  async decrypt(caller: Caller, p: DecryptParams): Promise<{ KeyId: string; Plaintext: Buffer }> {
    const { record, plaintext } = await this.open(caller, p.CiphertextBlob, p.EncryptionContext);
    return { KeyId: record.keyId, Plaintext: outputPlaintext(plaintext, p) };
  }

  /** The plaintext never leaves the service; an unrotated key and an unchanged context return the blob as it was. */
  async reEncrypt(caller: Caller, p: ReEncryptParams): Promise<{ CiphertextBlob: string; KeyId: string; SourceKeyId: string; ReEncrypted: boolean }> {
    const destContext = canonicalContext(p.DestinationEncryptionContext);
    const { record: source, sealed, plaintext } = await this.open(caller, p.CiphertextBlob, p.SourceEncryptionContext);
    try {
      const destId = p.DestinationKeyId === undefined || p.DestinationKeyId === '' ? source.keyId : p.DestinationKeyId;
      const dest = await this.usable(caller, destId, 'Encrypt');
      const unchanged = dest.keyId === source.keyId && sealed.keyVersion === this.access.newest(dest) && destContext.equals(canonicalContext(p.SourceEncryptionContext));
      if (unchanged) return { CiphertextBlob: p.CiphertextBlob, KeyId: dest.keyId, SourceKeyId: source.keyId, ReEncrypted: false };
      return { CiphertextBlob: await this.seal(dest, plaintext, destContext), KeyId: dest.keyId, SourceKeyId: source.keyId, ReEncrypted: true };
    } finally {
      plaintext.fill(0);
    }
  }

  async generateDataKey(caller: Caller, p: GenerateDataKeyParams): Promise<{ KeyId: string; Plaintext: Buffer; CiphertextBlob: string }> {
    if (p.IsHostedByKms === 1) throw new UnsupportedOperationError('data keys hosted by the KMS (IsHostedByKms=1) are not offered by this service');
    let length: number;
    if (p.NumberOfBytes !== undefined) length = intIn('NumberOfBytes', p.NumberOfBytes, 1, MAX_RANDOM_BYTES);
    else if (p.KeySpec !== undefined) {
      // own keys only: "constructor" or "__proto__" must not find Object.prototype's members
      const bytes = Object.hasOwn(DATA_KEY_SPECS, p.KeySpec) ? DATA_KEY_SPECS[p.KeySpec] : undefined;
      if (bytes === undefined) throw new InvalidParameterError('KeySpec must be AES_128 or AES_256');
      length = bytes;
    } else throw new InvalidParameterError('one of KeySpec or NumberOfBytes is required');
    const aadContext = canonicalContext(p.EncryptionContext);
    const r = await this.usable(caller, p.KeyId, 'GenerateDataKey');
    if (p.HsmClusterId !== undefined && p.HsmClusterId !== '' && this.access.clusters.forList(caller.tenant, p.HsmClusterId) !== r.hsmClusterId) {
      throw new InvalidHsmClusterError(`key ${r.keyId} is not in HSM cluster ${p.HsmClusterId}`);
    }
    const cluster = this.access.cluster(r);
    const dataKey = await cluster.random(length).catch((e: unknown) => Promise.reject(domainError(e)));
    try {
      const blob = await this.seal(r, dataKey, aadContext);
      return { KeyId: r.keyId, Plaintext: outputPlaintext(dataKey, p), CiphertextBlob: blob };
    } finally {
      if (p.EncryptionPublicKey) dataKey.fill(0);
    }
  }

  /** Random bytes from the HSM's generator (the shared pool's, or the caller's dedicated cluster's). */
  async generateRandom(caller: Caller, numberOfBytes: unknown): Promise<Buffer> {
    const n = intIn('NumberOfBytes', numberOfBytes, 1, MAX_RANDOM_BYTES);
    const cluster = this.access.clusters.dedicatedOf(caller.tenant)[0] ?? this.access.clusters.shared;
    return cluster.random(n).catch((e: unknown) => Promise.reject(domainError(e)));
  }

  private async usable(caller: Caller, keyId: string, action: KeyAction): Promise<KeyRecord> {
    const r = await this.access.use(caller, keyId, action);
    requireSymmetric(r);
    return r;
  }

  /** Encrypts under the key's newest version and counts the use. */
  private async seal(r: KeyRecord, plaintext: Buffer, context: Buffer): Promise<string> {
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
    if (canRotate(r.keyUsage as KeyUsage, r.origin) === 'yes') return false;
    if (await this.ctx.gcm.take(r, version)) return true;
    throw new GcmUseLimitError(
      `key ${r.keyId} version ${version} reached its AES-GCM use limit (${this.ctx.gcm.limit} encryptions with random IVs, NIST SP 800-38D 8.3) ` +
      'and imported material cannot rotate: it still decrypts; to encrypt, import new material into a new key and move data there with ReEncrypt',
    );
  }

  /** A deleted key says so (from its tombstone); any other unknown key means the blob is not one of this account's. */
  private async unknownKey(caller: Caller, keyId: string, e: unknown): Promise<never> {
    if (!(e instanceof KeyNotFoundError || e instanceof InvalidKeyIdError)) throw e;
    const tomb = e instanceof KeyNotFoundError ? await this.access.store.getTombstone(caller.tenant, keyId) : undefined;
    if (tomb && tomb.region === caller.region) throw new KeyNotFoundError(keyId, describeTombstone(tomb));
    throw new InvalidCiphertextError('CiphertextBlob does not belong to a key of this account (altered, or made for another account)');
  }

  /** Authenticates and decrypts a blob of a key the caller may decrypt with. */
  private async open(caller: Caller, blob: string, context: string | undefined): Promise<{ record: KeyRecord; sealed: SealedBlob; plaintext: Buffer }> {
    const sealed = decodeBlob(blob, this.ctx.config.deploymentId);
    const aadContext = canonicalContext(context);
    const record = await this.access.load(caller, sealed.keyId).catch((e: unknown) => this.unknownKey(caller, sealed.keyId, e));
    this.access.check(record, 'Decrypt');
    requireSymmetric(record);
    const m = this.access.material(record, sealed.keyVersion);
    if (!m) throw new InvalidCiphertextError(`CiphertextBlob refers to version ${sealed.keyVersion} of key ${record.keyId}, which does not exist`);
    try {
      const plaintext = await this.access.cluster(record).decrypt(m.material, m.binding, sealed, additionalData(sealed.header, aadContext));
      return { record, sealed, plaintext };
    } catch (e) {
      if (e instanceof HsmError && e.errorClass === 'caller' && !(e instanceof MaterialIntegrityError)) {
        throw new InvalidCiphertextError('CiphertextBlob does not authenticate: it was altered, or the EncryptionContext differs from the one used to encrypt');
      }
      throw domainError(e);
    }
  }
}
