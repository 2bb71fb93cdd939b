/**
 * The served CloudAudit 2019-03-19 actions: LookUpEvents reads the caller's own tenant's trail
 * (cloudaudit-wire.ts does the mapping), GetAttributeKey lists the lookup attributes. Both are
 * authorised on the tenant's cloudaudit collection, so a sub-account needs `cloudaudit:LookUpEvents`.
 */
import { serviceCollectionResource } from '../iam/resources';
import type { Principal } from '../iam/principal';
import { GET_ATTRIBUTE_KEY_FIELDS, getAttributeKeyAnswer, LOOKUP_EVENTS_FIELDS, lookUpEventsAction } from './cloudaudit-wire';
import type { Resources } from './handlers';
import { Fields, Maxima, ParamsOf } from './params';
import type { AuditTrail } from './ports';

export const CLOUDAUDIT_SCHEMAS = { LookUpEvents: LOOKUP_EVENTS_FIELDS, GetAttributeKey: GET_ATTRIBUTE_KEY_FIELDS } as const satisfies Record<string, Fields>;
export type CloudAuditAction = keyof typeof CLOUDAUDIT_SCHEMAS;

/** Shape limits only; cloudaudit-wire.ts checks ranges and values with its own messages. */
export const CLOUDAUDIT_MAXIMA: Maxima = {
  LookupAttributes: { items: 50 },
  AttributeKey: { chars: 32 },
  AttributeValue: { chars: 256 },
  NextToken: { chars: 256 },
  Mode: { chars: 16 },
  WebsiteType: { chars: 8 },
};

export interface TrailContext {
  trail: AuditTrail;
  principal: Principal;
}

export interface CloudAuditHandler<P> {
  resources(ctx: TrailContext, params: P): Promise<Resources>;
  run(ctx: TrailContext, params: P): Promise<object>;
}

const trail = async (ctx: TrailContext): Promise<Resources> => {
  const all = serviceCollectionResource('cloudaudit', ctx.principal.tenantUin);
  return { cam: [all], audit: all };
};

export const CLOUDAUDIT_HANDLERS: { [A in CloudAuditAction]: CloudAuditHandler<ParamsOf<(typeof CLOUDAUDIT_SCHEMAS)[A]>> } = {
  LookUpEvents: { resources: trail, run: (ctx, p) => lookUpEventsAction(ctx.trail, { tenant: ctx.principal.tenantUin }, p) },
  GetAttributeKey: { resources: trail, run: async (_ctx, p) => getAttributeKeyAnswer(p) },
};
