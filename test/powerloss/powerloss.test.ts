import { afterAll, describe, expect, it } from 'vitest'
import { runScenario, type Scenario, type ScenarioReport } from './harness.ts'
import { consumerScenario, journalScenario, lastValueScenario, persistenceScenario } from './scenarios.ts'

/**
 * The power-loss proof (issue 15): every store, driven in this process with a recording file
 * layer, is cut at every flush point (CrashFs/CrashModel: synced bytes kept, unsynced ones dropped
 * or torn), reopened by its own recovery code, and checked against what it had acknowledged.
 *
 *   batch, always:       every acknowledged stream message is there after the cut
 *   none:                only messages acknowledged since the last kernel writeback may be lost
 *   MQTT state, consumer state: every change acknowledged and then synced (the README's 100 ms
 *                        interval) is there; a message never acknowledged is never skipped
 *
 * In the normal suite this runs a few hundred cut points in a few seconds. `npm run powerloss`
 * runs 1,200 per scenario (EDGEBUS_POWERLOSS_CUTS) and prints the figure. EDGEBUS_POWERLOSS_SEED
 * repeats a run's choices; EDGEBUS_POWERLOSS_REPLAY (a failure saves its recording) its cut points exactly.
 */

const full = process.env['EDGEBUS_POWERLOSS_CUTS'] !== undefined
const cutsPer = Number(process.env['EDGEBUS_POWERLOSS_CUTS'] ?? 80)
const baseSeed = Number(process.env['EDGEBUS_POWERLOSS_SEED'] ?? Math.floor(Math.random() * 2 ** 31))
// the workloads grow with the cut points asked for, so that there are that many flush points
const size = (n: number): number => Math.max(8, Math.round(n * cutsPer / 1200))
const reports: ScenarioReport[] = []

const scenarios: Array<[string, Scenario<any>]> = [
  ['stream journal, fsync batch', journalScenario('batch', size(300))],
  ['stream journal, fsync always', journalScenario('always', size(240))],
  ['stream journal, fsync none', journalScenario('none', size(600))],
  ['last-value stream (maxMsgsPerSubject 1: segments compacted), fsync batch', lastValueScenario(size(500))],
  ['retained, session queues and subscriptions, incoming QoS 2, wills (MQTT state log)', persistenceScenario(size(2100))],
  ['durable consumer state', consumerScenario(size(2000))],
]

// EDGEBUS_POWERLOSS_REPLAY=test-artifacts/powerloss/<store>-<policy>-<seed>.json: that scenario's saved recording only
const replay = /([^/\\]+)-(\d+)\.json$/.exec(process.env['EDGEBUS_POWERLOSS_REPLAY'] ?? '')

describe('power loss at every flush point', () => {
  scenarios.forEach(([name, scenario], i) => {
    const replayed = replay !== null && replay[1] === `${scenario.store}-${scenario.policy.replace(/\W+/g, '')}`
    it.skipIf(replay !== null && !replayed)(name, async () => {
      const seed = replayed ? Number(replay[2]) : baseSeed + i
      const r = await runScenario(scenario, seed, cutsPer)
      reports.push(r)
      expect(r.failures, `EDGEBUS_POWERLOSS_SEED=${baseSeed} (this scenario: seed ${seed})\n${r.failures.join('\n')}`).toEqual([])
      expect(r.lost).toBe(0)
      // the check is not empty: there were cut points (at full size, about as many as asked for) and acknowledged data to look for
      expect(r.cuts).toBeGreaterThan((full ? cutsPer : Math.min(cutsPer, r.events)) * 0.8)
      expect(r.checked).toBeGreaterThan(0)
    }, full ? 600_000 : 20_000)
  })
})

afterAll(() => {
  const lines = reports.map((r) => `  ${r.store.padEnd(15)} ${r.policy.padEnd(10)} cut points ${String(r.cuts).padStart(5)}  acknowledged checked ${String(r.checked).padStart(8)}  lost ${r.lost}  lost as allowed ${r.lostAllowed}  (seed ${r.seed}, ${r.events} events)`)
  const cuts = reports.reduce((n, r) => n + r.cuts, 0)
  const lost = reports.reduce((n, r) => n + r.lost, 0)
  console.log(`power loss: ${cuts} cut points, ${lost} acknowledged messages lost (base seed ${baseSeed})\n${lines.join('\n')}`)
})
