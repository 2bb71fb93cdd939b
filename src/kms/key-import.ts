import { timingSafeEqual } from 'node:crypto';
import type { RsaPadding } from '../hsm/capabilities';
import { ClusterUnavailableError, MaterialIntegrityError, PoolExhaustedError, SlowQueueFullError, UnsupportedError } from '../hsm/errors';
import { MaterialBinding, WrappedMaterial } from '../hsm/material';
import type { HsmCluster } from '../hsm/cluster';
import type { ImportParameters as StoredImportParameters, KeyRecord } from '../store/store';
import { unixNow } from '../common/clock';
import type { KmsContext } from './context';
import {
  about,
  DecryptMaterialError,
  ImportTokenExpiredError,
  InvalidImportMaterialError,
  InvalidImportTokenError,
  InvalidParameterError,
  NotExternalKeyError,
  UnsupportedOperationError,
  UsedByCloudProductError,
} from './errors';
import { binding, Caller, domainError } from './key-access';
import { issueImportToken, readImportToken, tokenHash, wrappingKeyDigest } from './import-token';
import { nextState } from './key-state';

export const IMPORT_TOKEN_SECONDS = 24 * 3600;
/** The largest ValidTo the API accepts. */
export const MAX_VALID_TO = 2147443200;
const WRAPPING_ALGORITHMS: readonly RsaPadding[] = ['RSAES_PKCS1_V1_5', 'RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256'];
/** Imported material is always version 1: re-importing the same material makes old ciphertext decrypt again. */
const IMPORTED_VERSION = 1;
/** The wrapping key is RSA-2048 (WrappingKeySpec RSA_2048): one 256-byte block. */
const WRAPPED_BYTES = 256;
const PKCS1 = 'RSAES_PKCS1_V1_5';

/**
 * The one answer to every import that fails after the RSA step, whatever the wrapped bytes decrypt
 * to (bad padding, wrong length, another wrapping key, altered bytes, other material than before):
 * anything more specific would tell a caller something about the RSA decryption of bytes it chose.
 */
export const IMPORT_FAILED_MESSAGE =
  'encryptedKeyMaterial was not imported: it must be the 32-byte AES-256 key material (on a key that had material, the same material) ' +
  "encrypted with this importToken's public key using its wrappingAlgorithm. The token is used up: call GetParametersForImport again";

/** The request values IMPORT_FAILED_MESSAGE names. */
const IMPORT_FAILED_FIELDS = about('encryptedKeyMaterial', 'importToken', 'wrappingAlgorithm');

/** Why PKCS#1 v1.5 wrapping is refused unless `import.allowPkcs1v15` is set. */
function pkcs1Refused(offered: readonly string[]): UnsupportedOperationError {
  const others = offered.filter((a) => a !== PKCS1);
  return new UnsupportedOperationError(
    `wrappingAlgorithm ${PKCS1} is turned off on this service: unwrapping PKCS#1 v1.5 can act as a padding oracle (Bleichenbacher's attack); ` +
      `use ${others.join(' or ') || 'an OAEP algorithm'} (the operator can allow it with import.allowPkcs1v15)`,
    about('wrappingAlgorithm'),
  );
}
/** A wrapping key is handed out again only while at least this much of its validity is left. */
export const REUSE_MIN_SECONDS = 3600;

export interface ImportParameters {
  keyId: string;
  importToken: Buffer;
  /** The wrapping key's public half, DER SubjectPublicKeyInfo. */
  publicKey: Buffer;
  /** Unix seconds: the token and the wrapping key are refused after it. */
  parametersValidTo: number;
}

export interface ImportParametersRequest {
  keyId: string;
  /** The RSA padding the caller wraps the material with. */
  wrappingAlgorithm: string;
  /** The wrapping key's spec: RSA_2048 only. */
  wrappingKeySpec: string;
}

export interface ImportRequest {
  keyId: string;
  encryptedKeyMaterial: Buffer;
  importToken: Buffer;
  /** Unix seconds when the material expires; 0 or absent: never. */
  validTo?: number;
}

export function wrappingBinding(r: KeyRecord): MaterialBinding {
  return { clusterId: r.hsmClusterId, keyId: r.keyId, keyVersion: 0, usage: 'IMPORT_WRAPPING', owner: r.ownerUin, scope: r.region };
}

function requireExternal(r: KeyRecord): void {
  if (r.origin !== 'EXTERNAL') throw new NotExternalKeyError(`key ${r.keyId} was not created for imported material (origin EXTERNAL)`);
}

/**
 * The stored wrapping key may be handed out again: same algorithm, enough validity left, and its
 * token unused (a used token clears the parameters; see importKeyMaterial).
 */
