import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { MEMBER_OPERATIONS, MemberOperation } from './error-classes';
import { ConfigError, ErrorClass } from './errors';

export type CallMode = 'sync' | 'async';
export type OaepHash = 'sha1' | 'sha256';
/** How key material is wrapped under the domain KEK; named in each record (KMR3). */
export type WrapAlgorithm = 'rfc5649' | 'aes-cbc-pad';
export const WRAP_ALGORITHMS: readonly WrapAlgorithm[] = ['rfc5649', 'aes-cbc-pad'];

/** An error-class override: `code` returned during one of `during` operations is `errorClass`. */
export interface ErrorOverride {
  code: string;
  during: MemberOperation[];
  errorClass: ErrorClass;
}

/** What one PKCS#11 implementation is and how it behaves; loaded from hsm-profiles/*.yaml. */
export interface HsmProfile {
  name: string;
  description: string;
  /** false for profiles written from vendor documentation and never run here. */
  verified: boolean;
  callMode: CallMode;
  moduleHints: string[];
  /** NSS-style library parameters; `{dir}` is replaced by the member's `moduleDir`. */
  libraryParameters?: string;
  maxSessions: number;
  /** Mechanism id implementing RFC 5649 AES key wrap with padding; absent if the module has none. */
  rfc5649Mechanism?: number;
  /** Wrap algorithms this module can use, preferred first (default: rfc5649 if it has a mechanism). */
  wrapAlgorithms: WrapAlgorithm[];
  oaepHashes: OaepHash[];
  /** CKM_ECDSA_SHA256 etc. usable; otherwise hash in software and sign with CKM_ECDSA. */
  ecdsaWithHash: boolean;
  /** Layout of CK_GCM_PARAMS the module expects: 'v2.20' (no ulIvBits) or 'v2.40' (with ulIvBits, as in v3.0). */
  gcmParams: 'v2.20' | 'v2.40';
  /** Who chooses the AES-GCM IV: the caller (from the token's RNG, sent in the parameters) or the token itself. */
  gcmIv: 'caller' | 'token';
  /** EC private keys can be unwrapped from RFC 5649 blobs; without it EC keys are not offered. */
  ecPrivateKeyUnwrap: boolean;
  /**
   * C_UnwrapKey ignores CKA_SENSITIVE/CKA_EXTRACTABLE in its template and refuses CKA_EXTRACTABLE=true
   * (openCryptoki 3.8): the attribute is left out and the member sets the protection after unwrapping.
   */
  unwrapIgnoresProtection: boolean;
  /** Domain keys are cloned by the HSM family itself (e.g. Luna HA) instead of by wrap/unwrap. */
  nativeCloning: boolean;
  /** C_WrapKey refuses a CKA_EXTRACTABLE=false key: the domain-key lock means something (NSS softokn: no, measured). */
  enforcesNonExtractable: boolean;
  /** CKA_WRAP_WITH_TRUSTED is enforced and only the Security Officer may set CKA_TRUSTED: the ceremony copies under an SO-trusted key. */
  wrapWithTrusted: boolean;
  /**
   * C_UnwrapKey enforces the unwrapping key's CKA_UNWRAP_TEMPLATE and the attribute cannot be
   * changed or dropped by a copy (SoftHSM2: yes; NSS softokn: accepted and ignored, measured): the
   * domain KEK is made with one (test/integration/domain-lockdown.test.ts).
   */
  unwrapTemplate: boolean;
  /**
   * The lock replaces each domain key by a copy with CKA_MODIFIABLE=false (and CKA_ENCRYPT/DECRYPT/
   * DERIVE false): a user session could otherwise set CKA_DECRYPT on the KEK and use it as an
   * AES-ECB oracle that unwraps records in software (SoftHSM2: measured, and the copy refuses it).
   */
  lockUnmodifiable: boolean;
  errorOverrides: ErrorOverride[];
  /** Fast-path operations that must still leave the event loop on this token (slow calls always do). */
  slowOperations: MemberOperation[];
  notes: string[];
}

const ERROR_CLASSES: ErrorClass[] = ['caller', 'session', 'device', 'unsupported'];

function field<T>(raw: Record<string, unknown>, name: string, check: (v: unknown) => v is T, source: string, fallback?: T): T {
  const v = raw[name];
  if (v === undefined && fallback !== undefined) return fallback;
  if (!check(v)) throw new ConfigError(`${source}: field "${name}" is missing or has the wrong type`);
  return v;
}
const isString = (v: unknown): v is string => typeof v === 'string' && v.length > 0;
const isBool = (v: unknown): v is boolean => typeof v === 'boolean';
const isInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;
const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

