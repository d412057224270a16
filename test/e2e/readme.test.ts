import { spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { BUNDLE, ROOT, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'

/**
 * The README's walk-through, run as written: each command line of its code blocks goes to `sh -c`
 * byte for byte, in the repository's folder (as in a fresh clone after `npm ci && npm run build`).
 * Only the address differs, and outside the commands: the test server listens on free ports, and
 * the tools' own config files point their defaults there (mosquitto_pub/sub read
 * ~/.config/mosquitto_pub|sub, curl ~/.curlrc's connect-to, edgebus EDGEBUS_URL / EDGEBUS_HTTP_URL).
 * Every line of a block must be one this test knows: a README edit without a test edit fails here.
 */
const README = readFileSync(join(ROOT, 'README.md'), 'utf8')

/** The lines of the first code block after `marker` (comment lines and blank lines apart). */
function block(marker: string, lang: string): { commands: string[]; comments: string[]; text: string } {
  const at = README.indexOf(marker)
  expect(at, `README: "${marker}"`).toBeGreaterThanOrEqual(0)
  const start = README.indexOf('```' + lang + '\n', at)
  const end = README.indexOf('\n```', start + 4)
  const text = README.slice(start + lang.length + 4, end)
  const lines = text.replace(/\\\n\s*/g, '').split('\n') // a line continued with \\ is one command
  return { text, commands: lines.filter((l) => l.trim() !== '' && !l.startsWith('#')), comments: lines.filter((l) => l.startsWith('# ')).map((l) => l.slice(2)) }
}

const CHROMIUM = '/usr/bin/chromium'
let srv: StartedEdgebus
let env: Record<string, string>
const background: ChildProcess[] = []

beforeAll(async () => {
  // the streams of the README's Streams section
  srv = await startEdgebus({ config: JSON.parse(block('Declare streams in the config file', 'json').text) as Record<string, unknown> })
  const home = mkdtempSync(join(tmpdir(), 'edgebus-readme-'))
  mkdirSync(join(home, '.config'))
  for (const tool of ['mosquitto_pub', 'mosquitto_sub']) writeFileSync(join(home, '.config', tool), `-h 127.0.0.1\n-p ${srv.mqttPort}\n`)
  writeFileSync(join(home, '.curlrc'), `connect-to = "localhost:8080:127.0.0.1:${srv.httpPort}"\nsilent\nshow-error\n`)
  // `edgebus` as npm install -g would put it on the PATH
  mkdirSync(join(home, 'bin'))
  writeFileSync(join(home, 'bin', 'edgebus'), `#!/bin/sh\nexec "${process.execPath}" "${BUNDLE}" "$@"\n`)
  chmodSync(join(home, 'bin', 'edgebus'), 0o755)
  env = {
    ...process.env as Record<string, string>,
    HOME: home, XDG_CONFIG_HOME: join(home, '.config'),
    PATH: `${join(home, 'bin')}:${process.env.PATH}`,
    EDGEBUS_URL: `mqtt://127.0.0.1:${srv.mqttPort}`, EDGEBUS_HTTP_URL: srv.httpUrl,
  }
})
afterAll(async () => {
  for (const p of background) p.kill()
  await endAllClients()
  await srv?.stop()
})

/** Runs one README line in the foreground: its exit code and output. */
function sh(line: string, timeoutMs = 10_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn('sh', ['-c', line], { cwd: ROOT, env })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => p.kill(), timeoutMs)
    p.once('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

/** Starts a README line that ends with `&` (without it: the test keeps the process); its output so far. */
function bg(line: string): { out: () => string; proc: ChildProcess } {
  expect(line.endsWith('&'), line).toBe(true)
  let out = ''
  const proc = spawn('sh', ['-c', `exec ${line.slice(0, -1)}`], { cwd: ROOT, env })
  proc.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr?.on('data', (d: Buffer) => { out += d.toString() })
  background.push(proc)
  return { out: () => out, proc }
}

/** Waits until `n` connections hold the subscription `filter` (a person types the next line later). */
async function subscribed(filter: string, n: number): Promise<void> {
  await vi.waitFor(async () => {
    const { connections } = await (await fetch(`${srv.httpUrl}/api/connections`)).json() as { connections: Array<{ subscriptions: string[] }> }
    expect(connections.filter((c) => c.subscriptions.includes(filter)).length).toBeGreaterThanOrEqual(n)
  }, { timeout: 10_000, interval: 100 })
}

const strip = (line: string): string => line.replace(/\s+#\s.*$/, '').trim()

describe('README walk-through, as written', () => {
  it('Quick start, "Try it": mosquitto_sub and edgebus sub both get mosquitto_pub\'s and edgebus pub\'s messages; curl reads /healthz', async () => {
    const lines = block('Try it:', 'sh').commands.map(strip)
    expect(lines).toEqual([
      "mosquitto_sub -t 'sensors/#' -v &",
      "node dist/edgebus.mjs sub 'sensors.>' &",
      'mosquitto_pub -t sensors/kitchen/temp -m 21.5',
      'node dist/edgebus.mjs pub sensors.kitchen.temp 22 --qos 1',
      'curl localhost:8080/healthz',
    ])
    const mosquittoSub = bg(lines[0] as string)
    await subscribed('sensors/#', 1)
    const edgebusSub = bg(lines[1] as string)
    await subscribed('sensors/#', 2)
    expect((await sh(lines[2] as string)).code).toBe(0)
    const pub = await sh(lines[3] as string)
    expect(pub.code, pub.stderr).toBe(0)
    const health = await sh(lines[4] as string)
    expect(health.code, health.stderr).toBe(0)
    expect(JSON.parse(health.stdout)).toMatchObject({ status: 'ok' })
    await vi.waitFor(() => {
      expect(mosquittoSub.out().split('\n')).toEqual(expect.arrayContaining(['sensors/kitchen/temp 21.5', 'sensors/kitchen/temp 22']))
      expect(edgebusSub.out()).toMatch(/21\.5[\s\S]*22/)
    }, { timeout: 10_000 })
  })

  it('Publish and replay over HTTP: the answers have the shapes the README shows', async () => {
    const b = block('### Publish and replay over HTTP', 'sh')
    const lines = b.commands.map(strip)
    expect(lines).toEqual([
      "curl -X POST localhost:8080/api/publish/sensors.kitchen.temp -H 'Msg-Id: t-1842' -d 21.5",
      "curl 'localhost:8080/api/streams/telemetry/messages?from_time=2026-11-23T00:00:00Z&filter=sensors.kitchen.>'",
      "curl -N 'localhost:8080/api/streams/telemetry/messages?follow=1&last=10'",
    ])
    const shown = b.comments.filter((c) => c.startsWith('{')).map((c) => JSON.parse(c) as Record<string, unknown>)
    expect(shown).toHaveLength(2)
    // the README's own numbers (seq, time) are an example; the rest is what the server says
    const published = JSON.parse((await sh(lines[0] as string)).stdout) as { stored: Array<{ seq: number }> }
    const seq = published.stored[0]?.seq as number
    expect(published).toEqual({ ...shown[0], stored: [{ ...(shown[0] as { stored: object[] }).stored[0], seq }] })
    // the same Msg-Id again: stored once
    expect(JSON.parse((await sh(lines[0] as string)).stdout)).toMatchObject({ stored: [{ seq, duplicate: true }] })
    const replayed = (await sh(lines[1] as string)).stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(replayed).toContainEqual({ ...shown[1], seq, time: expect.any(String) })
    // follow: the history as Server-Sent Events, then new messages (the test ends it, as Ctrl-C would)
    const follow = bg(`${lines[2]} &`)
    await vi.waitFor(() => expect(follow.out()).toContain(`id: ${seq}`), { timeout: 10_000 })
    const mqtt = await connectClient(srv.mqttUrl)
    await mqtt.client.publishAsync('sensors/attic/temp', '18', { qos: 1 })
    await vi.waitFor(() => expect(follow.out()).toContain('sensors/attic/temp'), { timeout: 10_000 })
    follow.proc.kill()
  })

  it('Durable consumers over HTTP and the CLI: create, next, ack and nak, info, next --ack', async () => {
    const lines = block('### Durable consumers and replay', 'sh').commands.map(strip)
    expect(lines).toEqual([
      `curl -X POST localhost:8080/api/streams/telemetry/consumers -d '{"name": "workers", "filter": ["sensors.>"], "ackWait": "30s", "maxDeliver": 5}'`,
      "curl -X POST 'localhost:8080/api/streams/telemetry/consumers/workers/next?batch=10&wait=5000'",
      `curl -X POST localhost:8080/api/streams/telemetry/consumers/workers/ack -d '{"ack": [1, 2], "nak": [3]}'`,
      'curl localhost:8080/api/streams/telemetry/consumers/workers',
      'edgebus consumer next telemetry workers --batch 10 --ack',
    ])
    const created = await sh(lines[0] as string)
    expect(created.code, created.stderr).toBe(0)
    expect(JSON.parse(created.stdout)).toMatchObject({ consumer: { name: 'workers' } })
    // the stream holds what the walk-through published so far: 1 and 2 (Try it), 3 and 4 (HTTP)
    const next = (await sh(lines[1] as string)).stdout.trim().split('\n').map((l) => JSON.parse(l) as { seq: number })
    expect(next.map((m) => m.seq)).toEqual([1, 2, 3, 4])
    const acked = await sh(lines[2] as string)
    expect(acked.code).toBe(0)
    expect(acked.stdout).not.toContain('error')
    expect(JSON.parse((await sh(lines[3] as string)).stdout)).toMatchObject({ config: { name: 'workers', maxDeliver: 5 }, state: { ackFloor: 2, pending: 2 } })
    // the nak'ed 3 comes again (4 waits for its ackWait), and --ack acknowledges it
    const cli = await sh(lines[4] as string)
    expect(cli.code, cli.stderr).toBe(0)
    expect(cli.stdout).toContain('21.5')
  })

  it('Durable consumers and replay over MQTT: mosquitto_sub on $stream and $replay, a nak by sequence', async () => {
    const lines = block('**Over MQTT**, from any 3.1.1', 'sh').commands.map(strip)
    expect(lines).toEqual([
      "mosquitto_sub -q 1 -t '$stream/telemetry/workers/#' -v",
      "mosquitto_sub -t '$replay/telemetry/since=1h/sensors/#' -v",
      "mosquitto_pub -t '$stream/telemetry/workers/$nak/42' -m 5s",
    ])
    const worker = bg(`${lines[0]} &`)
    const replay = bg(`${lines[1]} &`)
    // the replay: the last hour of the stream (the walk-through's messages), then live
    await vi.waitFor(() => expect(replay.out()).toContain('sensors/kitchen/temp 22'), { timeout: 10_000 })
    // a new message reaches the worker once it is bound (a $stream subscription is not listed in
    // /api/connections): published again until then
    const mqtt = await connectClient(srv.mqttUrl)
    await vi.waitFor(async () => {
      if (!worker.out().includes('sensors/garden/temp 9')) await mqtt.client.publishAsync('sensors/garden/temp', '9', { qos: 1 })
      expect(worker.out()).toContain('sensors/garden/temp 9')
    }, { timeout: 10_000, interval: 300 })
    await vi.waitFor(() => expect(replay.out()).toContain('sensors/garden/temp 9'), { timeout: 10_000 })
    expect((await sh(lines[2] as string)).code).toBe(0)
    worker.proc.kill()
    replay.proc.kill()
  })

  it("the browser snippet, from a page on another origin listed in http.cors (test/http/front.test.ts checks CORS itself)", async () => {
    const snippet = block('`/client.js` (ESM', 'html').text
    // the page's own origin, and a second server with the README's streams and http.cors for it
    let html = ''
    const server = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end(html) })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const page = { server, origin: `http://127.0.0.1:${(server.address() as { port: number }).port}` }
    let cors: StartedEdgebus | null = null
    let browser: Browser | null = null
    try {
      cors = await startEdgebus({ config: { ...JSON.parse(block('Declare streams in the config file', 'json').text), http: { cors: page.origin } } })
      const host = `127.0.0.1:${cors.httpPort}`
      html = `<!doctype html><title>app</title>${snippet.replaceAll('gateway:8080', host)}`
      const watcher = await connectClient(cors.mqttUrl)
      await watcher.client.subscribeAsync('ui/button')
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] })
      const tab = await browser.newPage()
      const logged: string[] = []
      const errors: string[] = []
      tab.on('console', (m) => (m.type() === 'error' ? errors : logged).push(m.text()))
      tab.on('pageerror', (e) => errors.push(e.message))
      await tab.goto(`${page.origin}/`)
      // the snippet publishes ui.button (answered once streams hold it), then replays telemetry
      await watcher.waitFor(1)
      expect(watcher.messages[0]).toMatchObject({ topic: 'ui/button', payload: 'pressed' })
      await vi.waitFor(async () => {
        const pub = await connectClient(cors?.mqttUrl as string)
        await pub.client.publishAsync('sensors/porch/temp', '12.5')
        await pub.client.endAsync()
        expect(logged).toContain('sensors.porch.temp 12.5')
      }, { timeout: 10_000, interval: 500 })
      expect(errors).toEqual([])
    } finally {
      await browser?.close()
      await cors?.stop()
      page.server.close()
    }
  })
})
