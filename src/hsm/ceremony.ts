import type * as pk from 'pkcs11js';
import { randomBytes } from 'node:crypto';
import { DomainKeyError, DomainLockedError, SoPinError, UnsupportedError } from './errors';
import type { HsmMember } from './member';
import type { WrapAlgorithm } from './profile';

/**
 * The domain-key ceremony: a cluster's domain keys are generated inside one member and copied into
 * every other under an RSA transport key generated inside the receiving member, so they never
 * exist outside the HSMs in clear. Where the sending token enforces CKA_WRAP_WITH_TRUSTED, the
 * transport key is marked CKA_TRUSTED by that token's Security Officer (one SO login per
 * ceremony, PIN asked for then and not kept). Once every member holds them, the domain keys are
 * locked: CKA_EXTRACTABLE=false on every member, after which nothing can wrap them.
 */

export interface SoPinRequest {
  member: string;
  token: string;
}

/** Asks for a token's SO PIN (a prompt, a file); the ceremony uses it for one C_Login(CKU_SO) and drops it. */
export type SoPinProvider = (request: SoPinRequest) => Promise<string>;

export interface CeremonyOptions {
  soPin?: SoPinProvider;
  /** Lock the domain keys once every member holds them (default true). */
  lock?: boolean;
}

export interface CeremonyResult {
  domainId: string;
  generated: boolean;
  copiedTo: string[];
  /** Members whose domain keys this run made non-extractable. */
  locked: string[];
}

export interface LockResult {
  /** Members locked by this run, and those that were locked already. */
  locked: string[];
  already: string[];
  /** Members whose implementation ignores CKA_EXTRACTABLE=false in C_WrapKey (their profile says so): the lock is recorded, not enforced. */
  unenforced: string[];
}

/** Refuses `what` while any member is unavailable (it would miss the change). */
export function requireReachable(members: readonly HsmMember[], what: string): void {
  const unreachable = members.filter((m) => m.state === 'UNAVAILABLE');
  if (unreachable.length)
    throw new DomainKeyError(`cannot ${what} while members are unavailable: ${unreachable.map((m) => `${m.id} (${m.lastError})`).join('; ')}`);
}

function lockedError(clusterId: string, missing: readonly HsmMember[]): DomainLockedError {
  return new DomainLockedError(
    `cluster ${clusterId} is locked (its domain keys are non-extractable on every member), so they cannot be copied into ${missing.map((m) => m.id).join(', ')}; ` +
      `bring new members in with a new domain generation: kmsctl cluster rotate-domain --cluster ${clusterId}`,
  );
}

/**
 * `kmsctl cluster init`: the first member holding domain keys (or, if none does, the first member,
 * which generates them) is the source; every other member receives a copy; then all are locked.
 * Safe to re-run.
 */
export async function initDomain(clusterId: string, members: readonly HsmMember[], options: CeremonyOptions = {}): Promise<CeremonyResult> {
  requireReachable(members, 'run the ceremony');
  const holders = members.filter((m) => m.domain);
  if (holders.length === 0 && members.some((m) => m.generations.size > 0)) {
    throw new DomainKeyError(
      `members of cluster ${clusterId} hold several domain generations and none is named current: finish the rotation (kmsctl cluster rotate-domain --resume)`,
    );
  }
  const ids = new Set(holders.map((m) => m.domain!.id.toString('hex')));
  if (ids.size > 1) throw new DomainKeyError(`members of cluster ${clusterId} already hold different domain keys (${[...ids].join(', ')}); refusing to choose`);
  const source = holders[0] ?? members[0];
  const missing = members.filter((m) => m !== source && !m.domain);
  for (const m of missing) commonWrap(source, m); // members that could never share the domain keys are refused first
  if (source.domain && (source.domainLocked || source.domainLockUnfinished) && missing.length) throw lockedError(clusterId, missing);
  // asked before anything is generated: a domain that could not be copied would be half a ceremony
  if (missing.length && source.profile.wrapWithTrusted && !options.soPin) throw soPinNeeded(clusterId, source);
  let generated = false;
  if (!source.domain) {
    if (source.domainProblem) await source.removeDomainKeys();
    await source.generateDomainKeys(randomBytes(16));
    generated = true;
  }
  const copiedTo = await copyInto(
    clusterId,
    source,
    members.filter((m) => m !== source),
    options.soPin,
    source.profile.wrapWithTrusted,
  );
  const locked = options.lock === false ? [] : (await lockAll(members)).locked;
  return { domainId: source.domain!.id.toString('hex'), generated, copiedTo, locked };
}

