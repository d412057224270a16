import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { signToken } from '../../src/auth/token.ts'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'

interface Rates { interval: number; end: number; series: Record<string, number[]> }
const sum = (xs: number[] | undefined) => (xs ?? []).reduce((a, b) => a + b, 0)

let srv: StartedEdgebus
beforeAll(async () => {
  srv = await startEdgebus({ config: { streams: [{ name: 'meters', subjects: ['meters.>'] }] } })
})
afterAll(async () => {
  await endAllClients()
  await srv.stop()
})

const getJson = async <T>(path: string, status = 200): Promise<T> => {
  const res = await fetch(srv.httpUrl + path)
  expect(res.status).toBe(status)
  return res.json() as Promise<T>
}

describe('GET /api/rates: the last hour per second, kept by the server', () => {
  it('counts messages in and out and per stream, per second, for a reader who comes later', async () => {
    const sub = await connectClient(srv.mqttUrl)
    await sub.client.subscribeAsync('meters/#')
    const pub = await connectClient(srv.mqttUrl)
    for (let i = 0; i < 30; i++) pub.client.publish(`meters/m${i % 3}`, String(i))
    await sub.waitFor(30)
    // read afterwards: the history already holds the burst
    await vi.waitFor(async () => {
      const r = await getJson<Rates>('/api/rates')
      expect(sum(r.series['messages.in'])).toBe(30)
      expect(sum(r.series['messages.out'])).toBe(30)
      expect(sum(r.series['stream.meters'])).toBe(30)
    }, { timeout: 5000, interval: 250 })
    const r = await getJson<Rates>('/api/rates')
    expect(r.interval).toBe(1)
    expect(Math.abs(r.end - Date.now())).toBeLessThan(2000)
    const lengths = new Set(Object.values(r.series).map((v) => v.length))
    expect(lengths.size).toBe(1) // every series ends at `end`
    const short = await getJson<Rates>('/api/rates?seconds=2&series=stream.')
    expect(Object.keys(short.series)).toEqual(['stream.meters'])
    expect(short.series['stream.meters']?.length).toBeLessThanOrEqual(2)
  })

  it('refuses a bad window and unknown parameters with the known ones', async () => {
    const bad = await getJson<{ error: { code: string; message: string } }>('/api/rates?seconds=0', 400)
    expect(bad.error.code).toBe('EHTTP_QUERY')
    expect(bad.error.message).toContain('seconds must be a whole number from 1 to 3600')
    const unknown = await getJson<{ error: { code: string; message: string } }>('/api/rates?since=1h', 400)
    expect(unknown.error.message).toContain('known: seconds, series, token')
  })
})

describe('GET /api/subjects: the busiest subjects, counted by the server', () => {
  it('ranks every subject published to, with or without subscribers, busiest first', async () => {
    const pub = await connectClient(srv.mqttUrl)
    for (let i = 0; i < 40; i++) pub.client.publish('nobody/listens/busy', 'x')
    for (let i = 0; i < 4; i++) pub.client.publish('nobody/listens/quiet', 'x')
    await vi.waitFor(async () => {
      const { subjects } = await getJson<{ subjects: Array<{ subject: string; rate: number }> }>('/api/subjects?limit=50')
      const busy = subjects.findIndex((s) => s.subject === 'nobody/listens/busy')
      const quiet = subjects.findIndex((s) => s.subject === 'nobody/listens/quiet')
      expect(busy).toBeGreaterThanOrEqual(0)
      expect(quiet).toBeGreaterThan(busy)
    }, { timeout: 5000, interval: 250 })
    const { subjects } = await getJson<{ subjects: unknown[] }>('/api/subjects?limit=1')
    expect(subjects).toHaveLength(1)
    expect((await getJson<{ error: { code: string } }>('/api/subjects?limit=x', 400)).error.code).toBe('EHTTP_QUERY')
  })
})

describe('with users', () => {
  it('guards /api/rates and /api/subjects as /api/stats ($SYS/#)', async () => {
    const secret = 'dashboard-api-test-secret-0123456789'
    const guarded = await startEdgebus({ config: { auth: { tokenSecret: secret, acl: { users: { admin: [{ allow: 'sub', subject: '$SYS/#' }], viewer: [{ allow: 'sub', subject: 'a/#' }] } } } } })
    try {
      const token = (sub: string) => signToken({ sub, exp: Math.floor(Date.now() / 1000) + 60 }, secret)
      for (const path of ['/api/rates', '/api/subjects']) {
        expect((await fetch(guarded.httpUrl + path)).status).toBe(401)
        expect((await fetch(guarded.httpUrl + path, { headers: { authorization: `Bearer ${token('viewer')}` } })).status).toBe(403)
        expect((await fetch(guarded.httpUrl + path, { headers: { authorization: `Bearer ${token('admin')}` } })).status).toBe(200)
      }
    } finally {
      await guarded.stop()
    }
  })
})
