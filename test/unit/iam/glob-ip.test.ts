import { globMatch } from '../../../src/iam/glob';
import { cidrContains, parseCidr, parseIp } from '../../../src/iam/ip';

describe('globMatch', () => {
  // [pattern, text, ignoreCase, expected]
  const rows: Array<[string, string, boolean, boolean]> = [
    ['*', '', false, true],
    ['*', 'anything/at:all', false, true],
    ['kms:*', 'kms:Encrypt', false, true],
    ['kms:*', 'cos:GetObject', false, false],
    ['kms:Describe*', 'kms:DescribeKey', false, true],
    ['kms:Describe*', 'kms:Describe', false, true],
    ['kms:Describe*', 'kms:ListKeys', false, false],
    ['kms:describe*', 'kms:DescribeKeys', true, true],
    ['kms:describe*', 'kms:DescribeKeys', false, false],
    ['kms:?ncrypt', 'kms:Encrypt', false, true],
    ['kms:?ncrypt', 'kms:ReEncrypt', false, false],
    ['a?c', 'ac', false, false],
    ['a*b*c', 'aXXbYYc', false, true],
    ['a*b*c', 'aXXbYY', false, false],
    ['*Key', 'kms:CreateKey', false, true],
    ['key/*/x', 'key/a/b/x', false, true],
    ['exact', 'exact', false, true],
    ['exact', 'exactly', false, false],
    ['exact*', 'exact', false, true],
    ['**', 'x', false, true],
    ['a*', 'b', false, false],
    ['', '', false, true],
    ['', 'x', false, false],
  ];
  test.each(rows)('%j ~ %j (ignoreCase %s) -> %s', (pattern, text, ignoreCase, expected) => {
    expect(globMatch(pattern, text, ignoreCase)).toBe(expected);
  });

  test('no pathological slowdown: 40 stars against a long non-matching text (answers, whatever the time)', () => {
    expect(globMatch('a*'.repeat(40) + 'b', 'a'.repeat(5000))).toBe(false);
  });
});

describe('IP addresses and CIDR blocks', () => {
  // [cidr, ip, expected]
  const rows: Array<[string, string, boolean]> = [
    ['10.0.0.0/8', '10.1.2.3', true],
    ['10.0.0.0/8', '11.0.0.1', false],
    ['10.1.2.3', '10.1.2.3', true],
    ['10.1.2.3', '10.1.2.4', false],
    ['10.1.2.3/32', '10.1.2.3', true],
    ['0.0.0.0/0', '203.0.113.9', true],
    ['10.9.9.9/8', '10.0.0.1', true],
    ['192.168.1.128/25', '192.168.1.127', false],
    ['192.168.1.128/25', '192.168.1.200', true],
    ['2001:db8::/32', '2001:db8:1::1', true],
    ['2001:db8::/32', '2001:db9::1', false],
    ['::1', '::1', true],
    ['::1/128', '0:0:0:0:0:0:0:1', true],
    ['::/0', '2001:db8::1', true],
    ['::/0', '10.0.0.1', false],
    ['0.0.0.0/0', '2001:db8::1', false],
    ['fe80::/10', 'fe80::1%eth0', true],
    // IPv4-mapped IPv6 addresses are their IPv4 address
    ['127.0.0.0/8', '::ffff:127.0.0.1', true],
    ['127.0.0.1', '::ffff:7f00:1', true],
    ['10.0.0.0/8', '::ffff:11.0.0.1', false],
    ['::ffff:10.0.0.0/104', '10.2.3.4', true],
    ['::ffff:10.0.0.0/104', '11.2.3.4', false],
    ['::ffff:0:0/96', '198.51.100.7', true],
  ];
  test.each(rows)('%s contains %s -> %s', (cidr, ip, expected) => {
    const c = parseCidr(cidr);
    const a = parseIp(ip);
    expect(c).toBeDefined();
    expect(a).toBeDefined();
    expect(cidrContains(c!, a!)).toBe(expected);
  });

  test.each(['', 'x', '10.0.0', '10.0.0.256', '10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/8/8', '10.0.0.0/a', '::1/129', 'gggg::1', '10.0.0.0/ 8'])(
    'malformed CIDR %j is refused',
    (s) => expect(parseCidr(s)).toBeUndefined(),
  );

  test.each(['', 'localhost', '10.0.0', '1.2.3.4.5', '::g'])('malformed address %j is refused', (s) => expect(parseIp(s)).toBeUndefined());
});
