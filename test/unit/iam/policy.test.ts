import { PolicyError } from '../../../src/iam/errors';
import { AccessRequest, CONDITION_OPERATORS, Condition, MAX_POLICY_CHARS, Policy, Statement, evaluate, parsePolicy } from '../../../src/iam/policy';

const KEY = 'qcs::kms:ap-guangzhou:uin/100000000001:key/creatorUin/200000000001/0b1c6a4e-1f5a-4d63-9a7c-3f0e6b1c2d3e';
const NOW = 1_767_225_600; // 2026-01-01T00:00:00Z

function request(over: Partial<AccessRequest> = {}, context: AccessRequest['context'] = {}): AccessRequest {
  return { action: 'kms:Encrypt', resource: KEY, ...over, context: { sourceIp: '10.1.2.3', currentTime: NOW, region: 'ap-guangzhou', ...context } };
}

const policy = (...statement: Statement[]): Policy => ({ version: '2.0', statement });
const allow = (over: Partial<Statement> = {}): Statement => ({ effect: 'allow', action: 'kms:*', resource: '*', ...over });
const deny = (over: Partial<Statement> = {}): Statement => ({ effect: 'deny', action: 'kms:*', resource: '*', ...over });

describe('parsePolicy: malformed documents are refused with a PolicyError saying what is wrong', () => {
  const ok = { effect: 'allow', action: 'kms:Encrypt', resource: '*' };
  // [case, document, fragment of the message]
  const rows: Array<[string, unknown, string]> = [
    ['not an object', 42, 'document must be an object'],
    ['a list', [], 'document must be an object'],
    ['null', null, 'document must be an object'],
    ['bad JSON text', '{"version": ', 'is not JSON'],
    ['unknown top-level field', { version: '2.0', statement: [ok], principal: {} }, 'unknown field "principal"'],
    ['missing version', { statement: [ok] }, 'version must be "2.0"'],
    ['wrong version', { version: '1.0', statement: [ok] }, 'version must be "2.0", not "1.0"'],
    ['numeric version', { version: 2, statement: [ok] }, 'version must be "2.0"'],
    ['missing statement', { version: '2.0' }, 'statement must be a non-empty list'],
    ['empty statement', { version: '2.0', statement: [] }, 'statement must be a non-empty list'],
    ['statement not a list', { version: '2.0', statement: ok }, 'statement must be a non-empty list'],
    ['statement item not an object', { version: '2.0', statement: ['allow'] }, 'statement[0] must be an object'],
    ['unknown statement field', { version: '2.0', statement: [{ ...ok, sid: 'x' }] }, 'statement[0] has unknown field "sid"'],
    ['bad effect', { version: '2.0', statement: [{ ...ok, effect: 'permit' }] }, 'statement[0].effect must be "allow" or "deny", not "permit"'],
    ['capitalised effect', { version: '2.0', statement: [{ ...ok, effect: 'Allow' }] }, 'effect must be "allow" or "deny"'],
    ['missing effect', { version: '2.0', statement: [{ action: 'kms:*', resource: '*' }] }, 'effect must be'],
    ['missing action', { version: '2.0', statement: [{ effect: 'allow', resource: '*' }] }, 'statement[0] has no action'],
    ['empty action string', { version: '2.0', statement: [{ ...ok, action: '' }] }, 'statement[0].action must be "*" or "service:Action"'],
    ['empty action list', { version: '2.0', statement: [{ ...ok, action: [] }] }, 'statement[0].action must be a string or a non-empty list'],
    ['action not a string', { version: '2.0', statement: [{ ...ok, action: [1] }] }, 'statement[0].action[0] must be a string'],
    ['action without service', { version: '2.0', statement: [{ ...ok, action: 'Encrypt' }] }, 'not "Encrypt"'],
    ['action with space', { version: '2.0', statement: [{ ...ok, action: 'kms: Encrypt' }] }, 'action must be'],
    ['missing resource', { version: '2.0', statement: [{ effect: 'allow', action: 'kms:*' }] }, 'statement[0] has no resource'],
    ['empty resource list', { version: '2.0', statement: [{ ...ok, resource: [] }] }, 'resource must be a string or a non-empty list'],
    [
      'resource not qcs',
      { version: '2.0', statement: [{ ...ok, resource: 'key/abc' }] },
      'statement[0].resource must be "*" or a resource name starting with "qcs:"',
    ],
    ['resource with space', { version: '2.0', statement: [{ ...ok, resource: ['*', 'qcs::kms: x'] }] }, 'statement[0].resource[1] must be'],
    ['condition not an object', { version: '2.0', statement: [{ ...ok, condition: [] }] }, 'condition must be an object of operators'],
    [
      'unknown condition operator',
      { version: '2.0', statement: [{ ...ok, condition: { ip_in: { 'qcs:ip': '1.2.3.4' } } }] },
      'statement[0].condition.ip_in is not a condition operator (known: string_equal',
    ],
    ['operator without keys', { version: '2.0', statement: [{ ...ok, condition: { string_equal: {} } }] }, 'must be an object of condition keys to values'],
    ['empty condition key', { version: '2.0', statement: [{ ...ok, condition: { string_equal: { ' ': 'x' } } }] }, 'has an empty condition key'],
    ['empty value list', { version: '2.0', statement: [{ ...ok, condition: { string_equal: { k: [] } } }] }, 'must be a string or a non-empty list'],
    ['value not a string', { version: '2.0', statement: [{ ...ok, condition: { string_equal: { k: true } } }] }, 'must be a string or a number'],
    [
      'bad IP',
      { version: '2.0', statement: [{ ...ok, condition: { ip_equal: { 'qcs:ip': '10.0.0.300' } } }] },
      'ip_equal needs an IP address or CIDR block, not "10.0.0.300"',
    ],
    [
      'bad CIDR in a list',
      { version: '2.0', statement: [{ ...ok, condition: { ip_not_equal: { 'qcs:ip': ['10.0.0.0/8', '10.0.0.0/40'] } } }] },
      'condition.ip_not_equal["qcs:ip"][1]: '.slice(0, -2),
    ],
    [
      'bad date',
      { version: '2.0', statement: [{ ...ok, condition: { date_less_than: { 'qcs:current_time': 'tomorrow' } } }] },
      'date_less_than needs an ISO 8601 date or unix seconds',
    ],
    [
      'impossible date',
      { version: '2.0', statement: [{ ...ok, condition: { date_not_less_than: { 'qcs:current_time': '2026-02-30T99:00:00Z' } } }] },
      'needs an ISO 8601 date',
    ],
    ['bad number', { version: '2.0', statement: [{ ...ok, condition: { numeric_less_than: { n: '12abc' } } }] }, 'numeric_less_than needs a number'],
    [
      'too long',
      { version: '2.0', statement: [{ ...ok, resource: Array.from({ length: 200 }, (_, i) => `qcs::kms:r:uin/1:key/creatorUin/1/key-${i}`) }] },
      `is longer than ${MAX_POLICY_CHARS} characters`,
    ],
  ];
  test.each(rows)('%s', (_case, doc, fragment) => {
    let error: unknown;
    try {
      parsePolicy(doc);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PolicyError);
    expect((error as Error).message).toContain(fragment);
  });

  test('a well-formed document is returned as a copy; numbers in conditions become strings; JSON text is accepted', () => {
    const doc = {
      version: '2.0',
      statement: [
        {
          effect: 'allow',
          action: ['kms:Encrypt', 'kms:Describe*'],
          resource: KEY,
          condition: { numeric_less_than: { n: 5 }, ip_equal: { 'qcs:ip': ['10.0.0.0/8'] } },
        },
        { effect: 'deny', action: '*', resource: ['*'] },
      ],
    };
    const parsed = parsePolicy(doc);
    expect(parsed).toEqual({
      ...doc,
      statement: [{ ...doc.statement[0], condition: { numeric_less_than: { n: '5' }, ip_equal: { 'qcs:ip': ['10.0.0.0/8'] } } }, doc.statement[1]],
    });
    expect(parsed).not.toBe(doc);
    expect(parsePolicy(JSON.stringify(doc))).toEqual(parsed);
  });

  test.each([
    ['ISO date', { date_less_than: { 'qcs:current_time': '2026-01-01T00:00:00Z' } }],
    ['ISO date with offset', { date_less_than: { 'qcs:current_time': '2026-01-01T08:00:00+08:00' } }],
    ['calendar day', { date_not_less_than: { 'qcs:current_time': '2026-01-01' } }],
    ['unix seconds', { date_less_than: { 'qcs:current_time': '1767225600' } }],
    ['IPv6 CIDR', { ip_equal: { 'qcs:ip': '2001:db8::/32' } }],
    ['mapped IPv6', { ip_equal: { 'qcs:ip': '::ffff:127.0.0.1' } }],
    ['negative decimal', { numeric_greater_than: { n: '-1.5' } }],
    ['any key name', { string_like: { 'kms:KeyUsage': 'ENCRYPT_*' } }],
  ] as Array<[string, Condition]>)('accepts condition with %s', (_case, condition) => {
    expect(parsePolicy(policy(allow({ condition }))).statement[0].condition).toEqual(condition);
  });
});

