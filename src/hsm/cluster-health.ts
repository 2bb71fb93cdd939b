import type { HsmMember, MemberState } from './member';
import type { ClusterHealthMonitor } from './member-health';

export type ClusterKind = 'shared' | 'dedicated';

export interface MemberHealth {
  id: string;
  profile: string;
  verifiedProfile: boolean;
  token: string;
  state: MemberState;
  detail: string;
  probeMs?: number;
  sessions: { open: number; busy: number; cap: number; waiting: number };
  cachedHandles: number;
  resets: number;
  /**
   * The domain keys are locked on this token as its profile's lock leaves them ('locked'); locked
   * by an older version, non-extractable but still CKA_MODIFIABLE ('modifiable': kmsctl cluster
   * lock finishes it); not yet ('unlocked'); 'none' without domain keys.
   */
  domainLock: 'locked' | 'modifiable' | 'unlocked' | 'none';
  /** False where the implementation ignores the lock (its profile's enforcesNonExtractable). */
  lockEnforced: boolean;
  /**
   * The current generation's KEK has CKA_UNWRAP_TEMPLATE ('set'); 'absent': the token enforces one
   * but this KEK predates it (kmsctl cluster rotate-domain makes a templated generation);
   * 'unenforced': the implementation ignores it (its profile); 'none' without domain keys.
   */
  unwrapTemplate: 'set' | 'absent' | 'unenforced' | 'none';
  /** Domain generations (hex) on the member's token, as last read. */
  generations: string[];
}

export interface ClusterHealth {
  id: string;
  kind: ClusterKind;
  state: MemberState;
  members: MemberHealth[];
  /** The generation new material is sealed under (hex), if known. */
  generation?: string;
  /** Plain statements of what this cluster's members do not protect (an implementation that lets the domain keys out). */
  warnings: string[];
}

function domainLock(m: HsmMember): MemberHealth['domainLock'] {
  if (m.domainLocked === undefined) return 'none';
  if (m.domainLocked) return 'locked';
  return m.domainLockUnfinished ? 'modifiable' : 'unlocked';
}

/** One member as health() reports it: the state the monitor set, its sessions, and what its token holds and enforces. */
export function memberHealth(m: HsmMember, monitor: ClusterHealthMonitor): MemberHealth {
  return {
    id: m.id,
    profile: m.profile.name,
    verifiedProfile: m.profile.verified,
    token: m.tokenLabel,
    state: monitor.state(m),
    detail: monitor.detail(m),
    probeMs: monitor.lastProbe(m)?.ms,
    sessions: m.sessions,
    cachedHandles: m.cachedHandles,
    resets: m.resets,
    domainLock: domainLock(m),
    lockEnforced: m.profile.enforcesNonExtractable,
    unwrapTemplate: m.domainUnwrapTemplate === undefined ? 'none' : m.domainUnwrapTemplate ? 'set' : m.profile.unwrapTemplate ? 'absent' : 'unenforced',
    generations: [...m.generations.keys()],
  };
}

/**
 * What a cluster with such a member must say plainly wherever it is shown (cluster status, the
 * server's start-up log): an implementation that does not enforce non-extractability (NSS softokn)
 * lets anyone holding its user PIN wrap the domain keys out, and with them every key of the cluster.
 */
export function protectionWarnings(members: readonly HsmMember[]): string[] {
  return members
    .filter((m) => !m.profile.enforcesNonExtractable)
    .map(
      (m) =>
        `member ${m.id} (${m.profile.name}) does not enforce non-extractability: anyone with its user PIN can wrap the domain keys out ` +
        'and decrypt every key of the cluster offline; do not keep production keys on it (docs/security.md §10)',
    );
}

/** The cluster's state from its members': UNAVAILABLE with none up, ACTIVE with all ACTIVE, else DEGRADED. */
export function clusterState(members: readonly MemberHealth[]): MemberState {
  const up = members.filter((m) => m.state !== 'UNAVAILABLE').length;
  return up === 0 ? 'UNAVAILABLE' : members.every((m) => m.state === 'ACTIVE') ? 'ACTIVE' : 'DEGRADED';
}
