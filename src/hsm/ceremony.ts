import { randomBytes } from 'node:crypto';
import { DomainKeyError } from './errors';
import type { HsmMember } from './member';

/**
 * The domain-key ceremony: a cluster's domain keys are generated inside one member and copied into
 * every other under an RSA transport key generated inside the receiving member, so they never
 * exist outside the HSMs in clear.
 */

export interface CeremonyResult {
  domainId: string;
  generated: boolean;
  copiedTo: string[];
}

/**
 * `kmsctl cluster init`: the first member holding domain keys (or, if none does, the first member,
 * which generates them) is the source; every other member receives a copy. Safe to re-run.
 */
export async function initDomain(clusterId: string, members: readonly HsmMember[]): Promise<CeremonyResult> {
  const unreachable = members.filter((m) => m.state === 'UNAVAILABLE');
  if (unreachable.length) throw new DomainKeyError(`cannot run the ceremony while members are unavailable: ${unreachable.map((m) => `${m.id} (${m.lastError})`).join('; ')}`);
  const holders = members.filter((m) => m.domain);
  const ids = new Set(holders.map((m) => m.domain!.id.toString('hex')));
  if (ids.size > 1) throw new DomainKeyError(`members of cluster ${clusterId} already hold different domain keys (${[...ids].join(', ')}); refusing to choose`);
  let source = holders[0];
  let generated = false;
  if (!source) {
    source = members[0];
    if (source.domainProblem) await source.removeDomainKeys();
    await source.generateDomainKeys(randomBytes(16));
    generated = true;
  }
  const copiedTo: string[] = [];
  for (const m of members) {
    if (m !== source && (await addMemberFrom(source, m))) copiedTo.push(m.id);
  }
  return { domainId: source.domain!.id.toString('hex'), generated, copiedTo };
}

/** `kmsctl cluster add-member`: copies the domain keys into `member` from a reachable member that holds them. */
export function addMember(clusterId: string, members: readonly HsmMember[], member: HsmMember): Promise<boolean> {
  const source = members.find((m) => m !== member && m.domain && m.state !== 'UNAVAILABLE');
  if (!source) return Promise.reject(new DomainKeyError(`cluster ${clusterId} has no reachable member holding domain keys: run cluster init`));
  return addMemberFrom(source, member);
}

/** Copies source's domain keys into target under a transport key generated inside target; true if copied. */
async function addMemberFrom(source: HsmMember, target: HsmMember): Promise<boolean> {
  const domain = source.domain!;
  if (target.domain) {
    const same = target.domain.id.equals(domain.id) && (await target.domainFingerprint()).equals(await source.domainFingerprint());
    if (same) return false;
    throw new DomainKeyError(`token "${target.tokenLabel}" of member ${target.id} already holds different domain keys (domain ${target.domain.id.toString('hex')}); refusing to add it`);
  }
  if (target.domainProblem) await target.removeDomainKeys();
  if (source.profile.nativeCloning && target.profile.nativeCloning) {
    throw new DomainKeyError(`member ${target.id}: its HSM family clones keys natively; clone the domain keys with the vendor's tools, then re-run`);
  }
  const transport = await target.createTransportKey();
  const wrapped = await source.exportDomainKeys(transport.modulus, transport.exponent);
  await target.importDomainKeys(transport, wrapped);
  if (!(await target.domainFingerprint()).equals(await source.domainFingerprint())) {
    await target.removeDomainKeys();
    throw new DomainKeyError(`copy of the domain keys into ${target.id} does not match the source; removed it`);
  }
  return true;
}
