import type { IncomingMessage, ServerResponse } from 'node:http'
import { EdgebusError } from '../core/errors.ts'
import type { BridgeManager } from '../bridge/bridge-manager.ts'
import { decodePathPart, sendJson, type HttpFront } from './server.ts'
import type { HttpAuth } from './http-auth.ts'

/**
 * GET /api/bridges: every bridge's state; GET /api/bridges/<name>: one. Bridges are declared in
 * the config file, so there is nothing to change here. Reading them is reading the server's
 * internals (who may subscribe to `$SYS/#`), as the dashboard's API.
 */
export function mountBridgesApi(http: HttpFront, bridges: BridgeManager, auth: HttpAuth): void {
  http.prefix('/api/bridges', async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    const parts = url.pathname.split('/').slice(3).filter((p) => p !== '').map(decodePathPart)
    const method = req.method ?? 'GET'
    auth.mayReadInternals(await auth.principal(req, url))
    if (method !== 'GET') throw new EdgebusError('EHTTP_METHOD', `${method} is not allowed on ${url.pathname}: bridges are declared in the config file`, { method })
    if (parts.length === 0) return sendJson(res, 200, { bridges: bridges.list() })
    if (parts.length === 1) return sendJson(res, 200, { bridge: bridges.info(parts[0] as string) })
    throw new EdgebusError('EHTTP_METHOD', `no such path: ${url.pathname}`, { method })
  })
}
