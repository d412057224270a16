import { mkdirSync, mkdtempSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { ROOT, run, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'

// Debian's chromium (apt-get install chromium; .ci/run installs it), driven by playwright-core
const CHROMIUM = '/usr/bin/chromium'
const ARTIFACTS = join(ROOT, 'test-artifacts')

let browser: Browser
let srv: StartedEdgebus
let port: number
const dir = mkdtempSync(join(tmpdir(), 'edgebus-dashboard-'))
const config = { streams: [{ name: 'telemetry', subjects: ['sensors.>'], maxAge: '1d' }] }

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true })
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  port = (s.address() as { port: number }).port
  await new Promise((r) => s.close(r))
  srv = await startEdgebus({ config, dir, args: ['--http-port', String(port)] })
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
}, 30_000)
afterAll(async () => {
  await endAllClients()
  await browser?.close()
  await srv?.stop()
})

const pub = (topic: string, message: string) => run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(srv.mqttPort), '-t', topic, '-m', message])

describe('the dashboard in a real headless Chromium', () => {
  it('loads without console errors, tails mosquitto_pub messages, shows streams moving, and reconnects after a restart', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    const errors: string[] = []
    let restarting = false
    page.on('console', (m) => { if (m.type() === 'error' && !restarting) errors.push(m.text()) })
    page.on('pageerror', (e) => errors.push(e.message))
    await page.goto(`http://127.0.0.1:${port}/`)
    await page.locator('#status', { hasText: 'live' }).waitFor({ timeout: 10_000 })

    expect((await pub('sensors/kitchen/temp', '{"celsius":21.5}')).code).toBe(0)
    await page.locator('#messages li', { hasText: 'sensors/kitchen/temp' }).waitFor({ timeout: 5000 })
    await page.locator('tr[data-stream="telemetry"] .messages', { hasText: /^[1-9]/ }).waitFor({ timeout: 8000 })
    await page.locator('#tree li', { hasText: 'sensors/kitchen/temp' }).waitFor({ timeout: 8000 })
    await page.selectOption('#view', 'json')
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true })

    // the browser client, imported in the page, subscribes with a NATS-style wildcard
    // (a string, not a function: the test runner rewrites import() in functions it compiles)
    const received = page.evaluate(`(async () => {
      const { connect } = await import('/client.js')
      const bus = connect('ws://127.0.0.1:${port}/ws')
      return new Promise((resolve) => {
        bus.subscribe('farm.*.temp', (m) => resolve(m.subject + ' ' + (m.payload ?? '')))
        bus.onopen = () => { globalThis.clientReady = true }
      })
    })()`) as Promise<string>
    await page.waitForFunction(() => (globalThis as unknown as { clientReady?: boolean }).clientReady === true)
    await page.waitForTimeout(200)
    expect((await pub('farm/barn/temp', '19')).code).toBe(0)
    expect(await received).toBe('farm.barn.temp 19')

    // the server restarts on the same port: the dashboard reconnects and resubscribes by itself
    restarting = true
    await srv.stop()
    await page.locator('#status', { hasText: 'reconnecting' }).waitFor({ timeout: 5000 })
    srv = await startEdgebus({ config, dir, args: ['--http-port', String(port)] })
    await page.locator('#status', { hasText: 'live' }).waitFor({ timeout: 10_000 })
    restarting = false
    await page.waitForTimeout(300)
    expect((await pub('sensors/attic/temp', 'after restart')).code).toBe(0)
    await page.locator('#messages li', { hasText: 'after restart' }).waitFor({ timeout: 5000 })
    expect(errors).toEqual([])

    // readable on a phone-sized screen: nothing wider than the viewport
    await page.setViewportSize({ width: 390, height: 844 })
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-phone.png'), fullPage: true })
    expect(await page.evaluate(() => (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } }).document.documentElement.scrollWidth)).toBeLessThanOrEqual(390)
    await page.close()
  }, 60_000)

  it('opened late, shows the past minutes of the server at once: a plot with scale, time axis and legend, the busiest subjects, streams, consumers and clients', async () => {
    // traffic before the page opens: 60 messages into the stream, a consumer, a client with a long id
    const pubber = await connectClient(srv.mqttUrl)
    for (let i = 0; i < 60; i++) pubber.client.publish(`sensors/hall/${i % 2 === 0 ? 'busy' : 'temp'}`, String(i))
    const created = await fetch(`${srv.httpUrl}/api/streams/telemetry/consumers`, { method: 'POST', body: JSON.stringify({ name: 'archive-writer-with-a-rather-long-name' }), headers: { 'content-type': 'application/json' } })
    expect(created.status).toBe(201)
    const kicked = await connectClient(srv.mqttUrl, { clientId: 'field-gateway-0123456789-abcdefghij-long-client-id', protocolVersion: 5 })
    await kicked.client.subscribeAsync(['sensors/+/temp', 'sensors/very/long/subscription/filter/that/goes/on/#', 'alarms/#'])
    await vi.waitFor(async () => {
      const r = await (await fetch(`${srv.httpUrl}/api/rates`)).json() as { series: Record<string, number[]> }
      expect((r.series['stream.telemetry'] ?? []).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(60)
    }, { timeout: 5000, interval: 200 })

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(e.message))
    page.on('dialog', (d) => { void d.accept() })
    await page.goto(`http://127.0.0.1:${port}/`)
    // the first draw already holds the burst: seconds of history and a scale above 0
    const canvas = page.locator('#rates')
    await vi.waitFor(async () => expect(Number(await canvas.getAttribute('data-seconds'))).toBeGreaterThan(1), { timeout: 5000 })
    expect(Number(await canvas.getAttribute('data-scale'))).toBeGreaterThanOrEqual(30)
    expect(await canvas.getAttribute('data-span')).toBe('300') // a young server: the last 5 minutes
    const legend = await page.locator('#legend li').allTextContents()
    expect(legend.map((l) => l.split(' ')[0])).toEqual(['in', 'out', 'stream.telemetry'])
    // the busiest subject first, counted by the server
    await page.locator('#tree li', { hasText: 'sensors/hall/busy' }).first().waitFor({ timeout: 5000 })
    await page.locator('tr[data-consumer="archive-writer-with-a-rather-long-name"]').waitFor({ timeout: 5000 })
    const row = page.locator('#conn-rows tr', { hasText: 'field-gateway-0123456789' })
    await row.waitFor({ timeout: 5000 })

    // no table wider than its panel, from a phone to a wide screen; screenshots for the record
    for (const width of [360, 1100, 1920]) {
      await page.setViewportSize({ width, height: 1000 })
      await page.evaluate('new Promise((r) => requestAnimationFrame(r))')
      await page.screenshot({ path: join(ARTIFACTS, `dashboard-${width}.png`), fullPage: true })
      const overflow = await page.evaluate(`[...document.querySelectorAll('table')].map((t) => {
        const panel = t.closest('section')
        const room = panel.clientWidth - parseFloat(getComputedStyle(panel).paddingLeft) - parseFloat(getComputedStyle(panel).paddingRight)
        return { panel: panel.id, table: Math.ceil(t.getBoundingClientRect().width), room: Math.floor(room) + 1, scroll: t.parentElement.scrollWidth - t.parentElement.clientWidth }
      }).concat([{ panel: 'page', table: document.documentElement.scrollWidth, room: innerWidth, scroll: 0 }])`) as Array<{ panel: string; table: number; room: number; scroll: number }>
      expect(overflow.filter((o) => o.table > o.room || o.scroll > 0), `at ${width} px`).toEqual([])
    }

    // kick: the client hears DISCONNECT 0x98 (Administrative action) and leaves the table
    await page.setViewportSize({ width: 1280, height: 900 })
    const disconnected = new Promise<number | undefined>((resolve) => kicked.client.once('disconnect', (p) => resolve(p.reasonCode)))
    await row.locator('button.kick').click()
    expect(await disconnected).toBe(0x98)
    await row.waitFor({ state: 'detached', timeout: 5000 })
    expect(errors).toEqual([])
    await page.close()
  }, 60_000)
})