describe('evaluate: actions and resources', () => {
  // [case, statement fields, request fields, expected decision of one allow statement]
  const rows: Array<[string, Partial<Statement>, Partial<AccessRequest>, 'allow' | 'none']> = [
    ['exact action', { action: 'kms:Encrypt' }, {}, 'allow'],
    ['other action', { action: 'kms:Decrypt' }, {}, 'none'],
    ['action case-insensitive', { action: 'KMS:encrypt' }, {}, 'allow'],
    ['kms:*', { action: 'kms:*' }, { action: 'kms:ScheduleKeyDeletion' }, 'allow'],
    ['bare *', { action: '*' }, {}, 'allow'],
    ['other service', { action: 'cos:*' }, {}, 'none'],
    ['prefix wildcard', { action: 'kms:Describe*' }, { action: 'kms:DescribeKeys' }, 'allow'],
    ['prefix wildcard, case-insensitive', { action: 'kms:describe*' }, { action: 'kms:DescribeKey' }, 'allow'],
    ['prefix wildcard misses', { action: 'kms:Describe*' }, { action: 'kms:Decrypt' }, 'none'],
    ['? is one character', { action: 'kms:?ncrypt' }, {}, 'allow'],
    ['? is not zero characters', { action: 'kms:?Encrypt' }, {}, 'none'],
    ['one of a list', { action: ['kms:Decrypt', 'kms:Encrypt'] }, {}, 'allow'],
    ['resource *', { resource: '*' }, {}, 'allow'],
    ['exact resource', { resource: KEY }, {}, 'allow'],
    ['resource case-sensitive', { resource: KEY.toUpperCase() }, {}, 'none'],
    ['resource wildcard over creator', { resource: 'qcs::kms:ap-guangzhou:uin/100000000001:key/creatorUin/200000000001/*' }, {}, 'allow'],
    ['resource wildcard over other creator', { resource: 'qcs::kms:ap-guangzhou:uin/100000000001:key/creatorUin/200000000002/*' }, {}, 'none'],
    ['resource wildcard over region', { resource: 'qcs::kms:*:uin/100000000001:key/*' }, {}, 'allow'],
    ['resource in another region', { resource: 'qcs::kms:ap-beijing:uin/100000000001:key/*' }, {}, 'none'],
    ['resource ? in region', { resource: 'qcs::kms:ap-guangzho?:uin/100000000001:key/*' }, {}, 'allow'],
    ['one of a resource list', { resource: ['qcs::kms:ap-beijing:*', 'qcs::kms:ap-guangzhou:*'] }, {}, 'allow'],
    ['empty region in a pattern is not a wildcard', { resource: 'qcs::kms::uin/100000000001:key/*' }, {}, 'none'],
  ];
  test.each(rows)('%s', (_case, statement, req, expected) => {
    expect(evaluate(request(req), [policy(allow(statement))])).toBe(expected);
  });

  test('no policies: none', () => expect(evaluate(request(), [])).toBe('none'));
  test('a deny that does not match leaves the allow', () => {
    expect(evaluate(request(), [policy(allow(), deny({ action: 'kms:Decrypt' }))])).toBe('allow');
  });
  test('explicit deny wins over allow, in the same policy, in either order', () => {
    expect(evaluate(request(), [policy(allow(), deny({ action: 'kms:Encrypt' }))])).toBe('deny');
    expect(evaluate(request(), [policy(deny({ action: 'kms:Encrypt' }), allow())])).toBe('deny');
  });
  test('explicit deny wins over allow across policies', () => {
    expect(evaluate(request(), [policy(allow()), policy(deny({ resource: KEY }))])).toBe('deny');
    expect(evaluate(request(), [policy(deny({ resource: KEY })), policy(allow())])).toBe('deny');
  });
  test('a deny alone is deny, not none', () => expect(evaluate(request(), [policy(deny())])).toBe('deny'));
});

