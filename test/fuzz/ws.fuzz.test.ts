import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import type { StartedEdgebus } from '../support/edgebus.ts'
import { sleep } from '../support/mqtt.ts'
import { alive, Budget, checkHealth, deriveSeed, fuzzSeed, fuzzTimeout, measureStart, Rng, Recorder, startTarget, stopTargets } from './harness.ts'
import { jsonFrame, type WsFrame } from './json-corpus.ts'
import { writesOf, type Burst } from './mutate.ts'
import { CLOSE_WAIT_MS, runMqttBursts } from './send.ts'

/**
 * Issue #8: the WebSocket endpoints under hostile input. /ws (the JSON protocol): valid, mutated and
 * broken frames; every frame must be answered on an open connection (docs/ws-protocol.md: "a
 * malformed frame gets an error frame and the connection stays open"), never with EINTERNAL.
 * /mqtt: the MQTT fuzzer's bursts in binary frames. Then the same health checks as the MQTT fuzz.
 */

const JSON_INPUTS = 6000
const MQTT_WS_INPUTS = 4000
const PARALLEL = 16
/** How long a burst's answers may take on a loaded machine before they count as missing. */
const ANSWER_WAIT_MS = 3000

interface JsonResult {
  note: string
  /** What the server did wrong: no answer, an unexpected close, an internal error. */
  problem: string | null
}

/** Sends a burst of /ws frames; waits for their answers; closes. */
function jsonSession(url: string, rng: Rng, frames: WsFrame[]): Promise<JsonResult> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 })
    let answers = 0
    let expected = 0
    let mayClose = false
    let closeCode: number | null = null
    const internal: string[] = []
    let finished = false
    const finish = (note: string, problem: string | null): void => {
      if (finished) return
      finished = true
      clearInterval(poll)
      clearTimeout(timer)
      if (ws.readyState !== ws.CLOSED) { if (rng.chance(0.5)) ws.close(); else ws.terminate() }
      resolve({ note, problem })
    }
    ws.on('message', (data: Buffer) => {
      answers++
      const text = data.toString()
      if (text.includes('"EINTERNAL"')) internal.push(text.slice(0, 300))
    })
    ws.on('error', () => {})
    ws.on('close', (code) => {
      closeCode = code
      const note = `closed by the server (${code}) after ${answers}/${expected} answers`
      finish(note, mayClose ? null : `UNEXPECTED CLOSE: ${note}`)
    })
    ws.on('open', () => {
      for (const f of frames) {
        ws.send(f.data, { binary: f.binary })
        if (f.answered) expected++
        if (f.mayClose) { mayClose = true; break } // the rest would be sent to a closing connection
      }
    })
    // every answer in, or the time is up
    const poll = setInterval(() => {
      if (closeCode !== null || ws.readyState !== ws.OPEN || answers < expected) return
      finish(`${answers} answers`, internal.length > 0 ? `EINTERNAL: ${internal.join(' | ')}` : null)
    }, 5)
    const timer = setTimeout(() => {
      const note = `${answers}/${expected} answers in ${ANSWER_WAIT_MS} ms (state ${ws.readyState})`
      finish(note, ws.readyState === ws.CONNECTING ? `NO HANDSHAKE: ${note}` : mayClose ? null : `MISSING ANSWERS: ${note}`)
    }, ANSWER_WAIT_MS)
  })
}

/** Sends an MQTT burst over /mqtt in binary frames (a text frame now and then); resolves with a note. */
function mqttWsSession(url: string, rng: Rng, burst: Burst): Promise<string> {
  return new Promise((resolve) => {
    const protocol = rng.weighted([[85, 'mqtt'], [5, 'mqttv3.1'], [5, 'bogus'], [5, '']] as const)
    const ws = new WebSocket(url, protocol === '' ? [] : [protocol], { perMessageDeflate: false })
    let received = 0
    let timer: NodeJS.Timeout | null = null
    ws.on('message', (d: Buffer) => { received += d.length })
    ws.on('error', () => {})
    ws.on('close', (code) => { if (timer) clearTimeout(timer); resolve(`closed (${code}), received ${received} bytes`) })
    ws.on('open', async () => {
      const writes = writesOf(rng, burst)
      const cut = burst.close === 'destroy-early' ? rng.int(writes.length) : writes.length
      for (let i = 0; i < cut && ws.readyState === ws.OPEN; i++) {
        // [MQTT-6.0.0-1] binary frames; a text frame must close the connection
        ws.send(writes[i] as Buffer, { binary: !rng.chance(0.02) })
        if (burst.writes === 'pieces') await new Promise((r) => setImmediate(r))
      }
      if (ws.readyState !== ws.OPEN) return
      if (burst.close === 'destroy' || burst.close === 'destroy-early') { ws.terminate(); return }
      if (burst.close === 'linger') await sleep(rng.range(10, 150))
      if (ws.readyState !== ws.OPEN) return
      ws.close()
      timer = setTimeout(() => { ws.terminate(); resolve(`STUCK: no close frame ${CLOSE_WAIT_MS} ms after ours, received ${received} bytes`) }, CLOSE_WAIT_MS)
    })
  })
}

