import { authorize, authorizeAnyCreator } from '../../../src/iam/authorize';
import { Policy, RequestContext, parsePolicy } from '../../../src/iam/policy';
import { PresetName, instantiatePreset } from '../../../src/iam/presets';
import { Principal } from '../../../src/iam/principal';
import { actionName, collectionResource, keyResource, UNKNOWN_CREATOR } from '../../../src/iam/resources';

const TENANT = '100000000001';
const OTHER_TENANT = '100000000002';
const KEY_ID = '0b1c6a4e-1f5a-4d63-9a7c-3f0e6b1c2d3e';

const root: Principal = { tenantUin: TENANT, uin: TENANT, kind: 'root', name: 'acme', secretId: 'AKIDroot' };
const alice: Principal = { tenantUin: TENANT, uin: '200000000001', kind: 'user', name: 'alice', secretId: 'AKIDalice' };
const otherRoot: Principal = { tenantUin: OTHER_TENANT, uin: OTHER_TENANT, kind: 'root', name: 'globex', secretId: 'AKIDother' };

const key = (creatorUin: string, tenantUin = TENANT): string => keyResource({ region: 'ap-guangzhou', tenantUin, creatorUin, keyId: KEY_ID });
const ALICE_KEY = key(alice.uin);
const ROOT_KEY = key(TENANT);
const FOREIGN_KEY = key(OTHER_TENANT, OTHER_TENANT);
const COLLECTION = collectionResource('ap-guangzhou', TENANT);
const FOREIGN_COLLECTION = collectionResource('ap-guangzhou', OTHER_TENANT);

const preset = (name: PresetName, p: Principal = alice): Policy => instantiatePreset(name, p);
const denyDecrypt: Policy = parsePolicy({ version: '2.0', statement: [{ effect: 'deny', action: 'kms:Decrypt', resource: '*' }] });
const officeOnly: Policy = parsePolicy({
  version: '2.0',
  statement: [{ effect: 'allow', action: 'kms:*', resource: '*', condition: { ip_equal: { 'qcs:ip': ['10.0.0.0/8', '2001:db8::/32'] } } }],
});
const denyOutsideOffice: Policy = parsePolicy({
  version: '2.0',
  statement: [{ effect: 'deny', action: 'kms:*', resource: '*', condition: { ip_not_equal: { 'qcs:ip': '10.0.0.0/8' } } }],
});

interface Row {
  case: string;
  principal: Principal;
  action: string;
  resource: string;
  policies: Policy[];
  context?: RequestContext;
  allowed: boolean;
  reason: string;
}

