import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { freePort } from '../support/free-port.ts'

/** The bridges of a server across restarts with a changed `bridges` list. */

let servers: StartedEdgebus[] = []
const dirs: string[] = []

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()))
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

async function start(dir: string, config: Record<string, unknown>): Promise<StartedEdgebus> {
  const srv = await startEdgebus({ config, dir })
  servers.push(srv)
  return srv
}

const stateFile = (srv: StartedEdgebus, consumer: string): string => join(srv.dir, 'data', 'streams', 'telemetry', 'consumers', `${consumer}.state`)

describe('a renamed bridge', () => {
  it('has its old outbox consumer removed from the declared outbox stream at the next start, logged; an API consumer named like one stays', async () => {
    // a remote nobody listens on: the outbox only fills
    const url = `mqtt://127.0.0.1:${await freePort()}`
    const config = (name: string): Record<string, unknown> => ({
      streams: [{ name: 'telemetry', subjects: ['sensors/#'] }],
      bridges: [{ name, urls: [url], out: [{ from: 'sensors/#' }], outbox: { stream: 'telemetry' }, backoff: { min: '1s', max: '1s' } }],
    })
    const dir = mkdtempSync(join(tmpdir(), 'edgebus-bridge-rename-'))
    dirs.push(dir)
    const first = await start(dir, config('old'))
    const created = await fetch(`${first.httpUrl}/api/streams/telemetry/consumers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'bridge-mine' }) })
    expect(created.status).toBe(201)
    await first.stop()
    servers = []
    expect(existsSync(stateFile(first, 'bridge-old'))).toBe(true)

    const second = await start(dir, config('new'))
    expect(existsSync(stateFile(second, 'bridge-old'))).toBe(false)
    expect(existsSync(stateFile(second, 'bridge-new'))).toBe(true)
    expect(second.output.some((l) => l.includes('"consumer":"bridge-old"') && l.includes('no longer configured'))).toBe(true)
    const consumers = (await (await fetch(`${second.httpUrl}/api/streams/telemetry/consumers`)).json()) as { consumers: Array<{ name: string }> }
    expect(consumers.consumers.map((c) => c.name).sort()).toEqual(['bridge-mine', 'bridge-new'])
    expect(existsSync(stateFile(second, 'bridge-mine'))).toBe(true)
  })
})
