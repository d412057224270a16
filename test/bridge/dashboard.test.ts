import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROOT, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { startMosquitto, type Mosquitto } from '../support/remotes.ts'
import { publishMany } from './helpers.ts'

// Debian's chromium, driven by playwright-core (as test/e2e/dashboard.test.ts)
const CHROMIUM = '/usr/bin/chromium'
const ARTIFACTS = join(ROOT, 'test-artifacts')

let browser: Browser
let srv: StartedEdgebus
let remote: Mosquitto

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true })
  remote = await startMosquitto()
  srv = await startEdgebus({ config: { bridges: [{ name: 'cloud', urls: [remote.url], out: [{ from: 'dev/#', to: 'site/{#}' }], backoff: { min: '100ms', max: '300ms' } }] } })
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] })
}, 30_000)
afterAll(async () => {
  await browser?.close()
  await srv?.stop()
  await remote?.destroy()
})

describe('the dashboard\'s bridges panel', () => {
  it('shows a bridge connected, its backlog growing while the remote is down and draining when it is back', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } })
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(e.message))
    await page.goto(`${srv.httpUrl}/`)
    const row = page.locator('tr[data-bridge="cloud"]')
    await row.locator('.state', { hasText: `connected to ${remote.url}` }).waitFor({ timeout: 10_000 })
    await remote.stop()
    await row.locator('.state', { hasText: /^down since/ }).waitFor({ timeout: 10_000 })
    await publishMany(srv.mqttUrl, 500, () => 'dev/x')
    await row.locator('.backlog', { hasText: '500' }).waitFor({ timeout: 8000 })
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-bridge-down.png'), fullPage: true })
    await remote.start()
    await row.locator('.acked', { hasText: '500' }).waitFor({ timeout: 15_000 })
    await row.locator('.backlog', { hasText: /^0$/ }).waitFor({ timeout: 8000 })
    expect(errors).toEqual([])
  })
})
