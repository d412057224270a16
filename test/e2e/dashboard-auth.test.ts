import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { signToken } from '../../src/auth/token.ts'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'

// Debian's chromium, as in dashboard.test.ts
const CHROMIUM = '/usr/bin/chromium'
const SECRET = 'dashboard-test-token-secret-0123456789'

const acl = {
  users: {
    // the documented administrator (docs/security.md): $admin/# for streams, $SYS/# for the server's internals
    admin: [{ allow: 'pubsub', subject: '#' }, { allow: 'pubsub', subject: '$admin/#' }, { allow: 'sub', subject: '$SYS/#' }],
    viewer: [{ allow: 'sub', subject: 'sensors/#' }],
  },
  // no allowAnonymous: these apply to no one, and the server says so at start
  anonymous: [{ allow: 'sub', subject: 'public/#' }],
}

let browser: Browser
let srv: StartedEdgebus
const token = (sub: string) => signToken({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, SECRET)

beforeAll(async () => {
  srv = await startEdgebus({ config: { auth: { tokenSecret: SECRET, acl } } })
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] })
}, 30_000)
afterAll(async () => {
  await browser?.close()
  await srv?.stop()
})

describe('the dashboard on a server with users', () => {
  it('asks for a token on 401, says why on 403 ($SYS/# needed), and runs with one that may read the server', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    await page.goto(srv.httpUrl + '/')
    const login = page.locator('#login')
    await login.waitFor({ state: 'visible', timeout: 10_000 })
    expect(await page.locator('#login-why').textContent()).toBe('this server wants an access token')

    // a user who may not read $SYS/#: 403, and the prompt says what is missing
    await page.fill('#token', token('viewer'))
    await page.click('#login button')
    await page.locator('#login-why', { hasText: '$SYS/#' }).waitFor({ timeout: 10_000 })

    await page.fill('#token', token('admin'))
    await page.click('#login button')
    await page.locator('#status', { hasText: 'live' }).waitFor({ timeout: 10_000 })
    await page.locator('#conns', { hasText: /^\d+$/ }).waitFor({ timeout: 10_000 })
    expect(await login.isHidden()).toBe(true)
    // the live tail uses it too (/ws)
    const res = await fetch(`${srv.httpUrl}/api/publish/sensors.kitchen.temp`, { method: 'POST', body: '21.5', headers: { authorization: `Bearer ${token('admin')}` } })
    expect(res.status).toBe(200)
    await page.locator('#messages li', { hasText: 'sensors/kitchen/temp' }).waitFor({ timeout: 10_000 })
    // kept for the tab: a reload needs no prompt
    await page.reload()
    await page.locator('#status', { hasText: 'live' }).waitFor({ timeout: 10_000 })
    await page.locator('#conns', { hasText: /^\d+$/ }).waitFor({ timeout: 10_000 })
    expect(await login.isHidden()).toBe(true)
    await page.close()
  })

  it('warns at start that anonymous rules apply to no one without allowAnonymous', async () => {
    const line = srv.output.find((l) => l.includes('auth.acl.anonymous has 1 rule'))
    expect(line).toBeDefined()
    expect(JSON.parse(line as string)).toMatchObject({ level: 40, key: 'auth.allowAnonymous' })
    expect(JSON.parse(line as string).msg).toContain('"allowAnonymous": true')
    const open = await startEdgebus({ config: { auth: { tokenSecret: SECRET, allowAnonymous: true, acl } } })
    try {
      expect(open.output.some((l) => l.includes('auth.acl.anonymous'))).toBe(false)
    } finally {
      await open.stop()
    }
  })
})
