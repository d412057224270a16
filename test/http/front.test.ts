import { createServer, request, type Server } from 'node:http'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'

// Debian's chromium (as in test/e2e/dashboard.test.ts), driven by playwright-core
const CHROMIUM = '/usr/bin/chromium'

/** A page server on its own port: another origin than edgebus's. */
async function pageServer(html: string): Promise<{ server: Server; origin: string }> {
  const server = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/html' }).end(html) })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { server, origin: `http://127.0.0.1:${(server.address() as { port: number }).port}` }
}

/** A raw request (fetch would not let us set Origin freely): status and headers. */
function raw(url: string, method: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

let srv: StartedEdgebus
let allowed: { server: Server; origin: string }
let other: { server: Server; origin: string }
let browser: Browser

const PAGE = `<!doctype html><title>another origin</title>`

beforeAll(async () => {
  allowed = await pageServer(PAGE)
  other = await pageServer(PAGE)
  srv = await startEdgebus({ config: { http: { cors: allowed.origin }, streams: [{ name: 'telemetry', subjects: ['sensors.>'] }] } })
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] })
}, 30_000)
afterAll(async () => {
  await endAllClients()
  await browser?.close()
  await srv?.stop()
  allowed?.server.close()
  other?.server.close()
})

describe('CORS (http.cors)', () => {
  it("the README's browser snippet works from a page on an allowed origin: client.js, replay (with a token header: preflighted) and publish", async () => {
    const mqtt = await connectClient(srv.mqttUrl)
    await mqtt.client.publishAsync('sensors/kitchen/temp', '21.5', { qos: 1 })
    const page = await browser.newPage()
    await page.goto(`${allowed.origin}/`)
    // a string, not a function: the test runner rewrites import() in functions it compiles
    const got = await page.evaluate(`(async () => {
      const { connect } = await import('${srv.httpUrl}/client.js')
      const bus = connect('ws://127.0.0.1:${srv.httpPort}/ws', { token: 'not-needed-here' })
      const last = await bus.replay('telemetry', { last: 100 })
      const res = await fetch('${srv.httpUrl}/api/publish/sensors.door?qos=1', { method: 'POST', headers: { 'content-type': 'application/json', 'msg-id': 'm1' }, body: '{"open":true}' })
      bus.close()
      return { last: last.map((m) => [m.subject, m.payload]), published: res.status }
    })()`)
    expect(got).toEqual({ last: [['sensors/kitchen/temp', '21.5']], published: 200 })
    await page.close()
  })

  it('a page on an origin not listed cannot read the answers', async () => {
    const page = await browser.newPage()
    await page.goto(`${other.origin}/`)
    const got = await page.evaluate(`fetch('${srv.httpUrl}/api/streams').then(() => 'read', (e) => 'blocked: ' + e.name)`)
    expect(got).toBe('blocked: TypeError')
    await page.close()
  })

  it('preflight: 204 with the methods and the headers asked for, for the allowed origin only', async () => {
    const pre = await raw(`${srv.httpUrl}/api/streams/telemetry/messages`, 'OPTIONS', {
      origin: allowed.origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization',
    })
    expect(pre.status).toBe(204)
    expect(pre.headers).toMatchObject({ 'access-control-allow-origin': allowed.origin, 'access-control-allow-headers': 'authorization', vary: 'Origin' })
    expect(pre.headers['access-control-allow-methods']).toContain('PUT')
    const denied = await raw(`${srv.httpUrl}/api/streams`, 'OPTIONS', { origin: other.origin, 'access-control-request-method': 'DELETE' })
    expect(denied.status).toBe(204)
    expect(denied.headers['access-control-allow-origin']).toBeUndefined()
    const get = await raw(`${srv.httpUrl}/api/streams`, 'GET', { origin: allowed.origin })
    expect(get.headers['access-control-allow-origin']).toBe(allowed.origin)
    // errors carry it too, so the page can read the code
    const missing = await raw(`${srv.httpUrl}/api/streams/nope`, 'GET', { origin: allowed.origin })
    expect(missing.status).toBe(404)
    expect(missing.headers['access-control-allow-origin']).toBe(allowed.origin)
  })

  it('off by default; a bad origin in the config names the key and the fix', async () => {
    const plain = await startEdgebus()
    try {
      const get = await raw(`${plain.httpUrl}/api/streams`, 'GET', { origin: allowed.origin })
      expect(get.status).toBe(200)
      expect(get.headers['access-control-allow-origin']).toBeUndefined()
      expect((await raw(`${plain.httpUrl}/api/streams`, 'OPTIONS')).status).toBe(204)
    } finally {
      await plain.stop()
    }
    await expect(startEdgebus({ args: ['--http-cors', 'https://app.example.com/page'] })).rejects.toThrow(/ECONFIG_INVALID.*--http-cors.*write it as https:\/\/app\.example\.com/)
  })
})

describe('HEAD and query parameters', () => {
  it('HEAD is answered on /healthz, /readyz and /metrics: the GET headers, no body', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      const head = await raw(srv.httpUrl + path, 'HEAD')
      expect(head.status, path).toBe(200)
      expect(head.body, path).toBe('')
      expect(head.headers['content-type'], path).toBe((await fetch(srv.httpUrl + path)).headers.get('content-type'))
    }
  })

  it('an unknown query parameter is refused with the list of known ones', async () => {
    const since = await fetch(`${srv.httpUrl}/api/streams/telemetry/messages?since=1h`)
    expect(since.status).toBe(400)
    const body = await since.json() as { error: { code: string; message: string } }
    expect(body.error.code).toBe('EHTTP_QUERY')
    expect(body.error.message).toContain('"since"')
    expect(body.error.message).toContain('from_time')
    expect((await fetch(`${srv.httpUrl}/healthz?verbose=1`)).status).toBe(400)
    expect((await fetch(`${srv.httpUrl}/api/publish/sensors.x?qos=1&retained=1`, { method: 'POST', body: 'x' })).status).toBe(400)
    // the known ones still work, and token is known everywhere
    expect((await fetch(`${srv.httpUrl}/api/streams/telemetry/messages?last=1&token=x`)).status).toBe(200)
    expect((await fetch(`${srv.httpUrl}/healthz?token=x`)).status).toBe(200)
    expect((await fetch(`${srv.httpUrl}/?anything=1`)).status).not.toBe(400)
  })
})
