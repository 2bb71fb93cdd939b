/**
 * One thin handler per served CAM 2019-01-16 action: the CAM resource it touches and the call into
 * the identity layer's rules (src/iam/cam.ts), with the wire's names and shapes on the way in and out.
 * A SecretKey appears only in the answers of AddUser (UseApi 1) and CreateAccessKey.
 */
import type { Cam, CamPolicy } from '../iam/cam';
import { pageOf } from '../iam/cam';
import { IamNotFoundError } from '../iam/errors';
import type { ApiKeyStatus, UserRecord } from '../iam/identity-store';
import type { Principal } from '../iam/principal';
import { camResource } from '../iam/resources';
import type { CamAction, CamParams } from './cam-params';
import type { Resources } from './handlers';
import { ParamError } from './params';

export interface CamContext {
  cam: Cam;
  principal: Principal;
}

export interface CamHandler<P> {
  resources(ctx: CamContext, params: P): Promise<Resources>;
  run(ctx: CamContext, params: P): Promise<object>;
}

export type CamTable = { [A in CamAction]: CamHandler<CamParams<A>> };

/** CAM's time format: `2020-03-03 18:00:26` (UTC here). */
function camTime(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toISOString().slice(0, 19).replace('T', ' ');
}

const one = (resource: string): Resources => ({ cam: [resource], audit: resource });
const users = async (ctx: CamContext): Promise<Resources> => one(camResource(ctx.principal.tenantUin, 'uin', '*'));
const policies = async (ctx: CamContext): Promise<Resources> => one(camResource(ctx.principal.tenantUin, 'policyId', '*'));
const account = (ctx: CamContext, uin: number | undefined): Resources =>
  one(camResource(ctx.principal.tenantUin, 'uin', uin === undefined ? ctx.principal.uin : String(uin)));
const policy = (ctx: CamContext, id: number): Resources => one(camResource(ctx.principal.tenantUin, 'policyId', String(id)));

/** The resource of a sub-account named by name; one that does not exist is uin 0 (no account has it), so the decision cannot tell. */
async function userNamed(ctx: CamContext, p: { Name: string }): Promise<Resources> {
  try {
    return account(ctx, Number((await ctx.cam.getUser(ctx.principal, p.Name)).uin));
  } catch (e) {
    if (e instanceof IamNotFoundError) return account(ctx, 0);
    throw e;
  }
}

const nothing = (): object => ({});

function userInfo(u: UserRecord): object {
  return { Uin: Number(u.uin), Name: u.name, Uid: Number(u.uin), Remark: u.remark ?? '', ConsoleLogin: u.consoleLogin ?? 0 };
}

const WIRE_STATUS: Readonly<Record<string, ApiKeyStatus>> = { Active: 'active', Inactive: 'disabled' };
const statusName = (s: ApiKeyStatus): string => (s === 'active' ? 'Active' : 'Inactive');

function keyStatus(status: string): ApiKeyStatus {
  const s = WIRE_STATUS[status];
  if (!s) throw new ParamError('InvalidParameterValue', 'Status', 'Status must be Active or Inactive');
  return s;
}

const target = (uin: number | undefined): string | undefined => (uin === undefined ? undefined : String(uin));

function policyType(p: CamPolicy): { Type: number; CreateMode: number } {
  return p.preset ? { Type: 2, CreateMode: 2 } : { Type: 1, CreateMode: 1 };
}

function strategyInfo(p: CamPolicy, attachments: number): object {
  return {
    PolicyId: Number(p.policyId),
    PolicyName: p.name,
    AddTime: camTime(p.createdAt),
    UpdateTime: camTime(p.updatedAt),
    Description: p.description,
    ...policyType(p),
    Attachments: attachments,
    AttachEntityCount: attachments,
    ServiceType: p.preset ? 'kms' : '',
  };
}

function requiredPolicyId(id: number | undefined): number {
  if (id === undefined) throw new ParamError('MissingParameter', 'PolicyId', 'PolicyId is required');
  return id;
}

