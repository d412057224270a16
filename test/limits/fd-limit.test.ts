import { spawnSync } from 'node:child_process'
import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { admissionCap, capByOpenFiles, parseOpenFilesLimit } from '../../src/limits/fd-limit.ts'
import { ConnectionGate } from '../../src/limits/connection-gate.ts'
import { BUNDLE, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectPacket } from '../support/raw.ts'

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            20000                524288               files
Max locked memory         8388608              8388608              bytes
`

describe('the open-file limit', () => {
  it('is read from /proc/<pid>/limits ("unlimited" is Infinity, a missing line null)', () => {
    expect(parseOpenFilesLimit(LIMITS)).toEqual({ soft: 20000, hard: 524288 })
    expect(parseOpenFilesLimit(LIMITS.replace('20000 ', 'unlimited'))).toEqual({ soft: Infinity, hard: 524288 })
    expect(parseOpenFilesLimit('Max cpu time unlimited unlimited seconds\n')).toBeNull()
  })

  it('caps admission below the limit, with descriptors kept for files, probes and refusals', () => {
    expect(admissionCap(100_000, { soft: 20_000, hard: 20_000 })).toEqual({ cap: 18_976, maxRefusing: 256, reserve: 1024, overLimit: true })
    expect(admissionCap(1000, { soft: 20_000, hard: 20_000 })).toMatchObject({ cap: 18_976, overLimit: false })
    expect(admissionCap(100, { soft: 256, hard: 256 })).toEqual({ cap: 192, maxRefusing: 16, reserve: 64, overLimit: false })
    expect(admissionCap(0, { soft: 256, hard: 256 })).toMatchObject({ cap: 192, overLimit: true }) // 0 = no limit: over any
    expect(admissionCap(100_000, null)).toEqual({ cap: 0, maxRefusing: 0, reserve: 0, overLimit: false })
    expect(admissionCap(100_000, { soft: Infinity, hard: Infinity })).toMatchObject({ cap: 0, overLimit: false })
  })

  it('warns once at start with the numbers and the fix, and the gate refuses over the cap with ELIMIT_FILES', () => {
    const lines: Array<{ fields: Record<string, unknown>; msg: string }> = []
    const log = { warn: (fields: Record<string, unknown>, msg: string) => lines.push({ fields, msg }) }
    const gate = new ConnectionGate({ maxConnections: 100_000, maxConnectionsPerAddress: 0, connectRate: 0 })
    capByOpenFiles(100_000, gate, log as never, { soft: 256, hard: 4096 })
    expect(lines).toHaveLength(1)
    expect(lines[0]?.fields).toMatchObject({ code: 'ELIMIT_FILES', maxConnections: 100_000, openFilesLimit: 256, cap: 192 })
    expect(lines[0]?.msg).toContain('ulimit -n 100064')
    expect(lines[0]?.msg).toContain('the hard limit is 4096')
    expect(lines[0]?.msg).toContain('limits.maxConnections to 192 or less')
    for (let i = 0; i < 192; i++) expect(gate.admit('a')).toBeNull()
    expect(gate.admit('a')).toMatchObject({ code: 'ELIMIT_FILES' })
    expect(gate.refused.files).toBe(1)
    gate.release('a')
    expect(gate.admit('a')).toBeNull()
    const quiet: unknown[] = []
    capByOpenFiles(1000, new ConnectionGate({ maxConnections: 1000, maxConnectionsPerAddress: 0, connectRate: 0 }), { warn: (f: unknown) => quiet.push(f) } as never, { soft: 20_000, hard: 20_000 })
    expect(quiet).toEqual([])
  })
})

const prlimit = spawnSync('prlimit', ['--version']).status === 0
if (!prlimit) console.warn('test/limits/fd-limit.test.ts: skipping the bundle at a low open-file limit: prlimit (util-linux) is not installed')
let srv: StartedEdgebus | null = null
const sockets: net.Socket[] = []
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy()
  await srv?.stop()
  srv = null
})

/** A TCP connection that sends CONNECT (MQTT 3.1.1 or 5) and resolves with the CONNACK's return/reason code, or null when closed without one. */
function connackCode(port: number, clientId: string, version: 4 | 5 = 4): Promise<number | null> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    sockets.push(s)
    let got = Buffer.alloc(0)
    s.on('connect', () => s.write(connectPacket(clientId, { version })))
    s.on('data', (d) => {
      got = Buffer.concat([got, d])
      if (got.length >= 4) resolve(got[3] as number)
    })
    s.on('error', () => {})
    s.on('close', () => resolve(got.length >= 4 ? (got[3] as number) : null))
  })
}

/** An HTTP GET that must answer within `ms`. */
async function probe(url: string, ms = 3000): Promise<number> {
  const res = await fetch(url, { signal: AbortSignal.timeout(ms) })
  await res.arrayBuffer()
  return res.status
}

describe.skipIf(!prlimit)('the bundle at a low open-file limit (prlimit --nofile=256)', () => {
  it('warns at start, answers every connection over the limit with CONNACK 3 / 0x97, logs it, and its probes answer', async () => {
    srv = await startEdgebus({ command: ['prlimit', '--nofile=256:256', process.execPath, BUNDLE] })
    const warning = srv.output.find((l) => l.includes('"ELIMIT_FILES"') && l.includes('"openFilesLimit":256'))
    expect(warning).toBeDefined()
    expect(warning).toContain('"cap":192')
    expect(warning).toContain('ulimit -n')
    const codes = new Map<number | null, number>()
    for (let i = 0; i < 300; i++) {
      const code = await connackCode(srv.mqttPort, `fd-${i}`)
      codes.set(code, (codes.get(code) ?? 0) + 1)
    }
    expect(Object.fromEntries(codes)).toEqual({ 0: 192, 3: 108 }) // 3.1.1: 3 Server unavailable
    expect(await connackCode(srv.mqttPort, 'fd-v5', 5)).toBe(0x97) // MQTT 5: Quota exceeded
    expect(await probe(`${srv.httpUrl}/healthz`)).toBe(200)
    expect(await probe(`${srv.httpUrl}/readyz`)).toBe(200)
    const metrics = await (await fetch(`${srv.httpUrl}/metrics`, { signal: AbortSignal.timeout(3000) })).text()
    expect(metrics).toMatch(/connections_refused_total\{reason="open_files"\} 109/)
    expect(srv.output.some((l) => l.includes('connection refused') && l.includes('ELIMIT_FILES'))).toBe(true)
  })

  it('a storm of sockets that never send CONNECT cannot keep a client from its answer or the probes from theirs', async () => {
    srv = await startEdgebus({ command: ['prlimit', '--nofile=256:256', process.execPath, BUNDLE] })
    for (let i = 0; i < 192; i++) expect(await connackCode(srv.mqttPort, `fd-${i}`)).toBe(0)
    // 150 idle sockets at once: more than the descriptors left
    await Promise.all(Array.from({ length: 150 }, () => new Promise<void>((resolve) => {
      const s = net.connect(srv!.mqttPort, '127.0.0.1', () => resolve())
      s.on('error', () => resolve())
      sockets.push(s)
    })))
    expect(await probe(`${srv.httpUrl}/healthz`)).toBe(200)
    for (let i = 0; i < 20; i++) expect(await connackCode(srv.mqttPort, `late-${i}`)).toBe(3)
    expect(await probe(`${srv.httpUrl}/metrics`)).toBe(200)
  })
})
