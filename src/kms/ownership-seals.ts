/**
 * The keys' ownership MACs across a domain rotation of the shared cluster: every key of every
 * cluster carries one, made under the shared cluster's domain MAC key (sealed-store.ts). Counted by
 * the generation each names and re-sealed under the current one, each verified first and written
 * by compare-and-set on the key's revision (a key changed meanwhile is read again).
 */
import { GenerationalAuthenticator } from '../store/row-mac';
import { ConflictError, KeyNotFoundError, KeyRef, MetadataStore } from '../store/store';
import { StoreIntegrityError } from './errors';
import { ownershipBytes, ownershipMac } from './sealed-store';

const PAGE = 200;
const PARALLEL = 8;
const ATTEMPTS = 5;

export class OwnershipSeals {
  constructor(
    /** The backend under the sealing decorator (the walk checks and writes the MAC itself). */
    private readonly inner: MetadataStore,
    private readonly auth: GenerationalAuthenticator,
    private readonly clusterIds: () => readonly string[],
  ) {}

  async census(): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    await this.eachKey(async (ref) => {
      const r = await this.inner.getKey(ref.ownerUin, ref.keyId);
      if (!r?.authority) return;
      const g = this.auth.generationOf(Buffer.from(r.authority, 'base64'));
      counts.set(g, (counts.get(g) ?? 0) + 1);
    });
    return counts;
  }

  async reseal(done: (n: number) => void, afterPage: () => Promise<void> = async () => undefined): Promise<number> {
    let n = 0;
    await this.eachKey(async (ref) => {
      if (!(await this.resealKey(ref))) return;
      n++;
      done(1);
    }, afterPage);
    return n;
  }

  private async resealKey(ref: KeyRef): Promise<boolean> {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const r = await this.inner.getKey(ref.ownerUin, ref.keyId);
      if (!r?.authority) return false;
      const mac = Buffer.from(r.authority, 'base64');
      if (this.auth.generationOf(mac) === this.auth.current()) return false;
      if (!(await this.auth.verify(ownershipBytes(r), mac)))
        throw new StoreIntegrityError(`key ${r.keyId}: its stored ownership MAC does not match (changed outside the service): not re-sealed`);
      try {
        await this.inner.updateKey(r.ownerUin, r.keyId, r.revision, { authority: await ownershipMac(this.auth, r) });
        return true;
      } catch (e) {
        if (e instanceof KeyNotFoundError) return false;
        if (!(e instanceof ConflictError)) throw e;
      }
    }
    throw new StoreIntegrityError(`key ${ref.keyId} kept changing during its re-seal (${ATTEMPTS} attempts): run again`);
  }

  private async eachKey(fn: (ref: KeyRef) => Promise<void>, afterPage?: () => Promise<void>): Promise<void> {
    for (const clusterId of this.clusterIds()) {
      for (let cursor: string | undefined = ''; cursor !== undefined;) {
        const page = await this.inner.clusterKeys(clusterId, cursor, PAGE);
        for (let i = 0; i < page.keys.length; i += PARALLEL) {
          const failed = (await Promise.allSettled(page.keys.slice(i, i + PARALLEL).map(fn))).find((x) => x.status === 'rejected');
          if (failed) throw failed.reason;
        }
        await afterPage?.();
        cursor = page.cursor;
      }
    }
  }
}
