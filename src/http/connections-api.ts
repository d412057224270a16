import type { IncomingMessage, ServerResponse } from 'node:http'
import { EdgebusError } from '../core/errors.ts'
import type { MqttBroker } from '../mqtt/broker.ts'
import type { ClientConnection } from '../mqtt/connection.ts'
import type { HttpAuth } from './http-auth.ts'
import { checkQuery } from './query.ts'
import { decodePathPart, sendJson, type HttpFront } from './server.ts'

/** MQTT 5 reason code 0x98: Administrative action (the DISCONNECT a kicked client hears). */
const ADMINISTRATIVE_ACTION = 0x98

/**
 * The server's client connections (MQTT over TCP, TLS and WebSocket):
 *   GET    /api/connections          every connection (who may read `$SYS/#`)
 *   GET    /api/connections/<id>     one, with its user and subscriptions (same rule)
 *   DELETE /api/connections/<id>     disconnects it (publish permission on `$admin/clients/<client id>`);
 *                                    MQTT 5 clients hear DISCONNECT 0x98, and a will is published
 * <id> is the connection's `id` in the list (a client id can be reused; a connection id is not).
 */
export function mountConnectionsApi(http: HttpFront, broker: MqttBroker, auth: HttpAuth): void {
  http.prefix('/api/connections', async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    checkQuery(url, [])
    const method = req.method === 'HEAD' ? 'GET' : req.method ?? 'GET'
    const parts = url.pathname.split('/').slice(3).map(decodePathPart) // after '', 'api', 'connections'
    const who = await auth.principal(req, url)
    if (parts.length === 0) {
      if (method !== 'GET') throw new EdgebusError('EHTTP_METHOD', `${method} is not allowed on ${url.pathname}`)
      auth.mayReadInternals(who)
      return sendJson(res, 200, { connections: [...broker.connections].map(summary) })
    }
    if (parts.length !== 1) throw new EdgebusError('ECONNECTION_NOT_FOUND', `no API at ${url.pathname}`)
    const conn = find(broker, parts[0] as string)
    if (method === 'GET') {
      auth.mayReadInternals(who)
      return sendJson(res, 200, { connection: detail(conn) })
    }
    if (method === 'DELETE') {
      auth.mayKick(who, conn.clientId)
      broker.log.info({ client: conn.clientId, connection: conn.id, by: who.identity.user }, 'connection closed by an operator')
      // the server ends it, not the client: its will is published (MQTT 5.0 §3.1.2.5)
      conn.shutDown(ADMINISTRATIVE_ACTION)
      res.writeHead(204).end()
      return
    }
    throw new EdgebusError('EHTTP_METHOD', `${method} is not allowed on ${url.pathname}`)
  })
}

function find(broker: MqttBroker, raw: string): ClientConnection {
  const id = /^\d{1,15}$/.test(raw) ? Number(raw) : NaN
  for (const c of broker.connections) if (c.id === id) return c
  throw new EdgebusError('ECONNECTION_NOT_FOUND', `no connection has the id ${JSON.stringify(raw.slice(0, 100))}; GET /api/connections lists them (id, clientId)`, { id: raw.slice(0, 100) })
}

/** One row of the list (the dashboard's table and `edgebus client ls`). */
function summary(c: ClientConnection): Record<string, unknown> {
  return {
    id: c.id,
    clientId: c.clientId || null,
    protocol: `mqtt-${c.transport.kind}`,
    version: c.connected ? c.version : null,
    remote: c.transport.remoteAddress,
    user: c.principal.identity.user,
    subscriptions: [...(c.client ? Object.keys(c.client.subscriptions) : []), ...c.plainSubscriptionList().map((s) => s.filter)],
    queuedBytes: c.queuedBytes,
    messagesIn: c.messagesIn,
    messagesOut: c.messagesOut,
    dropped: c.droppedQos0,
  }
}

/** Everything about one connection: the summary, how it logged in, its session and its subscriptions' QoS. */
function detail(c: ClientConnection): Record<string, unknown> {
  const client = c.client
  return {
    ...summary(c),
    auth: c.principal.identity.method,
    connected: c.connected,
    cleanSession: client?.clean ?? null,
    sessionExpiryInterval: client?.sessionExpiryInterval ?? null,
    subscriptions: [...(client ? Object.entries(client.subscriptions).map(([filter, s]) => ({ filter, qos: s._granted ?? s.qos })) : []), ...c.plainSubscriptionList()],
  }
}
