import mqttPacket from 'mqtt-packet'
import { afterEach, describe, expect, it } from 'vitest'
import { Budget, checkHealth, fuzzSeed, fuzzTimeout, measureStart, Recorder, Rng, startTarget, stopTargets } from './harness.ts'
import { everyKind, type Version } from './mqtt-corpus.ts'
import { CLOSE_WAIT_MS, runMqttBursts, sendBurst } from './send.ts'

/**
 * Issue #8: the MQTT listener under hostile input. Thousands of connections, 32 at a time, each
 * sending a burst of mutated packets of every type and version (or noise), then closing or being
 * closed. The server must stay up, serve a normal client afterwards, close every fuzz connection and
 * give its memory back. `npm test` sends DEFAULT_INPUTS; `npm run fuzz` runs for EDGEBUS_FUZZ_SECONDS.
 */

const DEFAULT_INPUTS = 42_000
const PARALLEL = 32

afterEach(stopTargets)

describe('MQTT listener under hostile input (issue #8)', () => {
  it('the fuzzer\'s encoder writes packets a reference parser reads, every kind and version', () => {
    const rng = new Rng(1)
    for (const version of [3, 4, 5] as Version[]) {
      for (let round = 0; round < 50; round++) {
        for (const [kind, bytes] of everyKind(rng, version)) {
          const parser = mqttPacket.parser({ protocolVersion: version })
          const got: string[] = []
          parser.on('packet', (p: { cmd: string }) => got.push(p.cmd))
          parser.on('error', (err: Error) => got.push(`error: ${err.message}`))
          parser.parse(bytes)
          expect(got, `v${version} ${kind} ${bytes.toString('hex').slice(0, 200)}`).toEqual([kind])
        }
      }
    }
  })

  it('stays up, closes every fuzz connection, serves a normal client and gives its memory back', async () => {
    const seed = fuzzSeed()
    const rec = new Recorder('mqtt', seed)
    const srv = await startTarget()
    const start = await measureStart(srv)
    rec.watch(srv)
    const budget = new Budget(DEFAULT_INPUTS)
    const { connections: next, stuck } = await runMqttBursts(srv, seed, budget, rec, PARALLEL, '', (rng, burst) => sendBurst(srv.mqttPort, rng, burst))
    console.log(`fuzz mqtt: seed ${seed}, ${budget.inputs} inputs on ${next} connections in ${budget.seconds.toFixed(1)} s; ${stuck} stuck`)
    const problems = await checkHealth(srv, start, 'mqtt')
    if (stuck > 0) problems.push(`${stuck} connections were still open ${CLOSE_WAIT_MS} ms after the client's FIN (marked STUCK)`)
    if (problems.length > 0) throw new Error(rec.report(problems.join('\n')))
    expect(budget.inputs).toBeGreaterThan(0)
  }, fuzzTimeout(120_000))
})
