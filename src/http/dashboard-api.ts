import type { MqttBroker } from '../mqtt/broker.ts'
import { EdgebusError } from '../core/errors.ts'
import type { RateHistory } from '../core/rate-history.ts'
import type { SubjectRates } from '../router/subject-rates.ts'
import { DASHBOARD_HTML, VERSION } from '../version.ts'
import { sendJson, type HttpFront } from './server.ts'
import type { HttpAuth } from './http-auth.ts'

/**
 * What the dashboard reads: GET / (the page, built into the bundle), GET /api/stats,
 * GET /api/rates (the last hour per second: `?seconds=N` for the last N, `?series=a,b` for the
 * series starting with a or b), GET /api/subjects (the busiest subjects: `?limit=N`, default 20)
 * (and GET /api/connections, connections-api.ts). Plain JSON, also useful to scripts; all need
 * the right to read the server's internals, as $SYS does.
 */
export function mountDashboard(http: HttpFront, broker: MqttBroker, startedAt: number, auth: HttpAuth, rates: RateHistory, subjects: SubjectRates): void {
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
  http.route('GET', '/api/rates', async (req, res, url) => {
    auth.mayReadInternals(await auth.principal(req, url))
    const seconds = count(url, 'seconds', rates.size, rates.size)
    const series = url.searchParams.get('series')
    sendJson(res, 200, rates.snapshot(seconds, series === null ? [] : series.split(',').filter((p) => p !== '')))
  }, ['seconds', 'series'])
  http.route('GET', '/api/subjects', async (req, res, url) => {
    auth.mayReadInternals(await auth.principal(req, url))
    sendJson(res, 200, { window: '10s', tracked: subjects.tracked, subjects: subjects.top(count(url, 'limit', 20, 1000)) })
  }, ['limit'])
}

/** A whole-number query parameter from 1 to `max`, or `fallback` when absent. */
function count(url: URL, key: string, fallback: number, max: number): number {
  const raw = url.searchParams.get(key)
  if (raw === null) return fallback
  const n = /^\d{1,9}$/.test(raw) ? Number(raw) : NaN
  if (!(n >= 1 && n <= max)) throw new EdgebusError('EHTTP_QUERY', `${url.pathname}: ${key} must be a whole number from 1 to ${max}, not ${JSON.stringify(raw.slice(0, 40))}`, { key })
  return n
}
