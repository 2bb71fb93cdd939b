/** Domain errors of the KMS core; the API layer maps each class to one Tencent error code. */
export abstract class KmsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Altered, truncated, foreign or otherwise unusable ciphertext, or the wrong encryption context. */
export class InvalidCiphertextError extends KmsError {}

export class InvalidEncryptionContextError extends KmsError {}
