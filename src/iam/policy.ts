/**
 * CAM policy documents: the grammar (`parsePolicy`) and the decision for one request (`evaluate`).
 * Pure: no I/O, no clock (the request carries its time).
 *
 *   { "version": "2.0",
 *     "statement": [{ "effect": "allow" | "deny",
 *                     "action": "kms:Encrypt" | ["kms:Describe*", ...],
 *                     "resource": "qcs::kms:ap-guangzhou:uin/100000000001:key/*" | [...],
 *                     "condition": { "<operator>": { "<key>": "value" | ["value", ...] } } }] }
 *
 * Actions match case-insensitively, resources case-sensitively; both take `*` (any run) and `?`
 * (one character). A statement applies when one of its actions and one of its resources match and
 * every condition holds. Any applicable deny gives 'deny'; otherwise any applicable allow gives
 * 'allow'; otherwise 'none'.
 */
import { CONDITION_OPERATORS, ConditionOperator, RequestContext, conditionHolds, conditionValueProblem, isConditionOperator } from './conditions';
import { PolicyError } from './errors';
import { globMatch } from './glob';

export { CONDITION_OPERATORS, ConditionOperator, RequestContext } from './conditions';

export type Effect = 'allow' | 'deny';
export type ConditionValues = string | string[];
export type Condition = Partial<Record<ConditionOperator, Record<string, ConditionValues>>>;

export interface Statement {
  effect: Effect;
  action: string | string[];
  resource: string | string[];
  condition?: Condition;
}

export interface Policy {
  version: '2.0';
  statement: Statement[];
}

export interface AccessRequest {
  /** `kms:Encrypt` */
  action: string;
  /** A concrete resource name (see resources.ts). */
  resource: string;
  context: RequestContext;
}

export type Decision = 'allow' | 'deny' | 'none';

/** CAM's limit on a policy document (compact JSON). */
export const MAX_POLICY_CHARS = 6144;

const ACTION = /^(\*|[a-z][a-z0-9_-]*:[A-Za-z0-9_*?-]+)$/i;
const RESOURCE = /^(\*|qcs:[\x21-\x7e]*)$/;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function fail(where: string, problem: string): never {
  throw new PolicyError(`invalid policy: ${where}${where ? ' ' : ''}${problem}`);
}

function fields(v: unknown, where: string, allowed: readonly string[]): Json {
  if (!isObject(v)) fail(where, 'must be an object');
  const unknown = Object.keys(v).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) fail(where, `has unknown field ${JSON.stringify(unknown[0])} (allowed: ${allowed.join(', ')})`);
  return v;
}

/** A string or a non-empty list of strings, each accepted by `check`. */
function stringOrList(v: unknown, where: string, check: (s: string, at: string) => void): string | string[] {
  if (typeof v === 'string') {
    check(v, where);
    return v;
  }
  if (!Array.isArray(v) || v.length === 0) fail(where, 'must be a string or a non-empty list of strings');
  return v.map((item, i) => {
    if (typeof item !== 'string') fail(`${where}[${i}]`, 'must be a string');
    check(item, `${where}[${i}]`);
    return item;
  });
}

function checkAction(s: string, where: string): void {
  if (!ACTION.test(s)) fail(where, `must be "*" or "service:Action" (wildcards * and ? allowed), not ${JSON.stringify(s)}`);
}

function checkResource(s: string, where: string): void {
  if (!RESOURCE.test(s)) fail(where, `must be "*" or a resource name starting with "qcs:", not ${JSON.stringify(s)}`);
}

function conditionValues(op: ConditionOperator, v: unknown, where: string): ConditionValues {
  const asText = (x: unknown, at: string): string => {
    if (typeof x === 'number' && Number.isFinite(x)) return String(x);
    if (typeof x !== 'string') fail(at, 'must be a string or a number');
    return x;
  };
  const check = (s: string, at: string): void => {
    const problem = conditionValueProblem(op, s);
    if (problem) fail(at, problem);
  };
  return stringOrList(Array.isArray(v) ? v.map((x, i) => asText(x, `${where}[${i}]`)) : asText(v, where), where, check);
}