function reusable(params: StoredImportParameters | undefined, algorithm: string, now: number): params is StoredImportParameters {
  return params !== undefined && params.wrappingAlgorithm === algorithm && params.validTo - now >= REUSE_MIN_SECONDS;
}

function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Bring your own key: wrapping parameters, import, deletion and expiry of imported material. */
export class KeyImport {
  constructor(private readonly ctx: KmsContext) {}

  private get access() {
    return this.ctx.access;
  }

  async getParametersForImport(caller: Caller, p: ImportParametersRequest): Promise<ImportParameters> {
    const { keyId, wrappingAlgorithm: algorithm } = p;
    if (p.wrappingKeySpec !== 'RSA_2048') throw new InvalidParameterError('wrappingKeySpec must be RSA_2048', about('wrappingKeySpec'));
    if (!(WRAPPING_ALGORITHMS as readonly string[]).includes(algorithm))
      throw new InvalidParameterError(`wrappingAlgorithm must be one of ${WRAPPING_ALGORITHMS.join(', ')}`, about('wrappingAlgorithm'));
    const r = await this.access.use(caller, keyId, 'GetParametersForImport');
    requireExternal(r);
    const cluster = this.access.cluster(r);
    const offered = cluster.capabilities.importWrapping;
    if (algorithm === PKCS1 && !this.ctx.config.allowPkcs1v15Import) throw pkcs1Refused(offered);
    if (!offered.includes(algorithm as RsaPadding)) {
      throw new UnsupportedOperationError(
        `wrappingAlgorithm ${algorithm} is not supported by the HSMs of this key's cluster (they offer ${offered.join(', ') || 'none'})`,
        about('wrappingAlgorithm'),
      );
    }
    const again = await this.reuseWrappingKey(caller, r.keyId, algorithm, cluster);
    if (again) return again;
    let wrapping: WrappedMaterial;
    try {
      wrapping = await this.ctx.expensive.run(caller.tenant, 'GetParametersForImport', () => cluster.createImportWrappingKey(wrappingBinding(r)));
    } catch (e) {
      throw domainError(e);
    }
    const wrappingKey = wrapping.toBuffer();
    const validTo = unixNow(this.access.clock) + IMPORT_TOKEN_SECONDS;
    const token = issueImportToken({ keyId: r.keyId, wrappingKeyDigest: wrappingKeyDigest(wrappingKey), validTo });
    await this.access.change(caller, keyId, 'GetParametersForImport', () => ({
      importParameters: { tokenHash: tokenHash(token), wrappingAlgorithm: algorithm, wrappingKey, validTo },
    }));
    return { keyId: r.keyId, importToken: token, publicKey: cluster.publicKey(wrapping), parametersValidTo: validTo };
  }

  /**
   * The unexpired wrapping key of this key again, under a fresh token that replaces the previous
   * one (only the token's hash is stored), with the key's original ParametersValidTo. Decided on a
   * fresh read and written with compare-and-set, so a token used meanwhile is never revived.
   */
  private async reuseWrappingKey(caller: Caller, keyId: string, algorithm: string, cluster: HsmCluster): Promise<ImportParameters | undefined> {
    const now = unixNow(this.access.clock);
    let answer: ImportParameters | undefined;
    await this.access.change(caller, keyId, 'GetParametersForImport', (cur) => {
      answer = undefined;
      const params = cur.importParameters;
      if (!reusable(params, algorithm, now)) return undefined;
      const token = issueImportToken({ keyId: cur.keyId, wrappingKeyDigest: wrappingKeyDigest(params.wrappingKey), validTo: params.validTo });
      const publicKey = cluster.publicKey(WrappedMaterial.fromBuffer(params.wrappingKey));
      answer = { keyId: cur.keyId, importToken: token, publicKey, parametersValidTo: params.validTo };
      return { importParameters: { ...params, tokenHash: tokenHash(token) } };
    });
    return answer;
  }

