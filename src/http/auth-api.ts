import type { IncomingMessage, ServerResponse } from 'node:http'
import { EdgebusError } from '../core/errors.ts'
import type { Principal, Security } from '../auth/security.ts'
import type { MqttBroker } from '../mqtt/broker.ts'
import type { HttpAuth } from './http-auth.ts'
import { checkQuery } from './query.ts'
import { decodePathPart, readJsonBody, sendJson, type HttpFront } from './server.ts'

/** MQTT 5 reason code 0x98: Administrative action (a removed user's connections hear it). */
const ADMINISTRATIVE_ACTION = 0x98

/**
 * Users and ACL rules at run time (runtime-users.ts), for who may publish to `$admin/auth`:
 *   GET    /api/auth/users             users: of the config's password file ("file") and added here ("api")
 *   POST   /api/auth/users             {"name", "password", "acl"?: [rules]}: a new user
 *   PUT    /api/auth/users/<name>      {"password"}: a new password (a user added here)
 *   DELETE /api/auth/users/<name>      removes it and its rules; its connections that logged in
 *                                      with its password are closed (MQTT 5: DISCONNECT 0x98)
 *   GET    /api/auth/acl               every user's run-time rules; GET …/acl/<name> one user's
 *   PUT    /api/auth/acl/<name>        [rules]: replaces the config's rules of that user (any user:
 *                                      of a password file, a token or a certificate)
 *   DELETE /api/auth/acl/<name>        back to the config's rules
 * A change applies at once: live connections of the user are checked against the new rules from
 * their next message on.
 */
export function mountAuthApi(http: HttpFront, broker: MqttBroker, security: Security, auth: HttpAuth, others: Reauthorizer[] = []): void {
  http.prefix('/api/auth', async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    checkQuery(url, [])
    const method = req.method === 'HEAD' ? 'GET' : req.method ?? 'GET'
    const [kind, name, ...rest] = url.pathname.split('/').slice(3).map(decodePathPart) // after '', 'api', 'auth'
    auth.mayManageAuth(await auth.principal(req, url))
    const notAllowed = (): never => { throw new EdgebusError('EHTTP_METHOD', `${method} is not allowed on ${url.pathname}`) }
    if (rest.length > 0 || (kind !== 'users' && kind !== 'acl')) throw new EdgebusError('EUSER_NOT_FOUND', `no API at ${url.pathname} (/api/auth/users, /api/auth/acl)`)
    const change = async (user: string, removed: boolean, fn: Parameters<Security['changeRuntime']>[0]): Promise<void> => {
      await security.changeRuntime(fn)
      auth.forgetCredentials()
      reapply(broker, security, user, removed, others)
    }

    if (kind === 'users') {
      if (name === undefined) {
        if (method === 'GET') return sendJson(res, 200, { users: listUsers(security) })
        if (method !== 'POST') notAllowed()
        const body = await objectBody(req)
        const user = stringField(body, 'name')
        const password = stringField(body, 'password')
        if (security.authenticator.inPasswordFile(user) || security.runtime?.passwords.has(user)) {
          throw new EdgebusError('EUSER_EXISTS', `user ${JSON.stringify(user)} exists already; change its password with PUT /api/auth/users/${user} (or edgebus user passwd)`, { user })
        }
        await change(user, false, async (rt) => {
          if (body.acl !== undefined) await rt.setRules(user, body.acl) // checked first: a bad rule adds nothing
          await rt.setPassword(user, password)
        })
        broker.log.info({ user }, 'user added at run time')
        return sendJson(res, 201, { user: describeUser(security, user) })
      }
      if (method === 'GET') return sendJson(res, 200, { user: describeUser(security, name, true) })
      if (security.authenticator.inPasswordFile(name)) {
        throw new EdgebusError('EUSER_CONFIGURED', `user ${JSON.stringify(name)} is in the config's password file: change it there (edgebus passwd FILE USER, then SIGHUP); its rules can be set with PUT /api/auth/acl/${name}`, { user: name })
      }
      if (method === 'PUT') {
        if (security.runtime?.passwords.has(name) !== true) throw userNotFound(name)
        const password = stringField(await objectBody(req), 'password')
        await change(name, false, (rt) => rt.setPassword(name, password))
        broker.log.info({ user: name }, 'password changed at run time')
        return sendJson(res, 200, { user: describeUser(security, name) })
      }
      if (method === 'DELETE') {
        let removed = false
        await change(name, true, async (rt) => { removed = await rt.removeUser(name) })
        if (!removed) throw userNotFound(name)
        broker.log.info({ user: name }, 'user removed at run time')
        res.writeHead(204).end()
        return
      }
      return notAllowed()
    }

    // acl
    if (name === undefined) {
      if (method !== 'GET') notAllowed()
      return sendJson(res, 200, { acl: Object.fromEntries(security.runtime?.ruleEntries() ?? []) })
    }
    if (method === 'GET') {
      const rules = security.runtime?.ruleEntries().find(([u]) => u === name)?.[1]
      if (rules === undefined) throw new EdgebusError('EUSER_NOT_FOUND', `user ${JSON.stringify(name)} has no run-time rules (the config's apply)`, { user: name })
      return sendJson(res, 200, { user: name, rules })
    }
    if (method === 'PUT') {
      const body = await readJsonBody(req)
      const rules = Array.isArray(body) ? body : (body as { rules?: unknown } | null)?.rules
      await change(name, false, (rt) => rt.setRules(name, rules))
      broker.log.info({ user: name }, 'ACL rules set at run time')
      return sendJson(res, 200, { user: name, rules })
    }
    if (method === 'DELETE') {
      let removed = false
      await change(name, false, async (rt) => { removed = await rt.removeRules(name) })
      if (!removed) throw new EdgebusError('EUSER_NOT_FOUND', `user ${JSON.stringify(name)} has no run-time rules`, { user: name })
      res.writeHead(204).end()
      return
    }
    return notAllowed()
  })
}