/** `kmsctl cluster add-member`: copies the domain keys into `member` from a reachable member that holds them (unlocked clusters only). */
export async function addMember(clusterId: string, members: readonly HsmMember[], member: HsmMember, options: CeremonyOptions = {}): Promise<boolean> {
  const source = members.find((m) => m !== member && m.domain && m.state !== 'UNAVAILABLE');
  if (!source) throw new DomainKeyError(`cluster ${clusterId} has no reachable member holding domain keys: run cluster init`);
  if ((source.domainLocked || source.domainLockUnfinished) && !member.domain) throw lockedError(clusterId, [member]);
  return (await copyInto(clusterId, source, [member], options.soPin, source.profile.wrapWithTrusted)).length > 0;
}

/** A wrap algorithm both members have: the domain fingerprints can only be compared through one. */
function commonWrap(source: HsmMember, target: HsmMember): WrapAlgorithm {
  const theirs = target.capabilities?.wrapAlgorithms ?? [];
  const common = (source.capabilities?.wrapAlgorithms ?? []).find((a) => theirs.includes(a));
  if (!common) {
    throw new UnsupportedError(
      `members ${source.id} (${source.profile.name}) and ${target.id} (${target.profile.name}) share no key-wrap mechanism: they cannot be in one cluster`,
    );
  }
  return common;
}

/**
 * rotate-domain's copy of generation `generation` from source into target; true if copied. With an
 * SO PIN provider the generation was made CKA_WRAP_WITH_TRUSTED (where the profile says) and goes
 * under an SO-trusted transport key; without one it was made without it.
 */
async function addMemberFrom(source: HsmMember, target: HsmMember, generation: Buffer, soPin?: SoPinProvider): Promise<boolean> {
  return (await copyInto('of this rotation', source, [target], soPin, soPin !== undefined && source.profile.wrapWithTrusted, generation)).length > 0;
}

/**
 * `kmsctl cluster lock`: every member must be reachable and hold the same domain keys (a member
 * left out could never be copied into afterwards); then each is locked and read back. Idempotent.
 */
export async function lockDomain(clusterId: string, members: readonly HsmMember[]): Promise<LockResult> {
  requireReachable(members, 'lock the domain keys');
  const without = members.filter((m) => !m.domain);
  if (without.length)
    throw new DomainKeyError(`cannot lock cluster ${clusterId}: ${without.map((m) => m.id).join(', ')} hold no domain keys (run cluster init first)`);
  for (const m of members.slice(1)) {
    const wrap = commonWrap(members[0], m);
    if (!(await m.domainFingerprint(wrap)).equals(await members[0].domainFingerprint(wrap)))
      throw new DomainKeyError(`cannot lock cluster ${clusterId}: ${m.id} holds different domain keys from ${members[0].id}`);
  }
  return lockAll(members);
}

async function lockAll(members: readonly HsmMember[]): Promise<LockResult> {
  const result: LockResult = { locked: [], already: [], unenforced: [] };
  for (const m of members) {
    ((await m.lockDomainKeys()) ? result.locked : result.already).push(m.id);
    if (!m.profile.enforcesNonExtractable) result.unenforced.push(m.id);
  }
  return result;
}

function soPinNeeded(clusterId: string, source: HsmMember): SoPinError {
  return new SoPinError(
    `copying the domain keys of cluster ${clusterId} out of token "${source.tokenLabel}" (member ${source.id}) needs that token's Security Officer PIN: ` +
      `they may be wrapped only under a key its SO marks trusted (CKA_WRAP_WITH_TRUSTED); kmsctl asks for it, or reads it from --so-pin-file`,
  );
}

/**
 * Copies source's domain keys (of `generation`, else its current ones) into every target that lacks
 * them; the ids of those copied into. Without `generation` (the ceremony), a target holding other
 * domain keys is refused; with it (rotate-domain), targets may hold older generations.
 */
async function copyInto(
  clusterId: string,
  source: HsmMember,
  targets: readonly HsmMember[],
  soPin: SoPinProvider | undefined,
  viaTrusted: boolean,
  generation?: Buffer,
): Promise<string[]> {
  const id = generation ?? source.domain!.id;
  const receivers: HsmMember[] = [];
  for (const target of targets) {
    const existing = generation ? (target.holds(id) ? id : undefined) : target.domain?.id;
    if (existing) {
      const wrap = commonWrap(source, target);
      const same = existing.equals(id) && (await target.domainFingerprint(wrap, id)).equals(await source.domainFingerprint(wrap, id));
      if (same) continue;
      throw new DomainKeyError(
        `token "${target.tokenLabel}" of member ${target.id} already holds different domain keys (domain ${existing.toString('hex')}); refusing to add it`,
      );
    }
    if (generation ? target.brokenGenerations.has(id.toString('hex')) : target.domainProblem) await target.removeDomainKeys(generation);
    if (source.profile.nativeCloning && target.profile.nativeCloning) {
      throw new DomainKeyError(`member ${target.id}: its HSM family clones keys natively; clone the domain keys with the vendor's tools, then re-run`);
    }
    receivers.push(target);
  }
  if (receivers.length === 0) return [];
  const transports = [];
  for (const target of receivers) transports.push(await target.createTransportKey());
  let trusted: (pk.Handle | undefined)[] = receivers.map(() => undefined);
  if (viaTrusted) {
    if (!soPin) throw soPinNeeded(clusterId, source);
    trusted = await source.trustTransportKeys(await soPin({ member: source.id, token: source.tokenLabel }), transports);
  }
  for (const [i, target] of receivers.entries()) {
    const wrapped = await source.exportDomainKeys(transports[i].modulus, transports[i].exponent, id, { trusted: trusted[i] });
    await target.importDomainKeys(transports[i], wrapped);
    const wrap = commonWrap(source, target);
    if (!(await target.domainFingerprint(wrap, id)).equals(await source.domainFingerprint(wrap, id))) {
      await target.removeDomainKeys(id);
      throw new DomainKeyError(`copy of the domain keys into ${target.id} does not match the source; removed it`);
    }
  }
  return receivers.map((m) => m.id);
}