const rows: Row[] = [
  // root accounts
  {
    case: 'root: any action on its own key',
    principal: root,
    action: 'ScheduleKeyDeletion',
    resource: ALICE_KEY,
    policies: [],
    allowed: true,
    reason: 'root account',
  },
  { case: 'root: collection action', principal: root, action: 'CreateKey', resource: COLLECTION, policies: [], allowed: true, reason: 'owns' },
  { case: 'root: policies do not restrict it', principal: root, action: 'Decrypt', resource: ROOT_KEY, policies: [denyDecrypt], allowed: true, reason: 'owns' },
  {
    case: "root: another tenant's key",
    principal: root,
    action: 'Encrypt',
    resource: FOREIGN_KEY,
    policies: [],
    allowed: false,
    reason: `resources of account ${OTHER_TENANT}`,
  },
  {
    case: "root: another tenant's collection",
    principal: root,
    action: 'ListKeys',
    resource: FOREIGN_COLLECTION,
    policies: [],
    allowed: false,
    reason: 'may not act',
  },
  {
    case: 'root of the other tenant: our key',
    principal: otherRoot,
    action: 'DescribeKey',
    resource: ROOT_KEY,
    policies: [],
    allowed: false,
    reason: `resources of account ${TENANT}`,
  },
  { case: 'root: not a KMS resource name', principal: root, action: 'Encrypt', resource: '*', policies: [], allowed: false, reason: 'not a KMS resource name' },
  {
    case: 'root: wildcard tenant',
    principal: root,
    action: 'Encrypt',
    resource: 'qcs::kms:ap-guangzhou:uin/*:key/*',
    policies: [],
    allowed: false,
    reason: 'not a KMS resource name',
  },
  // sub-account without policies
  {
    case: 'user: nothing attached',
    principal: alice,
    action: 'DescribeKey',
    resource: ALICE_KEY,
    policies: [],
    allowed: false,
    reason: 'no attached policy allows',
  },
  // QcloudKMSFullAccess
  {
    case: 'full: encrypt any key of the tenant',
    principal: alice,
    action: 'Encrypt',
    resource: ROOT_KEY,
    policies: [preset('QcloudKMSFullAccess')],
    allowed: true,
    reason: 'allowed for sub-account',
  },
  {
    case: 'full: create key',
    principal: alice,
    action: 'CreateKey',
    resource: COLLECTION,
    policies: [preset('QcloudKMSFullAccess')],
    allowed: true,
    reason: 'allowed',
  },
  {
    case: 'full: never another tenant',
    principal: alice,
    action: 'Encrypt',
    resource: FOREIGN_KEY,
    policies: [preset('QcloudKMSFullAccess')],
    allowed: false,
    reason: 'may not act',
  },
  // QcloudKMSReadOnlyAccess
  {
    case: 'read-only: describe',
    principal: alice,
    action: 'DescribeKey',
    resource: ROOT_KEY,
    policies: [preset('QcloudKMSReadOnlyAccess')],
    allowed: true,
    reason: 'allowed',
  },
  {
    case: 'read-only: list',
    principal: alice,
    action: 'ListKeyDetail',
    resource: COLLECTION,
    policies: [preset('QcloudKMSReadOnlyAccess')],
    allowed: true,
    reason: 'allowed',
  },
  {
    case: 'read-only: encrypt',
    principal: alice,
    action: 'Encrypt',
    resource: ROOT_KEY,
    policies: [preset('QcloudKMSReadOnlyAccess')],
    allowed: false,
    reason: 'no attached policy allows',
  },
  {
    case: 'read-only: import parameters',
    principal: alice,
    action: 'GetParametersForImport',
    resource: ROOT_KEY,
    policies: [preset('QcloudKMSReadOnlyAccess')],
    allowed: false,
    reason: 'no attached',
  },
  {
    case: 'read-only: data key',
    principal: alice,
    action: 'GenerateDataKey',
    resource: ROOT_KEY,
    policies: [preset('QcloudKMSReadOnlyAccess')],
    allowed: false,
    reason: 'no attached',
  },
  // QcloudKMSCreatorFullAccess
  {
    case: 'creator: own key',
    principal: alice,
    action: 'Decrypt',
    resource: ALICE_KEY,
    policies: [preset('QcloudKMSCreatorFullAccess')],
    allowed: true,
    reason: 'allowed',
  },
  {
    case: "creator: root's key",
    principal: alice,
    action: 'Decrypt',
    resource: ROOT_KEY,
    policies: [preset('QcloudKMSCreatorFullAccess')],
    allowed: false,
    reason: 'no attached',
  },
  {
    case: 'creator: create',
    principal: alice,
    action: 'CreateKey',
    resource: COLLECTION,
    policies: [preset('QcloudKMSCreatorFullAccess')],
    allowed: true,
    reason: 'allowed',
  },
  {
    case: 'creator: instantiated for someone else',
    principal: alice,
    action: 'Decrypt',
    resource: ALICE_KEY,
    policies: [preset('QcloudKMSCreatorFullAccess', { ...alice, uin: '200000000002' })],
    allowed: false,
    reason: 'no attached',
  },
  // explicit deny
  {
    case: 'custom deny overrides full access',
    principal: alice,
    action: 'Decrypt',
    resource: ALICE_KEY,
    policies: [preset('QcloudKMSFullAccess'), denyDecrypt],
    allowed: false,
    reason: 'explicitly denied',
  },
  {
    case: 'custom deny overrides creator access',
    principal: alice,
    action: 'Decrypt',
    resource: ALICE_KEY,
    policies: [denyDecrypt, preset('QcloudKMSCreatorFullAccess')],
    allowed: false,
    reason: 'explicitly denied',
  },
  {
    case: 'custom deny leaves other actions',
    principal: alice,
    action: 'Encrypt',
    resource: ALICE_KEY,
    policies: [preset('QcloudKMSFullAccess'), denyDecrypt],
    allowed: true,
    reason: 'allowed',
  },
  // IP conditions
  {
    case: 'office IPv4',
    principal: alice,
    action: 'Encrypt',
    resource: ROOT_KEY,
    policies: [officeOnly],
    context: { sourceIp: '10.20.30.40' },
    allowed: true,
    reason: 'allowed',
  },
  {
    case: 'office IPv4 via a dual-stack socket',
    principal: alice,
    action: 'Encrypt',
    resource: ROOT_KEY,
    policies: [officeOnly],
    context: { sourceIp: '::ffff:10.20.30.40' },
    allowed: true,
    reason: 'allowed',
  },
  {
    case: 'office IPv6',
    principal: alice,
    action: 'Encrypt',
    resource: ROOT_KEY,
    policies: [officeOnly],
    context: { sourceIp: '2001:db8::7' },
    allowed: true,
    reason: 'allowed',
  },
  {
    case: 'outside the office',
    principal: alice,
    action: 'Encrypt',
    resource: ROOT_KEY,
    policies: [officeOnly],
    context: { sourceIp: '203.0.113.5' },
    allowed: false,
    reason: 'no attached',
  },
  { case: 'no source IP', principal: alice, action: 'Encrypt', resource: ROOT_KEY, policies: [officeOnly], context: {}, allowed: false, reason: 'no attached' },
  {
    case: 'deny outside office, inside',
    principal: alice,
    action: 'Encrypt',
    resource: ROOT_KEY,
    policies: [preset('QcloudKMSFullAccess'), denyOutsideOffice],
    context: { sourceIp: '10.0.0.1' },
    allowed: true,
    reason: 'allowed',
  },
  {
    case: 'deny outside office, outside',
    principal: alice,
    action: 'Encrypt',
    resource: ROOT_KEY,
    policies: [preset('QcloudKMSFullAccess'), denyOutsideOffice],
    context: { sourceIp: '192.0.2.1' },
    allowed: false,
    reason: 'explicitly denied',
  },
  {
    case: 'deny outside office, IP unknown',
    principal: alice,
    action: 'Encrypt',
    resource: ROOT_KEY,
    policies: [preset('QcloudKMSFullAccess'), denyOutsideOffice],
    context: {},
    allowed: false,
    reason: 'explicitly denied',
  },
];

