/**
 * Seals: how the chain outlives a rotation of the key its links are MACed under. The links are not
 * recomputed (every later link, the head, exported anchors and archives name them); instead each
 * link made under the retiring generation is checked under it inside the HSM and then sealed under
 * the new one: HMAC over `kms-audit-seal:`, the link's input (prevHash, seq, contents) and the link
 * itself. A sealed event verifies by its seal; its link then still ties it to its neighbours, which
 * needs no key. The start record and each archive file get seals the same way. A seal is stored as
 * `generation:hex`, beside the events (append-only where the backend allows), one per item.
 */
import { createHash } from 'node:crypto';
import { ChainStart, linkInput, startInput } from './chain';
import { AuditEvent } from './event';
import { LinkMac } from './link-mac';

export type SealKind = 'link' | 'start' | 'archive';

/** The generation label of the current key where the log has no generations (tests, single-key installations). */
export const CURRENT = 'current';

export function sealInput(prevHash: string, e: AuditEvent, seq: number, hash: string): Buffer {
  return Buffer.concat([Buffer.from('kms-audit-seal:', 'utf8'), linkInput(prevHash, e, seq), Buffer.from(`:${hash}`, 'utf8')]);
}

export function archiveSealInput(text: string): Buffer {
  return Buffer.from(`kms-audit-archive-seal:${createHash('sha256').update(text, 'utf8').digest('hex')}`, 'utf8');
}

const hex = async (p: Promise<Buffer>): Promise<string> => (await p).toString('hex');

/** The generation a seal (`generation:hex`) verifies under, if it is held and right. */
async function sealedUnder(mac: LinkMac, data: Buffer, seal: string | undefined): Promise<string | undefined> {
  const gens = mac.generations;
  const at = seal?.indexOf(':') ?? -1;
  if (!gens || seal === undefined || at < 0) return undefined;
  const g = seal.slice(0, at);
  if (!(await gens.held(g)).includes(g)) return undefined;
  return (await hex(gens.macUnder(g, data))) === seal.slice(at + 1) ? g : undefined;
}

/**
 * The generation under which `value` is the MAC of `data`, or its seal the MAC of `sealData`
 * (seal first: a sealed link's own generation may be gone); undefined when neither is right.
 */
export async function authenticUnder(mac: LinkMac, data: Buffer, value: string, sealData: Buffer, seal?: string): Promise<string | undefined> {
  const sealed = await sealedUnder(mac, sealData, seal);
  if (sealed !== undefined) return sealed;
  const gens = mac.generations;
  if ((await hex(mac.mac(data))) === value) return gens ? gens.current() : CURRENT;
  if (!gens) return undefined;
  const current = gens.current();
  for (const g of await gens.held()) if (g !== current && (await hex(gens.macUnder(g, data))) === value) return g;
  return undefined;
}

export function linkUnder(mac: LinkMac, e: AuditEvent & { prevHash: string; seq: number; hash: string }, seal?: string): Promise<string | undefined> {
  return authenticUnder(mac, linkInput(e.prevHash, e, e.seq), e.hash, sealInput(e.prevHash, e, e.seq, e.hash), seal);
}

export function startUnder(mac: LinkMac, start: ChainStart, seal?: string): Promise<string | undefined> {
  const data = startInput(start.seq, start.prevHash);
  return authenticUnder(mac, data, start.mac, data, seal);
}

/** The held generation under which an archive file's seal is right (its text unchanged since it was sealed). */
export function archiveSealedUnder(mac: LinkMac, text: string, seal: string | undefined): Promise<string | undefined> {
  return sealedUnder(mac, archiveSealInput(text), seal);
}

/** A seal of `data` under the current generation. */
export async function sealOf(mac: LinkMac, data: Buffer): Promise<string> {
  const gens = mac.generations!;
  const g = gens.current();
  return `${g}:${await hex(gens.macUnder(g, data))}`;
}
