import { EdgebusError } from '../core/errors.ts'

/** `token` authenticates any request (EventSource and links cannot set headers: http-auth.ts). */
const ALWAYS_KNOWN = ['token']

/**
 * Refuses a query parameter the endpoint does not read: `messages?since=1h` would otherwise
 * replay from the start, silently. EHTTP_QUERY names it and lists the known ones.
 */
export function checkQuery(url: URL, known: readonly string[]): void {
  for (const key of url.searchParams.keys()) {
    if (known.includes(key) || ALWAYS_KNOWN.includes(key)) continue
    const all = [...known, ...ALWAYS_KNOWN]
    throw new EdgebusError('EHTTP_QUERY', `${url.pathname} has no query parameter "${key}"; known: ${all.join(', ')}`, { key, known: all })
  }
}
