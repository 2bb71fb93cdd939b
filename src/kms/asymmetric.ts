import type { RsaPadding, SigningAlgorithm } from '../hsm/capabilities';
import { HsmError, MaterialIntegrityError } from '../hsm/errors';
import type { KeyRecord } from '../store/store';
import type { KmsContext } from './context';
import type { PlaintextResult } from './envelope';
import { about, AsymmetricDecryptError, InvalidKeyUsageError, InvalidParameterError, quoted, UnsupportedOperationError } from './errors';
import { Caller, domainError } from './key-access';
import type { KeyAction } from './key-state';
import { KEY_USAGES, KeyUsage, usageOf } from './key-usage';

export const MAX_RAW_MESSAGE_BYTES = 4096;
const RSA_2048_BYTES = 256;
const RSA_PADDINGS: readonly RsaPadding[] = ['RSAES_PKCS1_V1_5', 'RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256'];

/** The signing algorithms each signing key usage can do (a wire maps its own names onto these). */
export const SIGNING_ALGORITHMS: Partial<Record<KeyUsage, readonly SigningAlgorithm[]>> = {
  'rsa-2048-sign-verify': ['RSA_PKCS1_SHA_256', 'RSA_PSS_SHA_256'],
  'ec-p256-sign-verify': ['ECDSA_SHA_256'],
  'ec-p384-sign-verify': ['ECDSA_SHA_384'],
};

const DIGEST_BYTES: Record<SigningAlgorithm, number> = { RSA_PKCS1_SHA_256: 32, RSA_PSS_SHA_256: 32, ECDSA_SHA_256: 32, ECDSA_SHA_384: 48 };

export interface SignRequest {
  keyId: string;
  /** A SigningAlgorithm (or SM2DSA, refused: no HSM here has SM2); anything else is InvalidParameterError. */
  algorithm: string;
  message: Buffer;
  /** RAW (default): the message itself; DIGEST: its hash. */
  messageType?: string;
}

export interface VerifyRequest extends SignRequest {
  signature: Buffer;
}

export interface RsaDecryptRequest {
  keyId: string;
  /** One RSA-2048 block. */
  ciphertext: Buffer;
  /** An RSA padding: RSAES_PKCS1_V1_5, RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256. */
  algorithm: string;
}

export interface PublicKeyResult {
  keyId: string;
  /** DER SubjectPublicKeyInfo. */
  publicKey: Buffer;
}

function usageOfKey(r: KeyRecord): (typeof KEY_USAGES)[KeyUsage] {
  return KEY_USAGES[usageOf(r)];
}

/** GetPublicKey, AsymmetricRsaDecrypt / AsymmetricSm2Decrypt, SignByAsymmetricKey, VerifyByAsymmetricKey. */
export class Asymmetric {
  constructor(private readonly ctx: KmsContext) {}

  private get access() {
    return this.ctx.access;
  }

  async getPublicKey(caller: Caller, keyId: string): Promise<PublicKeyResult> {
    const r = await this.access.use(caller, keyId, 'GetPublicKey');
    if (usageOfKey(r).kind === 'symmetric') throw new InvalidKeyUsageError(`key ${r.keyId} is symmetric: it has no public key`);
    const { material } = this.newest(r);
    return { keyId: r.keyId, publicKey: this.access.cluster(r).publicKey(material) };
  }

  async rsaDecrypt(caller: Caller, p: RsaDecryptRequest): Promise<PlaintextResult> {
    const { ciphertext, algorithm } = p;
    if (!(RSA_PADDINGS as readonly string[]).includes(algorithm))
      throw new InvalidParameterError(`algorithm must be one of ${RSA_PADDINGS.join(', ')}`, about('algorithm'));
    const r = await this.keyFor(caller, p.keyId, 'AsymmetricDecrypt', 'asymmetric-decrypt');
    if (usageOfKey(r).spec !== 'RSA_2048') throw new InvalidKeyUsageError(`key ${r.keyId} is a ${usageOf(r)} key, not an RSA decryption key`);
    // An RSA-2048 ciphertext is exactly the modulus size. Anything else is refused here, not handed to the HSM: SoftHSM2 answers an
    // empty C_Decrypt without ending the operation, and the pooled session then fails the next request that uses it (found by the fuzzer).
    if (ciphertext.length !== RSA_2048_BYTES)
      throw new AsymmetricDecryptError(`the ciphertext for an RSA_2048 key is ${RSA_2048_BYTES} bytes, got ${ciphertext.length}`);
    const m = this.newest(r);
    try {
      const plaintext = await this.ctx.expensive.run(caller.tenant, 'AsymmetricRsaDecrypt', () =>
        this.access.cluster(r).rsaDecrypt(m.material, m.binding, algorithm as RsaPadding, ciphertext),
      );
      return { keyId: r.keyId, plaintext };
    } catch (e) {
      if (e instanceof HsmError && e.errorClass === 'caller' && !(e instanceof MaterialIntegrityError)) {
        throw new AsymmetricDecryptError(`the ciphertext cannot be decrypted with key ${r.keyId} and ${algorithm}`);
      }
      throw domainError(e);
    }
  }

