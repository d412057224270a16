import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { OPEN_PRINCIPAL, type Principal, type Security } from '../auth/security.ts'
import type { StreamManager } from '../stream/stream-manager.ts'

/** How long a verified Basic user name and password are remembered (scrypt costs ~80 ms per check). */
const BASIC_CACHE_MS = 60_000

/**
 * Who an HTTP request comes from: `Authorization: Bearer <token>` (or `?token=` for EventSource
 * and links, which cannot set headers), `Authorization: Basic` with a user of the password file,
 * or anonymous when the config allows it. The same ACLs as MQTT then decide.
 */
export class HttpAuth {
  readonly #security: Security | null
  readonly #basic = new Map<string, { principal: Principal; until: number }>()

  constructor(security: Security | null) {
    this.#security = security
  }

  async principal(req: IncomingMessage, url: URL): Promise<Principal> {
    const security = this.#security
    if (security === null) return OPEN_PRINCIPAL
    const header = req.headers.authorization ?? ''
    const clientId = `http:${req.socket.remoteAddress ?? '?'}`
    const bearer = /^Bearer\s+(\S+)$/i.exec(header)?.[1] ?? url.searchParams.get('token')
    if (bearer !== null && bearer !== undefined && bearer !== '') return security.identify({ clientId, token: bearer }, 'http')
    const basic = /^Basic\s+(\S+)$/i.exec(header)?.[1]
    if (basic !== undefined) {
      const text = Buffer.from(basic, 'base64').toString('utf8')
      const colon = text.indexOf(':')
      const key = createHash('sha256').update(text).digest('base64')
      const now = Date.now()
      const hit = this.#basic.get(key)
      if (hit !== undefined && hit.until > now) return hit.principal
      const principal = await security.identify({ clientId, username: colon < 0 ? text : text.slice(0, colon), password: colon < 0 ? '' : text.slice(colon + 1) }, 'http')
      if (this.#basic.size > 1000) this.#basic.clear()
      this.#basic.set(key, { principal, until: now + BASIC_CACHE_MS })
      return principal
    }
    return security.identify({ clientId }, 'http')
  }

  /** Throws EACL_DENIED unless the request may publish to `topic`. */
  mayPublish(p: Principal, topic: string): void {
    if (!p.access.canPublish(topic)) throw (this.#security as Security).denied(p, 'pub', topic, 'http')
  }

  /** Throws EACL_DENIED unless the request may read the stream (a replay filter, or a consumer). */
  mayReadStream(p: Principal, streams: StreamManager, stream: string, what: { consumer: string } | { filter: string | null }): void {
    const denied = this.#security?.streamDenial(p, streams, stream, what, 'http') ?? null
    if (denied !== null) throw denied
  }

  /**
   * Creating, changing and deleting streams and consumers: the ACL must let the user publish to
   * `$admin/streams/<stream>` (a topic no device uses, so only rules written for it match).
   */
  mayManage(p: Principal, stream: string): void {
    if (this.#security === null) return
    const topic = `$admin/streams/${stream}`
    if (!p.access.canPublish(topic)) throw this.#security.denied(p, 'pub', topic, 'http')
  }

  /**
   * Disconnecting a client (DELETE /api/connections/<id>): the ACL must let the user publish to
   * `$admin/clients/<client id>`; '/', '+' and '#' in the id read as '_' (one level, no wildcard).
   */
  mayKick(p: Principal, clientId: string): void {
    if (this.#security === null) return
    const topic = `$admin/clients/${clientId.replace(/[/+#]/g, '_') || '_'}`
    if (!p.access.canPublish(topic)) throw this.#security.denied(p, 'pub', topic, 'http')
  }

  /** Users and ACLs at run time (/api/auth): the ACL must let the user publish to `$admin/auth`. */
  mayManageAuth(p: Principal): void {
    if (this.#security === null) return
    if (!p.access.canPublish('$admin/auth')) throw this.#security.denied(p, 'pub', '$admin/auth', 'http')
  }

  /** Users or passwords changed: Basic credentials are checked again from the next request. */
  forgetCredentials(): void {
    this.#basic.clear()
  }

  /** The server's internals (stats, connections): who may read `$SYS/#`. */
  mayReadInternals(p: Principal): void {
    if (this.#security === null) return
    if (!p.access.canSubscribe('$SYS/#')) throw this.#security.denied(p, 'sub', '$SYS/#', 'http')
  }
}
