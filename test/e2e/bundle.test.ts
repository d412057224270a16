import { copyFileSync, mkdtempSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { BUNDLE, ROOT, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { connectClient, endAllClients } from '../support/mqtt.ts'

/** Bundle size budget: a regression shows the day it happens. */
// issue 14: bridges with the NATS client (@nats-io/transport-node) add ~146 KiB (754 KiB in all); the issue sets 1 MB
const BUNDLE_BUDGET_BYTES = 1000 * 1024

async function roundTrip(srv: StartedEdgebus): Promise<void> {
  try {
    const sub = await connectClient(srv.mqttUrl)
    await sub.client.subscribeAsync('bundle/#', { qos: 1 })
    const pub = await connectClient(srv.wsUrl)
    await pub.client.publishAsync('bundle/check', 'works', { qos: 1 })
    expect((await sub.waitFor(1))[0]).toMatchObject({ topic: 'bundle/check', payload: 'works' })
  } finally {
    await endAllClients()
    expect(await srv.stop()).toBe(0)
  }
}

describe('the built artefacts', () => {
  it(`dist/edgebus.mjs stays within its size budget (${BUNDLE_BUDGET_BYTES / 1024} KiB)`, () => {
    expect(statSync(BUNDLE).size).toBeLessThan(BUNDLE_BUDGET_BYTES)
  })

  it("the README's size of the bundle is the size it has (within 10%)", () => {
    const said = /`dist\/edgebus\.mjs` \([^)]*about (\d+) KiB\)/.exec(readFileSync(join(ROOT, 'README.md'), 'utf8'))
    expect(said, 'README: "dist/edgebus.mjs (..., about N KiB)"').not.toBeNull()
    const kib = statSync(BUNDLE).size / 1024
    expect(Math.abs(Number(said?.[1]) - kib) / kib, `README says ${said?.[1]} KiB, the bundle is ${Math.round(kib)} KiB`).toBeLessThan(0.1)
  })

  it('the bundle runs alone in an empty directory, with no node_modules', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edgebus-alone-'))
    copyFileSync(BUNDLE, join(dir, 'edgebus.mjs'))
    await roundTrip(await startEdgebus({ dir, command: [process.execPath, join(dir, 'edgebus.mjs')] }))
  })

  it('the single executable (npm run build:exe) serves a round trip', async () => {
    const { buildExecutable } = await import(join(ROOT, 'build', 'exe.mjs')) as { buildExecutable(): Promise<{ exe: string }> }
    const { exe } = await buildExecutable()
    const dir = mkdtempSync(join(tmpdir(), 'edgebus-exe-'))
    const srv = await startEdgebus({ dir, command: [exe] })
    expect(srv.output.join('\n')).not.toContain('Warning')
    await roundTrip(srv)
  }, 120_000)
})