export const CAM_HANDLERS: CamTable = {
  AddUser: {
    resources: users,
    run: async (ctx, p) => {
      const made = await ctx.cam.addUser(ctx.principal, { name: p.Name, remark: p.Remark, consoleLogin: p.ConsoleLogin, useApi: p.UseApi === 1 });
      return { Uin: made.Uin, Uid: made.Uin, Name: p.Name, ...(made.SecretId ? { SecretId: made.SecretId, SecretKey: made.SecretKey } : {}) };
    },
  },
  GetUser: { resources: userNamed, run: async (ctx, p) => userInfo(await ctx.cam.getUser(ctx.principal, p.Name)) },
  ListUsers: {
    resources: users,
    run: async (ctx) => ({ Data: (await ctx.cam.listUsers(ctx.principal)).map((u) => ({ ...userInfo(u), CreateTime: camTime(u.createdAt) })) }),
  },
  UpdateUser: {
    resources: userNamed,
    run: (ctx, p) => ctx.cam.updateUser(ctx.principal, p.Name, { remark: p.Remark, consoleLogin: p.ConsoleLogin }).then(nothing),
  },
  DeleteUser: { resources: userNamed, run: (ctx, p) => ctx.cam.deleteUser(ctx.principal, p.Name, p.Force === 1).then(nothing) },
  CreateAccessKey: {
    resources: async (ctx, p) => account(ctx, p.TargetUin),
    run: async (ctx, p) => {
      const k = await ctx.cam.createAccessKey(ctx.principal, target(p.TargetUin));
      return { AccessKey: { AccessKeyId: k.SecretId, SecretAccessKey: k.SecretKey, Status: 'Active', CreateTime: camTime(Math.floor(Date.now() / 1000)) } };
    },
  },
  ListAccessKeys: {
    resources: async (ctx, p) => account(ctx, p.TargetUin),
    run: async (ctx, p) => ({
      AccessKeys: (await ctx.cam.listAccessKeys(ctx.principal, target(p.TargetUin))).map((k) => ({
        AccessKeyId: k.SecretId,
        Status: statusName(k.Status),
        CreateTime: camTime(k.CreatedAt),
      })),
    }),
  },
  UpdateAccessKey: {
    resources: async (ctx, p) => account(ctx, p.TargetUin),
    run: (ctx, p) => ctx.cam.updateAccessKey(ctx.principal, p.AccessKeyId, keyStatus(p.Status), target(p.TargetUin)).then(nothing),
  },
  DeleteAccessKey: {
    resources: async (ctx, p) => account(ctx, p.TargetUin),
    run: (ctx, p) => ctx.cam.deleteAccessKey(ctx.principal, p.AccessKeyId, target(p.TargetUin)).then(nothing),
  },
  CreatePolicy: {
    resources: policies,
    run: async (ctx, p) => ({ PolicyId: Number(await ctx.cam.createPolicy(ctx.principal, p.PolicyName, p.PolicyDocument, p.Description)) }),
  },
  GetPolicy: {
    resources: async (ctx, p) => policy(ctx, p.PolicyId),
    run: async (ctx, p) => {
      const found = await ctx.cam.getPolicy(ctx.principal, String(p.PolicyId));
      return {
        PolicyName: found.name,
        Description: found.description,
        Type: policyType(found).Type,
        AddTime: camTime(found.createdAt),
        UpdateTime: camTime(found.updatedAt),
        PolicyDocument: found.document,
      };
    },
  },
  ListPolicies: {
    resources: policies,
    run: async (ctx, p) => {
      const page = pageOf(await ctx.cam.listPolicies(ctx.principal, p.Scope, p.Keyword), p.Page, p.Rp);
      return { TotalNum: page.total, List: page.items.map((x) => strategyInfo(x.policy, x.attachments)), ServiceTypeList: ['kms'] };
    },
  },
  UpdatePolicy: {
    resources: async (ctx, p) => policy(ctx, requiredPolicyId(p.PolicyId)),
    run: async (ctx, p) => {
      const id = requiredPolicyId(p.PolicyId);
      await ctx.cam.updatePolicy(ctx.principal, String(id), { name: p.PolicyName, description: p.Description, document: p.PolicyDocument });
      return { PolicyId: id };
    },
  },
  DeletePolicy: {
    resources: async (ctx, p) => {
      if (p.PolicyId.length === 0) throw new ParamError('InvalidParameter', 'PolicyId', 'PolicyId must name at least one policy');
      const cam = p.PolicyId.map((id) => camResource(ctx.principal.tenantUin, 'policyId', String(id)));
      return { cam, audit: cam.join(',').slice(0, 4096) };
    },
    run: (ctx, p) => ctx.cam.deletePolicies(ctx.principal, p.PolicyId.map(String)).then(nothing),
  },
  AttachUserPolicy: {
    resources: async (ctx, p) => ({ ...policy(ctx, p.PolicyId), cam: [policy(ctx, p.PolicyId).audit, account(ctx, p.AttachUin).audit] }),
    run: (ctx, p) => ctx.cam.attachUserPolicy(ctx.principal, String(p.PolicyId), String(p.AttachUin)).then(nothing),
  },
  DetachUserPolicy: {
    resources: async (ctx, p) => ({ ...policy(ctx, p.PolicyId), cam: [policy(ctx, p.PolicyId).audit, account(ctx, p.DetachUin).audit] }),
    run: (ctx, p) => ctx.cam.detachUserPolicy(ctx.principal, String(p.PolicyId), String(p.DetachUin)).then(nothing),
  },
  ListAttachedUserPolicies: {
    resources: async (ctx, p) => account(ctx, p.TargetUin),
    run: async (ctx, p) => {
      const page = pageOf(await ctx.cam.listAttachedUserPolicies(ctx.principal, String(p.TargetUin)), p.Page, p.Rp);
      return {
        TotalNum: page.total,
        List: page.items.map((a) => ({
          PolicyId: a.policy ? Number(a.policy.policyId) : 0,
          PolicyName: a.name,
          AddTime: camTime(a.attachedAt),
          CreateMode: a.policy?.preset ? 2 : 1,
          PolicyType: a.policy?.preset ? 'QCS' : 'User',
          Remark: a.policy?.description ?? 'a policy document attached by kmsctl',
        })),
      };
    },
  },
  ListEntitiesForPolicy: {
    resources: async (ctx, p) => policy(ctx, p.PolicyId),
    run: async (ctx, p) => {
      const filter = p.EntityFilter ?? 'All';
      if (!['All', 'User', 'Group', 'Role'].includes(filter))
        throw new ParamError('InvalidParameterValue', 'EntityFilter', 'EntityFilter must be All, User, Group or Role');
      const all = await ctx.cam.listEntitiesForPolicy(ctx.principal, String(p.PolicyId));
      const holders = filter === 'All' || filter === 'User' ? all : [];
      const page = pageOf(holders, p.Page, p.Rp);
      return {
        TotalNum: page.total,
        List: page.items.map((h) => ({ Id: h.user.uin, Name: h.user.name, Uin: Number(h.user.uin), RelatedType: 1, AttachmentTime: camTime(h.attachedAt) })),
      };
    },
  },
};
