import { CLOUDAUDIT_SCHEMAS } from '../../../src/api/cloudaudit-handlers';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CAM_MAXIMA, CAM_SCHEMAS, CAM_UNSUPPORTED, CamAction } from '../../../src/api/cam-params';
import { FieldSpec, Fields } from '../../../src/api/params';
import { API_SERVICES, checkScope, isKnownAction, serviceByName, serviceOfVersion } from '../../../src/api/services';

const SDK = path.dirname(require.resolve('tencentcloud-sdk-nodejs/package.json'));
const MODELS = fs.readFileSync(path.join(SDK, 'tencentcloud/services/cam/v20190116/cam_models.d.ts'), 'utf8');
const CLIENT = fs.readFileSync(path.join(SDK, 'tencentcloud/services/cam/v20190116/cam_client.js'), 'utf8');

/** `XRequest` of cam_models.d.ts: field → [type, required]; `= null` requests have no fields. */
function sdkRequest(action: string): Map<string, [string, boolean]> {
  const fields = new Map<string, [string, boolean]>();
  if (new RegExp(`export type ${action}Request = null;`).test(MODELS)) return fields;
  const m = new RegExp(`export interface ${action}Request \\{([\\s\\S]*?)\\n\\}`).exec(MODELS);
  if (!m) throw new Error(`no ${action}Request in the SDK models`);
  for (const f of m[1].matchAll(/^\s+(\w+)(\??):\s*([^;]+);/gm)) fields.set(f[1], [f[3], f[2] !== '?']);
  return fields;
}

function sdkKind(type: string): FieldSpec['kind'][] {
  if (type === 'string') return ['string'];
  if (type === 'number') return ['integer'];
  if (type.startsWith('Array<')) return ['array'];
  return ['object'];
}

const ACTIONS = Object.keys(CAM_SCHEMAS) as CamAction[];

describe('CAM schemas match the SDK request models', () => {
  test.each(ACTIONS)('%s: same fields, required-ness and JSON types as cam_models.d.ts', (action) => {
    const sdk = sdkRequest(action);
    const ours = CAM_SCHEMAS[action] as Fields;
    expect(Object.keys(ours).sort()).toEqual([...sdk.keys()].sort());
    for (const [name, [type, required]] of sdk) {
      expect([name, Boolean(ours[name].required)]).toEqual([name, required]);
      expect(sdkKind(type)).toContain(ours[name].kind);
    }
  });

  test('every string and list field has a maximum', () => {
    const missing: string[] = [];
    const walk = (fields: Fields): void => {
      for (const [name, spec] of Object.entries(fields)) {
        if ((spec.kind === 'string' || spec.kind === 'array') && CAM_MAXIMA[name] === undefined) missing.push(name);
        if (spec.kind === 'array' && spec.of.kind === 'object') walk(spec.of.fields);
      }
    };
    for (const a of ACTIONS) walk(CAM_SCHEMAS[a]);
    expect(missing).toEqual([]);
  });
});

describe('CAM actions', () => {
  const sdkActions = [...CLIENT.matchAll(/this\.request\("(\w+)"/g)].map((m) => m[1]);

  test("served and unsupported actions are disjoint and together are the SDK client's actions", () => {
    expect(sdkActions).toHaveLength(95);
    expect([...ACTIONS, ...CAM_UNSUPPORTED].sort()).toEqual([...sdkActions].sort());
    expect(ACTIONS).toHaveLength(18);
  });

  test("CloudAudit: LookUpEvents and GetAttributeKey served, the SDK client's other actions refused, every field in the SDK model", () => {
    const client = fs.readFileSync(path.join(SDK, 'tencentcloud/services/cloudaudit/v20190319/cloudaudit_client.js'), 'utf8');
    const actions = [...client.matchAll(/this\.request\("(\w+)"/g)].map((m) => m[1]);
    const cloudaudit = serviceByName('cloudaudit')!;
    expect([...cloudaudit.served].sort()).toEqual(['GetAttributeKey', 'LookUpEvents']);
    expect([...cloudaudit.served, ...cloudaudit.unsupported].sort()).toEqual(actions.sort());
    const models = fs.readFileSync(path.join(SDK, 'tencentcloud/services/cloudaudit/v20190319/cloudaudit_models.d.ts'), 'utf8');
    for (const [action, fields] of Object.entries(CLOUDAUDIT_SCHEMAS)) {
      const block = new RegExp(`export interface ${action}Request \\{([\\s\\S]*?)\\n\\}`).exec(models)?.[1] ?? '';
      const modelFields = [...block.matchAll(/^\s+(\w+)\??:/gm)].map((m) => m[1]);
      for (const f of Object.keys(fields)) expect(modelFields).toContain(f);
    }
  });
});

describe('the service table', () => {
  test('X-TC-Version names the API; another version is NoSuchVersion', () => {
    expect(serviceOfVersion('2019-01-18').name).toBe('kms');
    expect(serviceOfVersion('2019-01-16').name).toBe('cam');
    expect(serviceOfVersion('2019-03-19').name).toBe('cloudaudit');
    expect(() => serviceOfVersion('2019-01-17')).toThrow(/X-TC-Version/);
    expect(() => serviceOfVersion(undefined)).toThrow(/X-TC-Version/);
  });

  test.each<[string, string, boolean]>([
    ['kms', 'kms', true],
    ['kms', '127', true],
    ['kms', 'localhost:8080', true],
    ['kms', 'cam', false],
    ['cam', 'kms', false],
    ['cam', 'CAM', true],
    ['cam', 'cloudaudit', false],
    ['cloudaudit', 'cloudaudit', true],
    ['cloudaudit', 'kms', false],
  ])('an API %s signed for %p is accepted: %p', (name, scope, ok) => {
    const service = serviceByName(name as 'kms' | 'cam' | 'cloudaudit');
    expect(service).toBeDefined();
    const check = () => checkScope(service!, scope);
    if (ok) expect(check).not.toThrow();
    else expect(check).toThrow(/signed for/);
  });

  test('metrics labels: known actions of every API, nothing else', () => {
    expect(isKnownAction('Encrypt')).toBe(true);
    expect(isKnownAction('AddUser')).toBe(true);
    expect(isKnownAction('CreateRole')).toBe(true);
    expect(isKnownAction('constructor')).toBe(false);
    expect(isKnownAction('addUser')).toBe(false);
  });

  test('event sources and CAM prefixes', () => {
    expect(API_SERVICES.map((s) => [s.name, s.eventSource, s.camPrefix])).toEqual(
      expect.arrayContaining([
        ['kms', 'kms.tencentcloudapi.com', 'kms'],
        ['cam', 'cam.tencentcloudapi.com', 'cam'],
        ['cloudaudit', 'cloudaudit.tencentcloudapi.com', 'cloudaudit'],
      ]),
    );
  });
});