describe('evaluate: condition operators', () => {
  const iso = (unix: number): string => new Date(unix * 1000).toISOString();
  // [operator, key, values, request context, expected truth of the condition]
  const rows: Array<[string, string, string | string[], AccessRequest['context'], boolean]> = [
    ['string_equal', 'qcs:region', 'ap-guangzhou', {}, true],
    ['string_equal', 'qcs:region', ['ap-beijing', 'ap-guangzhou'], {}, true],
    ['string_equal', 'qcs:region', 'ap-beijing', {}, false],
    ['string_equal', 'qcs:region', 'AP-GUANGZHOU', {}, false],
    ['string_equal', 'team', 'blue', { team: 'blue' }, true],
    ['string_equal', 'count', '3', { count: 3 }, true],
    ['string_not_equal', 'qcs:region', 'ap-beijing', {}, true],
    ['string_not_equal', 'qcs:region', ['ap-beijing', 'ap-guangzhou'], {}, false],
    ['string_not_equal', 'qcs:region', 'ap-guangzhou', {}, false],
    ['string_like', 'qcs:region', 'ap-*', {}, true],
    ['string_like', 'qcs:region', 'ap-guangzho?', {}, true],
    ['string_like', 'qcs:region', ['eu-*', 'na-*'], {}, false],
    ['string_like', 'qcs:region', 'AP-*', {}, false],
    ['ip_equal', 'qcs:ip', '10.0.0.0/8', {}, true],
    ['ip_equal', 'qcs:ip', ['192.168.0.0/16', '10.1.2.3'], {}, true],
    ['ip_equal', 'qcs:ip', '192.168.0.0/16', {}, false],
    ['ip_equal', 'qcs:ip', '127.0.0.0/8', { sourceIp: '::ffff:127.0.0.1' }, true],
    ['ip_equal', 'qcs:ip', '2001:db8::/32', { sourceIp: '2001:db8::5' }, true],
    ['ip_equal', 'qcs:ip', '2001:db8::/32', {}, false],
    ['ip_not_equal', 'qcs:ip', '192.168.0.0/16', {}, true],
    ['ip_not_equal', 'qcs:ip', ['192.168.0.0/16', '10.0.0.0/8'], {}, false],
    ['ip_not_equal', 'qcs:ip', '127.0.0.0/8', { sourceIp: '::ffff:127.0.0.1' }, false],
    ['date_not_less_than', 'qcs:current_time', iso(NOW), {}, true],
    ['date_not_less_than', 'qcs:current_time', iso(NOW + 1), {}, false],
    ['date_not_less_than', 'qcs:current_time', String(NOW - 60), {}, true],
    ['date_not_less_than', 'qcs:current_time', '2026-01-01T08:00:00+08:00', {}, true],
    ['date_not_less_than', 'qcs:current_time', [iso(NOW + 100), iso(NOW - 100)], {}, true],
    ['date_less_than', 'qcs:current_time', iso(NOW + 1), {}, true],
    ['date_less_than', 'qcs:current_time', iso(NOW), {}, false],
    ['date_less_than', 'qcs:current_time', String(NOW + 3600), {}, true],
    ['date_less_than', 'qcs:current_time', '2025-12-31', {}, false],
    ['date_less_than', 'expiry', '2030-01-01', { expiry: '2029-06-01T00:00:00Z' }, true],
    ['numeric_equal', 'n', '3', { n: 3 }, true],
    ['numeric_equal', 'n', ['1', '3.0'], { n: '3' }, true],
    ['numeric_equal', 'n', '4', { n: 3 }, false],
    ['numeric_less_than', 'n', '10', { n: 3 }, true],
    ['numeric_less_than', 'n', '3', { n: 3 }, false],
    ['numeric_less_than', 'n', '-1', { n: '-2.5' }, true],
    ['numeric_greater_than', 'n', '2', { n: 3 }, true],
    ['numeric_greater_than', 'n', '3', { n: 3 }, false],
    ['numeric_greater_than', 'n', ['100', '1e0'], { n: 3 }, true],
  ];
  test.each(rows)('%s %s %j with %j -> %s', (op, key, values, context, expected) => {
    const condition = { [op]: { [key]: values } } as Condition;
    const parsed = parsePolicy(policy(allow({ condition })));
    expect(evaluate(request({}, context), [parsed])).toBe(expected ? 'allow' : 'none');
    expect(evaluate(request({}, context), [policy(allow()), policy(deny({ condition }))])).toBe(expected ? 'deny' : 'allow');
  });

  test('every operator is in the table', () => {
    expect(new Set(rows.map((r) => r[0]))).toEqual(new Set(CONDITION_OPERATORS));
  });

  test('all operators of a statement must hold (AND)', () => {
    const condition: Condition = { ip_equal: { 'qcs:ip': '10.0.0.0/8' }, string_equal: { 'qcs:region': 'ap-beijing' } };
    expect(evaluate(request(), [policy(allow({ condition }))])).toBe('none');
    expect(evaluate(request({}, { region: 'ap-beijing' }), [policy(allow({ condition }))])).toBe('allow');
  });

  test('all keys under one operator must hold (AND)', () => {
    const condition: Condition = { string_equal: { 'qcs:region': 'ap-guangzhou', team: 'blue' } };
    expect(evaluate(request({}, { team: 'red' }), [policy(allow({ condition }))])).toBe('none');
    expect(evaluate(request({}, { team: 'blue' }), [policy(allow({ condition }))])).toBe('allow');
  });

  // A key the request lacks, or a value of the wrong kind, is decided against the requester.
  const unknown: Array<[string, Condition, AccessRequest['context']]> = [
    ['missing context key', { string_equal: { team: 'blue' } }, {}],
    ['missing key, negated operator', { string_not_equal: { team: 'blue' } }, {}],
    ['no source IP', { ip_equal: { 'qcs:ip': '0.0.0.0/0' } }, { sourceIp: undefined }],
    ['no source IP, negated', { ip_not_equal: { 'qcs:ip': '10.0.0.0/8' } }, { sourceIp: undefined }],
    ['source IP not an address', { ip_not_equal: { 'qcs:ip': '10.0.0.0/8' } }, { sourceIp: 'unknown' }],
    ['no time', { date_not_less_than: { 'qcs:current_time': '2000-01-01' } }, { currentTime: undefined }],
    ['time not a date', { date_less_than: { when: '2030-01-01' } }, { when: 'soon' }],
    ['value not a number', { numeric_less_than: { n: '10' } }, { n: 'ten' }],
    ['prototype names are not context keys', { string_like: { constructor: '*' } }, {}],
  ];
  test.each(unknown)('%s: an allow does not apply, a deny does', (_case, condition, context) => {
    expect(evaluate(request({}, context), [policy(allow({ condition }))])).toBe('none');
    expect(evaluate(request({}, context), [policy(allow(), deny({ condition }))])).toBe('deny');
  });
});
