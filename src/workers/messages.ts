/**
 * What a supervisor and its workers say to each other over the cluster IPC channel. Every message
 * carries a `kind` starting with "kms:" (prom-client's aggregation messages share the channel).
 */
import type { CacheAnswer, Claim } from '../api/replay-guard';
import type { Tokens } from '../api/shared-rate-limit';

/** Which of the supervisor's ledgers: per account, or per principal. */
export type RateScope = 'account' | 'principal';

export type ToSupervisor =
  | { kind: 'kms:ready'; worker: number; pid: number; port: number; opsPort?: number }
  | { kind: 'kms:rate-ask'; id: number; scope: RateScope; uin: string; want: number }
  | { kind: 'kms:rate-settle'; scope: RateScope; unused: Tokens }
  | { kind: 'kms:metrics'; id: number }
  | { kind: 'kms:replay-claim'; id: number; claims: Claim[] };

export type ToWorker =
  | { kind: 'kms:rate-grant'; id: number; granted: number; waitMs: number }
  | { kind: 'kms:metrics'; id: number; text?: string; error?: string }
  | { kind: 'kms:replay-answer'; id: number; answers: CacheAnswer[] }
  | { kind: 'kms:shutdown' };

type Kind<M> = M extends { kind: infer K } ? K : never;

/** `m` is a message of this kind (the shape of its fields is the sender's: both ends are this code). */
export function isMessage<M extends ToSupervisor | ToWorker, K extends Kind<M>>(m: unknown, kind: K): m is Extract<M, { kind: K }> {
  return typeof m === 'object' && m !== null && (m as { kind?: unknown }).kind === kind;
}
