/**
 * TC3-HMAC-SHA256 request signatures (Tencent Cloud API 3.0), verified the way both official SDKs
 * sign: the Node SDK (service = first DNS label of the endpoint, `host` signed without the port)
 * and the Go SDK (service `kms`, `host` signed with the port). Messages never carry the SecretKey,
 * the expected signature or the body.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { NamedError } from '../common/errors';

export const TC3_ALGORITHM = 'TC3-HMAC-SHA256';
/** X-TC-Timestamp may differ from the server's clock by this much (Tencent: ±5 minutes). */
export const TC3_MAX_SKEW_SECONDS = 300;

export type AuthErrorCode =
  'AuthFailure.InvalidAuthorization' | 'AuthFailure.SignatureExpire' | 'AuthFailure.SecretIdNotFound' | 'AuthFailure.SignatureFailure';

export class AuthError extends NamedError {
  constructor(
    readonly code: AuthErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Header names lowercased, as Node gives them. `url` (path and query) defaults to `/`. */
export interface Tc3Request {
  method: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  url?: string;
}

/** The SecretKey of a SecretId, or undefined when the SecretId is unknown. */
export type SecretLookup = (secretId: string) => Promise<Buffer | undefined> | Buffer | undefined;

export interface Tc3Identity {
  secretId: string;
  service: string;
  timestamp: number;
  /** The verified signature (for the replay cache; never logged). */
  signature: Buffer;
}

/** Longer Authorization headers are refused before anything else is read (the SDKs send about 200 characters). */
export const MAX_AUTHORIZATION_CHARS = 2048;

/** What a server demands of signatures besides the SDKs' content-type and host. */
export interface Tc3Policy {
  /** Header names (lowercase) every request must sign. */
  requiredSignedHeaders?: readonly string[];
}

/** How much verification work was done in this process (tests and metrics: work done before authentication). */
export const tc3Work = { keyDerivations: 0, signatureHmacs: 0 };

export interface ParsedAuthorization {
  secretId: string;
  date: string;
  service: string;
  signedHeaders: string[];
  signature: Buffer;
}

const invalid = (message: string): AuthError => new AuthError('AuthFailure.InvalidAuthorization', message);

function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

let lastDay = NaN;
let lastDate = '';

/** UTC `YYYY-MM-DD` of unix seconds (the last day's string is kept: every request asks for it). */
export function utcDate(seconds: number): string {
  const day = Math.floor(seconds / 86_400);
  if (day !== lastDay) {
    lastDate = new Date(day * 86_400_000).toISOString().slice(0, 10);
    lastDay = day;
  }
  return lastDate;
}

/** A small memo of pure parses of header parts that repeat on every request of a client (credential scope, SignedHeaders). */
function memo<T>(parse: (value: string) => T, size = 1024): (value: string) => T {
  const cache = new Map<string, T>();
  return (value) => {
    const hit = cache.get(value);
    if (hit !== undefined) return hit;
    const parsed = parse(value);
    if (cache.size >= size) cache.delete(cache.keys().next().value as string);
    cache.set(value, parsed);
    return parsed;
  };
}

/**
 * The credential scope's service: what the SDKs put there. The Go SDK signs `kms`; the Node SDK the
 * endpoint's first DNS label, which keeps a port when the endpoint has no dot (`localhost:8080`,
 * `[::1]:8080`). Anything else (long, odd characters) is refused before it is cached or derived with.
 */
const SERVICE = /^(?:[A-Za-z0-9_-]{1,63}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;
const SECRET_ID = /^[A-Za-z0-9_-]{1,128}$/;

function isCalendarDate(date: string): boolean {
  return /^\d{4}-\d{2}-\d{2}$/.test(date) && new Date(`${date}T00:00:00Z`).toISOString().startsWith(date);
}

function parseCredential(value: string): Pick<ParsedAuthorization, 'secretId' | 'date' | 'service'> {
  const parts = value.split('/');
  const [secretId, date, service, terminal] = parts;
  if (parts.length !== 4 || !secretId || !service || terminal !== 'tc3_request' || !/^\d{4}-\d{2}-\d{2}$/.test(date ?? '')) {
    throw invalid('Credential must be SecretId/YYYY-MM-DD/service/tc3_request');
  }
  if (!SECRET_ID.test(secretId)) throw invalid('the SecretId in Credential must be 1 to 128 letters, digits, "-" or "_"');
  if (!isCalendarDate(date)) throw invalid('the Credential date must be a calendar date YYYY-MM-DD');
  if (!SERVICE.test(service)) throw invalid('the Credential service must be a host label (letters, digits, "-", "_"; at most 63) with an optional :port');
  return { secretId, date, service };
}

function parseSignedHeaders(value: string): string[] {
  const names = value.split(';');
  if (!names.every((n) => /^[a-z0-9-]+$/.test(n))) throw invalid('SignedHeaders must list lowercase header names separated by ";"');
  if (!names.every((n, i) => i === 0 || names[i - 1] < n)) throw invalid('SignedHeaders must be sorted and without repeats');
  for (const required of ['content-type', 'host']) {
    if (!names.includes(required)) throw invalid(`SignedHeaders must include ${required}`);
  }
  return names;
}

function authorizationFields(rest: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const item of rest.split(',')) {
    const eq = item.indexOf('=');
    const name = item.slice(0, eq).trim();
    if (eq < 1 || fields.has(name)) throw invalid('Authorization must be "TC3-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…"');
    fields.set(name, item.slice(eq + 1).trim());
  }
  const names = [...fields.keys()].sort().join(',');
  if (names !== 'Credential,Signature,SignedHeaders') throw invalid('Authorization must have exactly Credential, SignedHeaders and Signature');
  return fields;
}

/** Parses `TC3-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`; throws AuthError InvalidAuthorization. */
export function parseAuthorization(header: string | undefined): ParsedAuthorization {
  if (!header) throw invalid('the Authorization header is missing');
  if (header.length > MAX_AUTHORIZATION_CHARS) throw invalid(`the Authorization header is longer than ${MAX_AUTHORIZATION_CHARS} characters`);
  const space = header.indexOf(' ');
  const algorithm = space < 0 ? header : header.slice(0, space);
  if (algorithm !== TC3_ALGORITHM) throw invalid(`the signature algorithm must be ${TC3_ALGORITHM}`);
  // the SDKs' layout, read with one expression; any other order or spacing goes through the general reader
  const usual = USUAL_LAYOUT.exec(header);
  const fields = usual ? undefined : authorizationFields(header.slice(space + 1));
  const signature = usual ? usual[3] : (fields?.get('Signature') as string);
  if (!/^[0-9a-fA-F]{64}$/.test(signature)) throw invalid('Signature must be 64 hexadecimal characters');
  return {
    ...credentialOf(usual ? usual[1] : (fields?.get('Credential') as string)),
    signedHeaders: signedHeadersOf(usual ? usual[2] : (fields?.get('SignedHeaders') as string)),
    signature: Buffer.from(signature, 'hex'),
  };
}

const USUAL_LAYOUT = /^TC3-HMAC-SHA256 Credential=([^,\s]*), SignedHeaders=([^,\s]*), Signature=([^,\s]*)$/;
const credentialOf = memo(parseCredential);
const signedHeadersOf = memo(parseSignedHeaders);

function singleHeader(headers: Tc3Request['headers'], name: string): string | undefined {
  const v = Object.prototype.hasOwnProperty.call(headers, name) ? headers[name] : undefined;
  if (Array.isArray(v)) {
    if (v.length !== 1) throw invalid(`the ${name} header appears more than once`);
    return v[0];
  }
  return typeof v === 'string' ? v : undefined;
}

function parseTimestamp(value: string | undefined): number {
  if (value === undefined) throw invalid('the X-TC-Timestamp header is missing');
  if (!/^\d{1,12}$/.test(value.trim())) throw invalid('X-TC-Timestamp must be unix seconds');
  return Number(value.trim());
}

/** `host` without its port (`kms.local:8080` → `kms.local`, `[::1]:8080` → `[::1]`), as Node's URL.hostname. */
export function hostWithoutPort(host: string): string {
  const m = /^(\[[^\]]*\]|[^:]*):\d*$/.exec(host);
  return m ? m[1] : host;
}

/** The inputs of a canonical request; `headers` are the signed headers' canonical values, in SignedHeaders order. */
export interface CanonicalInput {
  method: string;
  path: string;
  query: string;
  headers: ReadonlyArray<readonly [string, string]>;
  payloadHash: string;
}

export function canonicalRequest(c: CanonicalInput): string {
  let lines = '';
  let signed = '';
  for (const [name, value] of c.headers) {
    lines += `${name}:${value}\n`;
    signed += signed === '' ? name : `;${name}`;
  }
  return `${c.method}\n${c.path}\n${c.query}\n${lines}\n${signed}\n${c.payloadHash}`;
}

export function stringToSign(timestamp: number, date: string, service: string, canonical: string): string {
  return [TC3_ALGORITHM, String(timestamp), `${date}/${service}/tc3_request`, sha256Hex(canonical)].join('\n');
}

/** The signing key: HMAC chain over "TC3" + SecretKey, date, service, "tc3_request". */
export function signingKey(secretKey: Buffer, date: string, service: string): Buffer {
  const kDate = hmac(Buffer.concat([Buffer.from('TC3'), secretKey]), date);
  return hmac(hmac(kDate, service), 'tc3_request');
}

function splitUrl(url: string | undefined): { path: string; query: string } {
  const raw = url ?? '/';
  const q = raw.indexOf('?');
  return q < 0 ? { path: raw, query: '' } : { path: raw.slice(0, q), query: raw.slice(q + 1) };
}

/**
 * How a client may have written a signed header's value. The Node and Go SDKs sign content-type
 * as sent and host as described above; the official rules (and the demo's `x-tc-action`) lowercase
 * and trim every value. Each variant is one more HMAC, never another key derivation.
 */
type ValueStyle = (name: string, value: string) => string;
const VALUE_STYLES: readonly ValueStyle[] = [(name, v) => (name === 'content-type' ? v : v.toLowerCase()), (_name, v) => v, (_name, v) => v.toLowerCase()];

function signedValues(req: Tc3Request, names: readonly string[]): Map<string, string> {
  const values = new Map<string, string>();
  for (const name of names) {
    const v = singleHeader(req.headers, name);
    if (v === undefined) throw invalid(`SignedHeaders names ${name}, which the request does not carry`);
    values.set(name, name === 'content-type' ? v : v.trim());
  }
  return values;
}

/**
 * The canonical request as the SDKs build it (`first`) and, only when that does not match, every
 * other way a signer may have built it (value styles × host with/without port), each once.
 */
function canonicalRequests(req: Tc3Request, signedHeaders: readonly string[]): { first: string; others: () => string[] } {
  const values = signedValues(req, signedHeaders);
  const host = values.get('host') as string;
  const { path, query } = splitUrl(req.url);
  const head = `${req.method.toUpperCase()}\n${path}\n${query}\n`;
  const tail = `\n${signedHeaders.join(';')}\n${sha256Hex(req.body)}`;
  const build = (hostValue: string, style: ValueStyle): string => {
    let lines = '';
    for (const n of signedHeaders) lines += `${n}:${style(n, n === 'host' ? hostValue : (values.get(n) as string))}\n`;
    return head + lines + tail;
  };
  const bare = hostWithoutPort(host);
  const first = build(bare, VALUE_STYLES[0]);
  return {
    first,
    others: () => {
      const all = new Set<string>([first]);
      for (const hostValue of [bare, host]) for (const style of VALUE_STYLES) all.add(build(hostValue, style));
      return [...all].slice(1);
    },
  };
}

/**
 * Signing keys are derived with three HMACs per (SecretKey, date, service); they are kept for the
 * day, keyed by SecretId and checked against the SecretKey they came from (a changed key misses).
 * A key goes into the cache only once a signature made with it has verified: a client that has not
 * authenticated leaves nothing behind.
 */
const KEY_CACHE_SIZE = 10_000;
const keyCache = new Map<string, { secretKey: Buffer; key: Buffer }>();

/** Signing keys held (tests: a failed request adds none). */
export function signingKeyCacheSize(): number {
  return keyCache.size;
}

function keyCacheId(secretId: string, date: string, service: string): string {
  return `${secretId}\n${date}\n${service}`;
}

function cachedSigningKey(secretId: string, secretKey: Buffer, date: string, service: string): { key: Buffer; cached: boolean } {
  const hit = keyCache.get(keyCacheId(secretId, date, service));
  if (hit && hit.secretKey.equals(secretKey)) return { key: hit.key, cached: true };
  tc3Work.keyDerivations += 1;
  return { key: signingKey(secretKey, date, service), cached: false };
}

function rememberSigningKey(secretId: string, secretKey: Buffer, date: string, service: string, key: Buffer): void {
  if (keyCache.size >= KEY_CACHE_SIZE) keyCache.delete(keyCache.keys().next().value as string);
  keyCache.set(keyCacheId(secretId, date, service), { secretKey: Buffer.from(secretKey), key });
}

function checkRequiredHeaders(auth: ParsedAuthorization, policy: Tc3Policy): void {
  for (const name of policy.requiredSignedHeaders ?? []) {
    if (!auth.signedHeaders.includes(name)) throw invalid(`SignedHeaders must include ${name} (this server requires it to be signed)`);
  }
}

function checkTime(auth: ParsedAuthorization, timestamp: number, nowSeconds: number): void {
  if (auth.date !== utcDate(timestamp)) throw invalid('the credential scope date is not the UTC date of X-TC-Timestamp');
  if (Math.abs(nowSeconds - timestamp) > TC3_MAX_SKEW_SECONDS) {
    throw new AuthError('AuthFailure.SignatureExpire', `X-TC-Timestamp differs from the server time by more than ${TC3_MAX_SKEW_SECONDS} seconds`);
  }
}

/**
 * Checks a request's TC3 signature. Resolves to who signed it; rejects with AuthError
 * (InvalidAuthorization, SignatureExpire, SecretIdNotFound, SignatureFailure).
 */
export async function verifyTc3(req: Tc3Request, lookup: SecretLookup, nowSeconds: number, policy: Tc3Policy = {}): Promise<Tc3Identity> {
  const auth = parseAuthorization(singleHeader(req.headers, 'authorization'));
  checkRequiredHeaders(auth, policy);
  const timestamp = parseTimestamp(singleHeader(req.headers, 'x-tc-timestamp'));
  const canonical = canonicalRequests(req, auth.signedHeaders);
  checkTime(auth, timestamp, nowSeconds);
  const secretKey = await lookup(auth.secretId);
  if (secretKey === undefined) throw new AuthError('AuthFailure.SecretIdNotFound', 'the SecretId is not found; check that it is correct');
  const { key, cached } = cachedSigningKey(auth.secretId, secretKey, auth.date, auth.service);
  // Each comparison is constant-time; stopping at a match reveals only which header style the client used.
  const matches = (canonical: string) => {
    tc3Work.signatureHmacs += 1;
    return timingSafeEqual(hmac(key, stringToSign(timestamp, auth.date, auth.service, canonical)), auth.signature);
  };
  if (!matches(canonical.first) && !canonical.others().some(matches))
    throw new AuthError('AuthFailure.SignatureFailure', 'the provided credentials could not be validated; check that the signature is correct');
  if (!cached) rememberSigningKey(auth.secretId, secretKey, auth.date, auth.service, key);
  return { secretId: auth.secretId, service: auth.service, timestamp, signature: auth.signature };
}

export interface SignTc3Input {
  secretId: string;
  secretKey: Buffer | string;
  /** Credential-scope service: `kms` for the Go SDK, the endpoint's first DNS label for the Node SDK. */
  service: string;
  timestamp: number;
  method?: string;
  url?: string;
  /** Header names lowercased; must hold every signed header (at least content-type and host). */
  headers: Record<string, string>;
  body: Buffer;
  /** Extra headers to sign besides content-type and host (their values are lowercased, per the official rules). */
  extraSignedHeaders?: readonly string[];
  /** true (Go SDK): sign host with its port; false (Node SDK, default): without. */
  hostWithPort?: boolean;
}

/** The Authorization header a client would send; signs like the Go SDK (`hostWithPort`) or the Node SDK. */
export function signTc3(s: SignTc3Input): string {
  const names = [...new Set(['content-type', 'host', ...(s.extraSignedHeaders ?? [])])].sort();
  const value = (n: string): string => {
    const v = s.headers[n];
    if (v === undefined) throw new Error(`signTc3: header ${n} is missing`);
    if (n === 'content-type') return v;
    return n === 'host' ? (s.hostWithPort ? v : hostWithoutPort(v)).toLowerCase() : v.trim().toLowerCase();
  };
  const { path, query } = splitUrl(s.url);
  const canonical = canonicalRequest({
    method: (s.method ?? 'POST').toUpperCase(),
    path,
    query,
    headers: names.map((n) => [n, value(n)] as const),
    payloadHash: sha256Hex(s.body),
  });
  const date = utcDate(s.timestamp);
  const key = signingKey(Buffer.isBuffer(s.secretKey) ? s.secretKey : Buffer.from(s.secretKey, 'utf8'), date, s.service);
  const signature = hmac(key, stringToSign(s.timestamp, date, s.service, canonical)).toString('hex');
  return `${TC3_ALGORITHM} Credential=${s.secretId}/${date}/${s.service}/tc3_request, SignedHeaders=${names.join(';')}, Signature=${signature}`;
}
