import type { IncomingMessage, ServerResponse } from 'node:http'

/**
 * Cross-origin requests to the HTTP API (`http.cors`): which page origins a browser may let call
 * it. Browsers send `Origin` and, before anything but a simple GET/POST, an OPTIONS preflight
 * (Fetch standard, "CORS protocol"); without `Access-Control-Allow-Origin` on the answer the page
 * never sees it.
 */
export interface CorsPolicy {
  /** `*`: every origin. */
  readonly any: boolean
  readonly origins: ReadonlySet<string>
}

/** The methods the API answers, for preflights and OPTIONS (RFC 9110 §9.3.7). */
const METHODS = 'GET, HEAD, POST, PUT, DELETE, OPTIONS'
/** How long a browser may keep a preflight's answer. */
const PREFLIGHT_MAX_AGE_S = 600

/** `http.cors` as written: '' (none), '*' or a comma-separated list of origins. */
export function parseCorsPolicy(text: string): CorsPolicy | null {
  const list = text.split(',').map((o) => o.trim()).filter(Boolean)
  if (list.length === 0) return null
  return { any: list.includes('*'), origins: new Set(list) }
}

/** Sets the CORS headers of an answer to an allowed origin; true when the origin is allowed. */
export function allowOrigin(policy: CorsPolicy | null, req: IncomingMessage, res: ServerResponse): boolean {
  const origin = req.headers.origin
  if (policy === null || origin === undefined) return false
  if (!policy.any && !policy.origins.has(origin)) return false
  res.setHeader('access-control-allow-origin', policy.any ? '*' : origin)
  if (!policy.any) res.setHeader('vary', 'Origin') // the answer differs by origin: caches must key on it
  return true
}

/** An OPTIONS request: the methods, and for an allowed origin's preflight what it may send. */
export function answerOptions(policy: CorsPolicy | null, req: IncomingMessage, res: ServerResponse): void {
  res.setHeader('allow', METHODS)
  if (allowOrigin(policy, req, res) && req.headers['access-control-request-method'] !== undefined) {
    res.setHeader('access-control-allow-methods', METHODS)
    // the page's own headers (authorization, content-type, msg-id, ...) are what the API reads
    const asked = req.headers['access-control-request-headers']
    if (asked !== undefined) res.setHeader('access-control-allow-headers', asked)
    res.setHeader('access-control-max-age', String(PREFLIGHT_MAX_AGE_S))
  }
  res.writeHead(204).end()
}