  /**
   * Unwraps inside the HSM and re-wraps under the domain key. The token is used up (one write)
   * before the RSA step, so each token buys one RSA decryption whatever happens next; every failure
   * after it is the one IMPORT_FAILED_MESSAGE.
   */
  async importKeyMaterial(caller: Caller, p: ImportRequest): Promise<void> {
    const fields = readImportToken(p.importToken);
    const now = unixNow(this.access.clock);
    const validTo = p.validTo ?? 0;
    if (!Number.isInteger(validTo) || validTo < 0 || validTo > MAX_VALID_TO || (validTo !== 0 && validTo <= now)) {
      throw new InvalidParameterError(`validTo must be 0 (never expires) or a future Unix time up to ${MAX_VALID_TO}`, about('validTo'));
    }
    if (p.encryptedKeyMaterial.length !== WRAPPED_BYTES) {
      throw new InvalidImportMaterialError(
        `encryptedKeyMaterial must be ${WRAPPED_BYTES} bytes (one RSA-2048 block), got ${p.encryptedKeyMaterial.length}`,
        about('encryptedKeyMaterial'),
      );
    }
    const r = await this.access.load(caller, p.keyId, true);
    requireExternal(r);
    this.access.check(r, 'ImportKeyMaterial');
    const params = await this.useToken(caller, p.keyId, p.importToken, fields.keyId, now);
    if (params.wrappingAlgorithm === PKCS1 && !this.ctx.config.allowPkcs1v15Import) throw pkcs1Refused(this.access.cluster(r).capabilities.importWrapping);
    const { material, checkValue } = await this.unwrap(r, params.wrappingKey, params.wrappingAlgorithm as RsaPadding, p.encryptedKeyMaterial);
    const check = checkValue.toString('hex');
    await this.access.change(caller, p.keyId, 'ImportKeyMaterial', (cur) => {
      if (cur.materialCheckValue !== undefined && cur.materialCheckValue !== check) throw new DecryptMaterialError(IMPORT_FAILED_MESSAGE, IMPORT_FAILED_FIELDS);
      return {
        versions: [{ version: IMPORTED_VERSION, material: material.toBuffer(), createTime: now }],
        keyState: nextState(cur.keyState, 'ImportKeyMaterial', true),
        validTo: validTo === 0 ? null : validTo,
        materialCheckValue: check,
      };
    });
  }

  /** Checks the token against the stored parameters and removes them in the same compare-and-set write: one attempt per token. */
  private async useToken(caller: Caller, keyId: string, token: Buffer, tokenKeyId: string, now: number) {
    let params: NonNullable<KeyRecord['importParameters']> | undefined;
    await this.access.change(caller, keyId, 'ImportKeyMaterial', (cur) => {
      params = this.currentParameters(cur, token, tokenKeyId, now);
      return { importParameters: null };
    });
    return params!;
  }

  async deleteImportedKeyMaterial(caller: Caller, keyId: string): Promise<void> {
    await this.access.change(caller, keyId, 'DeleteImportedKeyMaterial', (r) => {
      requireExternal(r);
      if (r.owner !== 'user') throw new UsedByCloudProductError(`key ${r.keyId} belongs to cloud product ${r.owner}`);
      return { versions: [], keyState: nextState(r.keyState, 'DeleteImportedKeyMaterial', false), validTo: null };
    });
  }

  /** The stored import parameters this token belongs to, or why it is refused. */
  private currentParameters(r: KeyRecord, token: Buffer, tokenKeyId: string, now: number) {
    const params = r.importParameters;
    if (tokenKeyId !== r.keyId) throw new InvalidImportTokenError(`importToken was issued for another key, not ${r.keyId}`, about('importToken'));
    if (!params || !sameHash(tokenHash(token), params.tokenHash)) {
      throw new InvalidImportTokenError(
        `importToken is not the current token of key ${r.keyId} (it was used, or replaced by a newer GetParametersForImport)`,
        about('importToken'),
      );
    }
    if (now > params.validTo)
      throw new ImportTokenExpiredError(
        `importToken of key ${r.keyId} expired at ${new Date(params.validTo * 1000).toISOString()}; call GetParametersForImport again`,
        about('importToken'),
      );
    return params;
  }

  private async unwrap(r: KeyRecord, wrappingKey: Buffer, padding: RsaPadding, encrypted: Buffer) {
    try {
      const wrapping = WrappedMaterial.fromBuffer(wrappingKey);
      return await this.access.cluster(r).importKeyMaterial(wrapping, wrappingBinding(r), padding, encrypted, binding(r, IMPORTED_VERSION));
    } catch (e) {
      throw beforeRsaStep(e) ? domainError(e) : new DecryptMaterialError(IMPORT_FAILED_MESSAGE, IMPORT_FAILED_FIELDS);
    }
  }
}

/**
 * Failures that happen before any RSA decryption (no healthy member, no session, a full slow queue,
 * an altered wrapping-key record, a padding the cluster cannot do) and so say nothing about the wrapped bytes.
 */
function beforeRsaStep(e: unknown): boolean {
  return (
    e instanceof ClusterUnavailableError ||
    e instanceof PoolExhaustedError ||
    e instanceof SlowQueueFullError ||
    e instanceof MaterialIntegrityError ||
    e instanceof UnsupportedError
  );
}
