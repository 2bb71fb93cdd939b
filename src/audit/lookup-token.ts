/**
 * LookUpEvents' NextToken: the position of the last event a page looked at, bound to the lookup it
 * came from (tenant and filters, as a digest) and MACed through the HSM (the audit-link key, input
 * prefixed `kms-audit-token:` so it can never be a link or a start record's input). Any node of the
 * deployment can open a token another made; a token that was changed, made up, or issued for another
 * tenant or other filters is refused with AuditTokenError. Base64url text, no secret inside.
 */
import { createHash, timingSafeEqual } from 'crypto';
import { AuditTokenError } from './errors';
import { isTime } from './event';
import { LinkMac } from './link-mac';
import { Position } from './query';

const MAX_TOKEN_CHARS = 256;
const MAC_BYTES = 16;
const PAYLOAD = /^v1\.(\d{1,15})\.(\d{1,16})\.([0-9a-f]{32})$/;

const digest = (scope: string): string => createHash('sha256').update(scope, 'utf8').digest('hex').slice(0, 32);

async function macOf(mac: LinkMac, payload: string): Promise<Buffer> {
  return (await mac.mac(Buffer.from(`kms-audit-token:${payload}`, 'utf8'))).subarray(0, MAC_BYTES);
}

export async function sealToken(mac: LinkMac, p: Position, scope: string): Promise<string> {
  const payload = `v1.${p.time}.${p.seq}.${digest(scope)}`;
  return Buffer.concat([Buffer.from(payload, 'utf8'), Buffer.from('.'), await macOf(mac, payload)]).toString('base64url');
}

const refused = (why: string): AuditTokenError => new AuditTokenError(`NextToken ${why}: pass the NextToken of the previous page of this same lookup`);

/** The position in a token issued for `scope`; AuditTokenError otherwise. */
export async function openToken(mac: LinkMac, token: string, scope: string): Promise<Position> {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_CHARS || !/^[A-Za-z0-9_-]+$/.test(token)) {
    throw refused('is not a token of this service');
  }
  const raw = Buffer.from(token, 'base64url');
  const cut = raw.length - MAC_BYTES - 1;
  const payload = cut > 0 ? raw.subarray(0, cut).toString('utf8') : '';
  const m = PAYLOAD.exec(payload);
  if (m === null || raw[cut] !== 0x2e) throw refused('is not a token of this service');
  const expected = await macOf(mac, payload);
  if (!timingSafeEqual(expected, raw.subarray(cut + 1))) throw refused('was not issued by this service (changed or made up)');
  if (m[3] !== digest(scope)) throw refused('was issued for another lookup (other tenant, time range or attribute)');
  const p = { time: Number(m[1]), seq: Number(m[2]) };
  if (!isTime(p.time) || !Number.isSafeInteger(p.seq)) throw refused('is not a token of this service');
  return p;
}
