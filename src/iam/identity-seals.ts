/**
 * The identity rows' MACs across a domain rotation of the shared cluster (`kmsctl cluster
 * rotate-domain`): counted by the generation each MAC names, and re-sealed under the current one.
 * A row is verified (under the generation it names) before it is re-sealed, and written by
 * compare-and-set on its MAC, so a row changed meanwhile (a key disabled, a policy attached) is read
 * again, never overwritten with what it was; a row that fails its check is not re-sealed (the walk
 * fails: the old generation stays until it is dealt with).
 */
import { GenerationalAuthenticator } from '../store/row-mac';
import { IamConflictError, IamNotFoundError } from './errors';
import { ApiKeyRecord, IdentityStore, PolicyAttachment, UserRecord } from './identity-store';
import { apiKeyBytes, policyBytes, policySetBytes, SealedIdentityStore, Tamper } from './sealed-identity-store';

const ATTEMPTS = 5;

export class IdentitySeals {
  private readonly sealed: SealedIdentityStore;

  constructor(
    private readonly inner: IdentityStore,
    private readonly auth: GenerationalAuthenticator,
    onTamper: (t: Tamper) => void = () => undefined,
  ) {
    this.sealed = new SealedIdentityStore(inner, auth, onTamper);
  }

  /** MACs per generation (hex, or `legacy`) over every API key row, policy attachment and policy set; read from the store only. */
  async census(): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    // a row without a MAC (a tampered key disabled) names no generation: it is refused under any
    const count = (mac: Buffer | undefined) => {
      if (mac === undefined || mac.length === 0) return;
      const g = this.auth.generationOf(mac);
      counts.set(g, (counts.get(g) ?? 0) + 1);
    };
    await this.eachAccount(async (uin, user) => {
      for (const k of await this.inner.listApiKeys(uin)) count(k.mac);
      if (!user) return;
      for (const p of await this.inner.listPolicies(uin)) count(p.mac);
      count(user.policiesMac);
    });
    return counts;
  }

  /** Re-seals every row not under the current generation; `done(n)` after each write. The number of MACs written. */
  async reseal(done: (n: number) => void, afterAccount: () => Promise<void> = async () => undefined): Promise<number> {
    let n = 0;
    const wrote = () => (n++, done(1));
    await this.eachAccount(async (uin, user) => {
      for (const k of await this.inner.listApiKeys(uin)) if (k.mac?.length && !this.current(k.mac)) await this.resealKey(k.secretId, wrote);
      if (user) await this.resealPolicies(uin, wrote);
      await afterAccount();
    });
    return n;
  }

  private current(mac: Buffer | undefined): boolean {
    return mac !== undefined && mac.length > 0 && this.auth.generationOf(mac) === this.auth.current();
  }

  /** Every tenant (its root keys) and sub-account (its keys and policies), with the sub-account's row. */
  private async eachAccount(fn: (uin: string, user: UserRecord | undefined) => Promise<void>): Promise<void> {
    for (const t of await this.inner.listTenants()) {
      await fn(t.uin, undefined);
      for (const u of await this.inner.listUsers(t.uin)) await fn(u.uin, u);
    }
  }

  private async resealKey(secretId: string, wrote: () => void): Promise<void> {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const k: ApiKeyRecord | undefined = await this.sealed.getApiKey(secretId);
      if (!k || this.current(k.mac)) return;
      try {
        await this.inner.resealApiKey(secretId, k.mac!, await this.auth.mac(apiKeyBytes(k)));
        return wrote();
      } catch (e) {
        if (e instanceof IamNotFoundError) return;
        if (!(e instanceof IamConflictError)) throw e;
      }
    }
    throw new IamConflictError(`API key ${secretId} kept changing during its re-seal (${ATTEMPTS} attempts): run again`);
  }

  /** Each attachment, then the set, each write compare-and-set on the set's MAC (every intermediate set verifies). */
  private async resealPolicies(userUin: string, wrote: () => void): Promise<void> {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      try {
        const { user, attachments } = await this.sealed.verifiedPolicies(userUin);
        if (!user) return;
        let set = attachments;
        let setMac = user.policiesMac ?? null;
        // the set's own MAC counts once, whether an attachment's write or its own re-seals it
        const setWasCurrent = this.current(setMac ?? undefined);
        for (const p of attachments) {
          if (this.current(p.mac)) continue;
          const resealed: PolicyAttachment = { ...p, mac: await this.auth.mac(policyBytes(userUin, p)) };
          set = set.map((q) => (q.name === p.name ? resealed : q));
          const next = await this.auth.mac(policySetBytes(userUin, set));
          await this.inner.attachPolicy(userUin, resealed, { expected: setMac, next });
          setMac = next;
          wrote();
        }
        if (!this.current(setMac ?? undefined))
          await this.inner.setPolicySetMac(userUin, { expected: setMac, next: await this.auth.mac(policySetBytes(userUin, set)) });
        if (!setWasCurrent && user.policiesMac?.length) wrote();
        return;
      } catch (e) {
        if (e instanceof IamNotFoundError) return;
        if (!(e instanceof IamConflictError)) throw e;
      }
    }
    throw new IamConflictError(`the policies of sub-account ${userUin} kept changing during their re-seal (${ATTEMPTS} attempts): run again`);
  }
}
