import { mkdirSync, mkdtempSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROOT, run, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'

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
})
