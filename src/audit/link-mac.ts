/**
 * The one secret the audit chain depends on, as a narrow port: an HMAC computed inside the HSM
 * (services.ts wires it to the shared cluster's domain MAC key, purpose `audit-link`). The audit
 * layer never sees a key, only MACs.
 */
export interface LinkMac {
  /** Under the current generation of the key. */
  mac(data: Buffer): Promise<Buffer>;
  /** The key's generations (the shared cluster's domain rotation); without, links verify under `mac` only. */
  generations?: LinkGenerations;
}

/**
 * Across `kmsctl cluster rotate-domain`: links made under the retiring generation verify under it
 * while it is held, and a seal made under the new one (chain-seals.ts) keeps them verifiable after
 * it is destroyed.
 */
export interface LinkGenerations {
  current(): string;
  /** The generations still held (asks the tokens again when `generation` is not among them). */
  held(generation?: string): Promise<readonly string[]>;
  macUnder(generation: string, data: Buffer): Promise<Buffer>;
}