async function subscriptions(srv: StartedEdgebus): Promise<number> {
  return (await (await fetch(`${srv.httpUrl}/api/stats`)).json() as { subscriptions: number }).subscriptions
}

afterEach(stopTargets)

describe('WebSocket endpoints under hostile input (issue #8)', () => {
  it('/ws: answers every frame on an open connection, never EINTERNAL; stays up and gives its memory back', async () => {
    const seed = fuzzSeed()
    const rec = new Recorder('ws-json', seed)
    const srv = await startTarget()
    const start = await measureStart(srv)
    rec.watch(srv)
    const subs0 = await subscriptions(srv)
    const budget = new Budget(JSON_INPUTS, 0.5)
    const failed: string[] = []
    let next = 0
    await Promise.all(Array.from({ length: PARALLEL }, async () => {
      while (!budget.done() && alive(srv) && failed.length < 20) {
        const i = next++
        const rng = new Rng(deriveSeed(seed, i))
        const frames = Array.from({ length: rng.range(1, 30) }, () => jsonFrame(rng))
        budget.inputs += frames.length
        const entry = rec.start(i, 'ws-json', frames.map((f) => Buffer.from(f.data)))
        const r = await jsonSession(`${srv.httpUrl.replace('http', 'ws')}/ws`, rng, frames)
        entry.note = r.note
        entry.done = true
        if (r.problem !== null) {
          entry.note = r.problem
          if (alive(srv)) failed.push(`#${i}: ${r.problem}`) // after an exit, every connection fails
        }
      }
    }))
    console.log(`fuzz ws-json: seed ${seed}, ${budget.inputs} frames on ${next} connections in ${budget.seconds.toFixed(1)} s`)
    const problems = [...await checkHealth(srv, start, 'ws-json'), ...failed.slice(0, 10)]
    // a closed /ws connection leaves no subscription behind in the router
    if (alive(srv)) {
      await sleep(200)
      const subs = await subscriptions(srv)
      if (subs !== subs0) problems.push(`the router holds ${subs} subscriptions after the fuzz, ${subs0} before`)
    }
    if (problems.length > 0) throw new Error(rec.report(problems.join('\n')))
    expect(budget.inputs).toBeGreaterThan(0)
  }, fuzzTimeout(90_000))

  it('/mqtt: mutated MQTT in WebSocket frames; stays up, closes every connection, gives its memory back', async () => {
    const seed = fuzzSeed()
    const rec = new Recorder('ws-mqtt', seed)
    const srv = await startTarget()
    const start = await measureStart(srv)
    rec.watch(srv)
    const budget = new Budget(MQTT_WS_INPUTS, 0.5)
    const { connections: next, stuck } = await runMqttBursts(srv, seed, budget, rec, PARALLEL, 'ws ', (rng, burst) => mqttWsSession(srv.wsUrl, rng, burst))
    console.log(`fuzz ws-mqtt: seed ${seed}, ${budget.inputs} inputs on ${next} connections in ${budget.seconds.toFixed(1)} s; ${stuck} stuck`)
    const problems = await checkHealth(srv, start, 'ws-mqtt')
    if (stuck > 0) problems.push(`${stuck} WebSocket connections got no close frame ${CLOSE_WAIT_MS} ms after ours (marked STUCK)`)
    if (problems.length > 0) throw new Error(rec.report(problems.join('\n')))
    expect(budget.inputs).toBeGreaterThan(0)
  }, fuzzTimeout(90_000))
})
