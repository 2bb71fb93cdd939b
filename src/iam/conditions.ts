/**
 * CAM condition operators. A condition names an operator, a key and one or more values:
 * `{ "ip_equal": { "qcs:ip": ["10.0.0.0/8", "::1"] } }`. The value list is an OR (the negated
 * operators string_not_equal and ip_not_equal hold when the request's value matches none of them).
 *
 * Keys: `qcs:ip` is the request's source IP, `qcs:current_time` its time (unix seconds),
 * `qcs:region` its region; any other key is read from the request context by its exact name.
 *
 * A condition is *unknown* when the request carries no value for its key, or a value of the wrong
 * kind (not an IP, not a date, not a number). The policy evaluator decides unknown against the
 * requester: an allow statement does not apply, a deny statement does.
 */
import { globMatch } from './glob';
import { cidrContains, parseCidr, parseIp } from './ip';

export const CONDITION_OPERATORS = [
  'string_equal',
  'string_not_equal',
  'string_like',
  'ip_equal',
  'ip_not_equal',
  'date_not_less_than',
  'date_less_than',
  'numeric_equal',
  'numeric_less_than',
  'numeric_greater_than',
] as const;
export type ConditionOperator = (typeof CONDITION_OPERATORS)[number];

/** What a request brings to condition evaluation. */
export interface RequestContext {
  sourceIp?: string;
  /** Unix seconds. */
  currentTime?: number;
  region?: string;
  [key: string]: string | number | undefined;
}

/** true, false, or undefined when the request lacks the key or carries a value of the wrong kind. */
export type Truth = boolean | undefined;

type Actual = string | number;

interface OperatorSpec {
  /** What a value must be, for the error message; undefined when any string will do. */
  expects?: string;
  valid(value: string): boolean;
  holds(actual: Actual, values: string[]): Truth;
}

const WELL_KNOWN_KEYS: ReadonlyMap<string, string> = new Map([
  ['qcs:ip', 'sourceIp'],
  ['qcs:current_time', 'currentTime'],
  ['qcs:region', 'region'],
]);

const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

function toNumber(v: Actual): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  return NUMBER.test(v.trim()) ? Number(v) : undefined;
}

/** Unix seconds of a date given as unix seconds (number or digits) or as ISO 8601. */
function toUnixSeconds(v: Actual): number | undefined {
  if (typeof v === 'number' || /^\d+(\.\d+)?$/.test(v.trim())) return toNumber(v);
  if (!ISO_DATE.test(v.trim())) return undefined;
  const ms = Date.parse(v.trim());
  return Number.isNaN(ms) ? undefined : ms / 1000;
}

function compare<T>(parse: (v: Actual) => T | undefined, test: (actual: T, value: T) => boolean) {
  return (actual: Actual, values: string[]): Truth => {
    const a = parse(actual);
    if (a === undefined) return undefined;
    return values.some((v) => {
      const b = parse(v);
      return b !== undefined && test(a, b);
    });
  };
}

function negate(holds: (actual: Actual, values: string[]) => Truth) {
  return (actual: Actual, values: string[]): Truth => {
    const t = holds(actual, values);
    return t === undefined ? undefined : !t;
  };
}

const anyString = (): boolean => true;
const isCidr = (v: string): boolean => parseCidr(v) !== undefined;
const isDate = (v: string): boolean => toUnixSeconds(v) !== undefined;
const isNumber = (v: string): boolean => toNumber(v) !== undefined;
const stringEqual = (actual: Actual, values: string[]): Truth => values.includes(String(actual));
const ipEqual = (actual: Actual, values: string[]): Truth => {
  const ip = parseIp(String(actual));
  if (ip === undefined) return undefined;
  return values.some((v) => {
    const cidr = parseCidr(v);
    return cidr !== undefined && cidrContains(cidr, ip);
  });
};

const OPERATORS: Record<ConditionOperator, OperatorSpec> = {
  string_equal: { valid: anyString, holds: stringEqual },
  string_not_equal: { valid: anyString, holds: negate(stringEqual) },
  string_like: { valid: anyString, holds: (actual, values) => values.some((v) => globMatch(v, String(actual))) },
  ip_equal: { expects: 'an IP address or CIDR block', valid: isCidr, holds: ipEqual },
  ip_not_equal: { expects: 'an IP address or CIDR block', valid: isCidr, holds: negate(ipEqual) },
  date_not_less_than: { expects: 'an ISO 8601 date or unix seconds', valid: isDate, holds: compare(toUnixSeconds, (a, v) => a >= v) },
  date_less_than: { expects: 'an ISO 8601 date or unix seconds', valid: isDate, holds: compare(toUnixSeconds, (a, v) => a < v) },
  numeric_equal: { expects: 'a number', valid: isNumber, holds: compare(toNumber, (a, v) => a === v) },
  numeric_less_than: { expects: 'a number', valid: isNumber, holds: compare(toNumber, (a, v) => a < v) },
  numeric_greater_than: { expects: 'a number', valid: isNumber, holds: compare(toNumber, (a, v) => a > v) },
};

export function isConditionOperator(name: string): name is ConditionOperator {
  return (CONDITION_OPERATORS as readonly string[]).includes(name);
}

/** Why `value` is not acceptable for `operator`, or undefined when it is. */
export function conditionValueProblem(operator: ConditionOperator, value: string): string | undefined {
  const spec = OPERATORS[operator];
  return spec.valid(value) ? undefined : `${operator} needs ${spec.expects ?? 'a string'}, not ${JSON.stringify(value)}`;
}

/** The request's value for a condition key. */
export function contextValue(context: RequestContext, key: string): Actual | undefined {
  const name = WELL_KNOWN_KEYS.get(key) ?? key;
  if (!Object.prototype.hasOwnProperty.call(context, name)) return undefined;
  const v = context[name];
  return typeof v === 'string' || typeof v === 'number' ? v : undefined;
}

/** Whether `operator` holds for the request's value of `key` against `values` (a malformed value matches nothing). */
export function conditionHolds(operator: ConditionOperator, key: string, values: string[], context: RequestContext): Truth {
  const actual = contextValue(context, key);
  return actual === undefined ? undefined : OPERATORS[operator].holds(actual, values);
}