function parseCondition(v: unknown, where: string): Condition {
  if (!isObject(v)) fail(where, 'must be an object of operators');
  const out: Condition = {};
  for (const [op, keys] of Object.entries(v)) {
    const at = `${where}.${op}`;
    if (!isConditionOperator(op)) fail(at, `is not a condition operator (known: ${CONDITION_OPERATORS.join(', ')})`);
    if (!isObject(keys) || Object.keys(keys).length === 0) fail(at, 'must be an object of condition keys to values');
    const parsed: Record<string, ConditionValues> = {};
    for (const [key, values] of Object.entries(keys)) {
      if (key.trim() === '') fail(at, 'has an empty condition key');
      parsed[key] = conditionValues(op, values, `${at}[${JSON.stringify(key)}]`);
    }
    out[op] = parsed;
  }
  return out;
}

function parseStatement(v: unknown, where: string): Statement {
  const s = fields(v, where, ['effect', 'action', 'resource', 'condition']);
  if (s.effect !== 'allow' && s.effect !== 'deny') fail(`${where}.effect`, `must be "allow" or "deny", not ${JSON.stringify(s.effect)}`);
  if (s.action === undefined) fail(where, 'has no action');
  if (s.resource === undefined) fail(where, 'has no resource');
  const statement: Statement = {
    effect: s.effect,
    action: stringOrList(s.action, `${where}.action`, checkAction),
    resource: stringOrList(s.resource, `${where}.resource`, checkResource),
  };
  if (s.condition !== undefined) statement.condition = parseCondition(s.condition, `${where}.condition`);
  return statement;
}

function fromText(json: unknown): unknown {
  if (typeof json !== 'string') return json;
  if (json.length > MAX_POLICY_CHARS * 4) fail('', `is longer than ${MAX_POLICY_CHARS} characters`);
  try {
    return JSON.parse(json) as unknown;
  } catch (e) {
    return fail('', `is not JSON (${(e as Error).message})`);
  }
}

/**
 * Checks a policy document (an object, or its JSON text) and returns a normalised copy: numbers in
 * condition values become strings; nothing else changes. Throws PolicyError saying what is wrong.
 */
export function parsePolicy(json: unknown): Policy {
  const doc = fields(fromText(json), 'document', ['version', 'statement']);
  if (doc.version !== '2.0') fail('version', `must be "2.0", not ${JSON.stringify(doc.version)}`);
  if (!Array.isArray(doc.statement) || doc.statement.length === 0) fail('statement', 'must be a non-empty list');
  const policy: Policy = { version: '2.0', statement: doc.statement.map((s, i) => parseStatement(s, `statement[${i}]`)) };
  if (JSON.stringify(policy).length > MAX_POLICY_CHARS) fail('', `is longer than ${MAX_POLICY_CHARS} characters`);
  return policy;
}

const list = (v: string | string[]): string[] => (typeof v === 'string' ? [v] : v);

/** Every condition of the statement, each decided; unknown is decided against the requester. */
function conditionsHold(s: Statement, context: RequestContext): boolean {
  for (const [op, keys] of Object.entries(s.condition ?? {}) as Array<[ConditionOperator, Record<string, ConditionValues>]>) {
    for (const [key, values] of Object.entries(keys)) {
      const t = conditionHolds(op, key, list(values), context);
      if (!(t ?? s.effect === 'deny')) return false;
    }
  }
  return true;
}

function applies(s: Statement, request: AccessRequest): boolean {
  return (
    list(s.action).some((a) => globMatch(a, request.action, true)) &&
    list(s.resource).some((r) => globMatch(r, request.resource)) &&
    conditionsHold(s, request.context)
  );
}

/** The decision of `policies` for one request: an applicable deny wins, then an applicable allow. */
export function evaluate(request: AccessRequest, policies: readonly Policy[]): Decision {
  let allowed = false;
  for (const policy of policies) {
    for (const s of policy.statement) {
      if (!applies(s, request)) continue;
      if (s.effect === 'deny') return 'deny';
      allowed = true;
    }
  }
  return allowed ? 'allow' : 'none';
}
