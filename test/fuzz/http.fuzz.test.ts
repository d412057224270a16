import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { alive, Budget, checkHealth, deriveSeed, fuzzSeed, fuzzTimeout, measureStart, Rng, Recorder, startTarget, stopTargets } from './harness.ts'
import { httpInput, type HttpInput } from './http-corpus.ts'

/**
 * Issue #8: the HTTP API under hostile input. Every well-formed request gets a status line; no
 * answer is a 5xx (the server is not failing here: any 5xx is a bug in how it treats bad input);
 * whatever comes back is HTTP; and the server ends healthy (the checks of the MQTT fuzz).
 */

const DEFAULT_INPUTS = 4000
const PARALLEL = 24
/** No status line this long after a well-formed request counts as no answer. */
const ANSWER_WAIT_MS = 5000

interface HttpResult {
  statuses: number[]
  /** Bytes came back that do not start with a status line. */
  notHttp: boolean
  timedOut: boolean
  received: number
}

/** Sends one input on its own connection; collects the status lines until the server closes. */
function sendHttp(port: number, rng: Rng, input: HttpInput): Promise<HttpResult> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true })
    const chunks: Buffer[] = []
    let size = 0
    let done = false
    const finish = (timedOut: boolean): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      const text = Buffer.concat(chunks).toString('latin1')
      const statuses = [...text.matchAll(/(?:^|\r\n)HTTP\/1\.[01] (\d{3})[ \r]/g)].map((m) => Number(m[1]))
      resolve({ statuses, notHttp: size > 0 && !/^HTTP\/1\.[01] \d{3}/.test(text), timedOut, received: size })
    }
    const timer = setTimeout(() => finish(true), ANSWER_WAIT_MS)
    socket.on('data', (d: Buffer) => {
      // keep the start of the answer, enough for status lines; count the rest
      if (size < 256 * 1024) chunks.push(d)
      size += d.length
      if (input.holdOpen && /^HTTP\/1\.[01] \d{3}/.test(Buffer.concat(chunks).toString('latin1'))) setTimeout(() => finish(false), 50)
    })
    socket.on('error', () => {})
    socket.once('close', () => finish(false))
    socket.once('connect', async () => {
      if (rng.chance(0.2) && input.raw.length > 1) {
        // in pieces: headers split across reads
        const at = rng.range(1, input.raw.length - 1)
        socket.write(input.raw.subarray(0, at))
        await new Promise((r) => setTimeout(r, 5))
        socket.write(input.raw.subarray(at))
      } else {
        socket.write(input.raw)
      }
      if (input.halfClose) socket.end()
    })
  })
}

afterEach(stopTargets)

describe('HTTP API under hostile input (issue #8)', () => {
  it('answers well-formed requests, never with a 5xx, speaks only HTTP; stays up and gives its memory back', async () => {
    const seed = fuzzSeed()
    const rec = new Recorder('http', seed)
    const srv = await startTarget()
    const start = await measureStart(srv)
    rec.watch(srv)
    const budget = new Budget(DEFAULT_INPUTS)
    const failed: string[] = []
    const seen = new Map<number, number>()
    let next = 0
    await Promise.all(Array.from({ length: PARALLEL }, async () => {
      while (!budget.done() && alive(srv) && failed.length < 30) {
        const i = next++
        const rng = new Rng(deriveSeed(seed, i))
        const input = httpInput(rng)
        budget.inputs++
        const entry = rec.start(i, input.label, [input.raw])
        const r = await sendHttp(srv.httpPort, rng, input)
        entry.done = true
        entry.note = `statuses ${r.statuses.join(',') || 'none'}, ${r.received} bytes${r.timedOut ? ', timed out' : ''}`
        for (const s of r.statuses) seen.set(s, (seen.get(s) ?? 0) + 1)
        if (!alive(srv)) break // after an exit every request fails; the exit is the finding
        const problem = r.statuses.some((s) => s >= 500) ? `5xx (${r.statuses.join(',')})`
          : r.notHttp ? 'an answer that is not HTTP'
            : input.expect === 'answer' && r.statuses.length === 0 ? (r.timedOut ? `no answer in ${ANSWER_WAIT_MS} ms` : 'closed without an answer')
              : null
        if (problem !== null) {
          entry.note = `${problem}: ${entry.note}`
          failed.push(`#${i} ${input.label}: ${problem}`)
        }
      }
    }))
    const statuses = [...seen].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(' ')
    console.log(`fuzz http: seed ${seed}, ${budget.inputs} requests in ${budget.seconds.toFixed(1)} s; statuses ${statuses}`)
    const problems = [...await checkHealth(srv, start, 'http'), ...failed.slice(0, 15)]
    if (problems.length > 0) throw new Error(rec.report(problems.join('\n')))
    expect(budget.inputs).toBeGreaterThan(0)
  }, fuzzTimeout(90_000))
})
