import { WrappedMaterial } from '../hsm/material';
import type { KeyRecord } from '../store/store';

interface Entry {
  record: KeyRecord;
  materials: Map<number, WrappedMaterial>;
  at: number;
}

/**
 * Key records and their parsed material, per node. The store's change notifications invalidate
 * entries (a key disabled on another node is refused here within a second); the TTL is only a
 * safety net. When an entry goes, `onDrop` receives its parsed material so HSM handles of deleted
 * versions can be destroyed.
 */
export class KeyCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly ttlMs = 30_000,
    private readonly maxEntries = 100_000,
    private readonly onDrop: (keyId: string, materials: WrappedMaterial[]) => void = () => undefined,
  ) {}

  get(keyId: string): KeyRecord | undefined {
    const e = this.entries.get(keyId);
    if (!e) return undefined;
    if (Date.now() - e.at > this.ttlMs) {
      this.entries.delete(keyId);
      return undefined;
    }
    return e.record;
  }

  set(record: KeyRecord): void {
    const old = this.entries.get(record.keyId);
    if (old && old.record.revision > record.revision) return;
    const materials = new Map<number, WrappedMaterial>();
    if (old) {
      for (const v of record.versions) {
        const m = old.materials.get(v.version);
        if (m && m.toBuffer().equals(v.material)) materials.set(v.version, m);
      }
      const dropped = [...old.materials].filter(([n]) => !materials.has(n)).map(([, m]) => m);
      if (dropped.length) this.onDrop(record.keyId, dropped);
    }
    this.entries.delete(record.keyId);
    this.entries.set(record.keyId, { record, materials, at: Date.now() });
    if (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
  }

  /** Parses a version's material once per cached record. */
  material(record: KeyRecord, version: number): WrappedMaterial | undefined {
    const e = this.entries.get(record.keyId);
    const cached = e && e.record === record ? e.materials.get(version) : undefined;
    if (cached) return cached;
    const v = record.versions.find((x) => x.version === version);
    if (!v) return undefined;
    const m = WrappedMaterial.fromBuffer(v.material);
    if (e && e.record === record) e.materials.set(version, m);
    return m;
  }

  /** Forgets one key (undefined: every key); cached HSM handles stay until the refreshed record says otherwise. */
  invalidate(keyId?: string): void {
    if (keyId === undefined) this.entries.clear();
    else this.entries.delete(keyId);
  }

  /**
   * After a change notification: drops the entry at once, reloads the record, and hands the parsed
   * material of versions that no longer exist (crypto-shred, deleted import) to `onDrop`.
   */
  async refresh(keyId: string, load: (ownerUin: string) => Promise<KeyRecord | undefined>): Promise<void> {
    const e = this.entries.get(keyId);
    if (!e) return;
    this.entries.delete(keyId);
    const fresh = await load(e.record.ownerUin).catch(() => undefined);
    if (fresh === undefined) {
      if (e.materials.size) this.onDrop(keyId, [...e.materials.values()]);
      return;
    }
    if (this.entries.has(keyId)) return;
    this.entries.set(keyId, e);
    this.set(fresh);
  }

  get size(): number {
    return this.entries.size;
  }
}