  /** No HSM here does SM2: a non-SM2 key is the wrong usage; an SM2 key cannot exist. */
  async sm2Decrypt(caller: Caller, keyId: string): Promise<never> {
    const r = await this.keyFor(caller, keyId, 'AsymmetricDecrypt', 'asymmetric-decrypt');
    if (usageOfKey(r).spec !== 'SM2') throw new InvalidKeyUsageError(`key ${r.keyId} is a ${usageOf(r)} key, not an SM2 decryption key`);
    throw new UnsupportedOperationError('SM2 decryption needs an HSM with SM2, which this deployment does not have');
  }

  async sign(caller: Caller, p: SignRequest): Promise<{ keyId: string; signature: Buffer }> {
    const r = await this.keyFor(caller, p.keyId, 'Sign', 'sign-verify');
    const { algorithm, input } = this.signingInput(r, p);
    const m = this.newest(r);
    try {
      return {
        keyId: r.keyId,
        signature: await this.ctx.expensive.run(caller.tenant, 'SignByAsymmetricKey', () =>
          this.access.cluster(r).sign(m.material, m.binding, algorithm, input),
        ),
      };
    } catch (e) {
      throw domainError(e);
    }
  }

  /** A malformed signature is simply not valid. */
  async verify(caller: Caller, p: VerifyRequest): Promise<{ keyId: string; signatureValid: boolean }> {
    const r = await this.keyFor(caller, p.keyId, 'Verify', 'sign-verify');
    const { algorithm, input } = this.signingInput(r, p);
    const m = this.newest(r);
    try {
      return { keyId: r.keyId, signatureValid: await this.access.cluster(r).verify(m.material, algorithm, input, p.signature) };
    } catch (e) {
      if (e instanceof HsmError && e.errorClass === 'caller' && !(e instanceof MaterialIntegrityError)) return { keyId: r.keyId, signatureValid: false };
      throw domainError(e);
    }
  }

  private async keyFor(caller: Caller, keyId: string, action: KeyAction, kind: string): Promise<KeyRecord> {
    const r = await this.access.use(caller, keyId, action);
    if (usageOfKey(r).kind !== kind) throw new InvalidKeyUsageError(`key ${r.keyId} is a ${usageOf(r)} key and cannot be used for ${action}`);
    return r;
  }

  private newest(r: KeyRecord) {
    return this.access.material(r, this.access.newest(r))!;
  }

  private signingInput(r: KeyRecord, p: SignRequest): { algorithm: SigningAlgorithm; input: { message: Buffer } | { digest: Buffer } } {
    const usage = usageOf(r);
    const offered = SIGNING_ALGORITHMS[usage] ?? [];
    if (p.algorithm === 'SM2DSA') throw new UnsupportedOperationError('SM2DSA needs an HSM with SM2, which this deployment does not have');
    const algorithm = offered.find((a) => a === p.algorithm);
    if (!algorithm)
      throw new InvalidParameterError(`algorithm ${quoted(p.algorithm)} does not fit a ${usage} key (use ${offered.join(' or ')})`, about('algorithm'));
    const type = p.messageType ?? 'RAW';
    if (type === 'RAW') {
      if (p.message.length === 0 || p.message.length > MAX_RAW_MESSAGE_BYTES)
        throw new InvalidParameterError(`a RAW message is 1 to ${MAX_RAW_MESSAGE_BYTES} bytes, got ${p.message.length}`, about('message'));
      return { algorithm, input: { message: p.message } };
    }
    if (type !== 'DIGEST') throw new InvalidParameterError('messageType must be RAW or DIGEST', about('messageType'));
    if (p.message.length !== DIGEST_BYTES[algorithm])
      throw new InvalidParameterError(
        `a DIGEST message for ${algorithm} is exactly ${DIGEST_BYTES[algorithm]} bytes, got ${p.message.length}`,
        about('message'),
      );
    return { algorithm, input: { digest: p.message } };
  }
}