/** Connections outside the MQTT broker whose rights follow the ACLs (the /ws sessions). */
export interface Reauthorizer {
  reauthorize(user: string | null, change: (p: Principal, clientId: string) => Principal): void
}

/**
 * Puts a change in force on live MQTT connections (and `others`): the user's connections get their rights again
 * (deliveries, publishes and subscribes are checked against them from now on); a removed user's
 * connections that proved it with a password are closed.
 */
export function reapply(broker: MqttBroker, security: Security, user: string | null, removed: boolean, others: readonly Reauthorizer[] = []): void {
  // /ws sessions log in with tokens only: a removed password never closes them, their rules change
  for (const o of others) o.reauthorize(user, (p, clientId) => security.reauthorize(p, clientId))
  for (const c of broker.connections) {
    const p = c.principal
    if (user !== null && p.identity.user !== user) continue
    if (removed && p.identity.method === 'password' && !security.authenticator.inPasswordFile(user as string)) {
      broker.log.info({ client: c.clientId, user }, 'user removed: disconnecting')
      c.shutDown(ADMINISTRATIVE_ACTION)
      continue
    }
    c.reauthorize(security.reauthorize(p, c.clientId))
  }
}

function listUsers(security: Security): Array<Record<string, unknown>> {
  const names = new Set([...security.authenticator.passwordFileUsers(), ...security.runtime?.passwords.users() ?? [], ...(security.runtime?.ruleEntries() ?? []).map(([u]) => u)])
  return [...names].sort().map((n) => describeUser(security, n))
}

function describeUser(security: Security, name: string, mustExist = false): Record<string, unknown> {
  const file = security.authenticator.inPasswordFile(name)
  const api = security.runtime?.passwords.has(name) ?? false
  const rules = security.runtime?.ruleEntries().find(([u]) => u === name)?.[1] ?? null
  if (mustExist && !file && !api && rules === null) throw userNotFound(name)
  return { name, password: file ? 'file' : api ? 'api' : null, rules }
}

function userNotFound(name: string): EdgebusError {
  return new EdgebusError('EUSER_NOT_FOUND', `no user ${JSON.stringify(name)} was added at run time (GET /api/auth/users lists them)`, { user: name })
}

async function objectBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const body = await readJsonBody(req)
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new EdgebusError('EHTTP_BODY', 'the body is an object like {"name": "alice", "password": "…"}')
  return body as Record<string, unknown>
}

function stringField(body: Record<string, unknown>, key: string): string {
  const v = body[key]
  if (typeof v !== 'string' || v === '') throw new EdgebusError('EUSER_INVALID', `"${key}" is missing or not a string`, { key })
  return v
}
