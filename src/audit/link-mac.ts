/**
 * The one secret the audit chain depends on, as a narrow port: an HMAC computed inside the HSM
 * (services.ts wires it to the shared cluster's domain MAC key, purpose `audit-link`). The audit
 * layer never sees a key, only MACs.
 */
export interface LinkMac {
  mac(data: Buffer): Promise<Buffer>;
}
