import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { connect as tcpConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { freePort } from '../support/free-port.ts'

/**
 * The same bytes to edgebus and to nats-server (Debian's, started here): the same bytes back
 * after INFO. Where they answer alike, clients written against nats-server see no difference.
 */
let srv: StartedEdgebus
let nats: ChildProcess
let natsPort = 0

beforeAll(async () => {
  srv = await startEdgebus()
  natsPort = await freePort()
  const conf = join(mkdtempSync(join(tmpdir(), 'edgebus-nats-parity-')), 'nats.conf')
  writeFileSync(conf, `listen: 127.0.0.1:${natsPort}\n`)
  nats = spawn('nats-server', ['-c', conf], { stdio: 'ignore' })
  await vi.waitFor(() => new Promise<void>((resolve, reject) => {
    const s = tcpConnect(natsPort, '127.0.0.1', () => { s.destroy(); resolve() })
    s.on('error', reject)
  }), { timeout: 5000 })
})
afterAll(async () => {
  nats?.kill('SIGTERM')
  await srv?.stop()
})

/** Sends `input`, waits for `until` in the answer (or the close), returns what came after INFO. */
async function exchange(port: number, input: string, until: RegExp): Promise<string> {
  const s = tcpConnect(port, '127.0.0.1')
  let text = ''
  let closed = false
  s.on('data', (d) => { text += d.toString('latin1') })
  s.on('close', () => { closed = true })
  s.on('error', () => {})
  await vi.waitFor(() => expect(text).toMatch(/^INFO .*\r\n/), { timeout: 5000 })
  s.write(input)
  await vi.waitFor(() => expect(closed || until.test(text)).toBe(true), { timeout: 5000 })
  s.destroy()
  return text.slice(text.indexOf('\r\n') + 2)
}

const CASES: Array<[string, string, RegExp]> = [
  ['verbose: +OK per operation, a PUB\'s +OK before its MSG, HPUB/HMSG',
    'CONNECT {"headers":true}\r\nSUB x.> 7\r\nPUB x.y r.1 3\r\nabc\r\nHPUB x.z 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nhi\r\nPING\r\n', /PONG\r\n/],
  ['UNSUB with a count, queue subscription, split sids',
    'CONNECT {"verbose":false}\r\nSUB c 1\r\nUNSUB 1 2\r\nSUB c grp 2\r\nPUB c 1\r\na\r\nPUB c 1\r\nb\r\nPUB c 1\r\nc\r\nPING\r\n', /PONG\r\n/],
  ['an unknown operation', 'CONNECT {"verbose":false}\r\nFOO bar\r\n', /-ERR/],
  ['a payload over max_payload', 'CONNECT {"verbose":false}\r\nPUB a 2000000\r\n', /-ERR/],
  ['a control line over 4 KiB', `CONNECT {"verbose":false}\r\nSUB ${'a'.repeat(5000)} 1\r\n`, /-ERR/],
  ['PING before CONNECT', 'PING\r\n', /PONG\r\n/],
]

describe('the same answers as nats-server', () => {
  for (const [what, input, until] of CASES) {
    it(what, async () => {
      const theirs = await exchange(natsPort, input, until)
      const ours = await exchange(srv.natsPort, input, until)
      expect(theirs).toMatch(until)
      expect(ours).toBe(theirs)
    })
  }
})