describe('authorize', () => {
  test.each(rows)('$case', (r) => {
    const result = authorize(r.principal, { action: actionName(r.action), resource: r.resource, context: r.context ?? {} }, r.policies);
    expect(result.allowed).toBe(r.allowed);
    expect(result.reason).toContain(r.reason);
  });

  test('reasons name the principal and the request, never the SecretId', () => {
    const { reason } = authorize(alice, { action: 'kms:Encrypt', resource: ALICE_KEY, context: {} }, []);
    expect(reason).toContain(alice.uin);
    expect(reason).toContain('kms:Encrypt');
    expect(reason).not.toContain(alice.secretId);
  });
});

describe('a key that does not exist (authorizeAnyCreator)', () => {
  const bob = '200000000002';
  const missing = key(UNKNOWN_CREATOR);
  const request = (resource: string) => ({ action: actionName('Encrypt'), resource, context: {} });
  const notBobs: Policy = parsePolicy({
    version: '2.0',
    statement: [{ effect: 'deny', action: 'kms:*', resource: `qcs::kms:*:uin/${TENANT}:key/creatorUin/${bob}/*` }],
  });
  const creators = [TENANT, alice.uin, bob];

  test.each<[string, Policy[], boolean]>([
    ['full access: allowed (the call then answers not found)', [preset('QcloudKMSFullAccess')], true],
    ["creator preset: refused, as another creator's key is", [preset('QcloudKMSCreatorFullAccess')], false],
    ["full access but bob's keys: refused, as bob's key is", [preset('QcloudKMSFullAccess'), notBobs], false],
    ['no policy: refused', [], false],
  ])('%s', (_name, policies, allowed) => {
    expect(authorizeAnyCreator(alice, request(missing), policies, creators).allowed).toBe(allowed);
    if (!allowed) expect(authorize(alice, request(key(bob)), policies).allowed).toBe(false);
  });

  test('a key that exists, and the root account, are decided by authorize()', () => {
    expect(authorizeAnyCreator(alice, request(ALICE_KEY), [preset('QcloudKMSCreatorFullAccess')], creators).allowed).toBe(true);
    expect(authorizeAnyCreator(root, request(missing), [], creators).allowed).toBe(true);
  });
});
