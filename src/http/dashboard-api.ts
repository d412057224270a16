import type { MqttBroker } from '../mqtt/broker.ts'
import { DASHBOARD_HTML, VERSION } from '../version.ts'
import { sendJson, type HttpFront } from './server.ts'
import type { HttpAuth } from './http-auth.ts'

/**
 * What the dashboard reads: GET / (the page, built into the bundle) and GET /api/stats (and
 * GET /api/connections, connections-api.ts). Plain JSON, also useful to scripts.
 */
export function mountDashboard(http: HttpFront, broker: MqttBroker, startedAt: number, auth: HttpAuth): void {
  http.route('GET', '/', (_req, res) => {
    if (DASHBOARD_HTML === null) return sendJson(res, 404, { error: { code: 'ENOTFOUND', message: 'the dashboard is part of the built bundle (npm run build)' } })
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-cache' })
    res.end(DASHBOARD_HTML)
  }, null)
  http.route('GET', '/api/stats', async (req, res, url) => {
    auth.mayReadInternals(await auth.principal(req, url))
    const mem = process.memoryUsage()
    sendJson(res, 200, {
      version: VERSION,
      uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
      connections: broker.connections.size,
      subscriptions: broker.router.subscriptionCount,
      ...broker.stats,
      memory: { rss: mem.rss, heapUsed: mem.heapUsed },
    })
  })
}
