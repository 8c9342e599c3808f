/**
 * Proof of origin: each sender's declared scheme (a static header, an HMAC of the raw body, a
 * path token), checked in constant time before anything reads the payload.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { WasmMirrorError } from '../errors.ts';
import { header } from './delivery.ts';
import type { SenderAuth, SourceConfig, WebhookRequest } from './types.ts';

export function unauthenticated(message = 'webhook authentication failed'): WasmMirrorError {
  return new WasmMirrorError('WEBHOOK_UNAUTHENTICATED', message);
}

/** Throws WEBHOOK_UNAUTHENTICATED unless the request carries the proof `auth` asks for. */
export function authenticate(
  auth: SenderAuth,
  source: SourceConfig,
  secret: string,
  request: WebhookRequest,
): void {
  switch (auth.kind) {
    case 'static-header':
      checkStaticHeader(request, secret, {
        headerName: auth.sourceHeader ? source.webhookHeader : undefined,
        bare: auth.bare,
        basic: auth.basic === true,
      });
      return;
    case 'body-hmac':
      checkBodyHmac(request, secret, auth);
      return;
    case 'path-token':
      checkPathToken(request, secret);
      return;
  }
}

// Both sides are hashed before timingSafeEqual so neither a length difference nor the position
// of the first differing byte shows in the timing.
export function secretsEqual(presented: string | undefined, expected: string): boolean {
  const a = createHash('sha256')
    .update(presented ?? '', 'utf8')
    .digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  // A source with no configured secret authenticates nobody.
  return timingSafeEqual(a, b) && presented !== undefined && expected.length > 0;
}

/** Constant-time check of a hex HMAC-SHA256 of the raw body bytes. */
export function hmacMatches(secret: string, body: Uint8Array, presentedHex: string | undefined): boolean {
  if (secret.length === 0 || presentedHex === undefined) return false;
  return secretsEqual(presentedHex.toLowerCase(), createHmac('sha256', secret).update(body).digest('hex'));
}

function requireSecret(secret: string): void {
  // Misconfiguration must fail closed, not accept an empty header.
  if (secret.length === 0) throw unauthenticated('no webhook secret configured for this source');
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** `Basic base64(user:secret)`: the password is the secret, the user is not checked. */
function basicPasswordMatches(authorization: string, secret: string): boolean {
  const m = /^basic\s+([A-Za-z0-9+/=]+)$/i.exec(authorization);
  if (!m?.[1] || !BASE64.test(m[1])) return false;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon >= 0 && secretsEqual(decoded.slice(colon + 1), secret);
}

/**
 * A static secret in `headerName` (default `authorization`) as `Bearer <secret>` (scheme
 * case-insensitive); with `bare`, also the secret verbatim; with `basic`, also
 * `Authorization: Basic` whose password is the secret.
 */
export function checkStaticHeader(
  request: WebhookRequest,
  secret: string,
  options: { headerName?: string | undefined; bare?: boolean; basic?: boolean } = {},
): void {
  requireSecret(secret);
  const name = (options.headerName ?? 'authorization').toLowerCase();
  const value = header(request, name)?.trim();
  if (value === undefined) throw unauthenticated('missing webhook credentials');
  const bearer = /^bearer\s+(.+)$/i.exec(value);
  // Every accepted form is compared, so the time taken does not say which one matched.
  let ok = bearer !== null && secretsEqual(bearer[1], secret);
  if (options.bare) ok = secretsEqual(value, secret) || ok;
  if (options.basic && name === 'authorization') ok = basicPasswordMatches(value, secret) || ok;
  if (!ok) throw unauthenticated();
}

/** An HMAC-SHA256 of the raw body in a header, or (with `orSecret`) the secret itself. */
function checkBodyHmac(
  request: WebhookRequest,
  secret: string,
  auth: Extract<SenderAuth, { kind: 'body-hmac' }>,
): void {
  requireSecret(secret);
  const value = header(request, auth.header)?.trim();
  if (value === undefined) throw unauthenticated(`missing ${auth.header}`);
  const digest = auth.signature.exec(value)?.[1];
  if (digest === undefined && !auth.orSecret) throw unauthenticated(`malformed ${auth.header}`);
  // Both forms are evaluated so the time taken does not say which one was expected.
  const asSecret = auth.orSecret === true && secretsEqual(value, secret);
  const asHmac = hmacMatches(secret, request.body, digest);
  if (!asSecret && !asHmac) throw unauthenticated(`${auth.header} does not match`);
}

function checkPathToken(request: WebhookRequest, secret: string): void {
  requireSecret(secret);
  if (request.pathToken === undefined) throw unauthenticated('missing webhook token');
  if (!secretsEqual(request.pathToken, secret)) throw unauthenticated();
}
