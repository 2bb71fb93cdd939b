/**
 * IP addresses and CIDR blocks for the ip_equal / ip_not_equal conditions, IPv4 and IPv6.
 * An IPv4-mapped IPv6 address (::ffff:a.b.c.d, as a dual-stack socket reports IPv4 peers) is the
 * IPv4 address, and a CIDR inside ::ffff:0:0/96 is the IPv4 block, so either form matches the other.
 */
import { isIPv4, isIPv6 } from 'net';

export interface IpAddress {
  family: 4 | 6;
  value: bigint;
}

export interface Cidr {
  family: 4 | 6;
  /** The block's first address (host bits cleared). */
  base: bigint;
  prefix: number;
}

const BITS = { 4: 32, 6: 128 } as const;
const MAPPED_PREFIX = 0xffffn;

function v4Value(s: string): bigint {
  return s.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

/** The 16-bit groups of one side of `::` (an embedded IPv4 tail counts as two groups). */
function v6Groups(part: string): number[] {
  if (part === '') return [];
  return part.split(':').flatMap((g) => {
    if (!g.includes('.')) return [parseInt(g, 16)];
    const v = Number(v4Value(g));
    return [Math.floor(v / 0x10000), v % 0x10000];
  });
}

function v6Value(s: string): bigint {
  const [head, tail] = s.split('::');
  const h = v6Groups(head);
  const t = tail === undefined ? [] : v6Groups(tail);
  const groups = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

/** Parses an address (an IPv6 zone such as %eth0 is ignored); undefined if it is not one. */
export function parseIp(text: string): IpAddress | undefined {
  const s = text.trim().replace(/%.*$/, '');
  if (isIPv4(s)) return { family: 4, value: v4Value(s) };
  if (!isIPv6(s)) return undefined;
  const value = v6Value(s);
  return value >> 32n === MAPPED_PREFIX ? { family: 4, value: value & 0xffffffffn } : { family: 6, value };
}

/** Parses `address` or `address/prefix`; undefined if malformed. */
export function parseCidr(text: string): Cidr | undefined {
  const [addr, prefixText, extra] = text.trim().split('/');
  if (extra !== undefined || (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText))) return undefined;
  const s = addr.replace(/%.*$/, '');
  const family = isIPv4(s) ? 4 : isIPv6(s) ? 6 : undefined;
  if (family === undefined) return undefined;
  const prefix = prefixText === undefined ? BITS[family] : Number(prefixText);
  if (prefix > BITS[family]) return undefined;
  const value = family === 4 ? v4Value(s) : v6Value(s);
  if (family === 6 && prefix >= 96 && value >> 32n === MAPPED_PREFIX) return block(4, value & 0xffffffffn, prefix - 96);
  return block(family, value, prefix);
}

function block(family: 4 | 6, value: bigint, prefix: number): Cidr {
  const hostBits = BigInt(BITS[family] - prefix);
  return { family, base: (value >> hostBits) << hostBits, prefix };
}

export function cidrContains(cidr: Cidr, ip: IpAddress): boolean {
  if (cidr.family !== ip.family) return false;
  const hostBits = BigInt(BITS[cidr.family] - cidr.prefix);
  return (ip.value >> hostBits) << hostBits === cidr.base;
}
