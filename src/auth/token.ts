import { createHmac, timingSafeEqual } from 'node:crypto'
import { EdgebusError } from '../core/errors.ts'

/**
 * Access tokens for browsers and HTTP clients: JWTs in compact form signed with HS256 (RFC 7519,
 * RFC 7515), so any JWT library or `jwt` CLI can mint them with the server's auth.tokenSecret.
 * Only HS256 is accepted: the algorithm is ours to choose, never the token's ("alg": "none" and
 * algorithm confusion are refused by construction).
 */

export interface TokenClaims {
  /** The user the token acts for: it has that user's ACL rules. */
  sub: string
  /** Expiry, in seconds since the epoch (required: a token without an end is a password that cannot be changed). */
  exp: number
  /** Not before, seconds since the epoch. */
  nbf?: number
  iat?: number
  /** Extra rules that can only narrow the user's (see ACL.md). Checked by the Authenticator. */
  acl?: unknown
  [claim: string]: unknown
}

/** Larger tokens are refused before any parsing or HMAC work. */
export const MAX_TOKEN_LENGTH = 8192

const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url')
const SEGMENT = /^[A-Za-z0-9_-]+$/

function mac(secret: string, signingInput: string): Buffer {
  return createHmac('sha256', secret).update(signingInput).digest()
}

export function signToken(claims: TokenClaims, secret: string): string {
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url')
  const input = `${HEADER}.${payload}`
  return `${input}.${mac(secret, input).toString('base64url')}`
}

/** A claim time for a message; out-of-range values are shown as they are. */
function when(seconds: number): string {
  const d = new Date(seconds * 1000)
  return Number.isNaN(d.getTime()) ? `${seconds} s after 1970` : d.toISOString()
}

function invalid(why: string): never {
  throw new EdgebusError('EAUTH_TOKEN_INVALID', `the access token is not valid: ${why}; get a new token signed with the server's auth.tokenSecret (HS256)`, { reason: why })
}

function decodeJson(segment: string, what: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'))
  } catch {
    return invalid(`its ${what} is not base64url-encoded JSON`)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) invalid(`its ${what} is not a JSON object`)
  return value as Record<string, unknown>
}

/**
 * The claims of a token whose signature verifies and whose time window contains `nowMs`.
 * Throws EAUTH_TOKEN_INVALID (shape, algorithm, signature, claims) or EAUTH_TOKEN_EXPIRED.
 */
export function verifyToken(token: string, secret: string, nowMs: number = Date.now()): TokenClaims {
  if (token.length > MAX_TOKEN_LENGTH) invalid(`it is longer than ${MAX_TOKEN_LENGTH} characters`)
  const parts = token.split('.')
  if (parts.length !== 3 || !parts.every((p) => SEGMENT.test(p))) invalid('it is not three base64url parts joined by "."')
  const [h, p, s] = parts as [string, string, string]
  const header = decodeJson(h, 'header')
  if (header.alg !== 'HS256') invalid(`its algorithm is ${JSON.stringify(header.alg)}; only HS256 is accepted`)
  // [RFC 7515 4.1.11] extensions we do not understand must not be ignored
  if (header.crit !== undefined) invalid('it carries "crit" header extensions')
  const expected = mac(secret, `${h}.${p}`)
  const given = Buffer.from(s, 'base64url')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) invalid('its signature does not verify')
  // Only a signed payload is read: nothing an attacker wrote reaches the code below.
  const claims = decodeJson(p, 'payload')
  if (typeof claims.sub !== 'string' || claims.sub.length === 0) invalid('its "sub" claim (the user name) is missing')
  if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) invalid('its "exp" claim (expiry, seconds since 1970) is missing')
  if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || !Number.isFinite(claims.nbf))) invalid('its "nbf" claim is not a number')
  const exp = claims.exp as number
  // [RFC 7519 4.1.4] the token must not be accepted on or after the expiry time
  if (nowMs >= exp * 1000) {
    throw new EdgebusError('EAUTH_TOKEN_EXPIRED', `the access token of ${JSON.stringify(claims.sub)} expired at ${when(exp)}; get a new one`, { sub: claims.sub, exp })
  }
  if (typeof claims.nbf === 'number' && nowMs < claims.nbf * 1000) {
    invalid(`it is not valid before ${when(claims.nbf)} (check the clocks)`)
  }
  return claims as TokenClaims
}