/** What the generation work needs of a cluster. */
export interface GenerationHost {
  readonly id: string;
  readonly members: readonly HsmMember[];
  readonly currentGeneration: Buffer | undefined;
  refreshGenerations(): Promise<void>;
}

/**
 * Generation `generation` on every member (rotate-domain): made inside the first member holding
 * it or, if none does, inside the first member, then copied into every member lacking it (members
 * with no keys at all included) by the ceremony's copy, then locked on every member (unless
 * `lock: false`). With `soPin` it is made CKA_WRAP_WITH_TRUSTED and copied under SO-trusted
 * transport keys; without, as before (the window until the lock is then unprotected). Safe to re-run.
 */
export async function newGeneration(
  cluster: GenerationHost,
  generation: Buffer,
  options: CeremonyOptions = {},
): Promise<{ generated: boolean; source: string; copiedTo: string[] }> {
  requireReachable(cluster.members, 'make a domain generation');
  await cluster.refreshGenerations();
  let source = cluster.members.find((m) => m.holds(generation));
  const generated = !source;
  if (!source) {
    source = cluster.members[0];
    if (source.brokenGenerations.has(generation.toString('hex'))) await source.removeDomainKeys(generation);
    await source.generateDomainKeys(generation, options.soPin !== undefined && source.profile.wrapWithTrusted);
  }
  const copiedTo: string[] = [];
  for (const m of cluster.members) {
    if (m !== source && (await addMemberFrom(source, m, generation, options.soPin))) copiedTo.push(m.id);
  }
  if (options.lock !== false) await lockAll(cluster.members);
  return { generated, source: source.id, copiedTo };
}

/** Members whose KEK of `generation` has CKA_UNWRAP_TEMPLATE: re-wrapping its records there needs their SO (see trustRewrapKeys). */
export function templatedOn(members: readonly HsmMember[], generation: Buffer): HsmMember[] {
  return members.filter((m) => m.unwrapTemplateOn(generation));
}

/**
 * Before rotate-domain re-wraps records of `generation`: on every member whose KEK of it has
 * CKA_UNWRAP_TEMPLATE, one SO login makes the trusted session key the re-wrap goes through.
 * Dropped by each member's dropRewrapKey. Without an SO PIN provider, refused with the reason.
 */
export async function trustRewrapKeys(cluster: GenerationHost, generation: Buffer, soPin: SoPinProvider | undefined): Promise<string[]> {
  const members = templatedOn(cluster.members, generation);
  if (members.length && !soPin) {
    throw new SoPinError(
      `the records of cluster ${cluster.id} are under a KEK with CKA_UNWRAP_TEMPLATE on ${members.map((m) => m.id).join(', ')}: ` +
        "they can be re-wrapped only through a key the token's Security Officer makes trusted; give the SO PIN (--so-pin-file, or at a terminal)",
    );
  }
  for (const m of members) await m.trustRewrapKey(await soPin!({ member: m.id, token: m.tokenLabel }));
  return members.map((m) => m.id);
}

/** Destroys generation `generation` on every member holding it (never the current one); the members it was destroyed on. */
export async function destroyGeneration(cluster: GenerationHost, generation: Buffer): Promise<string[]> {
  if (cluster.currentGeneration?.equals(generation))
    throw new DomainKeyError(`generation ${generation.toString('hex')} is cluster ${cluster.id}'s current one`);
  requireReachable(cluster.members, 'destroy a domain generation (it would stay on the others)');
  await cluster.refreshGenerations();
  const on: string[] = [];
  for (const m of cluster.members) {
    if (!m.holds(generation) && !m.brokenGenerations.has(generation.toString('hex'))) continue;
    await m.removeDomainKeys(generation);
    on.push(m.id);
  }
  return on;
}