export function parseProfile(text: string, source: string): HsmProfile {
  const raw = parse(text) as Record<string, unknown> | null;
  if (!raw || typeof raw !== 'object') throw new ConfigError(`${source}: not a YAML mapping`);
  const callMode = field(raw, 'callMode', isString, source);
  if (callMode !== 'sync' && callMode !== 'async') throw new ConfigError(`${source}: callMode must be sync or async`);
  const oaep = field(raw, 'oaepHashes', isStrings, source);
  if (!oaep.every((h) => h === 'sha1' || h === 'sha256')) throw new ConfigError(`${source}: oaepHashes may hold sha1 and sha256 only`);
  const overrides = field(raw, 'errorOverrides', (v): v is unknown[] => Array.isArray(v), source, []);
  return {
    name: field(raw, 'name', isString, source),
    description: field(raw, 'description', isString, source),
    verified: field(raw, 'verified', isBool, source),
    callMode,
    moduleHints: field(raw, 'moduleHints', isStrings, source),
    libraryParameters: raw.libraryParameters === undefined ? undefined : field(raw, 'libraryParameters', isString, source),
    maxSessions: field(raw, 'maxSessions', isInt, source),
    rfc5649Mechanism: raw.rfc5649Mechanism === undefined ? undefined : field(raw, 'rfc5649Mechanism', isInt, source),
    wrapAlgorithms: wrapAlgorithmsOf(raw, source),
    oaepHashes: oaep,
    ecdsaWithHash: field(raw, 'ecdsaWithHash', isBool, source),
    nativeCloning: field(raw, 'nativeCloning', isBool, source, false),
    enforcesNonExtractable: field(raw, 'enforcesNonExtractable', isBool, source, true),
    wrapWithTrusted: field(raw, 'wrapWithTrusted', isBool, source, false),
    unwrapTemplate: field(raw, 'unwrapTemplate', isBool, source, false),
    lockUnmodifiable: field(raw, 'lockUnmodifiable', isBool, source, false),
    unwrapIgnoresProtection: field(raw, 'unwrapIgnoresProtection', isBool, source, false),
    gcmParams: gcmParamsOf(raw.gcmParams, source),
    gcmIv: oneOf(raw, 'gcmIv', ['caller', 'token'] as const, source, 'caller'),
    ecPrivateKeyUnwrap: field(raw, 'ecPrivateKeyUnwrap', isBool, source, true),
    errorOverrides: overrides.map((o, i) => parseOverride(o, `${source} errorOverrides[${i}]`)),
    slowOperations: operationsOf(field(raw, 'slowOperations', isStrings, source, []), `${source} slowOperations`),
    notes: field(raw, 'notes', isStrings, source, []),
  };
}

function wrapAlgorithmsOf(raw: Record<string, unknown>, source: string): WrapAlgorithm[] {
  const list = field(raw, 'wrapAlgorithms', isStrings, source, raw.rfc5649Mechanism === undefined ? [] : ['rfc5649']);
  if (list.length === 0 || !list.every((a) => (WRAP_ALGORITHMS as string[]).includes(a))) {
    throw new ConfigError(`${source}: wrapAlgorithms must list one or more of ${WRAP_ALGORITHMS.join(', ')}`);
  }
  if (list.includes('rfc5649') && raw.rfc5649Mechanism === undefined)
    throw new ConfigError(`${source}: wrapAlgorithms names rfc5649 but rfc5649Mechanism is not set`);
  return list as WrapAlgorithm[];
}

function gcmParamsOf(v: unknown, source: string): 'v2.20' | 'v2.40' {
  if (v === undefined || v === 'v2.20') return 'v2.20';
  if (v === 'v2.40') return 'v2.40';
  throw new ConfigError(`${source}: gcmParams must be v2.20 or v2.40`);
}

function oneOf<T extends string>(raw: Record<string, unknown>, name: string, allowed: readonly T[], source: string, fallback: T): T {
  const v = raw[name];
  if (v === undefined) return fallback;
  if (!allowed.includes(v as T)) throw new ConfigError(`${source}: ${name} must be one of ${allowed.join(', ')}`);
  return v as T;
}

function operationsOf(names: string[], source: string): MemberOperation[] {
  const unknown = names.filter((d) => !MEMBER_OPERATIONS.includes(d as MemberOperation));
  if (unknown.length) throw new ConfigError(`${source}: unknown operations ${unknown.join(', ')} (known: ${MEMBER_OPERATIONS.join(', ')})`);
  return names as MemberOperation[];
}

function parseOverride(o: unknown, source: string): ErrorOverride {
  if (!o || typeof o !== 'object') throw new ConfigError(`${source}: not a mapping`);
  const r = o as Record<string, unknown>;
  const errorClass = field(r, 'errorClass', isString, source);
  if (!ERROR_CLASSES.includes(errorClass as ErrorClass)) throw new ConfigError(`${source}: errorClass must be one of ${ERROR_CLASSES.join(', ')}`);
  return {
    code: field(r, 'code', isString, source),
    during: operationsOf(field(r, 'during', isStrings, source), `${source} during`),
    errorClass: errorClass as ErrorClass,
  };
}

export const PROFILE_DIR = join(__dirname, '..', '..', '..', 'hsm-profiles');

export function loadProfiles(dir = PROFILE_DIR): Map<string, HsmProfile> {
  const profiles = new Map<string, HsmProfile>();
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()) {
    const profile = parseProfile(readFileSync(join(dir, file), 'utf8'), file);
    if (profiles.has(profile.name)) throw new ConfigError(`${file}: duplicate profile name ${profile.name}`);
    profiles.set(profile.name, profile);
  }
  return profiles;
}

/** One line per profile for operators; unverified profiles say so. */
export function describeProfiles(profiles: Iterable<HsmProfile>): string[] {
  return [...profiles].map((p) => `${p.name}\t${p.verified ? 'verified' : 'verified: false (from vendor documentation, never run here)'}\t${p.description}`);
}
